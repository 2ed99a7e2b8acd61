/**
 * Site side: quantise a weighted update and encrypt it under the shared
 * secret key.
 *
 * Symmetric (secret-key) BFV encryption lets SEAL replace the uniformly random
 * half of each ciphertext by the seed of the PRNG that produced it
 * (Encryptor::encrypt_symmetric returning Serializable<Ciphertext>, SEAL 3.6+),
 * halving the upload: one polynomial of N coefficients mod q plus a 64-byte
 * seed, i.e. ≈ 8 bytes per parameter at N = 4096, 60-bit q. The coordinator
 * expands the seed on load.
 */
import { HeError } from './errors.js';
import type { HeContext } from './context.js';
import { wrapCiphertext } from './envelope.js';
import { loadSecretKey } from './keys.js';
import { maxTotalSamples } from './params.js';
import { quantizeChunk } from './quantize.js';
import { sealErrorMessage } from './seal-loader.js';

export interface EncryptedUpdate {
  /** One envelope per slotCount parameters, in order. */
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

export function checkClipBound(clipBound: number): void {
  if (!(typeof clipBound === 'number' && Number.isFinite(clipBound) && clipBound > 0)) {
    throw new HeError('TWF_E_HE_BAD_UPDATE', `clipBound must be a positive finite number (got ${clipBound})`);
  }
}

export function encryptWeightedUpdate(
  ctx: HeContext,
  secretKey: Uint8Array,
  delta: Float32Array,
  nSamples: number,
  clipBound: number,
): EncryptedUpdate {
  const start = performance.now();
  const { params, slotCount, seal } = ctx;
  if (!(delta instanceof Float32Array) || delta.length === 0) throw new HeError('TWF_E_HE_BAD_UPDATE', 'delta must be a non-empty Float32Array');
  if (!Number.isSafeInteger(nSamples) || nSamples < 1) throw new HeError('TWF_E_HE_BAD_UPDATE', `nSamples must be a positive integer (got ${nSamples})`);
  checkClipBound(clipBound);
  const limit = maxTotalSamples(params);
  if (nSamples > limit) {
    throw new HeError('TWF_E_HE_OVERFLOW', `nSamples ${nSamples} exceeds ${limit}, the most this plain modulus can sum at ${params.precisionBits} precision bits`);
  }
  for (let i = 0; i < delta.length; i++) {
    if (!Number.isFinite(delta[i])) throw new HeError('TWF_E_HE_BAD_UPDATE', `delta[${i}] is not finite`);
  }

  const sk = loadSecretKey(ctx, secretKey);
  // node-seal's Encryptor constructor requires a public key even for
  // symmetric encryption; derive one from the secret key (≈ 5 ms at N = 4096).
  const kg = seal.KeyGenerator(ctx.context, sk);
  const pk = kg.createPublicKey();
  const encryptor = seal.Encryptor(ctx.context, pk, sk);
  const ciphertexts: Uint8Array[] = [];
  let bytes = 0;
  let clipped = 0;
  try {
    for (let offset = 0; offset < delta.length; offset += slotCount) {
      const chunk = quantizeChunk(delta, offset, slotCount, nSamples, clipBound, params.precisionBits);
      clipped += chunk.clipped;
      const pt = ctx.encoder.encode(chunk.values) as ReturnType<typeof seal.PlainText>;
      try {
        const ser = encryptor.encryptSymmetricSerializable(pt);
        try {
          const env = wrapCiphertext(ctx.paramsDigest, ser.saveArray(seal.ComprModeType.none));
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
  return { ciphertexts, length: delta.length, nSamples, encryptMs: performance.now() - start, bytes, clipped };
}

