import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseLalehCsv } from '../twin/laleh.js';
import {
  balancedAccuracy,
  binaryAuc,
  bootstrapMacroAucCi,
  buildExamples,
  evaluateResponse,
  featureNames,
  initLogReg,
  lossAndGradient,
  macroAucOvr,
  NUMERIC_FEATURES,
  permutationImportance,
  predictProba,
  recistLabel,
  responsePatientsFromLaleh,
  splitOf,
  trainLogReg,
  type ResponseExample,
} from './index.js';
import { mulberry32 } from '../model/prng.js';

const close = (a: number | null, b: number, eps = 1e-12) => assert.ok(a !== null && Math.abs(a - b) < eps, `${a} != ${b}`);

test('binary AUC equals the hand-counted pair fraction, ties counted 1/2', () => {
  // positives 0.35, 0.8 vs negatives 0.1, 0.4: pairs won 1 + 2 of 4
  close(binaryAuc([0.1, 0.4, 0.35, 0.8], [false, false, true, true]), 3 / 4);
  // positives {0.5, 0.9}, negatives {0.5, 0.5}: 2 ties (1/2 each) + 2 wins = 3 of 4
  close(binaryAuc([0.5, 0.5, 0.5, 0.9], [true, false, false, true]), 3 / 4);
  // positives {0.2, 0.6, 0.6}, negatives {0.2, 0.6}: 0.2~0.2 tie .5, 0.2<0.6 0, 0.6>0.2 x2 = 2, 0.6~0.6 x2 = 1 → 3.5/6
  close(binaryAuc([0.2, 0.2, 0.6, 0.6, 0.6], [false, true, false, true, true]), 3.5 / 6);
  close(binaryAuc([1, 1, 1, 1], [true, false, true, false]), 0.5);
  close(binaryAuc([0.9, 0.8, 0.1], [false, false, true]), 0);
  assert.equal(binaryAuc([0.1, 0.2], [true, true]), null);
});

test('macro one-vs-rest AUC skips (and reports) a class absent from the set', () => {
  const probs = [
    [0.7, 0.2, 0.1],
    [0.4, 0.5, 0.1],
    [0.5, 0.3, 0.2],
    [0.1, 0.8, 0.1],
  ];
  const y = [0, 0, 1, 1];
  const m = macroAucOvr(probs, y, 3);
  assert.deepEqual(m.skipped, [2]);
  // class 0: positives {0.7, 0.4} vs negatives {0.5, 0.1}: 0.7 beats both, 0.4 beats 0.1 → 3/4
  close(m.perClass[0], 3 / 4);
  // class 1: positives {0.3, 0.8} vs negatives {0.2, 0.5}: 0.3>0.2, 0.8>both → 3/4
  close(m.perClass[1], 3 / 4);
  close(m.auc, 3 / 4);
});

test('balanced accuracy is the mean recall of the classes present', () => {
  close(balancedAccuracy([0, 0, 1, 1], [0, 0, 0, 1], 3), (2 / 3 + 1) / 2);
  close(balancedAccuracy([2, 2, 2, 2], [0, 1, 2, 2], 3), (0 + 0 + 1) / 3);
  assert.equal(balancedAccuracy([], [], 3), null);
});

test('RECIST labels: response below 70% of baseline, progression 20% above the nadir (checked first)', () => {
  assert.equal(recistLabel([30, 25, 21]), 0); // exactly 30 % below baseline
  assert.equal(recistLabel([30, 25, 22]), 1);
  assert.equal(recistLabel([30, 32, 35.9]), 1); // < 1.2·30
  assert.equal(recistLabel([30, 32, 36]), 2);
  assert.equal(recistLabel([30, 25, 20, 26]), 2);
  assert.equal(recistLabel([30, 15, 18]), 2); // regrowth from nadir beats "30 % below baseline"
  assert.equal(recistLabel([30, 10, 0, 0]), 0); // disappeared and stayed gone
  assert.throws(() => recistLabel([]), /no measurements/);
});

test('patient split is deterministic, salted and near the asked fraction', () => {
  const ids = Array.from({ length: 2000 }, (_, i) => `p${i}`);
  const a = ids.map((id) => splitOf(id, 's', 70));
  assert.deepEqual(
    a,
    ids.map((id) => splitOf(id, 's', 70)),
  );
  const frac = a.filter((s) => s === 'train').length / ids.length;
  assert.ok(frac > 0.66 && frac < 0.74, `train fraction ${frac}`);
  assert.notDeepEqual(
    a,
    ids.map((id) => splitOf(id, 'other', 70)),
  );
});

function synthetic(n: number, seed: number): ResponseExample[] {
  const r = mulberry32(seed);
  return Array.from({ length: n }, (_, i) => {
    const y = (i % 3) as 0 | 1 | 2;
    // feature 0 carries the class, feature 1 is noise
    const x = Float64Array.from([y - 1 + 0.6 * (r() - 0.5), r() * 2 - 1]);
    return { id: `s${i}`, x, y, atThird: y };
  });
}

test('hand-written softmax gradient matches central finite differences', () => {
  const c = { nFeatures: 2, nClasses: 3, l2: 0 };
  const ex = synthetic(12, 3);
  const w = initLogReg(c, 5);
  w[1] = 0.3;
  w[5] = -0.2;
  const cw = [1, 2, 0.5];
  const { grad } = lossAndGradient(c, w, ex, cw);
  const h = 1e-3;
  for (let i = 0; i < w.length; i++) {
    const wp = Float64Array.from(w);
    const wm = Float64Array.from(w);
    wp[i] += h;
    wm[i] -= h;
    const fd = (lossAndGradient(c, wp, ex, cw).loss - lossAndGradient(c, wm, ex, cw).loss) / (2 * h);
    assert.ok(Math.abs(fd - grad[i]) < 1e-5, `weight ${i}: analytic ${grad[i]} vs numeric ${fd}`);
  }
});

test('training is seeded, learns a separable signal and permutation importance finds it', () => {
  const c = { nFeatures: 2, nClasses: 3, l2: 1e-3 };
  const tr = synthetic(90, 1);
  const te = synthetic(45, 2);
  const w0 = initLogReg(c, 7);
  const before = evaluateResponse(c, w0, te);
  const o = { epochs: 200, batchSize: 32, learningRate: 0.5, seed: 9 };
  const a = trainLogReg(c, w0, tr, o);
  assert.deepEqual(a.weights, trainLogReg(c, w0, tr, o).weights);
  const after = evaluateResponse(c, a.weights, te);
  assert.ok(after.auc! > 0.95 && after.auc! > before.auc!, `AUC ${before.auc} → ${after.auc}`);
  assert.ok(after.balancedAccuracy! > 0.9);
  const p = predictProba(c, a.weights, te[0].x);
  close(
    p.reduce((s, v) => s + v, 0),
    1,
    1e-9,
  );
  const imp = permutationImportance(c, a.weights, te, ['signal', 'noise'], { repeats: 10, seed: 1 });
  assert.equal(imp[0].feature, 'signal');
  assert.ok(imp[0].meanAucDrop > 0.2 && Math.abs(imp[1].meanAucDrop) < 0.05, JSON.stringify(imp));
});

test('real Study1 patients: ≥5 measurements kept, features finite, arm one-hot from the vocabulary', () => {
  const csv = readFileSync(fileURLToPath(new URL('../../../fixtures/growth-laleh2022/Study1.csv', import.meta.url)), 'utf8');
  const pts = responsePatientsFromLaleh(parseLalehCsv(csv));
  const arms = ['Study_1_Arm_1', 'Study_1_Arm_2'];
  const { examples, excluded, unknownArm } = buildExamples(pts, arms);
  assert.equal(examples.length + excluded, pts.length);
  assert.equal(examples.length, pts.filter((p) => p.days.length >= 5).length);
  assert.ok(unknownArm > 0, 'Study_1_Arm_3 is not in the vocabulary');
  assert.equal(featureNames(arms).length, examples[0].x.length);
  for (const e of examples) {
    assert.ok(e.x.every(Number.isFinite));
    const oneHot = Array.from(e.x.slice(NUMERIC_FEATURES.length));
    assert.ok(oneHot.reduce((s, v) => s + v, 0) <= 1);
  }
  // the carry-forward category uses the first three diameters only
  const p0 = pts.find((p) => p.id === examples[0].id)!;
  assert.equal(examples[0].atThird, recistLabel(p0.diametersMm.slice(0, 3)));
  // all three classes occur in this trial
  assert.deepEqual(new Set(examples.map((e) => e.y)), new Set([0, 1, 2]));
});

test('bootstrap AUC interval: seeded, brackets the estimate, collapses for a perfect ranking', () => {
  const r = mulberry32(4);
  const y = Array.from({ length: 60 }, (_, i) => i % 3);
  const probs = y.map((c) => [0, 1, 2].map((k) => (k === c ? 0.5 : 0) + r()));
  const est = macroAucOvr(probs, y, 3).auc!;
  const ci = bootstrapMacroAucCi(probs, y, 3, { resamples: 300, seed: 2 })!;
  assert.deepEqual(ci, bootstrapMacroAucCi(probs, y, 3, { resamples: 300, seed: 2 }));
  assert.ok(ci[0] < est && est < ci[1], `${ci} vs ${est}`);
  const perfect = y.map((c) => [0, 1, 2].map((k) => (k === c ? 1 : 0)));
  assert.deepEqual(bootstrapMacroAucCi(perfect, y, 3, { resamples: 100 }), [1, 1]);
});
