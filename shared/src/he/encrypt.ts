/**
 * Site side: quantise a weighted update and encrypt it under the shared
 * secret key.
 *
 * Symmetric (secret-key) BFV encryption lets SEAL replace the uniformly random
 * half of each ciphertext by the seed of the PRNG that produced it
 * (Encryptor::encrypt_symmetric returning Serializable<Ciphertext>, SEAL 3.6+),
 * halving the upload: one polynomial of N coefficients mod q plus a 64-byte
 * seed, i.e. ≈ 8 bytes per parameter at N = 4096, 60-bit q. The coordinator
 * expands the seed on load. Layout 2 (lanes.ts, wire.ts) packs `lanes` values
 * per slot and 60-bit words: ≈ 3.78 bytes per parameter at two lanes.
 */
import { HeError } from './errors.js';
import type { HeContext } from './context.js';
import { frameCiphertext } from './ciphertext-io.js';
import { loadSecretKey } from './keys.js';
import { lanesOf, packLanes } from './lanes.js';
import { maxTotalSamples } from './params.js';
import { checkClipBound, checkPlainModulusForFloat, checkWeightedUpdate, quantizeChunk, quantizeToZt } from './quantize.js';
import { sealErrorMessage } from './seal-loader.js';

export { checkClipBound }; // moved to quantize.ts; still exported here for existing importers

export interface EncryptedUpdate {
  /** One envelope per slotCount slots (slotCount · lanes parameters), in order. */
  ciphertexts: Uint8Array[];
  /** Number of parameters (delta.length). */
  length: number;
  nSamples: number;
  encryptMs: number;
  /** Total bytes of `ciphertexts`. */
  bytes: number;
  /** How many elements were clipped to ±clipBound. */
  clipped: number;
}

export function encryptWeightedUpdate(ctx: HeContext, secretKey: Uint8Array, delta: Float32Array, nSamples: number, clipBound: number): EncryptedUpdate {
  const start = performance.now();
  const { params, slotCount } = ctx;
  checkWeightedUpdate(delta, nSamples, clipBound);
  const limit = maxTotalSamples(params);
  if (nSamples > limit) {
    throw new HeError('TWF_E_HE_OVERFLOW', `nSamples ${nSamples} exceeds ${limit}, the most this plain modulus can sum at ${params.precisionBits} precision bits`);
  }
  if (lanesOf(params) > 1) {
    // several values per slot: the same path as a masked update, without the masks
    const q = quantizeToZt(delta, nSamples, clipBound, params.precisionBits, ctx.plainModulus);
    const enc = encryptSlots(ctx, secretKey, packLanes(ctx, q.values));
    return { ciphertexts: enc.ciphertexts, length: delta.length, nSamples, encryptMs: performance.now() - start, bytes: enc.bytes, clipped: q.clipped };
  }
  let clipped = 0;
  const { ciphertexts, bytes } = encryptChunks(ctx, secretKey, Math.ceil(delta.length / slotCount), (c) => {
    const chunk = quantizeChunk(delta, c * slotCount, slotCount, nSamples, clipBound, params.precisionBits);
    clipped += chunk.clipped;
    return chunk.values;
  });
  return { ciphertexts, length: delta.length, nSamples, encryptMs: performance.now() - start, bytes, clipped };
}

/**
 * Encrypt slot values in [0, t) (e.g. a masked input from shared/src/secagg,
 * after packLanes in layout 2), one
 * seeded symmetric ciphertext per slotCount values (the last zero-padded),
 * with the same wire framing as encryptWeightedUpdate. Refuses values that
 * are not integers in [0, t) with TWF_E_HE_BAD_UPDATE: SEAL would reduce them
 * mod t silently. Needs t < 2^51 (values are doubles; TWF_E_HE_PARAMS otherwise).
 */
export function encryptSlots(ctx: HeContext, secretKey: Uint8Array, values: Float64Array): { ciphertexts: Uint8Array[]; bytes: number; encryptMs: number } {
  const start = performance.now();
  const { slotCount } = ctx;
  if (!(values instanceof Float64Array) || values.length === 0) throw new HeError('TWF_E_HE_BAD_UPDATE', 'values must be a non-empty Float64Array');
  const t = checkPlainModulusForFloat(ctx.plainModulus); // values as exact doubles
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (!(v >= 0 && v < t) || !Number.isSafeInteger(v)) throw new HeError('TWF_E_HE_BAD_UPDATE', `values[${i}] = ${v} is not an integer in [0, t)`);
  }
  const { ciphertexts, bytes } = encryptChunks(ctx, secretKey, Math.ceil(values.length / slotCount), (c) => toUint64Slots(values, c * slotCount, slotCount));
  return { ciphertexts, bytes, encryptMs: performance.now() - start };
}

const littleEndian = new Uint8Array(Uint16Array.of(1).buffer)[0] === 1;

/**
 * values[offset .. offset+count) (zero-padded) as a BigUint64Array for
 * BatchEncoder.encode, written as two 32-bit halves through a Uint32Array
 * view: no BigInt per value on little-endian machines.
 */
function toUint64Slots(values: Float64Array, offset: number, count: number): BigUint64Array {
  const out = new BigUint64Array(count);
  const end = Math.min(values.length, offset + count);
  if (!littleEndian) {
    for (let i = offset; i < end; i++) out[i - offset] = BigInt(values[i]);
    return out;
  }
  const words = new Uint32Array(out.buffer);
  for (let i = offset; i < end; i++) {
    const v = values[i];
    const hi = Math.floor(v / 4294967296);
    words[2 * (i - offset)] = v - hi * 4294967296;
    words[2 * (i - offset) + 1] = hi;
  }
  return out;
}

/**
 * One seeded symmetric ciphertext per chunk(c), c = 0 .. chunks-1, each in
 * our envelope. The one place that owns the SEAL encryptor's life cycle.
 */
function encryptChunks(ctx: HeContext, secretKey: Uint8Array, chunks: number, chunk: (c: number) => Int32Array | BigInt64Array | BigUint64Array): { ciphertexts: Uint8Array[]; bytes: number } {
  const { seal } = ctx;
  const sk = loadSecretKey(ctx, secretKey);
  // node-seal's Encryptor constructor requires a public key even for
  // symmetric encryption; derive one from the secret key (≈ 5 ms at N = 4096).
  const kg = seal.KeyGenerator(ctx.context, sk);
  const pk = kg.createPublicKey();
  const encryptor = seal.Encryptor(ctx.context, pk, sk);
  const ciphertexts: Uint8Array[] = [];
  let bytes = 0;
  try {
    for (let c = 0; c < chunks; c++) {
      const pt = ctx.encoder.encode(chunk(c)) as ReturnType<typeof seal.PlainText>;
      try {
        const ser = encryptor.encryptSymmetricSerializable(pt);
        try {
          const env = frameCiphertext(ctx, ser.saveArray(seal.ComprModeType.none));
          ciphertexts.push(env);
          bytes += env.length;
        } finally {
          ser.delete();
        }
      } finally {
        pt.delete();
      }
    }
  } catch (e) {
    if (e instanceof HeError) throw e;
    throw new HeError('TWF_E_HE_PARAMS', `encryption failed: ${sealErrorMessage(e)}`, { cause: e });
  } finally {
    encryptor.delete();
    pk.delete();
    kg.delete();
    sk.delete();
  }
  return { ciphertexts, bytes };
}
