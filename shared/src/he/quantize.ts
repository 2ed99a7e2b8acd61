/**
 * Fixed-point quantisation for weighted FedAvg under additive encryption.
 *
 * FedAvg (McMahan et al. 2017, "Communication-Efficient Learning of Deep
 * Networks from Decentralized Data", AISTATS, Algorithm 1) averages site
 * updates weighted by sample counts: avg = Σ n_k Δ_k / Σ n_k. Additive HE can
 * only sum, so each site submits n_k · Δ_k, and the division by Σ n_k happens
 * after decryption. BFV works on integers mod t, so values are clipped to
 * [-B, B] and scaled by S = 2^p / B (fixed point, as in secure aggregation,
 * Bonawitz et al. 2017, CCS, sec. 4): q = round(n · clip(Δ) · S), |q| <= n·2^p.
 * Rounding error per site and element is <= 1/2 in q units, i.e. after
 * dividing by S · Σn at most (#sites / Σn) · 2^-(p+1) · B.
 */
import { HeError } from './errors.js';

/** S = 2^precisionBits / clipBound. */
export function scaleFactor(precisionBits: number, clipBound: number): number {
  return 2 ** precisionBits / clipBound;
}

export function checkClipBound(clipBound: number): void {
  if (!(typeof clipBound === 'number' && Number.isFinite(clipBound) && clipBound > 0)) {
    throw new HeError('TWF_E_HE_BAD_UPDATE', `clipBound must be a positive finite number (got ${clipBound})`);
  }
}

/** Throws TWF_E_HE_BAD_UPDATE unless delta is a non-empty, finite Float32Array, nSamples a positive integer and clipBound usable. */
export function checkWeightedUpdate(delta: Float32Array, nSamples: number, clipBound: number): void {
  if (!(delta instanceof Float32Array) || delta.length === 0) throw new HeError('TWF_E_HE_BAD_UPDATE', 'delta must be a non-empty Float32Array');
  if (!Number.isSafeInteger(nSamples) || nSamples < 1) throw new HeError('TWF_E_HE_BAD_UPDATE', `nSamples must be a positive integer (got ${nSamples})`);
  checkClipBound(clipBound);
  for (let i = 0; i < delta.length; i++) {
    if (!Number.isFinite(delta[i])) throw new HeError('TWF_E_HE_BAD_UPDATE', `delta[${i}] is not finite`);
  }
}

/**
 * out[at + i - from] = round(clip(delta[i]) · scale) for i in [from, to);
 * returns how many elements were clipped to ±clipBound. The one place that
 * quantises: quantizeChunk and quantizeToZt both call it.
 */
function quantizeRange(delta: Float32Array, from: number, to: number, scale: number, clipBound: number, out: Int32Array | Float64Array, at: number): number {
  let clipped = 0;
  for (let i = from; i < to; i++) {
    let x = delta[i];
    if (x > clipBound) {
      clipped++;
      x = clipBound;
    } else if (x < -clipBound) {
      clipped++;
      x = -clipBound;
    }
    out[at + i - from] = Math.round(x * scale);
  }
  return clipped;
}

export interface QuantizedChunk {
  /** Slot values; Int32Array when n · 2^p fits, else BigInt64Array. */
  values: Int32Array | BigInt64Array;
  /** How many elements of this chunk were clipped to ±B. */
  clipped: number;
}

/**
 * Quantise delta[offset .. offset+slotCount) (zero-padded past the end) for a
 * site with `nSamples` samples. Caller has checked that delta is finite.
 */
export function quantizeChunk(delta: Float32Array, offset: number, slotCount: number, nSamples: number, clipBound: number, precisionBits: number): QuantizedChunk {
  const scale = nSamples * scaleFactor(precisionBits, clipBound);
  const end = Math.min(delta.length, offset + slotCount);
  if (nSamples * 2 ** precisionBits <= 0x7fffffff) {
    const values = new Int32Array(slotCount);
    const clipped = quantizeRange(delta, offset, end, scale, clipBound, values, 0);
    return { values, clipped };
  }
  // |q| <= n·2^p <= maxTotalSamples·2^p < 2^53: exact in a double
  const wide = new Float64Array(slotCount);
  const clipped = quantizeRange(delta, offset, end, scale, clipBound, wide, 0);
  return { values: BigInt64Array.from(wide, (v) => BigInt(v)), clipped };
}

/**
 * Clip Δ to ±B, scale by n·2^p/B, round, map to Z_t (a negative q becomes
 * q + t): the input of secure-aggregation masking (shared/src/secagg). Also
 * counts clipped elements. Checks like encryptWeightedUpdate: finite delta,
 * n a positive safe integer, B positive, p an integer 1..40, 3 <= t < 2^51
 * (values exact in binary64), and one site's range n·2^p <= (t-1)/2
 * (TWF_E_HE_OVERFLOW otherwise; the total over sites is checked at
 * decryption, as for decryptAverage).
 */
export function quantizeToZt(delta: Float32Array, nSamples: number, clipBound: number, precisionBits: number, t: bigint): { values: Float64Array; clipped: number } {
  checkWeightedUpdate(delta, nSamples, clipBound);
  checkPrecisionBits(precisionBits);
  const tn = checkPlainModulusForFloat(t);
  const siteRangeQ = BigInt(nSamples) * 2n ** BigInt(precisionBits);
  if (siteRangeQ > (t - 1n) / 2n) {
    throw new HeError('TWF_E_HE_OVERFLOW', `nSamples ${nSamples} · 2^${precisionBits} exceeds (t - 1)/2: this site's values would wrap modulo t`);
  }
  const values = new Float64Array(delta.length);
  const clipped = quantizeRange(delta, 0, delta.length, nSamples * scaleFactor(precisionBits, clipBound), clipBound, values, 0);
  for (let i = 0; i < values.length; i++) values[i] = values[i] < 0 ? values[i] + tn : values[i] + 0; // + 0: no -0
  return { values, clipped };
}

export function checkPrecisionBits(precisionBits: number): void {
  if (!Number.isInteger(precisionBits) || precisionBits < 1 || precisionBits > 40) {
    throw new HeError('TWF_E_HE_PARAMS', `precisionBits must be an integer 1..40 (got ${precisionBits})`);
  }
}

/** Number(t) after checking 3 <= t < 2^51, so that values and sums of two values in Z_t are exact doubles. */
export function checkPlainModulusForFloat(t: bigint): number {
  if (typeof t !== 'bigint' || t < 3n || t >= 2n ** 51n) throw new HeError('TWF_E_HE_PARAMS', `plain modulus must be a bigint with 3 <= t < 2^51 (got ${String(t)})`);
  return Number(t);
}

/**
 * Weighted average from centred slot sums: sum / (S · totalSamples), written
 * into out[offset ..] for at most `count` values.
 */
export function dequantizeInto(out: Float32Array, offset: number, sums: BigInt64Array, count: number, totalSamples: number, clipBound: number, precisionBits: number): void {
  const inv = 1 / (scaleFactor(precisionBits, clipBound) * totalSamples);
  for (let i = 0; i < count; i++) out[offset + i] = Number(sums[i]) * inv;
}

/**
 * From centred sums Σq (after unmasking and centreZt): Σ n_k clip(Δ_k) / Σ n_k
 * = Σq / (2^p/B · totalSamples), as Float32Array. Checks as decryptAverage:
 * totalSamples a positive integer, B positive; and, since a correct sum
 * satisfies |Σq| <= Σ n_k · 2^p, any slot beyond ±totalSamples·2^p means the
 * sum wrapped modulo t or the masks were not all removed: TWF_E_HE_OVERFLOW.
 * With `plainModulus` also checks totalSamples · 2^p <= (t - 1)/2
 * (maxTotalSamples), the bound below which no wrap can hide in range.
 */
export function averageFromCentred(sums: Float64Array, totalSamples: number, clipBound: number, precisionBits: number, plainModulus?: bigint, noiseAllowanceQ = 0): Float32Array {
  if (!(sums instanceof Float64Array)) throw new HeError('TWF_E_HE_BAD_UPDATE', 'sums must be a Float64Array');
  checkClipBound(clipBound);
  checkPrecisionBits(precisionBits);
  if (!Number.isSafeInteger(totalSamples) || totalSamples < 1) throw new HeError('TWF_E_HE_BAD_UPDATE', `totalSamples must be a positive integer (got ${totalSamples})`);
  if (!(noiseAllowanceQ >= 0 && Number.isFinite(noiseAllowanceQ))) throw new HeError('TWF_E_HE_BAD_UPDATE', `noiseAllowanceQ must be a finite number ≥ 0 (got ${noiseAllowanceQ})`);
  // Site-level DP noise (shared/src/dp/site-level.ts) may take an honest sum past N·2^p by a few of its standard deviations.
  const limit = totalSamples * 2 ** precisionBits + Math.ceil(noiseAllowanceQ);
  if (!Number.isSafeInteger(limit)) throw new HeError('TWF_E_HE_OVERFLOW', `totalSamples ${totalSamples} · 2^${precisionBits} is beyond 2^53`);
  if (plainModulus !== undefined) {
    checkPlainModulusForFloat(plainModulus);
    if (BigInt(limit) > (plainModulus - 1n) / 2n)
      throw new HeError('TWF_E_HE_OVERFLOW', `totalSamples ${totalSamples} exceeds the most this plain modulus can sum at ${precisionBits} precision bits; the sum may have wrapped modulo t`);
  }
  const inv = 1 / (scaleFactor(precisionBits, clipBound) * totalSamples);
  const out = new Float32Array(sums.length);
  for (let i = 0; i < sums.length; i++) {
    const v = sums[i];
    if (!(Math.abs(v) <= limit)) {
      throw new HeError('TWF_E_HE_OVERFLOW', `slot ${i} = ${v} is outside ±totalSamples·2^p = ±${limit}: the sum wrapped modulo t, or masks were not removed (wrong survivors, seeds or totalSamples)`);
    }
    out[i] = v * inv;
  }
  return out;
}
