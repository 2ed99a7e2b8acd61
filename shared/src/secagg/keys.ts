/**
 * Per-site, per-round secrets of double masking (Bonawitz et al., "Practical
 * Secure Aggregation for Privacy-Preserving Machine Learning", CCS 2017,
 * sec. 4, round 0 "AdvertiseKeys" and round 1 "ShareKeys"): an X25519 key
 * pair (s_u^SK, s_u^PK) whose Diffie-Hellman agreements seed the pairwise
 * masks, and a 32-byte self-mask seed b_u. All three are fresh each round, so
 * revealing s_u^SK for a dropped site (to remove its pairwise masks) exposes
 * nothing about other rounds.
 */
import { sodium } from '../crypto/sodium.js';
import { DOMAIN, concatBytes, roundBinding, type RoundContext } from './context.js';
import { SecaggError } from './errors.js';

/** X25519 key and self-mask seed length (RFC 7748, sec. 5; libsodium crypto_scalarmult_BYTES). */
export const KEY_BYTES = 32;

/** Per-site, per-round secrets: an X25519 pair (sSk, sPk) for the pairwise masks and a 32-byte self-mask seed b. */
export interface RoundSecrets {
  sPk: Uint8Array;
  sSk: Uint8Array;
  b: Uint8Array;
}

/** Fresh round secrets from libsodium's CSPRNG (crypto_box_keypair, randombytes_buf). */
export function generateRoundSecrets(): RoundSecrets {
  const s = sodium();
  const kp = s.crypto_box_keypair();
  return { sPk: kp.publicKey, sSk: clampScalar(kp.privateKey), b: s.randombytes_buf(KEY_BYTES) };
}

/**
 * The canonical form of an X25519 secret key: RFC 7748 sec. 5 (decodeScalar25519) clears bits
 * 0-2 and 255 and sets bit 254 before use, so keys differing only in those bits are the same key.
 * Round keys are stored clamped, and isKeyPair accepts only the clamped form, so a wrongly
 * reconstructed key that differs only in those bits is not mistaken for the real one.
 */
export function clampScalar(sk: Uint8Array): Uint8Array {
  const c = Uint8Array.from(sk);
  c[0] &= 248;
  c[31] &= 127;
  c[31] |= 64;
  return c;
}

export function checkKeyBytes(what: string, k: Uint8Array): void {
  if (!(k instanceof Uint8Array) || k.length !== KEY_BYTES) {
    throw new SecaggError('TWF_E_SECAGG_KEY', `${what} must be ${KEY_BYTES} bytes (got ${k instanceof Uint8Array ? k.length : typeof k})`);
  }
}

/**
 * Hex commitment to b: BLAKE2b-256 (libsodium crypto_generichash) over the
 * domain, the context, siteId and b. b is 32 uniform bytes, so the commitment
 * hides it; BLAKE2b's collision resistance binds it, so a share set that
 * reconstructs a different b is caught.
 */
export function selfMaskCommitment(ctx: RoundContext, siteId: string, b: Uint8Array): string {
  checkKeyBytes('b', b);
  const s = sodium();
  return s.to_hex(s.crypto_generichash(32, concatBytes(roundBinding(DOMAIN.selfCommit, ctx, [siteId]), b)));
}

/** True when sSk is the secret key of sPk (crypto_scalarmult_base, RFC 7748 sec. 6.1). Never throws. */
export function isKeyPair(sSk: Uint8Array, sPk: Uint8Array): boolean {
  if (!(sSk instanceof Uint8Array) || !(sPk instanceof Uint8Array) || sSk.length !== KEY_BYTES || sPk.length !== KEY_BYTES) return false;
  if ((sSk[0] & 7) !== 0 || (sSk[31] & 0xc0) !== 0x40) return false; // only the canonical (clamped) form
  const s = sodium();
  return s.memcmp(s.crypto_scalarmult_base(sSk), sPk);
}

/**
 * X25519(sk, pk) (RFC 7748, sec. 6.1). libsodium refuses low-order public
 * keys (an all-zero shared secret); that is TWF_E_SECAGG_KEY.
 */
export function x25519(sk: Uint8Array, pk: Uint8Array): Uint8Array {
  checkKeyBytes('secret key', sk);
  checkKeyBytes('public key', pk);
  try {
    return sodium().crypto_scalarmult(sk, pk);
  } catch (e) {
    throw new SecaggError('TWF_E_SECAGG_KEY', 'X25519 refused the public key (low-order point)', { cause: e });
  }
}
