import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WireError } from '@twinfed/protocols';
import {
  RDP_ORDERS,
  composeRdp,
  dpStepsPerRound,
  epsilonFor,
  epsilonFromRdp,
  logAOfSampledGaussian,
  noiseMultiplierFor,
  projectStudyEpsilon,
  rdpFromBuffer,
  rdpSubsampledGaussian,
  rdpToBuffer,
} from './accountant.js';

const near = (a: number, b: number, tol: number, what = '') => assert.ok(Math.abs(a - b) <= tol, `${what} ${a} vs ${b} (tol ${tol})`);

test('published values: Gaussian q=1 sigma=2.4 x20 and DP-SGD q=0.01 sigma=1.1 x10000 at delta 1e-5', () => {
  // Both figures use the Balle et al. 2020 conversion (Opacus get_privacy_spent / TF-Privacy compute_eps).
  const g = epsilonFor({ samplingRate: 1, noiseMultiplier: 2.4, steps: 20, delta: 1e-5 });
  near(g.epsilon, 10.01, 0.005, 'q=1');
  assert.equal(g.order, 3);
  const s = epsilonFor({ samplingRate: 0.01, noiseMultiplier: 1.1, steps: 10_000, delta: 1e-5 });
  near(s.epsilon, 5.65, 0.005, 'q=0.01');
  // The older conversion (Mironov 2017 Prop. 3: rdp + log(1/δ)/(α−1)) gives a looser 6.28 on the same curve.
  const rdp = rdpSubsampledGaussian(0.01, 1.1).map((x) => x * 10_000);
  const mironov = Math.min(...RDP_ORDERS.map((a, i) => rdp[i]! + Math.log(1e5) / (a - 1)));
  near(mironov, 6.28, 0.005, 'Mironov conversion');
});

test('q = 1 is the Gaussian mechanism alpha/(2 sigma^2) exactly, q = 0 is free', () => {
  const r = rdpSubsampledGaussian(1, 1.7);
  RDP_ORDERS.forEach((a, i) => assert.equal(r[i], a / (2 * 1.7 * 1.7)));
  assert.ok(rdpSubsampledGaussian(0, 0.5).every((x) => x === 0));
  assert.deepEqual(epsilonFor({ samplingRate: 0, noiseMultiplier: 1, steps: 100, delta: 1e-5 }).epsilon, 0);
  // Log space also makes q → 1 continuous with the closed form (the k = α term dominates).
  const almost = rdpSubsampledGaussian(1 - 1e-12, 1.7);
  RDP_ORDERS.forEach((a, i) => near(almost[i]!, a / (2 * 1.7 * 1.7), 1e-9 * a, `alpha ${a}`));
});

/** A_α by direct summation in plain doubles (fine for α ≤ 20 and moderate σ). */
function directA(q: number, sigma: number, alpha: number): number {
  let binom = 1;
  let sum = 0;
  for (let k = 0; k <= alpha; k++) {
    if (k > 0) binom = (binom * (alpha - k + 1)) / k;
    sum += binom * (1 - q) ** (alpha - k) * q ** k * Math.exp((k * k - k) / (2 * sigma * sigma));
  }
  return sum;
}

/**
 * A_α = E_{z~N(0,σ²)} [((1−q) + q·exp((2z−1)/(2σ²)))^α], the α-th moment of the likelihood ratio of
 * the mixture (1−q)N(0,σ²) + qN(1,σ²) against N(0,σ²) (Mironov, Talwar & Zhang 2019, Sec. 3.3), by
 * composite Simpson (in log space, shifted by the integrand's peak) over a range that holds the integrand's mass (its peak moves out to z ≈ α).
 */
function integralLogA(q: number, sigma: number, alpha: number): number {
  const lo = -40 * sigma;
  const hi = alpha + 40 * sigma;
  const n = 200_000;
  const h = (hi - lo) / n;
  const s2 = 2 * sigma * sigma;
  // log of the integrand; the likelihood ratio's log is log((1−q) + q·e^u), u = (2z−1)/(2σ²), taken stably
  const logF = (z: number) => {
    const u = (2 * z - 1) / s2;
    const logRatio = u > 0 ? u + Math.log(q + (1 - q) * Math.exp(-u)) : Math.log(1 - q + q * Math.exp(u));
    return -(z * z) / s2 - Math.log(sigma * Math.sqrt(2 * Math.PI)) + alpha * logRatio;
  };
  let shift = -Infinity;
  for (let i = 0; i <= n; i++) shift = Math.max(shift, logF(lo + i * h));
  let s = 0;
  for (let i = 0; i <= n; i++) s += (i === 0 || i === n ? 1 : i % 2 ? 4 : 2) * Math.exp(logF(lo + i * h) - shift);
  return shift + Math.log((s * h) / 3);
}

test('log-space A_alpha agrees with direct summation and with numerical integration of the Renyi divergence', () => {
  for (const [q, sigma] of [
    [0.1, 2],
    [0.5, 1.5],
    [0.01, 0.8],
    [0.3, 1],
  ] as const) {
    const orders = Array.from({ length: 19 }, (_, i) => i + 2);
    const rdp = rdpSubsampledGaussian(q, sigma, orders);
    for (const [i, a] of orders.entries()) {
      const logA = logAOfSampledGaussian(q, sigma, a);
      const direct = Math.log(directA(q, sigma, a));
      near(logA, direct, 1e-10 * Math.max(1, Math.abs(direct)), `direct q=${q} s=${sigma} a=${a}`);
      near(rdp[i]!, direct / (a - 1), 1e-10 * Math.max(1, Math.abs(direct)), `rdp q=${q} s=${sigma} a=${a}`);
    }
    for (const a of [2, 3, 8, 20]) {
      const integral = integralLogA(q, sigma, a);
      near(logAOfSampledGaussian(q, sigma, a), integral, 1e-7 * Math.max(1, Math.abs(integral)), `integral q=${q} s=${sigma} a=${a}`);
    }
  }
});

test('stable at alpha = 256 and small sigma: finite, non-negative, non-decreasing in the order', () => {
  for (const [q, sigma] of [
    [0.01, 0.3],
    [0.5, 0.3],
    [1e-4, 5],
    [0.9, 100],
  ] as const) {
    const r = rdpSubsampledGaussian(q, sigma);
    assert.ok(
      r.every((x) => Number.isFinite(x) && x >= 0),
      `q=${q} s=${sigma}`,
    );
    // RDP is non-decreasing in α (Mironov 2017, Prop. 9)
    for (let i = 1; i < r.length; i++) assert.ok(r[i]! >= r[i - 1]! * (1 - 1e-12), `q=${q} s=${sigma} a=${RDP_ORDERS[i]}`);
  }
});

test('epsilon grows with steps and sampling rate, falls with sigma', () => {
  const base = { samplingRate: 0.05, noiseMultiplier: 1.2, steps: 500, delta: 1e-5 };
  const e = (p: Partial<typeof base>) => epsilonFor({ ...base, ...p }).epsilon;
  let prev = 0;
  for (const steps of [1, 10, 100, 1000, 10_000]) {
    const x = e({ steps });
    assert.ok(x > prev, `steps ${steps}`);
    prev = x;
  }
  prev = 0;
  for (const samplingRate of [0.001, 0.01, 0.05, 0.2, 1]) {
    const x = e({ samplingRate });
    assert.ok(x > prev, `q ${samplingRate}`);
    prev = x;
  }
  prev = Infinity;
  for (const noiseMultiplier of [0.5, 0.8, 1.2, 2, 5, 20]) {
    const x = e({ noiseMultiplier });
    assert.ok(x < prev, `sigma ${noiseMultiplier}`);
    prev = x;
  }
  // a larger delta buys a smaller epsilon
  assert.ok(e({ delta: 1e-3 }) < e({ delta: 1e-7 }));
});

test('composition adds RDP vectors; k steps equal k composed copies', () => {
  const one = rdpSubsampledGaussian(0.02, 1.3);
  const composed = composeRdp(one, one, one);
  const three = epsilonFor({ samplingRate: 0.02, noiseMultiplier: 1.3, steps: 3, delta: 1e-5 });
  const fromComposed = epsilonFromRdp(composed, 1e-5);
  near(fromComposed.epsilon, three.epsilon, 1e-12);
  assert.equal(fromComposed.order, three.order);
  assert.throws(() => composeRdp(one, new Float64Array(3)), RangeError);
  assert.deepEqual(rdpFromBuffer(rdpToBuffer(one)), one);
});

test('noiseMultiplierFor: smallest 3-digit sigma meeting the budget, rounded up; round trip', () => {
  for (const p of [
    { samplingRate: 0.01, steps: 10_000, delta: 1e-5, epsilon: 5.65 },
    { samplingRate: 1, steps: 5, delta: 1e-5, epsilon: 8 },
    { samplingRate: 0.1, steps: 200, delta: 1e-5, epsilon: 3 },
    { samplingRate: 0.25, steps: 400, delta: 1e-5, epsilon: 1 },
  ]) {
    const sigma = noiseMultiplierFor(p);
    assert.equal(Number(sigma.toPrecision(3)), sigma, `3 significant digits: ${sigma}`);
    const at = (s: number) => epsilonFor({ ...p, noiseMultiplier: s }).epsilon;
    assert.ok(at(sigma) <= p.epsilon, `sigma ${sigma} meets ${p.epsilon}: ${at(sigma)}`);
    // one step down the 3-digit grid breaks the budget
    const unit = 10 ** (Math.floor(Math.log10(sigma)) - 2);
    assert.ok(at(sigma - unit) > p.epsilon, `sigma ${sigma - unit} would also meet ${p.epsilon}`);
  }
  // 1.1 gives 5.654 > 5.65, so the answer is the next grid point
  assert.equal(noiseMultiplierFor({ samplingRate: 0.01, steps: 10_000, delta: 1e-5, epsilon: 5.65 }), 1.11);
  // a generous budget stops at the manifest's floor of 0.3
  assert.equal(noiseMultiplierFor({ samplingRate: 0.001, steps: 1, delta: 1e-5, epsilon: 50 }), 0.3);
});

test('noiseMultiplierFor refuses an unreachable budget with TWF_E_DP_PARAMS', () => {
  assert.throws(
    () => noiseMultiplierFor({ samplingRate: 1, steps: 1_000_000, delta: 1e-5, epsilon: 0.01 }),
    (e: unknown) => e instanceof WireError && e.code === 'TWF_E_DP_PARAMS' && /noiseMultiplier <= 1000/.test(e.message),
  );
  assert.throws(
    () => noiseMultiplierFor({ samplingRate: 0, steps: 10, delta: 1e-5, epsilon: 1 }),
    (e: unknown) => e instanceof WireError && e.code === 'TWF_E_DP_PARAMS',
  );
  assert.throws(
    () => noiseMultiplierFor({ samplingRate: 0.1, steps: 10, delta: 1e-5, epsilon: 0 }),
    (e: unknown) => e instanceof WireError && e.code === 'TWF_E_DP_PARAMS',
  );
});

test('dpStepsPerRound and projectStudyEpsilon for both levels', () => {
  assert.equal(dpStepsPerRound(1, 0.25), 4);
  assert.equal(dpStepsPerRound(0.1, 0.5), 1);
  assert.equal(dpStepsPerRound(2, 0.3), 7);
  const patient = projectStudyEpsilon({ dp: { level: 'patient', epsilon: 8, delta: 1e-5, noiseMultiplier: 1.1, samplingRate: 0.01, clipNorm: 1 }, training: { epochsPerRound: 1 }, rounds: 100 });
  assert.equal(patient.steps, 10_000);
  near(patient.epsilon, 5.654, 0.001);
  assert.equal(patient.noiseMultiplier, 1.1);
  const site = projectStudyEpsilon({ dp: { level: 'site', epsilon: 10.02, delta: 1e-5, clipNorm: 1 }, training: { epochsPerRound: 3 }, rounds: 20 });
  assert.equal(site.steps, 20);
  assert.equal(site.samplingRate, 1);
  assert.equal(site.noiseMultiplier, 2.4); // derived: 2.4 gives 10.010 <= 10.02, 2.39 does not
  assert.ok(site.epsilon <= 10.02);
});
