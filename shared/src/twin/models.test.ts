import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fitPatient, GROWTH_MODELS, MODEL_NAMES, makeRng, simulate, type ModelName } from './index.js';

/** Known parameters (θ without V0) with visible curvature over 0..300 days, volumes in Vref. */
const TRUTH: Record<ModelName, { V0: number; theta: number[] }> = {
  exponential: { V0: 0.2, theta: [0.008] },
  logistic: { V0: 0.05, theta: [0.03, 1] },
  gompertz: { V0: 0.05, theta: [0.015, 1] },
  generalGompertz: { V0: 0.05, theta: [0.02, 1, 0.8] },
  classicBertalanffy: { V0: 0.05, theta: [0.05, 0.03] },
  generalBertalanffy: { V0: 0.05, theta: [0.04, 0.02, 0.6] },
};
const DAYS = Array.from({ length: 13 }, (_, i) => i * 25);
const SCALE = 2000; // mm³ per Vref

function relErr(a: number, b: number): number {
  return Math.abs(a - b) / Math.abs(b);
}

describe('growth models', () => {
  it('closed forms agree with RK45 (with and without log-kill)', () => {
    for (const name of MODEL_NAMES) {
      const m = GROWTH_MODELS[name];
      if (!m.exact) continue;
      const { V0, theta } = TRUTH[name];
      for (const k of [0, 0.01]) {
        const sched = k ? { systemic: [{ agentClass: 'x', startDay: 40, stopDay: 120, killRatePerDay: k }] } : undefined;
        const a = simulate(m, theta, V0, 0, DAYS, sched);
        const b = simulate(m, theta, V0, 0, DAYS, sched, {}, { forceOde: true, ode: { atol: 1e-10 } });
        a.forEach((v, i) => assert.ok(relErr(b[i], v) < 1e-6, `${name} k=${k} day ${DAYS[i]}: ${v} vs ${b[i]}`));
      }
    }
  });

  it('stay finite and positive in stiff corners of the parameter box', () => {
    for (const name of MODEL_NAMES) {
      const m = GROWTH_MODELS[name];
      for (const corner of [0, 1]) {
        const th = m.params.map((p, j) => ((corner + j) % 2 === 0 ? p.lower : p.upper));
        const v = simulate(m, th, 1, 0, [1, 50, 300], undefined, {}, { forceOde: true });
        v.forEach((x) => assert.ok(Number.isFinite(x) && x > 0, `${name} ${th}: ${v}`));
      }
    }
  });

  for (const name of MODEL_NAMES) {
    it(`${name}: recovers parameters from noiseless data, approximately from noisy data`, () => {
      const { V0, theta } = TRUTH[name];
      const y = simulate(name, theta, V0, 0, DAYS);
      const fit = fitPatient(name, { days: DAYS, volumesMm3: y.map((v) => v * SCALE) }, { scale: SCALE, starts: 4, maxIter: 200 });
      const truth = [V0, ...theta];
      fit.theta.forEach((v, j) => assert.ok(relErr(v, truth[j]) < 0.02, `${name} ${fit.paramNames[j]}: ${v} vs ${truth[j]}`));
      // noisy: 4% multiplicative error on the diameter (≈ 12% on volume)
      const rng = makeRng(11);
      const noisy = y.map((v) => v * SCALE * Math.pow(1 + 0.04 * rng.normal(), 3));
      const nf = fitPatient(name, { days: DAYS, volumesMm3: noisy }, { scale: SCALE, starts: 4 });
      // the first growth parameter (rate) within 35%, and the curve within 15% of the peak
      assert.ok(relErr(nf.theta[1], truth[1]) < 0.35, `${name} noisy rate ${nf.theta[1]} vs ${truth[1]}`);
      const back = simulate(name, nf.theta.slice(1), nf.theta[0], 0, DAYS);
      back.forEach((v, i) => assert.ok(Math.abs(v - y[i]) < 0.15 * Math.max(...y), `${name} noisy curve day ${DAYS[i]}`));
    });
  }

  it('information criteria prefer the true model on clean Gompertz data', () => {
    const y = simulate('gompertz', [0.015, 1], 0.05, 0, DAYS).map((v) => v * SCALE);
    const g = fitPatient('gompertz', { days: DAYS, volumesMm3: y });
    const e = fitPatient('exponential', { days: DAYS, volumesMm3: y });
    assert.ok(g.aic < e.aic && g.bic < e.bic && g.aicc < e.aicc);
  });
});
