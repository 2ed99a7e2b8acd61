/**
 * The shares one site sends another (Bonawitz et al. 2017, sec. 4, round 1
 * "ShareKeys": u encrypts its shares of b_u and s_u^SK to each peer v under
 * an authenticated channel, so the relaying coordinator reads none of them).
 *
 * crypto_box (libsodium: X25519 key agreement, RFC 7748, then XSalsa20-
 * Poly1305) from the sender's long-term X25519 secret key to the recipient's
 * long-term X25519 public key. The box key is the same in both directions
 * (X25519 is symmetric), so a box from u to v would also open as a box from
 * v to u; and nothing in crypto_box names a round. The plaintext therefore
 * starts with a 32-byte binding: BLAKE2b-256 of the canonical JSON of
 * { domain, studyId, manifestHash, round, sites: [from, to] } (order kept),
 * and openShares refuses a box whose binding differs.
 *
 * Layout: base64( nonce[24] || crypto_box_easy( binding[32] || u16le(|bShare|) || bShare || sShare ) ).
 */
import { fromB64, sodium, toB64 } from '../crypto/sodium.js';
import { DOMAIN, concatBytes, roundBinding, type RoundContext } from './context.js';
import { SecaggError } from './errors.js';
import { checkKeyBytes } from './keys.js';

/** The pair of shares one site sends another: a share of its b and a share of its sSk. */
export interface ShareBundle {
  bShare: Uint8Array;
  sShare: Uint8Array;
}

const BINDING_BYTES = 32;
const NONCE_BYTES = 24; // crypto_box_NONCEBYTES
const MAC_BYTES = 16; // crypto_box_MACBYTES
const MAX_SHARE_BYTES = 1024;

function boxBinding(ctx: RoundContext, fromSiteId: string, toSiteId: string): Uint8Array {
  if (fromSiteId === toSiteId) throw new SecaggError('TWF_E_SECAGG_PEERS', `a site does not send shares to itself (${fromSiteId})`);
  return sodium().crypto_generichash(BINDING_BYTES, roundBinding(DOMAIN.shareBox, ctx, [fromSiteId, toSiteId]));
}

function checkShare(what: string, s: Uint8Array): void {
  if (!(s instanceof Uint8Array) || s.length < 2 || s.length > MAX_SHARE_BYTES) {
    throw new SecaggError('TWF_E_SECAGG_SHARES', `${what} must be 2..${MAX_SHARE_BYTES} bytes`);
  }
}

/** Seals `bundle` from `fromSiteId` to `toSiteId` for this round; returns base64 (nonce || box). */
export function sealShares(ctx: RoundContext, fromSiteId: string, toSiteId: string, bundle: ShareBundle, senderX25519Sk: Uint8Array, recipientX25519Pk: Uint8Array): string {
  checkKeyBytes('sender X25519 secret key', senderX25519Sk);
  checkKeyBytes('recipient X25519 public key', recipientX25519Pk);
  checkShare('bShare', bundle?.bShare);
  checkShare('sShare', bundle?.sShare);
  const s = sodium();
  const len = new Uint8Array([bundle.bShare.length & 0xff, bundle.bShare.length >> 8]);
  const plaintext = concatBytes(boxBinding(ctx, fromSiteId, toSiteId), len, bundle.bShare, bundle.sShare);
  const nonce = s.randombytes_buf(NONCE_BYTES);
  try {
    return toB64(concatBytes(nonce, s.crypto_box_easy(plaintext, nonce, recipientX25519Pk, senderX25519Sk)));
  } catch (e) {
    throw new SecaggError('TWF_E_SECAGG_KEY', 'crypto_box refused the keys (low-order recipient key)', { cause: e });
  } finally {
    plaintext.fill(0);
  }
}

/**
 * Opens a box sealed by sealShares and checks its binding; throws
 * TWF_E_SECAGG_BOX when it does not open (wrong keys, tampered bytes) or is
 * bound to another study, manifest, round, sender or recipient.
 */
export function openShares(ctx: RoundContext, fromSiteId: string, toSiteId: string, boxB64: string, recipientX25519Sk: Uint8Array, senderX25519Pk: Uint8Array): ShareBundle {
  checkKeyBytes('recipient X25519 secret key', recipientX25519Sk);
  checkKeyBytes('sender X25519 public key', senderX25519Pk);
  const binding = boxBinding(ctx, fromSiteId, toSiteId);
  const s = sodium();
  const raw = typeof boxB64 === 'string' ? fromB64(boxB64) : new Uint8Array(0);
  if (raw.length < NONCE_BYTES + MAC_BYTES + BINDING_BYTES + 2 + 4) throw new SecaggError('TWF_E_SECAGG_BOX', `box of ${raw.length} bytes is too short`);
  let plaintext: Uint8Array;
  try {
    plaintext = s.crypto_box_open_easy(raw.subarray(NONCE_BYTES), raw.subarray(0, NONCE_BYTES), senderX25519Pk, recipientX25519Sk);
  } catch (e) {
    throw new SecaggError('TWF_E_SECAGG_BOX', `box from ${fromSiteId} to ${toSiteId} does not open with these keys`, { cause: e });
  }
  try {
    if (!s.memcmp(plaintext.subarray(0, BINDING_BYTES), binding)) {
      throw new SecaggError('TWF_E_SECAGG_BOX', `box is not bound to study ${ctx.studyId}, round ${ctx.round}, ${fromSiteId} -> ${toSiteId}`);
    }
    const bLen = plaintext[BINDING_BYTES] | (plaintext[BINDING_BYTES + 1] << 8);
    const rest = plaintext.subarray(BINDING_BYTES + 2);
    if (bLen < 2 || rest.length - bLen < 2) throw new SecaggError('TWF_E_SECAGG_BOX', 'box content is malformed');
    return { bShare: rest.slice(0, bLen), sShare: rest.slice(bLen) };
  } finally {
    plaintext.fill(0);
  }
}
