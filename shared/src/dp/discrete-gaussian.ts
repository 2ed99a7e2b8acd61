/**
 * Exact sampling of the discrete Gaussian N_Z(0, σ²), P[X = x] ∝ exp(−x²/(2σ²)) on the integers,
 * for the distributed discrete Gaussian mechanism of site-level DP (Kairouz, Liu & Steinke,
 * "The Distributed Discrete Gaussian Mechanism for Federated Learning with Secure Aggregation",
 * ICML 2021): each site adds integer noise to its quantised update in Z_t before encryption, and
 * the sum of the sites' noises protects every site's contribution in the decrypted aggregate.
 *
 * Algorithms of C. Canonne, G. Kamath, T. Steinke, "The Discrete Gaussian for Differential
 * Privacy", NeurIPS 2020 (arXiv:2004.00010):
 *  - Algorithm 1: Bernoulli(exp(−γ)) for rational γ ≥ 0, from Bernoulli(γ/k) draws only;
 *  - Algorithm 2: discrete Laplace with rational scale, via Geometric(1 − e^{−1/scale});
 *  - Algorithm 3: discrete Gaussian by rejection from the discrete Laplace of scale ⌊σ⌋ + 1.
 * All arithmetic is on bigint rationals and every random draw is a uniform integer from
 * node:crypto, so the output follows N_Z(0, σ̃²) EXACTLY, with no floating-point rounding in the
 * sampler (the known timing side channel of rejection sampling remains: the number of loop turns
 * depends on the output; the noise stays at the site, so only a local observer could time it).
 *
 * The one floating-point step: σ² is given as a JS number. σ̃² = fl(σ·σ) (or the `sigma2`
 * rational you pass) is converted to a rational exactly (a double is m·2^e), so the sampled
 * variance parameter differs from the real σ² by at most one ulp (relative 1.1e-16).
 */
import { randomFillSync } from 'node:crypto';

/** Source of uniform integers in [0, m); the default draws from node:crypto. */
export interface UniformSource {
  uniformBelow(m: bigint): bigint;
}

/**
 * Uniform integers from a pool of crypto-random bytes (refilled 64 KiB at a time), by rejection:
 * draw ⌈bits(m)/8⌉ bytes, mask to bits(m) bits, retry if ≥ m (expected < 2 tries).
 */
export class CryptoUniform implements UniformSource {
  private pool = Buffer.alloc(65536);
  private pos = this.pool.length;
  private byte(): number {
    if (this.pos >= this.pool.length) {
      randomFillSync(this.pool);
      this.pos = 0;
    }
    return this.pool[this.pos++]!;
  }
  uniformBelow(m: bigint): bigint {
    if (m <= 0n) throw new RangeError(`uniformBelow(${m}): m must be positive`);
    if (m === 1n) return 0n;
    const bits = (m - 1n).toString(2).length;
    const bytes = Math.ceil(bits / 8);
    const topMask = (1 << (bits - (bytes - 1) * 8)) - 1;
    if (bits <= 48) {
      // fast path in doubles (exact below 2^53)
      const mn = Number(m);
      for (;;) {
        let x = this.byte() & topMask;
        for (let i = 1; i < bytes; i++) x = x * 256 + this.byte();
        if (x < mn) return BigInt(x);
      }
    }
    for (;;) {
      let x = BigInt(this.byte() & topMask);
      for (let i = 1; i < bytes; i++) x = (x << 8n) | BigInt(this.byte());
      if (x < m) return x;
    }
  }
}

const defaultSource = new CryptoUniform();

/** A non-negative rational n/d (d > 0), not necessarily reduced. */
interface Rational {
  n: bigint;
  d: bigint;
}

/** The exact rational value of a finite double x ≥ 0 (x = mantissa · 2^exponent). */
export function rationalOfDouble(x: number): Rational {
  if (!Number.isFinite(x) || x < 0) throw new RangeError(`expected a finite number >= 0 (got ${x})`);
  if (x === 0) return { n: 0n, d: 1n };
  let e = 0;
  let m = x;
  while (!Number.isInteger(m)) {
    m *= 2;
    e++;
  }
  return { n: BigInt(m), d: 1n << BigInt(e) };
}

const bernoulli = (p: Rational, rng: UniformSource): boolean => rng.uniformBelow(p.d) < p.n;

/** Bernoulli(exp(−γ)) for γ ∈ [0, 1] (Canonne, Kamath & Steinke 2020, Algorithm 1, first part). */
function bernoulliExpAtMost1(g: Rational, rng: UniformSource): boolean {
  let k = 1n;
  while (bernoulli({ n: g.n, d: g.d * k }, rng)) k++;
  return k % 2n === 1n;
}

/** Bernoulli(exp(−γ)) for rational γ ≥ 0 (Canonne, Kamath & Steinke 2020, Algorithm 1). */
export function bernoulliExp(g: Rational, rng: UniformSource = defaultSource): boolean {
  let n = g.n;
  while (n > g.d) {
    if (!bernoulliExpAtMost1({ n: 1n, d: 1n }, rng)) return false;
    n -= g.d;
  }
  return bernoulliExpAtMost1({ n, d: g.d }, rng);
}

/** Geometric: P[k] = (1 − e^{−1}) e^{−k}, k ≥ 0. */
function geometricExp1(rng: UniformSource): bigint {
  let k = 0n;
  while (bernoulliExp({ n: 1n, d: 1n }, rng)) k++;
  return k;
}

/**
 * Geometric with P[k] = (1 − e^{−s/t}) e^{−ks/t}, k ≥ 0, for integers s, t ≥ 1 (Canonne, Kamath &
 * Steinke 2020, Algorithm 2, steps 1-6): U uniform in [0, t) accepted with prob. e^{−U/t}, V ~
 * Geometric(1 − e^{−1}), X = U + tV is Geometric(1 − e^{−1/t}), and ⌊X/s⌋ has parameter s/t.
 */
function geometricExpRational(s: bigint, t: bigint, rng: UniformSource): bigint {
  let u: bigint;
  do u = rng.uniformBelow(t);
  while (!bernoulliExp({ n: u, d: t }, rng));
  const v = geometricExp1(rng);
  return (u + t * v) / s;
}

/**
 * Discrete Laplace with scale t/s: P[Y = y] ∝ exp(−|y|·s/t) (Canonne, Kamath & Steinke 2020,
 * Algorithm 2): a sign and a geometric magnitude, rejecting "−0" so 0 is not counted twice.
 */
export function sampleDiscreteLaplace(t: bigint, s = 1n, rng: UniformSource = defaultSource): bigint {
  for (;;) {
    const negative = rng.uniformBelow(2n) === 1n;
    const magnitude = geometricExpRational(s, t, rng);
    if (negative && magnitude === 0n) continue;
    return negative ? -magnitude : magnitude;
  }
}

function isqrt(n: bigint): bigint {
  if (n < 2n) return n;
  let x = BigInt(Math.floor(Math.sqrt(Number(n))));
  while (x * x > n) x--;
  while ((x + 1n) * (x + 1n) <= n) x++;
  return x;
}

/**
 * One draw of N_Z(0, σ²) for a rational σ² = sigma2.n / sigma2.d > 0 (Canonne, Kamath & Steinke
 * 2020, Algorithm 3): T = ⌊σ⌋ + 1, Y ~ discrete Laplace(T), accept with probability
 * exp(−(|Y| − σ²/T)² / (2σ²)).
 */
export function sampleDiscreteGaussianRational(sigma2: Rational, rng: UniformSource = defaultSource): bigint {
  if (sigma2.n <= 0n || sigma2.d <= 0n) throw new RangeError('sigma^2 must be positive');
  const t = isqrt(sigma2.n / sigma2.d) + 1n; // ⌊σ⌋ + 1 (⌊√⌊x⌋⌋ = ⌊√x⌋)
  for (;;) {
    const y = sampleDiscreteLaplace(t, 1n, rng);
    const a = y < 0n ? -y : y;
    // (|Y| − σ²/T)² / (2σ²) = (|Y|·T·d − n)² / (2·n·d·T²), with σ² = n/d
    const num = a * t * sigma2.d - sigma2.n;
    if (bernoulliExp({ n: num * num, d: 2n * sigma2.n * sigma2.d * t * t }, rng)) return y;
  }
}

/** One draw of N_Z(0, σ²), σ given as a number (σ² = fl(σ·σ), see the module comment). */
export function sampleDiscreteGaussian(sigma: number, rng: UniformSource = defaultSource): bigint {
  if (!(sigma > 0) || !Number.isFinite(sigma)) throw new RangeError(`sigma must be a positive number (got ${sigma})`);
  return sampleDiscreteGaussianRational(rationalOfDouble(sigma * sigma), rng);
}

/**
 * Adds independent N_Z(0, σ²) noise to each entry of a vector in Z_t, modulo t: the site's share
 * of the distributed discrete Gaussian (Kairouz, Liu & Steinke 2021, Alg. 1, step "add discrete
 * Gaussian noise" after scaling, rotation and rounding). `values` hold integers in [0, t); t ≤ 2^53
 * so they are exact in float64. Returns a new array, entries in [0, t).
 *
 * `sigmaQuant` is the noise std in quantised units: for the manifest's site-level DP,
 * σ_quant = noiseMultiplier · clipNorm · scale / √minSites per site, so that the sum of minSites
 * shares has std ≥ noiseMultiplier · clipNorm · scale (protocols SiteDpSchema). The sum of
 * discrete Gaussians is not exactly a discrete Gaussian; Kairouz et al. (Thm 3) bound the gap,
 * negligible once σ_quant ≥ 1 (their τ term); with σ_quant in the thousands it is far below δ.
 */
export function addDiscreteGaussianZt(values: Float64Array, t: bigint, sigmaQuant: number, rng: UniformSource = defaultSource): Float64Array {
  if (t < 2n || t > 2n ** 53n) throw new RangeError(`modulus t must be in [2, 2^53] (got ${t})`);
  if (!(sigmaQuant > 0) || !Number.isFinite(sigmaQuant)) throw new RangeError(`sigmaQuant must be a positive number (got ${sigmaQuant})`);
  const sigma2 = rationalOfDouble(sigmaQuant * sigmaQuant);
  const out = new Float64Array(values.length);
  const tn = Number(t);
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (!Number.isInteger(v) || v < 0 || v >= tn) throw new RangeError(`values[${i}] = ${v} is not an integer in [0, t)`);
    let x = (BigInt(v) + sampleDiscreteGaussianRational(sigma2, rng)) % t;
    if (x < 0n) x += t;
    out[i] = Number(x);
  }
  return out;
}
