/**
 * Gaussian noise for differential privacy, drawn from the operating system's CSPRNG.
 *
 * The noise of DP-SGD (Abadi et al., "Deep Learning with Differential Privacy", CCS 2016) only
 * protects anyone if an observer of the update cannot predict it: noise from a seeded PRNG
 * (mulberry32, used for data order and initial weights) could be regenerated from the seed and
 * subtracted. So the uniforms here come from `node:crypto` randomFillSync (the kernel CSPRNG,
 * getrandom(2) on Linux), never from a seed.
 *
 * Construction: 53-bit uniforms u in (0, 1] from two 32-bit words (27 + 26 bits, the same split as
 * V8's own double generation), then the Box–Muller transform (Box & Muller, Ann. Math. Statist.
 * 1958) in float64: for u1 in (0, 1], u2 in [0, 1),
 *   z1 = sqrt(-2 ln u1) · cos(2π u2),   z2 = sqrt(-2 ln u1) · sin(2π u2)
 * are two independent N(0, 1). u1 > 0 by construction, so ln never sees 0; the largest |z| is
 * sqrt(-2 ln 2^-53) ≈ 8.57, a truncation at 8.5 sigma (probability ~1e-17, far below any delta).
 *
 * Known residual: floating-point samplers are not exactly the ideal continuous Gaussian; the
 * spacing of doubles can in principle leak through the low bits (Mironov, CCS 2012, for Laplace;
 * Holohan & Braghin, "Secure Random Sampling in Differential Privacy", ESORICS 2021). The
 * update is rounded to float32 and then quantised to fixed point before it leaves the site, which
 * discards those low bits; an exact discrete sampler (Canonne, Kamath & Steinke, NeurIPS 2020)
 * would remove the question entirely.
 */
import { randomFillSync } from 'node:crypto';

/** A source of uniform numbers in [0, 1). */
export type Uniform01 = () => number;

/** A source of independent standard normal N(0, 1) samples. */
export type StandardNormal = () => number;

const POOL_WORDS = 4096;
const TWO_POW_26 = 67108864;
const TWO_POW_53 = 9007199254740992;

/**
 * Uniforms in [0, 1) with 53 random bits each, from node:crypto randomFillSync (refilled 8 KiB at
 * a time). Not seedable, on purpose.
 */
export function cryptoUniform01(): Uniform01 {
  const pool = new Uint32Array(POOL_WORDS);
  let at = POOL_WORDS;
  return () => {
    if (at + 2 > POOL_WORDS) {
      randomFillSync(pool);
      at = 0;
    }
    const hi = pool[at++] >>> 5; // 27 bits
    const lo = pool[at++] >>> 6; // 26 bits
    return (hi * TWO_POW_26 + lo) / TWO_POW_53;
  };
}

/**
 * Standard normals by Box–Muller from `uniform` (default: cryptoUniform01). Each call to the
 * transform yields two normals; the second is kept for the next call. Inject a seeded uniform
 * ONLY in tests.
 */
export function gaussianFrom(uniform: Uniform01 = cryptoUniform01()): StandardNormal {
  let spare: number | undefined;
  return () => {
    if (spare !== undefined) {
      const z = spare;
      spare = undefined;
      return z;
    }
    const u1 = 1 - uniform(); // (0, 1]
    const u2 = uniform();
    const radius = Math.sqrt(-2 * Math.log(u1));
    const angle = 2 * Math.PI * u2;
    spare = radius * Math.sin(angle);
    return radius * Math.cos(angle);
  };
}

/** The CSPRNG-backed standard normal source used in production. */
export function cryptoGaussian(): StandardNormal {
  return gaussianFrom(cryptoUniform01());
}

/**
 * Adds independent N(0, stdDev²) to every element of `v` in place (float64 arithmetic; a
 * Float32Array rounds the sum once). stdDev = 0 leaves `v` untouched.
 */
export function addGaussianNoise(v: Float64Array | Float32Array, stdDev: number, normal: StandardNormal = cryptoGaussian()): void {
  if (!(stdDev >= 0 && Number.isFinite(stdDev))) throw new Error(`addGaussianNoise: stdDev must be finite and ≥ 0, got ${stdDev}`);
  if (stdDev === 0) return;
  for (let i = 0; i < v.length; i++) v[i] += stdDev * normal();
}
