import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { mulberry32 } from '../model/prng.js';
import { initLogReg, lossAndGradient, trainLogReg } from '../response/model.js';
import type { ResponseExample } from '../response/features.js';
import { addClipped, dpStepsPerRound, l2Norm, poissonSample, privatisedGradient } from './dpsgd.js';
import { addGaussianNoise, cryptoGaussian, cryptoUniform01, gaussianFrom } from './noise.js';

function moments(xs: ArrayLike<number>): { mean: number; sd: number } {
  let s = 0;
  for (let i = 0; i < xs.length; i++) s += xs[i];
  const mean = s / xs.length;
  let v = 0;
  for (let i = 0; i < xs.length; i++) v += (xs[i] - mean) ** 2;
  return { mean, sd: Math.sqrt(v / (xs.length - 1)) };
}

describe('noise: Gaussian from the CSPRNG', () => {
  it('has the requested standard deviation (fixed injected generator, n = 200 000)', () => {
    const n = 200_000,
      sd = 0.7;
    const v = new Float64Array(n);
    addGaussianNoise(v, sd, gaussianFrom(mulberry32(5)));
    const m = moments(v);
    // Standard errors: mean sd/sqrt(n) ≈ 0.0016, sd sd/sqrt(2n) ≈ 0.0011; 5 of each allowed.
    assert.ok(Math.abs(m.mean) < (5 * sd) / Math.sqrt(n), `mean ${m.mean}`);
    assert.ok(Math.abs(m.sd - sd) < (5 * sd) / Math.sqrt(2 * n), `sd ${m.sd}`);
    // Tails: P(|z| > 2) = 0.0455 for a standard normal.
    const tail = Array.from(v).filter((x) => Math.abs(x) > 2 * sd).length / n;
    assert.ok(Math.abs(tail - 0.0455) < 0.003, `tail mass ${tail}`);
  });

  it('the production source is the CSPRNG: unit variance, and two sources never agree', () => {
    const a = cryptoGaussian(),
      b = cryptoGaussian();
    const xs = Float64Array.from({ length: 50_000 }, () => a());
    const m = moments(xs);
    assert.ok(Math.abs(m.mean) < 0.03 && Math.abs(m.sd - 1) < 0.03, JSON.stringify(m));
    assert.notEqual(a(), b());
    const u = cryptoUniform01();
    for (let i = 0; i < 10_000; i++) {
      const x = u();
      assert.ok(x >= 0 && x < 1);
    }
  });

  it('stdDev 0 adds nothing; a bad stdDev is refused', () => {
    const v = Float32Array.from([1, 2]);
    addGaussianNoise(v, 0);
    assert.deepEqual([...v], [1, 2]);
    assert.throws(() => addGaussianNoise(v, -1), /stdDev/);
    assert.throws(() => addGaussianNoise(v, NaN), /stdDev/);
  });
});

describe('dpsgd helpers', () => {
  it('Poisson sampling takes each patient with probability q on average, from the CSPRNG by default', () => {
    const P = 50,
      q = 0.2,
      T = 4000;
    const counts = new Array(P).fill(0);
    let total = 0;
    for (let t = 0; t < T; t++) {
      const s = poissonSample(P, q);
      total += s.length;
      for (const p of s) counts[p]++;
    }
    // Mean batch q·P = 10; its standard error sqrt(P q (1-q) / T) ≈ 0.045.
    assert.ok(Math.abs(total / T - q * P) < 0.25, `mean batch ${total / T}`);
    for (const c of counts) assert.ok(Math.abs(c / T - q) < 0.05, `a patient was sampled at rate ${c / T}`);
    assert.deepEqual(poissonSample(5, 1), [0, 1, 2, 3, 4]);
    const fixed = poissonSample(100, 0.3, mulberry32(1));
    assert.deepEqual(fixed, poissonSample(100, 0.3, mulberry32(1)), 'an injected source is used');
  });

  it('a patient with a huge gradient contributes at most C (sigma 0)', () => {
    const C = 1.5;
    const huge = Float32Array.from([3e6, -4e6, 0]);
    const small = Float32Array.from([0.3, 0.4, 0]);
    const g = privatisedGradient([huge, small], 3, { clipNorm: C, noiseMultiplier: 0, expectedBatchSize: 1 });
    // huge → 1.5·(0.6, -0.8, 0); small (norm 0.5 < C) unchanged.
    assert.ok(Math.abs(g[0] - (0.9 + 0.3)) < 1e-7 && Math.abs(g[1] - (-1.2 + 0.4)) < 1e-7 && g[2] === 0, `${[...g]}`);
    const alone = privatisedGradient([huge], 3, { clipNorm: C, noiseMultiplier: 0, expectedBatchSize: 1 });
    assert.ok(Math.abs(l2Norm(alone) - C) < 1e-12);
    const sum = new Float64Array(3);
    assert.equal(addClipped(sum, huge, C), 5e6);
    assert.throws(() => addClipped(sum, Float32Array.from([NaN, 0, 0]), C), /non-finite/);
  });

  it('noise has standard deviation sigma·C before the division by q·P', () => {
    const n = 100_000,
      C = 2,
      sigma = 1.3,
      qP = 4;
    const g = privatisedGradient([], n, { clipNorm: C, noiseMultiplier: sigma, expectedBatchSize: qP }, gaussianFrom(mulberry32(2)));
    const m = moments(g);
    const want = (sigma * C) / qP;
    assert.ok(Math.abs(m.sd - want) < (5 * want) / Math.sqrt(2 * n), `sd ${m.sd}, expected ${want}`);
    assert.ok(Math.abs(m.mean) < (5 * want) / Math.sqrt(n));
  });

  it('dpStepsPerRound = max(1, round(epochsPerRound / q))', () => {
    assert.equal(dpStepsPerRound(2, 0.5), 4);
    assert.equal(dpStepsPerRound(1, 0.3), 3);
    assert.equal(dpStepsPerRound(0.1, 1), 1);
    assert.throws(() => dpStepsPerRound(1, 0), /samplingRate/);
  });
});

function synthetic(n: number, seed: number): ResponseExample[] {
  const r = mulberry32(seed);
  return Array.from({ length: n }, (_, i) => {
    const y = (i % 3) as 0 | 1 | 2;
    const x = Float64Array.from([y - 1 + 0.6 * (r() - 0.5), r() * 2 - 1]);
    return { id: `s${i}`, x, y, atThird: y };
  });
}

describe('trainLogReg: FedProx and patient-level DP-SGD', () => {
  const c = { nFeatures: 2, nClasses: 3, l2: 1e-3 };
  const ex = synthetic(30, 1);
  const w0 = initLogReg(c, 7);
  const o = { epochs: 20, batchSize: 8, learningRate: 0.5, seed: 9 };
  const dist = (a: ArrayLike<number>, b: ArrayLike<number>) => Math.sqrt(Array.from(a).reduce((s, v, i) => s + (v - b[i]) ** 2, 0));

  it('proximal mu = 0 is bit-identical to plain training; a large mu keeps the weights near the anchor', () => {
    const plain = trainLogReg(c, w0, ex, o);
    const mu0 = trainLogReg(c, w0, ex, { ...o, proximal: { mu: 0, anchor: w0 } });
    assert.deepEqual(mu0.weights, plain.weights);
    assert.equal(mu0.loss, plain.loss);
    assert.equal(plain.steps, 20 * 4);
    // mu = 1.9 with lr 0.5: the proximal step alone contracts w − anchor by |1 − lr·mu| = 0.05.
    const prox = trainLogReg(c, w0, ex, { ...o, proximal: { mu: 1.9, anchor: w0 } });
    const moved = dist(plain.weights, w0),
      kept = dist(prox.weights, w0);
    assert.ok(kept < 0.2 * moved, `proximal run moved ${kept}, plain ${moved}`);
    assert.throws(() => trainLogReg(c, w0, ex, { ...o, proximal: { mu: 1, anchor: new Float32Array(2) } }), /anchor/);
  });

  it('DP with sigma 0, q 1, C huge equals a full-batch step on the mean of per-patient losses', () => {
    const lr = 0.3;
    const r = trainLogReg(c, w0, ex, { ...o, learningRate: lr, dp: { samplingRate: 1, noiseMultiplier: 0, clipNorm: 1e9, steps: 1 } });
    assert.equal(r.steps, 1);
    const { grad } = lossAndGradient(c, w0, ex, [1, 1, 1]);
    const D = c.nFeatures;
    const want = Float64Array.from(w0, (w, i) => w - lr * (grad[i] + (i % (D + 1) === D ? 0 : c.l2 * w)));
    assert.ok(dist(r.weights, want) < 1e-6, `distance ${dist(r.weights, want)}`);
  });

  it('DP clips: a patient with an outlier feature moves the weights by at most lr·C/(qP) per step', () => {
    const outlier: ResponseExample = { id: 'x', x: Float64Array.from([1e6, -1e6]), y: 2, atThird: 2 };
    const cz = { ...c, l2: 0 };
    const lr = 1,
      C = 0.1;
    const r = trainLogReg(cz, w0, [outlier], { ...o, learningRate: lr, dp: { samplingRate: 1, noiseMultiplier: 0, clipNorm: C, steps: 1 } });
    assert.ok(Math.abs(dist(r.weights, w0) - lr * C) < 1e-6, `moved ${dist(r.weights, w0)}`);
  });

  it('DP takes dp.steps noisy steps, Poisson-samples from injected sources, and still learns', () => {
    const dp = { samplingRate: 0.3, noiseMultiplier: 1, clipNorm: 1, steps: 60 };
    const random = () => ({ sampling: mulberry32(3), noise: gaussianFrom(mulberry32(4)) });
    const a = trainLogReg(c, w0, ex, { ...o, dp: { ...dp, random: random() } });
    const b = trainLogReg(c, w0, ex, { ...o, dp: { ...dp, random: random() } });
    assert.equal(a.steps, 60);
    assert.deepEqual(a.weights, b.weights, 'injected sources make it reproducible');
    const crypto = trainLogReg(c, w0, ex, { ...o, dp });
    assert.notDeepEqual(crypto.weights, a.weights, 'default sources are not the seed');
    assert.ok(a.loss < lossAndGradient(c, w0, ex, [1, 1, 1]).loss, `loss ${a.loss}`);
    assert.throws(() => trainLogReg(c, w0, [], { ...o, dp }), /at least one training patient/);
    assert.throws(() => trainLogReg(c, w0, ex, { ...o, dp: { ...dp, samplingRate: 0 } }), /samplingRate/);
  });
});
