/**
 * Pure pieces of patient-level DP-SGD (Abadi et al., "Deep Learning with Differential Privacy",
 * CCS 2016, Algorithm 1), the privacy unit being the PATIENT: every gradient contribution is the
 * gradient of one patient's whole loss (all of that patient's slices or rows).
 *
 * One step with P training patients, sampling rate q, clip norm C and noise multiplier sigma:
 *   1. Poisson sampling: each patient joins the step independently with probability q
 *      (the RDP accountant's subsampled-Gaussian analysis, Mironov, Talwar & Zhang 2019, assumes
 *      exactly this, so the coin flips come from the CSPRNG: a seeded sample would let whoever
 *      knows the seed know who took part).
 *   2. g_p ← g_p · min(1, C / ||g_p||₂)   (per-patient clipping, Abadi et al. eq. in Alg. 1)
 *   3. g̃ ← (Σ_p g_p + N(0, (sigma·C)² I)) / (q·P)
 *      divided by the EXPECTED batch size q·P, not the sampled count, so the scale of the noise
 *      does not depend on the data (Abadi et al. §3.1, "lot"; the sampled count itself would leak).
 * Whatever runs on g̃ afterwards (Adam, data-independent penalties, the proximal term of FedProx)
 * is post-processing and costs no privacy.
 */
import { cryptoGaussian, cryptoUniform01, type StandardNormal, type Uniform01 } from './noise.js';

/** Noisy local steps in one round: the accountant's formula, so what the site runs is what it ledgers. */
export { dpStepsPerRound } from './accountant.js';

/** Patient-level DP-SGD options of a local training run (the manifest's dp block, resolved). */
export interface DpSgdOptions {
  /** q: probability that a patient takes part in one step (Poisson sampling). */
  samplingRate: number;
  /** sigma: noise standard deviation in units of clipNorm. 0 = no noise (tests only). */
  noiseMultiplier: number;
  /** C: L2 bound of one patient's gradient per step. */
  clipNorm: number;
  /** Noisy steps to take (dpStepsPerRound); the trainers report how many they actually took. */
  steps: number;
  /**
   * Randomness for tests only: a seeded uniform for the patient sampling and/or a seeded normal
   * for the noise. Default (and the only acceptable production value): the CSPRNG (noise.ts).
   */
  random?: { sampling?: Uniform01; noise?: StandardNormal };
}

/** Checks the numbers of a DpSgdOptions; throws naming the field. */
export function checkDpSgdOptions(o: DpSgdOptions, where: string): void {
  if (!(o.samplingRate > 0 && o.samplingRate <= 1)) throw new Error(`${where}: dp.samplingRate must be in (0, 1], got ${o.samplingRate}`);
  if (!(o.noiseMultiplier >= 0 && Number.isFinite(o.noiseMultiplier))) throw new Error(`${where}: dp.noiseMultiplier must be finite and ≥ 0, got ${o.noiseMultiplier}`);
  if (!(o.clipNorm > 0 && Number.isFinite(o.clipNorm))) throw new Error(`${where}: dp.clipNorm must be finite and > 0, got ${o.clipNorm}`);
  if (!(Number.isInteger(o.steps) && o.steps >= 0)) throw new Error(`${where}: dp.steps must be a whole number ≥ 0, got ${o.steps}`);
}

/**
 * Poisson sampling: the indices 0..nPatients-1 that join this step, each independently with
 * probability samplingRate. May be empty (the step still happens and is still noised).
 */
export function poissonSample(nPatients: number, samplingRate: number, uniform: Uniform01 = cryptoUniform01()): number[] {
  const out: number[] = [];
  for (let p = 0; p < nPatients; p++) if (uniform() < samplingRate) out.push(p);
  return out;
}

/** Euclidean norm, accumulated in float64. */
export function l2Norm(v: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < v.length; i++) s += v[i] * v[i];
  return Math.sqrt(s);
}

/**
 * Adds g · min(1, clipNorm / ||g||₂) into `sum` (float64) and returns ||g||₂ before clipping.
 * A non-finite gradient would defeat the bound, so it throws.
 */
export function addClipped(sum: Float64Array, g: ArrayLike<number>, clipNorm: number): number {
  if (g.length !== sum.length) throw new Error(`addClipped: gradient has ${g.length} elements, sum has ${sum.length}`);
  const norm = l2Norm(g);
  if (!Number.isFinite(norm)) throw new Error('addClipped: non-finite per-patient gradient');
  const scale = norm > clipNorm ? clipNorm / norm : 1;
  for (let i = 0; i < g.length; i++) sum[i] += g[i] * scale;
  return norm;
}

/**
 * Step 3 above, in place on the clipped sum: adds N(0, (noiseMultiplier·clipNorm)²) to every
 * coordinate and divides by expectedBatchSize = q·P. Returns `sum` (now the privatised mean).
 */
export function privatiseClippedSum(sum: Float64Array, o: { clipNorm: number; noiseMultiplier: number; expectedBatchSize: number }, normal?: StandardNormal): Float64Array {
  if (!(o.expectedBatchSize > 0)) throw new Error(`privatiseClippedSum: expected batch size must be > 0, got ${o.expectedBatchSize}`);
  const noiseStdDev = o.noiseMultiplier * o.clipNorm;
  if (noiseStdDev > 0) {
    const z = normal ?? cryptoGaussian();
    for (let i = 0; i < sum.length; i++) sum[i] += noiseStdDev * z();
  }
  for (let i = 0; i < sum.length; i++) sum[i] /= o.expectedBatchSize;
  return sum;
}

/**
 * One privatised gradient from per-patient gradients (all of them already computed; the trainers
 * stream them through addClipped instead to bound memory). expectedBatchSize = q·P.
 */
export function privatisedGradient(
  perPatient: readonly ArrayLike<number>[],
  nParams: number,
  o: { clipNorm: number; noiseMultiplier: number; expectedBatchSize: number },
  normal?: StandardNormal,
): Float64Array {
  const sum = new Float64Array(nParams);
  for (const g of perPatient) addClipped(sum, g, o.clipNorm);
  return privatiseClippedSum(sum, o, normal);
}
