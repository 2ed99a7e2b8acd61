/**
 * Loading and saving ciphertexts with every check we can make on untrusted
 * bytes, in this order: our envelope (magic, parameter digest, checksum),
 * SEAL's serialisation header, SEAL's own load (which verifies that the
 * metadata match the context and that every coefficient is reduced mod q:
 * Ciphertext::load -> is_valid_for, SEAL 4.1 native/src/seal/valcheck.cpp),
 * then the shape we expect (2 polynomials, not NTT form, first parms_id).
 *
 * Ciphertexts are serialised without compression: SEAL's zstd mode made
 * seeded BFV ciphertexts 10 bytes larger, not smaller (coefficients are
 * uniform mod q), and refusing compressed input keeps the coordinator away
 * from decompressing untrusted data. What does shrink them is dropping the
 * unused high bits of each 64-bit word: parameter sets of layout 2 frame the
 * body as TWH2 (wire.ts), expanded here before any SEAL check.
 */
import { HeError } from './errors.js';
import type { HeContext } from './context.js';
import { unwrapCiphertext, wrapCiphertext } from './envelope.js';
import { sealErrorMessage, type CipherText } from './seal-loader.js';
import { compactCiphertext, expandCiphertext } from './wire.js';

/** SEAL 4.x SEALHeader (native/src/seal/serialization.h): 16 bytes. */
const SEAL_MAGIC = 0xa15e;
const SEAL_HEADER_SIZE = 0x10;
const SEAL_VERSION_MAJOR = 4;
const COMPR_NONE = 0;

function checkSealHeader(body: Uint8Array): void {
  const bad = (why: string): never => {
    throw new HeError('TWF_E_BAD_CIPHERTEXT', why);
  };
  if (body.length < SEAL_HEADER_SIZE) bad('SEAL header truncated');
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
  if (view.getUint16(0, true) !== SEAL_MAGIC) bad('not a SEAL object (bad magic)');
  if (view.getUint8(2) !== SEAL_HEADER_SIZE) bad('unexpected SEAL header size');
  if (view.getUint8(3) !== SEAL_VERSION_MAJOR) bad(`unsupported SEAL serialisation version ${view.getUint8(3)}`);
  if (view.getUint8(5) !== COMPR_NONE) bad('compressed ciphertexts are not accepted');
  if (view.getBigUint64(8, true) !== BigInt(body.length)) bad('SEAL size field does not match the data (truncated or padded)');
}

function sameParmsId(a: BigUint64Array, b: readonly bigint[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * Parse untrusted bytes into a SEAL ciphertext. Throws TWF_E_BAD_CIPHERTEXT on
 * anything that is not a valid ciphertext for ctx. Caller must delete() the result.
 */
export function loadCiphertext(ctx: HeContext, bytes: Uint8Array): CipherText {
  const framed = unwrapCiphertext(ctx.paramsDigest, bytes, ctx.maxBodyBytes, ctx.wireVersion);
  const body = ctx.wireVersion === 2 ? expandCiphertext(ctx, framed) : framed;
  checkSealHeader(body);
  const ct = ctx.seal.CipherText();
  try {
    try {
      ct.loadArray(ctx.context, body);
    } catch (e) {
      throw new HeError('TWF_E_BAD_CIPHERTEXT', `SEAL refused it: ${sealErrorMessage(e)}`, { cause: e });
    }
    if (ct.size !== 2) throw new HeError('TWF_E_BAD_CIPHERTEXT', `expected 2 polynomials, got ${ct.size}`);
    if (ct.isNttForm) throw new HeError('TWF_E_BAD_CIPHERTEXT', 'BFV ciphertext in NTT form');
    if (ct.polyModulusDegree !== ctx.params.polyModulusDegree) throw new HeError('TWF_E_BAD_CIPHERTEXT', 'wrong polynomial degree');
    if (ct.coeffModulusSize !== ctx.params.coeffModulusBits.length) throw new HeError('TWF_E_BAD_CIPHERTEXT', 'wrong coefficient modulus size');
    const pid = ct.parmsId;
    const ok = sameParmsId(pid.values, ctx.parmsId);
    pid.delete();
    if (!ok) throw new HeError('TWF_E_BAD_CIPHERTEXT', 'parms_id does not match the HE parameters');
    if (ct.isTransparent) throw new HeError('TWF_E_BAD_CIPHERTEXT', 'transparent ciphertext (not encrypted)');
    return ct;
  } catch (e) {
    ct.delete();
    if (e instanceof HeError) throw e;
    throw new HeError('TWF_E_BAD_CIPHERTEXT', sealErrorMessage(e), { cause: e });
  }
}

/** A SEAL serialisation (uncompressed) in our envelope: TWH1 as is, TWH2 bit-packed. */
export function frameCiphertext(ctx: HeContext, sealBytes: Uint8Array): Uint8Array {
  if (ctx.wireVersion === 2) return wrapCiphertext(ctx.paramsDigest, compactCiphertext(ctx, sealBytes), 2);
  return wrapCiphertext(ctx.paramsDigest, sealBytes);
}

/** Serialise a ciphertext (uncompressed) in our envelope. */
export function saveCiphertext(ctx: HeContext, ct: CipherText): Uint8Array {
  return frameCiphertext(ctx, ct.saveArray(ctx.seal.ComprModeType.none));
}
