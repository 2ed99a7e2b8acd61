/** Secret-key generation and loading. */
import { HeError } from './errors.js';
import type { HeContext } from './context.js';
import { sealErrorMessage, type SecretKey } from './seal-loader.js';

/**
 * A fresh SEAL secret key (ternary, from SEAL's CSPRNG), serialised.
 * Every site of a study uses the same key; distributing it is the caller's job.
 */
export function generateSecretKey(ctx: HeContext): Uint8Array {
  const kg = ctx.seal.KeyGenerator(ctx.context);
  const sk = kg.secretKey();
  try {
    return sk.saveArray(ctx.seal.ComprModeType.none);
  } finally {
    sk.delete();
    kg.delete();
  }
}

/** Load a serialised secret key; throws TWF_E_HE_BAD_KEY. Caller deletes the result. */
export function loadSecretKey(ctx: HeContext, bytes: Uint8Array): SecretKey {
  const sk = ctx.seal.SecretKey();
  try {
    if (!(bytes instanceof Uint8Array) || bytes.length < 16) throw new Error('not a serialised key');
    sk.loadArray(ctx.context, bytes);
    return sk;
  } catch (e) {
    sk.delete();
    throw new HeError('TWF_E_HE_BAD_KEY', `secret key does not load for these HE parameters: ${sealErrorMessage(e)}`, { cause: e });
  }
}
