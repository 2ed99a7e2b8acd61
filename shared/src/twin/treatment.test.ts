import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { expandFractionDays, fitPatient, fractionEvents, killRateAt, lqSurvivingFraction, simulate, totalSurvivingFraction, type Schedule } from './index.js';

const close = (a: number, b: number, tol = 1e-9) => assert.ok(Math.abs(a - b) <= tol * Math.max(1, Math.abs(b)), `${a} vs ${b}`);

describe('linear-quadratic radiotherapy', () => {
  it('surviving fraction by hand', () => {
    close(lqSurvivingFraction(2, 0.3, 0.03), Math.exp(-0.72)); // 0.3·2 + 0.03·4 = 0.72
    close(lqSurvivingFraction(0, 0.3, 0.03), 1);
    close(lqSurvivingFraction(8, 0.15, 0.05), Math.exp(-(1.2 + 3.2)));
    // 30 × 2 Gy: (0.72)·30 = 21.6
    close(totalSurvivingFraction({ radiotherapy: [{ dayStart: 0, fractions: 30, doseGyPerFraction: 2 }] }, { alpha: 0.3, beta: 0.03 }), Math.exp(-21.6));
  });

  it('expands fractions on the weekly pattern', () => {
    assert.deepEqual(expandFractionDays({ dayStart: 0, fractions: 10, doseGyPerFraction: 2 }), [0, 1, 2, 3, 4, 7, 8, 9, 10, 11]);
    // starting on a Wednesday (weekday 2): Wed Thu Fri, skip Sat Sun, Mon Tue
    assert.deepEqual(expandFractionDays({ dayStart: 14, fractions: 5, doseGyPerFraction: 2, startWeekday: 2 }), [14, 15, 16, 19, 20]);
    // 3 per week, Mon/Wed/Fri
    assert.deepEqual(expandFractionDays({ dayStart: 0, fractions: 6, doseGyPerFraction: 3, fractionsPerWeek: 3 }), [0, 2, 4, 7, 9, 11]);
    // 25 fractions at 5/week → last fraction on day 7·4 + 4 = 32; 35 days span
    const d = expandFractionDays({ dayStart: 0, fractions: 25, doseGyPerFraction: 2 });
    assert.equal(d.length, 25);
    assert.equal(d[24], 32);
    assert.deepEqual(expandFractionDays({ dayStart: 0, fractions: 3, doseGyPerFraction: 2, days: [5, 1, 3] }), [1, 3, 5]);
    assert.throws(() => expandFractionDays({ dayStart: 0, fractions: 2, doseGyPerFraction: 2, days: [1] }));
    assert.throws(() => expandFractionDays({ dayStart: 0, fractions: 2, doseGyPerFraction: 2, fractionsPerWeek: 8 }));
    assert.equal(
      fractionEvents({
        radiotherapy: [
          { dayStart: 0, fractions: 4, doseGyPerFraction: 2 },
          { dayStart: 2, fractions: 1, doseGyPerFraction: 8 },
        ],
      }).length,
      5,
    );
  });

  it('direct kill (V → S·V) and carrying-capacity kill (K → S·K) differ as expected', () => {
    const S = lqSurvivingFraction(2);
    const rt: Schedule = { radiotherapy: [{ dayStart: 10, fractions: 1, doseGyPerFraction: 2 }] };
    const theta = [0.1, 1]; // logistic at its carrying capacity K = 1
    const days = [10, 10.001, 12, 100, 1000];
    const direct = simulate('logistic', theta, 1, 0, days, rt, { rtVariant: 'direct' });
    const cap = simulate('logistic', theta, 1, 0, days, rt, { rtVariant: 'capacity' });
    close(direct[0], 1); // observation on the fraction day sees the pre-fraction volume
    close(direct[1], S, 1e-3); // immediate drop by S
    close(cap[1], 1, 1e-3); // no immediate drop
    assert.ok(cap[2] < 1 && cap[2] > S); // relaxing towards S·K
    close(direct[4], 1, 1e-6); // regrows to the unchanged K
    close(cap[4], S, 1e-6); // settles at the reduced K
    // exponential has no K: 'capacity' falls back to direct kill
    const e1 = simulate('exponential', [0.01], 1, 0, [20], rt, { rtVariant: 'capacity' });
    const e2 = simulate('exponential', [0.01], 1, 0, [20], rt, { rtVariant: 'direct' });
    close(e1[0], e2[0]);
    close(e2[0], S * Math.exp(0.2));
    // Bertalanffy: carrying capacity (a/b)^3 is reduced by S
    const b = simulate('classicBertalanffy', [0.03, 0.03], 1, 0, [5000], rt, { rtVariant: 'capacity' });
    close(b[0], S, 1e-4);
  });
});

describe('log-kill systemic therapy', () => {
  const sched: Schedule = { systemic: [{ agentClass: 'chemotherapy', startDay: 10, stopDay: 20 }] };
  const effects = { killRates: { chemotherapy: 0.03 } };

  it('reduces growth only during exposure', () => {
    const days = [5, 10, 15, 20, 30];
    const on = simulate('exponential', [0.01], 1, 0, days, sched, effects);
    const off = simulate('exponential', [0.01], 1, 0, days);
    close(on[0], off[0]);
    close(on[1], off[1]);
    close(on[2], Math.exp(0.1 - 0.02 * 5));
    close(on[3], Math.exp(0.1 - 0.02 * 10));
    close(on[4], Math.exp(0.3 - 0.03 * 10)); // growth rate back to 0.01 after day 20
    close(on[4] / on[3], off[4] / off[3]);
    assert.equal(killRateAt(9.99, sched, effects), 0);
    assert.equal(killRateAt(10, sched, effects), 0.03);
    assert.equal(killRateAt(20, sched, effects), 0);
    // ODE path (general Gompertz): identical before exposure, lower after
    const g1 = simulate('generalGompertz', [0.02, 2, 0.8], 0.5, 0, days, sched, effects);
    const g0 = simulate('generalGompertz', [0.02, 2, 0.8], 0.5, 0, days);
    close(g1[0], g0[0], 1e-5);
    close(g1[1], g0[1], 1e-5);
    assert.ok(g1[2] < g0[2] && g1[4] < g0[4]);
    assert.throws(() => simulate('exponential', [0.01], 1, 0, days, sched), /no log-kill rate/);
  });

  it('a fit can estimate the log-kill rate from on/off data', () => {
    const days = Array.from({ length: 13 }, (_, i) => i * 10);
    const s: Schedule = { systemic: [{ agentClass: 'chemotherapy', startDay: 40, stopDay: 80 }] };
    const v = simulate('exponential', [0.02], 0.3, 0, days, s, { killRates: { chemotherapy: 0.05 } }).map((x) => x * 1000);
    const fit = fitPatient('exponential', { days, volumesMm3: v }, { schedule: s, estimateKill: true });
    assert.deepEqual(fit.paramNames, ['V0', 'a', 'k']);
    close(fit.theta[1], 0.02, 1e-3);
    close(fit.theta[2], 0.05, 1e-3);
  });
});
