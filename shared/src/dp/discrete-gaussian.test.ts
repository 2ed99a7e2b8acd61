import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CryptoUniform, addDiscreteGaussianZt, bernoulliExp, rationalOfDouble, sampleDiscreteGaussian, sampleDiscreteLaplace } from './discrete-gaussian.js';

/** Exact mean-zero variance of N_Z(0, σ²) by summation of the pmf (for small σ it is below σ²). */
function exactVariance(sigma: number): number {
  let num = 0;
  let den = 1;
  for (let y = 1; y < 40 * sigma + 10; y++) {
    const p = Math.exp(-(y * y) / (2 * sigma * sigma));
    num += 2 * y * y * p;
    den += 2 * p;
  }
  return num / den;
}

function moments(xs: number[]): { mean: number; variance: number; kurt: number } {
  const n = xs.length;
  const mean = xs.reduce((a, b) => a + b, 0) / n;
  let m2 = 0;
  let m4 = 0;
  for (const x of xs) {
    m2 += (x - mean) ** 2;
    m4 += (x - mean) ** 4;
  }
  return { mean, variance: m2 / n, kurt: m4 / n };
}

test('empirical mean and variance of 1e5 draws match N_Z(0, sigma^2) (5 standard errors)', () => {
  for (const [sigma, n] of [
    [3, 100_000],
    [0.5, 50_000],
    [50, 30_000],
    [1e6, 30_000],
  ] as const) {
    const xs = Array.from({ length: n }, () => Number(sampleDiscreteGaussian(sigma)));
    const v = exactVariance(sigma);
    const { mean, variance, kurt } = moments(xs);
    assert.ok(xs.every(Number.isInteger));
    assert.ok(Math.abs(mean) < 5 * Math.sqrt(v / n), `sigma ${sigma}: mean ${mean}`);
    const seVar = Math.sqrt((kurt - variance * variance) / n);
    assert.ok(Math.abs(variance - v) < 5 * seVar, `sigma ${sigma}: variance ${variance} vs ${v} (se ${seVar})`);
  }
});

test('the pmf of a small sigma matches exp(-x^2/(2 sigma^2)) / Z, symmetric in sign', () => {
  const sigma = 1.3;
  const n = 60_000;
  const counts = new Map<number, number>();
  for (let i = 0; i < n; i++) {
    const x = Number(sampleDiscreteGaussian(sigma));
    counts.set(x, (counts.get(x) ?? 0) + 1);
  }
  let z = 0;
  for (let y = -30; y <= 30; y++) z += Math.exp(-(y * y) / (2 * sigma * sigma));
  for (let y = -4; y <= 4; y++) {
    const p = Math.exp(-(y * y) / (2 * sigma * sigma)) / z;
    const got = (counts.get(y) ?? 0) / n;
    assert.ok(Math.abs(got - p) < 5 * Math.sqrt((p * (1 - p)) / n), `P[${y}] ${got} vs ${p}`);
  }
  // symmetry: as many positive as negative draws (binomial, 5 standard errors)
  let pos = 0;
  let neg = 0;
  for (const [x, c] of counts) {
    if (x > 0) pos += c;
    else if (x < 0) neg += c;
  }
  assert.ok(Math.abs(pos - neg) < 5 * Math.sqrt(pos + neg), `${pos} positive vs ${neg} negative`);
});

test('building blocks: Bernoulli(exp(-gamma)) and the discrete Laplace', () => {
  const n = 40_000;
  for (const g of [0.3, 1, 2.75]) {
    const r = rationalOfDouble(g);
    let hits = 0;
    for (let i = 0; i < n; i++) if (bernoulliExp(r)) hits++;
    const p = Math.exp(-g);
    assert.ok(Math.abs(hits / n - p) < 5 * Math.sqrt((p * (1 - p)) / n), `gamma ${g}: ${hits / n} vs ${p}`);
  }
  // DLap(t): P[0] = (1 − e^{−1/t}) / (1 + e^{−1/t})
  const t = 3n;
  let zeros = 0;
  for (let i = 0; i < n; i++) if (sampleDiscreteLaplace(t) === 0n) zeros++;
  const e = Math.exp(-1 / 3);
  const p0 = (1 - e) / (1 + e);
  assert.ok(Math.abs(zeros / n - p0) < 5 * Math.sqrt((p0 * (1 - p0)) / n), `P[0] ${zeros / n} vs ${p0}`);
  assert.deepEqual(rationalOfDouble(0.75), { n: 3n, d: 4n });
  assert.deepEqual(rationalOfDouble(5), { n: 5n, d: 1n });
});

test('uniform integers: in range, bigint moduli beyond 2^48 too', () => {
  const u = new CryptoUniform();
  const big = 2n ** 130n + 12345n;
  for (let i = 0; i < 2000; i++) {
    const x = u.uniformBelow(7n);
    assert.ok(x >= 0n && x < 7n);
    const y = u.uniformBelow(big);
    assert.ok(y >= 0n && y < big);
  }
  assert.throws(() => u.uniformBelow(0n), RangeError);
});

test('addDiscreteGaussianZt keeps values in [0, t), wraps around, and centres the noise', () => {
  const t = (1n << 40n) - 87n;
  const tn = Number(t);
  const n = 20_000;
  const values = new Float64Array(n);
  for (let i = 0; i < n; i++) values[i] = i % 3 === 0 ? 0 : i % 3 === 1 ? tn - 1 : 123_456_789;
  const sigma = 1000;
  const out = addDiscreteGaussianZt(values, t, sigma);
  assert.equal(out.length, n);
  assert.notStrictEqual(out, values);
  let sum = 0;
  let sq = 0;
  for (let i = 0; i < n; i++) {
    const y = out[i]!;
    assert.ok(Number.isInteger(y) && y >= 0 && y < tn, `out[${i}] = ${y}`);
    // centred difference in (−t/2, t/2]
    let d = y - values[i]!;
    if (d > tn / 2) d -= tn;
    if (d <= -tn / 2) d += tn;
    sum += d;
    sq += d * d;
  }
  assert.ok(Math.abs(sum / n) < (5 * sigma) / Math.sqrt(n));
  assert.ok(Math.abs(sq / n / (sigma * sigma) - 1) < 5 * Math.sqrt(2 / n));
  // values near 0 wrapped to near t (some noise is negative)
  assert.ok(Array.from(out).some((y, i) => i % 3 === 0 && y > tn / 2));
  assert.throws(() => addDiscreteGaussianZt(Float64Array.of(tn), t, 1), RangeError);
  assert.throws(() => addDiscreteGaussianZt(Float64Array.of(1.5), t, 1), RangeError);
});
