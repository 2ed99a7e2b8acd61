import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { compareSchedules, evaluateHoldout, fitPatient, forecastWithBand, makeRng, parseLalehCsv, simulate, type EvalPatient } from './index.js';

function syntheticCohort(n: number, seed: number): EvalPatient[] {
  const rng = makeRng(seed);
  const out: EvalPatient[] = [];
  for (let i = 0; i < n; i++) {
    const m = 3 + (i % 4); // 3..6 measurements: a quarter have only K+2 = 3 (the sparse group)
    const days = Array.from({ length: m }, (_, j) => -5 + 42 * j);
    const beta = 0.01 * Math.exp(0.3 * rng.normal());
    const K = 0.4 + rng.uniform();
    const v = simulate('gompertz', [beta, K], 0.8, -5, days).map((x) => 3000 * x * Math.pow(1 + 0.04 * rng.normal(), 3));
    out.push({ id: `P${i}`, days, volumesMm3: v, arm: 'A' });
  }
  return out;
}

function dataFile(name: string): string {
  const inRepo = fileURLToPath(new URL(`../../../fixtures/growth-laleh2022/${name}`, import.meta.url));
  return inRepo;
}

describe('forecasts', () => {
  const days = [0, 42, 84, 126];
  const vols = simulate('gompertz', [0.01, 1.5], 0.5, 0, days).map((x) => 1000 * x);
  const fit = fitPatient('gompertz', { days, volumesMm3: vols });

  it('band is ordered, deterministic for a seed, and in mm³', () => {
    const fd = [126, 168, 210, 300];
    const a = forecastWithBand(fit, fd, undefined, { seed: 3 });
    const b = forecastWithBand(fit, fd, undefined, { seed: 3 });
    assert.deepEqual(a, b);
    a.days.forEach((_, i) => assert.ok(a.lower[i] <= a.median[i] && a.median[i] <= a.upper[i]));
    assert.ok(Math.abs(a.point[0] - vols[3]) < 10);
    assert.ok(a.upper[3] - a.lower[3] > a.upper[0] - a.lower[0], 'band widens with the horizon');
  });

  it('what-if: radiotherapy lowers the forecast, side by side with the same draws', () => {
    const fd = [140, 200];
    const res = compareSchedules(
      fit,
      fd,
      {
        none: undefined,
        rt: { radiotherapy: [{ dayStart: 130, fractions: 10, doseGyPerFraction: 2 }] },
      },
      { seed: 1, draws: 100 },
    );
    assert.ok(res.rt.median[0] < 0.5 * res.none.median[0]);
    assert.ok(res.rt.point[1] < res.none.point[1]);
  });
});

describe('hold-out evaluation', () => {
  it('returns the documented shape on a small synthetic cohort', () => {
    const patients = syntheticCohort(16, 2);
    const r = evaluateHoldout(patients, { holdoutLast: 1, models: ['exponential', 'gompertz'], seed: 4, draws: 60 });
    assert.deepEqual(Object.keys(r.models).sort(), ['exponential', 'gompertz']);
    for (const s of [...Object.values(r.models), ...Object.values(r.map)]) {
      assert.equal(s.n, 12);
      assert.ok(Number.isFinite(s.mae) && s.mae >= 0);
      assert.ok(s.coverage90 >= 0 && s.coverage90 <= 1);
    }
    assert.ok(Number.isFinite(r.baselines.locf.mae) && Number.isFinite(r.baselines.linear.mae));
    assert.equal(r.meta.patientsEvaluated, 12);
    assert.ok(r.sparseTwoPoint && r.sparseTwoPoint.n === 4);
    assert.ok(r.models.gompertz.mae < 0.2, `gompertz MAE on Gompertz data ${r.models.gompertz.mae}`);
    const again = evaluateHoldout(patients, { holdoutLast: 1, models: ['exponential', 'gompertz'], seed: 4, draws: 60 });
    assert.deepEqual({ ...again, meta: { ...again.meta, seconds: 0 } }, { ...r, meta: { ...r.meta, seconds: 0 } });
  });
});

describe('parseLalehCsv on the real data (Ghaffari Laleh et al. 2022, S1 Data)', () => {
  it('Study1: patients, skipped cells, string ids, sorted days, V = 0.52·d³', () => {
    const c = parseLalehCsv(readFileSync(dataFile('Study1.csv'), 'utf8'));
    assert.equal(c.rows, 456);
    assert.equal(c.length, 76);
    assert.equal(c.skipped, 2);
    assert.deepEqual(c.skippedByValue, { 'NOT EVALUABLE': 2 });
    assert.equal(c.duplicateDaysMerged, 0);
    for (const p of c) {
      assert.equal(typeof p.id, 'string');
      assert.ok(p.days.every((d, i) => i === 0 || d > p.days[i - 1]));
    }
    const p = c.find((x) => x.id === '3.6570156679021609E+18');
    assert.ok(p, 'id kept verbatim, not reformatted as a number');
    assert.deepEqual(p!.days, [-2, 37, 84, 125, 163]);
    assert.equal(p!.arm, 'Study_1_Arm_1');
    assert.ok(Math.abs(p!.volumesMm3[0] - 0.52 * 33 ** 3) < 1e-9);
    assert.equal(
      c.reduce((s, x) => s + x.days.length, 0),
      454,
    );
  });

  it('Study2: empty and TOO SMALL TO MEASURE cells skipped, duplicate days merged', () => {
    const c = parseLalehCsv(readFileSync(dataFile('Study2.csv'), 'utf8'));
    assert.equal(c.skipped, 23);
    assert.deepEqual(c.skippedByValue, { 'NOT EVALUABLE': 14, 'TOO SMALL TO MEASURE': 7, '(empty)': 2 });
    assert.equal(c.duplicateDaysMerged, 1);
  });
});
