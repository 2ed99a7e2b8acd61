/**
 * TWH2 bodies: a SEAL 4.1 Ciphertext serialisation (ComprModeType.none) with each coefficient
 * word written in bitlen(q_j) bits instead of 64. A coefficient modulo a 60-bit prime needs 60
 * bits; SEAL writes 64, so an uploaded (seeded) ciphertext costs 8.06 bytes per slot in TWH1 and
 * 7.55 in TWH2, an aggregate (both polynomials) 16.03 and 15.04. Bit-packing is a public,
 * invertible re-encoding of the same ciphertext: it changes nothing SEAL or an attacker sees
 * after expansion, so the scheme's security (q, N, the error and secret distributions) is
 * untouched. SEAL's own zstd/zlib modes cannot do this (uniform words do not compress; see
 * ciphertext-io.ts).
 *
 * SEAL's serialisation (native/src/seal/ciphertext.cpp Ciphertext::save_members; SEALHeader in
 * serialization.h; DynArray::save_members in dynarray.h; UniformRandomGeneratorInfo in
 * randomgen.h), all integers little-endian, offsets checked against node-seal 6.0.3 output in
 * he.test.ts:
 *
 *   offset  size      field
 *   0       16        SEALHeader: magic 0xA15E (u16), header size 0x10, version 4.x, compression
 *                     mode (0 = none), reserved, total size in bytes (u64)
 *   16      32        parms_id (4 × u64)
 *   48      1         is_ntt_form
 *   49      8         size: polynomials (2)
 *   57      8         poly_modulus_degree N
 *   65      8         coeff_modulus_size k
 *   73      8         scale (f64)
 *   81      8         correction_factor (u64)
 *   89      16        SEALHeader of the coefficient array (its own total size)
 *   105     8         word count: N·k when seeded (the first polynomial only), else 2·N·k
 *   113     8·count   coefficients: polynomial-major, then prime j, then coefficient i
 *   ...     81        seeded only: UniformRandomGeneratorInfo (SEALHeader, PRNG type, 64-byte seed)
 *
 * A TWH2 body keeps bytes 0..113 and the seed verbatim (the size fields still describe the
 * expanded form, which SEAL checks on load) and packs the words between them: word w, of prime
 * q_j (j = floor(w / N) mod k), in bitlen(q_j) bits, least significant bit first, one continuous
 * bit stream whose last byte is zero-padded. Expanding refuses (TWF_E_BAD_CIPHERTEXT) a body of
 * any other length, a word >= its prime and non-zero padding, so every ciphertext has exactly one
 * TWH2 encoding.
 */
import { ENVELOPE_HEADER_BYTES } from './envelope.js';
import { HeError } from './errors.js';
import { layoutVersion } from './lanes.js';
import type { HeParams } from './params.js';

/** What compaction needs of the context (an HeContext is one): N and the coefficient primes q_j. */
export interface WireShape {
  readonly params: { readonly polyModulusDegree: number };
  readonly coeffModuli: readonly bigint[];
}

const SEAL_MAGIC = 0xa15e;
const SEAL_HEADER_SIZE = 0x10;
const SEAL_VERSION_MAJOR = 4;
const OFF_SIZE = 49;
const OFF_DEGREE = 57;
const OFF_MODULUS_SIZE = 65;
const OFF_DATA_HEADER = 89;
const OFF_COUNT = 105;
/** Bytes before the first coefficient word. */
export const SEAL_CIPHERTEXT_PREFIX_BYTES = 113;
/** UniformRandomGeneratorInfo after the words of a seeded ciphertext: SEALHeader 16 + type 1 + seed 64. */
export const SEAL_SEED_INFO_BYTES = 81;

const bad = (why: string): never => {
  throw new HeError('TWF_E_BAD_CIPHERTEXT', why);
};

function bitLength(x: bigint): number {
  return x.toString(2).length;
}

interface Layout {
  /** Coefficient words. */
  count: number;
  seeded: boolean;
  /** Bits of word w: widths[floor(w / N) % k]. */
  widths: number[];
  /** Bytes of the packed words. */
  packedBytes: number;
}

/** Reads and checks the fixed fields (the same in both encodings) and returns the word layout. */
function readLayout(shape: WireShape, bytes: Uint8Array): Layout {
  const N = shape.params.polyModulusDegree;
  const k = shape.coeffModuli.length;
  if (bytes.length < SEAL_CIPHERTEXT_PREFIX_BYTES) bad(`SEAL ciphertext truncated (${bytes.length} bytes)`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (const at of [0, OFF_DATA_HEADER]) {
    if (view.getUint16(at, true) !== SEAL_MAGIC) bad(`not a SEAL object (bad magic at ${at})`);
    if (view.getUint8(at + 2) !== SEAL_HEADER_SIZE) bad(`unexpected SEAL header size at ${at}`);
    if (view.getUint8(at + 3) !== SEAL_VERSION_MAJOR) bad(`unsupported SEAL serialisation version ${view.getUint8(at + 3)}`);
    if (view.getUint8(at + 5) !== 0) bad('compressed ciphertexts are not accepted');
  }
  if (view.getBigUint64(OFF_SIZE, true) !== 2n) bad('expected 2 polynomials');
  if (view.getBigUint64(OFF_DEGREE, true) !== BigInt(N)) bad('wrong polynomial degree');
  if (view.getBigUint64(OFF_MODULUS_SIZE, true) !== BigInt(k)) bad('wrong coefficient modulus size');
  const count = view.getBigUint64(OFF_COUNT, true);
  const perPoly = BigInt(N * k);
  if (count !== perPoly && count !== 2n * perPoly) bad(`${count} coefficient words; a ciphertext has ${perPoly} (seeded) or ${2n * perPoly}`);
  const polys = Number(count / perPoly);
  const widths = shape.coeffModuli.map(bitLength);
  const bits = polys * N * widths.reduce((a, b) => a + b, 0);
  return { count: Number(count), seeded: polys === 1, widths, packedBytes: Math.ceil(bits / 8) };
}

/*
 * The bit stream is built and read in 32-bit little-endian units, with the pending bits in a
 * local int32 (`cur`, its low `curBits` bits): plain loops, no closures, so that V8 keeps the
 * state in registers (a closure variable holding a uint32 above 2^31 is boxed on every write).
 */

/** SEAL serialisation (our own, from saveArray) to a TWH2 body. */
export function compactCiphertext(shape: WireShape, seal: Uint8Array): Uint8Array {
  const L = readLayout(shape, seal);
  const suffix = L.seeded ? SEAL_SEED_INFO_BYTES : 0;
  if (seal.length !== SEAL_CIPHERTEXT_PREFIX_BYTES + 8 * L.count + suffix) bad(`SEAL ciphertext of ${seal.length} bytes; its fields say ${SEAL_CIPHERTEXT_PREFIX_BYTES + 8 * L.count + suffix}`);
  const out = new Uint8Array(SEAL_CIPHERTEXT_PREFIX_BYTES + Math.ceil(L.packedBytes / 4) * 4 + suffix);
  const view = new DataView(seal.buffer, seal.byteOffset, seal.byteLength);
  const N = shape.params.polyModulusDegree;
  const k = shape.coeffModuli.length;
  let pos = SEAL_CIPHERTEXT_PREFIX_BYTES;
  let cur = 0;
  let curBits = 0; // 0..31
  // blocks of N words share a prime: word w belongs to q_j, j = floor(w / N) mod k
  for (let block = 0; block * N < L.count; block++) {
    const j = block % k;
    const width = L.widths[j];
    const ql = Number(shape.coeffModuli[j] & 0xffffffffn);
    const qh = Number(shape.coeffModuli[j] >> 32n);
    const h = width > 32 ? width - 32 : width; // bits of the last part
    for (let w = block * N, end = w + N; w < end; w++) {
      const lo = view.getUint32(SEAL_CIPHERTEXT_PREFIX_BYTES + 8 * w, true);
      const hi = view.getUint32(SEAL_CIPHERTEXT_PREFIX_BYTES + 8 * w + 4, true);
      if (hi > qh || (hi === qh && lo >= ql)) bad(`coefficient word ${w} is not reduced modulo its prime`);
      let v = lo;
      if (width >= 32) {
        // 32 bits of lo: a whole unit goes out, curBits unchanged
        const u = cur | (lo << curBits);
        out[pos] = u;
        out[pos + 1] = u >>> 8;
        out[pos + 2] = u >>> 16;
        out[pos + 3] = u >>> 24;
        pos += 4;
        cur = curBits === 0 ? 0 : lo >>> (32 - curBits);
        if (width === 32) continue;
        v = hi;
      }
      // h < 32 bits of v
      cur |= v << curBits;
      curBits += h;
      if (curBits >= 32) {
        out[pos] = cur;
        out[pos + 1] = cur >>> 8;
        out[pos + 2] = cur >>> 16;
        out[pos + 3] = cur >>> 24;
        pos += 4;
        curBits -= 32;
        cur = curBits === 0 ? 0 : v >>> (h - curBits);
      }
    }
  }
  if (curBits > 0) {
    out[pos] = cur;
    out[pos + 1] = cur >>> 8;
    out[pos + 2] = cur >>> 16;
    out[pos + 3] = cur >>> 24;
  }
  // the suffix after the packed words (over the unit padding, which is zero)
  const body = out.subarray(0, SEAL_CIPHERTEXT_PREFIX_BYTES + L.packedBytes + suffix);
  body.set(seal.subarray(0, SEAL_CIPHERTEXT_PREFIX_BYTES), 0);
  body.set(seal.subarray(seal.length - suffix), SEAL_CIPHERTEXT_PREFIX_BYTES + L.packedBytes);
  return body;
}

/**
 * TWH2 body (untrusted) to the SEAL serialisation SEAL loads. Refuses with TWF_E_BAD_CIPHERTEXT
 * anything but the exact encoding compactCiphertext produces for these parameters.
 */
export function expandCiphertext(shape: WireShape, body: Uint8Array): Uint8Array {
  const L = readLayout(shape, body);
  const suffix = L.seeded ? SEAL_SEED_INFO_BYTES : 0;
  const want = SEAL_CIPHERTEXT_PREFIX_BYTES + L.packedBytes + suffix;
  if (body.length !== want) bad(`TWH2 body of ${body.length} bytes; ${L.seeded ? 'a seeded' : 'a full'} ciphertext takes ${want}`);
  const out = new Uint8Array(SEAL_CIPHERTEXT_PREFIX_BYTES + 8 * L.count + suffix);
  out.set(body.subarray(0, SEAL_CIPHERTEXT_PREFIX_BYTES), 0);
  out.set(body.subarray(body.length - suffix), out.length - suffix);
  // the bit stream, zero-extended to whole 32-bit units
  const stream = new Uint8Array(Math.ceil(L.packedBytes / 4) * 4);
  stream.set(body.subarray(SEAL_CIPHERTEXT_PREFIX_BYTES, SEAL_CIPHERTEXT_PREFIX_BYTES + L.packedBytes));
  const view = new DataView(out.buffer);
  const N = shape.params.polyModulusDegree;
  const k = shape.coeffModuli.length;
  let pos = 0;
  let cur = 0; // unread bits of the last unit, at the bottom
  let curBits = 0;
  for (let block = 0; block * N < L.count; block++) {
    const j = block % k;
    const width = L.widths[j];
    const ql = Number(shape.coeffModuli[j] & 0xffffffffn);
    const qh = Number(shape.coeffModuli[j] >> 32n);
    const h = width > 32 ? width - 32 : width;
    const mask = h === 32 ? -1 : (1 << h) - 1;
    for (let w = block * N, end = w + N; w < end; w++) {
      let lo = 0;
      if (width >= 32) {
        const next = stream[pos] | (stream[pos + 1] << 8) | (stream[pos + 2] << 16) | (stream[pos + 3] << 24);
        pos += 4;
        lo = (cur | (next << curBits)) >>> 0;
        cur = curBits === 0 ? 0 : next >>> (32 - curBits);
      }
      let v = 0;
      if (width !== 32) {
        if (h <= curBits) {
          v = cur & mask;
          cur >>>= h;
          curBits -= h;
        } else {
          const next = stream[pos] | (stream[pos + 1] << 8) | (stream[pos + 2] << 16) | (stream[pos + 3] << 24);
          pos += 4;
          const need = h - curBits; // 1..31
          v = (cur | ((next & ((1 << need) - 1)) << curBits)) & mask;
          cur = next >>> need;
          curBits = 32 - need;
        }
        v >>>= 0;
      }
      const hi = width > 32 ? v : 0;
      if (width < 32) lo = v;
      if (hi > qh || (hi === qh && lo >= ql)) bad(`coefficient word ${w} is not below its prime q_${j}`);
      view.setUint32(SEAL_CIPHERTEXT_PREFIX_BYTES + 8 * w, lo, true);
      view.setUint32(SEAL_CIPHERTEXT_PREFIX_BYTES + 8 * w + 4, hi, true);
    }
  }
  // what is left of the last unit: the last byte's padding bits and the zero extension
  if (cur !== 0) bad('non-zero padding bits after the last coefficient');
  return out;
}

/**
 * Bytes of one framed ciphertext (envelope header included) under parameters `p`: an upload
 * (seeded: one polynomial and the seed) or an aggregate (both polynomials), TWH1 (64-bit words)
 * or TWH2 (packed) as the parameters' layout says. SEAL's CoeffModulus.Create(N, bits) returns
 * primes of exactly coeffModulusBits bits, so this needs no SEAL.
 */
export function ciphertextWireBytes(p: HeParams, kind: 'upload' | 'aggregate'): number {
  const polys = kind === 'upload' ? 1 : 2;
  const N = p.polyModulusDegree;
  const data = layoutVersion(p) === 2 ? Math.ceil((polys * N * p.coeffModulusBits.reduce((a, b) => a + b, 0)) / 8) : 8 * polys * N * p.coeffModulusBits.length;
  return ENVELOPE_HEADER_BYTES + SEAL_CIPHERTEXT_PREFIX_BYTES + data + (kind === 'upload' ? SEAL_SEED_INFO_BYTES : 0);
}
