/**
 * Site side: decrypt the aggregated sums and turn them into the weighted
 * average update.
 */
import type { HeContext } from './context.js';
import { HeError } from './errors.js';
import { loadCiphertext } from './ciphertext-io.js';
import { loadSecretKey } from './keys.js';
import { ciphertextCount, laneSumLimitQ, lanesOf, packedLength, unpackLanes } from './lanes.js';
import { maxTotalSamples } from './params.js';
import { averageFromCentred, checkClipBound, checkPlainModulusForFloat, dequantizeInto } from './quantize.js';
import { sealErrorMessage, type SecretKey } from './seal-loader.js';

/** `want` ciphertexts for `length` parameters (or slot values), else TWF_E_HE_BAD_UPDATE. */
function expectedChunks(sums: Uint8Array[], want: number, length: number, what = 'parameters'): void {
  if (!Array.isArray(sums) || sums.length !== want) {
    throw new HeError('TWF_E_HE_BAD_UPDATE', `expected ${want} ciphertexts for ${length} ${what}, got ${Array.isArray(sums) ? sums.length : 'none'}`);
  }
}

/** For slot-level reads: ceil(slotValues / slotCount) ciphertexts. */
function expectedSlotChunks(ctx: HeContext, sums: Uint8Array[], slotValues: number): void {
  if (!Number.isSafeInteger(slotValues) || slotValues < 1) throw new HeError('TWF_E_HE_BAD_UPDATE', `length must be a positive integer (got ${slotValues})`);
  expectedChunks(sums, Math.ceil(slotValues / ctx.slotCount), slotValues, lanesOf(ctx.params) === 1 ? 'parameters' : 'slot values');
}

/**
 * Decrypt each ciphertext and call `onSlots(index, values, noiseBudgetBits)`.
 * With `centred` (the default) values are the plaintext slots lifted from Z_t
 * to (-t/2, t/2] (BigInt64Array); without, the representatives in [0, t)
 * (BigUint64Array).
 */
function decryptEach(ctx: HeContext, sk: SecretKey, sums: Uint8Array[], onSlots: (index: number, values: BigInt64Array, budget: number) => void): void;
function decryptEach(ctx: HeContext, sk: SecretKey, sums: Uint8Array[], onSlots: (index: number, values: BigUint64Array, budget: number) => void, centred: false): void;
function decryptEach(
  ctx: HeContext,
  sk: SecretKey,
  sums: Uint8Array[],
  onSlots: ((index: number, values: BigInt64Array, budget: number) => void) | ((index: number, values: BigUint64Array, budget: number) => void),
  centred = true,
): void {
  const decryptor = ctx.seal.Decryptor(ctx.context, sk);
  try {
    sums.forEach((bytes, index) => {
      const ct = loadCiphertext(ctx, bytes);
      try {
        const budget = decryptor.invariantNoiseBudget(ct);
        const pt = decryptor.decrypt(ct) as ReturnType<typeof ctx.seal.PlainText>;
        try {
          // decodeBigInt(pt, signed = true) centre-lifts mod t; signed = false gives [0, t).
          (onSlots as (i: number, v: BigInt64Array | BigUint64Array, b: number) => void)(index, ctx.encoder.decodeBigInt(pt, centred), budget);
        } finally {
          pt.delete();
        }
      } catch (e) {
        if (e instanceof HeError) throw e;
        throw new HeError('TWF_E_HE_DECRYPT', `SEAL: ${sealErrorMessage(e)}`, { cause: e });
      } finally {
        ct.delete();
      }
    });
  } finally {
    decryptor.delete();
  }
}

/**
 * Weighted FedAvg of the sites' updates: Σ n_k·clip(Δ_k) / Σ n_k, from the
 * coordinator's ciphertext sums. Throws TWF_E_HE_DECRYPT when a ciphertext has
 * no noise budget left (wrong key, or more additions than the parameters allow).
 */
export function decryptAverage(ctx: HeContext, secretKey: Uint8Array, sums: Uint8Array[], length: number, totalSamples: number, clipBound: number): Float32Array {
  expectedChunks(sums, ciphertextCount(ctx.params, length), length);
  checkClipBound(clipBound);
  if (!Number.isSafeInteger(totalSamples) || totalSamples < 1) throw new HeError('TWF_E_HE_BAD_UPDATE', `totalSamples must be a positive integer (got ${totalSamples})`);
  const limit = maxTotalSamples(ctx.params);
  if (totalSamples > limit) throw new HeError('TWF_E_HE_OVERFLOW', `totalSamples ${totalSamples} exceeds ${limit}; the sum may have wrapped modulo t`);
  if (lanesOf(ctx.params) > 1) {
    const { precisionBits } = ctx.params;
    const slots = decryptSlots(ctx, secretKey, sums, packedLength(ctx.params, length));
    return averageFromCentred(unpackLanes(ctx, slots, length, laneSumLimitQ(ctx.params, totalSamples)), totalSamples, clipBound, precisionBits);
  }
  const out = new Float32Array(length);
  const sk = loadSecretKey(ctx, secretKey);
  try {
    decryptEach(ctx, sk, sums, (index, values, budget) => {
      if (budget <= 0) throw new HeError('TWF_E_HE_DECRYPT', `ciphertext ${index} has no noise budget left: wrong key, or too many additions`);
      const offset = index * ctx.slotCount;
      dequantizeInto(out, offset, values, Math.min(ctx.slotCount, length - offset), totalSamples, clipBound, ctx.params.precisionBits);
    });
  } finally {
    sk.delete();
  }
  return out;
}

/**
 * Decrypts the coordinator's sums to their slot values in [0, t) (not
 * centred), `length` slot values, as exact doubles (t < 2^51 required): the
 * input of secure-aggregation unmasking. `length` counts slots, not
 * parameters: packedLength(params, parameters) (the same in layout 1). Throws
 * TWF_E_HE_DECRYPT when a ciphertext has no noise budget (wrong key, or more
 * additions than the parameters allow).
 */
export function decryptSlots(ctx: HeContext, secretKey: Uint8Array, sums: Uint8Array[], length: number): Float64Array {
  expectedSlotChunks(ctx, sums, length);
  checkPlainModulusForFloat(ctx.plainModulus); // values as exact doubles
  const out = new Float64Array(length);
  const sk = loadSecretKey(ctx, secretKey);
  try {
    decryptEach(
      ctx,
      sk,
      sums,
      (index, values, budget) => {
        if (budget <= 0) throw new HeError('TWF_E_HE_DECRYPT', `ciphertext ${index} has no noise budget left: wrong key, or too many additions`);
        const offset = index * ctx.slotCount;
        const count = Math.min(ctx.slotCount, length - offset);
        for (let i = 0; i < count; i++) out[offset + i] = Number(values[i]);
      },
      false,
    );
  } finally {
    sk.delete();
  }
  return out;
}

/**
 * Raw centred slot sums (`length` slot values) without the noise-budget check:
 * what anyone holding `secretKey` would read. For tests and diagnostics only.
 */
export function decryptSlotSums(ctx: HeContext, secretKey: Uint8Array, sums: Uint8Array[], length: number): BigInt64Array {
  expectedSlotChunks(ctx, sums, length);
  const out = new BigInt64Array(length);
  const sk = loadSecretKey(ctx, secretKey);
  try {
    decryptEach(ctx, sk, sums, (index, values) => {
      const offset = index * ctx.slotCount;
      out.set(values.subarray(0, Math.min(ctx.slotCount, length - offset)), offset);
    });
  } finally {
    sk.delete();
  }
  return out;
}

/** Remaining invariant noise budget (bits) of one ciphertext; 0 means undecryptable. */
export function noiseBudgetBits(ctx: HeContext, secretKey: Uint8Array, ct: Uint8Array): number {
  const sk = loadSecretKey(ctx, secretKey);
  let budget = 0;
  try {
    decryptEach(ctx, sk, [ct], (_i, _v, b) => {
      budget = b;
    });
  } finally {
    sk.delete();
  }
  return budget;
}
