/**
 * Wire framing of one ciphertext:
 *
 *   offset  size  field
 *   0       4     magic "TWH1" (Twinfed HE, framing version 1) or "TWH2"
 *                 (version 2: the same fields, a bit-packed body, wire.ts);
 *                 the parameters fix which (lanes.ts layoutVersion), the
 *                 other is refused
 *   4       16    first 16 bytes of heParamsDigest(params): binds the
 *                 ciphertext to one parameter set
 *   20      16    first 16 bytes of SHA-256(bytes 4..20 || body): detects
 *                 truncation and corruption, which SEAL's own load checks
 *                 miss (a flipped byte inside a coefficient below q loads
 *                 fine and would silently poison the aggregate)
 *   36      ...   body: a SEAL 4.x Ciphertext serialisation (TWH1), or
 *                 the same with its coefficient words bit-packed (TWH2)
 *
 * The checksum is an integrity check, not authentication: envelopes are
 * signed by the sending site one layer up (protocols, shared/src/crypto).
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { HeError } from './errors.js';

export const ENVELOPE_MAGIC = Uint8Array.from([0x54, 0x57, 0x48, 0x31]); // "TWH1"
export const ENVELOPE_MAGIC_V2 = Uint8Array.from([0x54, 0x57, 0x48, 0x32]); // "TWH2"
export const ENVELOPE_HEADER_BYTES = 36;

const magicOf = (version: 1 | 2): Uint8Array => (version === 2 ? ENVELOPE_MAGIC_V2 : ENVELOPE_MAGIC);

function checksum(digestPrefix: Uint8Array, body: Uint8Array): Uint8Array {
  return new Uint8Array(createHash('sha256').update(digestPrefix).update(body).digest().subarray(0, 16));
}

function digestPrefix(paramsDigestHex: string): Uint8Array {
  return new Uint8Array(Buffer.from(paramsDigestHex.slice(0, 32), 'hex'));
}

export function wrapCiphertext(paramsDigestHex: string, body: Uint8Array, version: 1 | 2 = 1): Uint8Array {
  const prefix = digestPrefix(paramsDigestHex);
  const out = new Uint8Array(ENVELOPE_HEADER_BYTES + body.length);
  out.set(magicOf(version), 0);
  out.set(prefix, 4);
  out.set(checksum(prefix, body), 20);
  out.set(body, ENVELOPE_HEADER_BYTES);
  return out;
}

/** Returns the body (a view into `bytes`) of a `version` envelope, or throws TWF_E_BAD_CIPHERTEXT. */
export function unwrapCiphertext(paramsDigestHex: string, bytes: Uint8Array, maxBodyBytes: number, version: 1 | 2 = 1): Uint8Array {
  const bad = (why: string): never => {
    throw new HeError('TWF_E_BAD_CIPHERTEXT', why);
  };
  if (!(bytes instanceof Uint8Array)) bad('not a byte array');
  if (bytes.length <= ENVELOPE_HEADER_BYTES) bad(`too short (${bytes.length} bytes)`);
  if (bytes.length - ENVELOPE_HEADER_BYTES > maxBodyBytes) bad(`too long (${bytes.length} bytes)`);
  const is = (magic: Uint8Array): boolean => magic.every((b, i) => bytes[i] === b);
  if (!is(magicOf(version))) bad(is(magicOf(version === 2 ? 1 : 2)) ? `TWH${3 - version} framing; these parameters use TWH${version}` : 'not a Twinfed ciphertext (bad magic)');
  const prefix = bytes.subarray(4, 20);
  if (!timingSafeEqual(prefix, digestPrefix(paramsDigestHex))) bad('encrypted under other HE parameters (parameter digest differs)');
  const body = bytes.subarray(ENVELOPE_HEADER_BYTES);
  if (!timingSafeEqual(bytes.subarray(20, 36), checksum(prefix, body))) bad('checksum mismatch (corrupted or truncated)');
  return body;
}
