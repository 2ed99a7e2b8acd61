import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import {
  compareSchedules,
  evaluateHoldout,
  fitModels,
  fitPatient,
  forecastWithBand,
  killRateIdentifiable,
  MODEL_NAMES,
  makeRng,
  parseLalehCsv,
  priorFromStats,
  simulate,
  sufficientStats,
  type EvalPatient,
  type Fit,
} from './index.js';

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

describe('the default twin as a probabilistic forecaster, on real data (Study 1)', () => {
  const cohort = parseLalehCsv(readFileSync(dataFile('Study1.csv'), 'utf8'));
  const small = cohort.filter((p) => p.days.length >= 5).slice(0, 24);
  const opts = { holdoutLast: 1, models: ['exponential', 'gompertz'] as const, seed: 3, draws: 80, withPrior: false, withSparse: false, perPatient: true };

  it('no leakage: changing a patient’s held-out measurement changes neither its forecast, its band, its calibration factor nor its progression probability', () => {
    const a = evaluateHoldout(small, { ...opts, models: [...opts.models] });
    const target = small[5];
    const changed = small.map((p) => (p === target ? { ...p, volumesMm3: p.volumesMm3.map((v, i) => (i === p.volumesMm3.length - 1 ? 2 * Math.max(...p.volumesMm3) : v)) } : p));
    const b = evaluateHoldout(changed, { ...opts, models: [...opts.models] });
    const pa = a.patients!.find((x) => x.id === target.id)!;
    const pb = b.patients!.find((x) => x.id === target.id)!;
    assert.deepEqual(pb, { ...pa, progressed: pb.progressed });
    // ... while the scores do see it (the perturbation is not a no-op).
    assert.notEqual(a.intervalScore90!.twin, b.intervalScore90!.twin);
  });

  it('reports progression (AUC, Brier, baselines, reliability), calibrated coverage, interval score and width on the real cohort', () => {
    const r = evaluateHoldout(small, { ...opts, models: [...opts.models] });
    const p = r.progression!;
    assert.equal(p.n, r.meta.patientsEvaluated);
    assert.ok(p.events > 0 && p.events < p.n, 'both outcomes occur in these trials');
    for (const v of [p.auc, p.baselineAuc, p.logisticAuc, p.aucModelBand]) assert.ok(v >= 0 && v <= 1);
    for (const v of [p.brier, p.baselineBrier, p.logisticBrier]) assert.ok(v >= 0 && v <= 1);
    assert.equal(
      p.reliability.reduce((s, b) => s + b.n, 0),
      p.n,
    );
    assert.ok(r.coverage90Calibrated! >= 0 && r.coverage90Calibrated! <= 1);
    assert.ok(r.intervalScore90!.twin >= r.meanWidth90!.twin, 'the interval score is at least the width');
    assert.ok(r.intervalScore90!.locfEmpirical >= r.meanWidth90!.locfEmpirical);
    // every patient's probability is a share of draws, and the calibrated band contains the median
    for (const x of r.patients!) {
      assert.ok(x.pProgression >= 0 && x.pProgression <= 1);
      assert.ok(x.lower90Mm3[0] <= x.upper90Mm3[0]);
    }
  });

  it('a given prior is scored on the sparse patients against the local leave-one-out prior and no prior', () => {
    const other = parseLalehCsv(readFileSync(dataFile('Study2.csv'), 'utf8'))
      .filter((p) => p.days.length >= 5)
      .slice(0, 20);
    const prior = priorFromStats(sufficientStats(other.map((p) => fitPatient('gompertz', p, { seed: 1, starts: 2 }))));
    const sparseToo = cohort.filter((p) => p.days.length >= 3).slice(0, 30);
    const r = evaluateHoldout(sparseToo, { holdoutLast: 1, models: ['gompertz'], seed: 3, draws: 40, withPrior: false, withSparse: false, givenPrior: { gompertz: prior } });
    const s = r.sparse!;
    assert.equal(s.model, 'gompertz');
    assert.equal(s.n, sparseToo.filter((p) => p.days.length <= 4).length, 'patients with 2 or 3 fitted points');
    for (const v of [s.maeWithPrior, s.maeLocalPrior, s.maeNoPrior, s.maeLocf]) assert.ok(Number.isFinite(v) && v >= 0);
  });
});

describe('band width on a well-fitted real patient (Study 1, 10 measurements, one before therapy)', () => {
  const p = parseLalehCsv(readFileSync(dataFile('Study1.csv'), 'utf8')).find((x) => x.id === '8.6222186696850913E+18')!;
  const schedule = { systemic: [{ agentClass: 'Study_1_Arm_2', startDay: 0, stopDay: Infinity }] };
  const nextVisits = [439, 469, 499];
  const best = (fits: Partial<Record<string, Fit>>) => {
    const list = Object.values(fits) as Fit[];
    return list.reduce((a, b) => (b.aicc < a.aicc ? b : a));
  };
  /** Width of the 90% band on the normalised-diameter scale, over 2·1.645 residual SDs (RSS/(n − p)). */
  const ratio = (f: Fit) => {
    const b = forecastWithBand(f, nextVisits, f.schedule, { seed: 7 });
    const s = Math.sqrt(f.rss / (f.n - f.p));
    return b.days.map((_, i) => (Math.cbrt(b.upper[i] / f.scale) - Math.cbrt(b.lower[i] / f.scale)) / (2 * 1.645 * s));
  };

  it('one baseline scan does not make the log-kill rate identifiable', () => {
    assert.equal(killRateIdentifiable(p.days, schedule), false);
    assert.equal(killRateIdentifiable([-30, -2, 40], schedule), true);
  });

  it('without the unidentifiable kill rate the band is within a sane factor (< 5) of the residual scatter; with it, it spans 0 to the maximum', () => {
    const plain = best(fitModels(p, MODEL_NAMES, { seed: 1 }).fits);
    const r = ratio(plain);
    assert.ok(
      r.every((x) => x < 5),
      `width / (3.29·residual SD) = ${r.map((x) => x.toFixed(2)).join(', ')}`,
    );
    const bad = best(fitModels(p, MODEL_NAMES, { seed: 1, schedule, estimateKill: true }).fits);
    assert.ok(
      ratio(bad).every((x) => x > 10),
      'the old site rule (one pre-treatment point) gave a band 10x wider than the data',
    );
    const band = forecastWithBand(plain, nextVisits, plain.schedule, { seed: 7 });
    const last = p.volumesMm3[p.volumesMm3.length - 1];
    assert.ok(band.lower.every((v) => v > 0.4 * last) && band.upper.every((v) => v < 1.6 * last));
  });
});
