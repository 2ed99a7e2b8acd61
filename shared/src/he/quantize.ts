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

/** S = 2^precisionBits / clipBound. */
export function scaleFactor(precisionBits: number, clipBound: number): number {
  return 2 ** precisionBits / clipBound;
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
export function quantizeChunk(
  delta: Float32Array,
  offset: number,
  slotCount: number,
  nSamples: number,
  clipBound: number,
  precisionBits: number,
): QuantizedChunk {
  const scale = nSamples * scaleFactor(precisionBits, clipBound);
  const end = Math.min(delta.length, offset + slotCount);
  const fitsInt32 = nSamples * 2 ** precisionBits <= 0x7fffffff;
  let clipped = 0;
  const clip = (x: number): number => {
    if (x > clipBound) {
      clipped++;
      return clipBound;
    }
    if (x < -clipBound) {
      clipped++;
      return -clipBound;
    }
    return x;
  };
  if (fitsInt32) {
    const values = new Int32Array(slotCount);
    for (let i = offset; i < end; i++) values[i - offset] = Math.round(clip(delta[i]) * scale);
    return { values, clipped };
  }
  const values = new BigInt64Array(slotCount);
  for (let i = offset; i < end; i++) values[i - offset] = BigInt(Math.round(clip(delta[i]) * scale));
  return { values, clipped };
}

/**
 * Weighted average from centred slot sums: sum / (S · totalSamples), written
 * into out[offset ..] for at most `count` values.
 */
export function dequantizeInto(
  out: Float32Array,
  offset: number,
  sums: BigInt64Array,
  count: number,
  totalSamples: number,
  clipBound: number,
  precisionBits: number,
): void {
  const inv = 1 / (scaleFactor(precisionBits, clipBound) * totalSamples);
  for (let i = 0; i < count; i++) out[offset + i] = Number(sums[i]) * inv;
}
