/**
 * The mask generator PRG(seed): a uniform vector over Z_t.
 *
 * Stream: libsodium's randombytes_buf_deterministic(len, key), documented as
 * the ChaCha20 keystream (IETF variant, RFC 8439: 96-bit nonce, 32-bit block
 * counter from 0) under `key` with the fixed nonce "LibsodiumDRG"
 * (https://doc.libsodium.org/generating_random_data, "Deterministic
 * generation"; secagg.test.ts checks this against Node's chacha20 cipher).
 * Keystreams of different lengths under one key share their prefix.
 *
 * Blocks: the vector is cut into blocks of MASK_BLOCK_SLOTS = 4096 slots (one
 * BFV ciphertext at N = 4096). Block i has its own ChaCha20 key
 * BLAKE2b-256(seed || "twinfed.secagg.prg-block.v1" || u32le(i)), so a block
 * can be computed alone, and no block's keystream ever reaches the 2^32-block
 * ChaCha20 counter limit.
 *
 * Slots: each slot reads 6 keystream bytes as a 48-bit little-endian integer,
 * keeps its low bitLength(t) bits, and rejects the value when it is >= t
 * (rejection sampling: the kept values are exactly uniform on [0, t) given a
 * uniform stream). The rejection probability per draw is
 * 1 - t / 2^bitLength(t) < 1/2; for the default t = 4398046486529 (42 bits)
 * it is 24575 / 2^42 ≈ 5.6e-9, so a 10^6-parameter mask rejects nothing
 * with probability ≈ 0.994. A block draws 6·count bytes first and, when
 * rejections used some up, regenerates a longer keystream under the same key
 * and continues where it stopped, so the values do not depend on how far
 * ahead we drew: a block's first k values are the same for every length.
 */
import { sodium } from '../crypto/sodium.js';
import { utf8 } from '@twinfed/protocols';
import { DOMAIN, concatBytes } from './context.js';
import { SecaggError } from './errors.js';
import { checkKeyBytes } from './keys.js';
import { checkPlainModulus } from './zt.js';

/** Slots per independently computable block of a mask. */
export const MASK_BLOCK_SLOTS = 4096;
const BYTES_PER_DRAW = 6;
const TWO_32 = 4294967296;

const blockDomain = utf8(DOMAIN.prgBlock);

function blockKey(seed: Uint8Array, block: number): Uint8Array {
  const index = new Uint8Array(4);
  new DataView(index.buffer).setUint32(0, block, true);
  return sodium().crypto_generichash(32, concatBytes(seed, blockDomain, index));
}

const littleEndian = new Uint8Array(Uint16Array.of(1).buffer)[0] === 1;

/** The keystream as little-endian 16-bit words (a view on little-endian machines, a copy otherwise). */
function words16(stream: Uint8Array): Uint16Array {
  if (littleEndian && stream.byteOffset % 2 === 0) return new Uint16Array(stream.buffer, stream.byteOffset, stream.length >> 1);
  const w = new Uint16Array(stream.length >> 1);
  for (let i = 0; i < w.length; i++) w[i] = stream[2 * i] | (stream[2 * i + 1] << 8);
  return w;
}

/** The first `count` values of block `block` of PRG(seed), into out[0 .. count). */
function expandBlock(seed: Uint8Array, block: number, count: number, t: number, bits: number, out: Float64Array): void {
  const s = sodium();
  const key = blockKey(seed, block);
  // a draw is w0 + 2^16·w1 + 2^32·w2 (6 bytes, little-endian); keep its low `bits` bits
  const m0 = bits >= 16 ? 0xffff : 2 ** bits - 1;
  const m1 = bits >= 32 ? 0xffff : bits > 16 ? 2 ** (bits - 16) - 1 : 0;
  const m2 = bits > 32 ? 2 ** (bits - 32) - 1 : 0;
  let stream = s.randombytes_buf_deterministic(count * BYTES_PER_DRAW, key);
  let w = words16(stream);
  let pos = 0; // in 16-bit words
  let k = 0;
  while (k < count) {
    if (pos + 3 > w.length) {
      // rejections used up the stream: same key, longer keystream, same prefix
      stream = s.randombytes_buf_deterministic(stream.length + Math.max(count - k, 64) * BYTES_PER_DRAW, key);
      w = words16(stream);
    }
    const v = (w[pos + 2] & m2) * TWO_32 + (w[pos + 1] & m1) * 65536 + (w[pos] & m0);
    pos += 3;
    if (v < t) out[k++] = v;
  }
  key.fill(0);
  stream.fill(0);
}

function checkSeed(seed: Uint8Array): void {
  checkKeyBytes('mask seed', seed);
}

function checkLength(length: number): void {
  if (!Number.isSafeInteger(length) || length < 0 || length > MASK_BLOCK_SLOTS * 2 ** 32) {
    throw new SecaggError('TWF_E_SECAGG_PARAMS', `mask length must be a non-negative integer (got ${length})`);
  }
}

/**
 * acc[i] = acc[i] + sign·PRG(seed)[i] mod t for every i < acc.length, block
 * by block (no full-length temporary). acc must hold values in [0, t).
 */
export function addMaskInto(acc: Float64Array, seed: Uint8Array, t: bigint, sign: 1 | -1): void {
  const tn = checkPlainModulus(t);
  checkSeed(seed);
  const bits = t.toString(2).length;
  const block = new Float64Array(MASK_BLOCK_SLOTS);
  for (let b = 0, off = 0; off < acc.length; b++, off += MASK_BLOCK_SLOTS) {
    const count = Math.min(MASK_BLOCK_SLOTS, acc.length - off);
    expandBlock(seed, b, count, tn, bits, block);
    if (sign === 1) {
      for (let i = 0; i < count; i++) {
        const x = acc[off + i] + block[i];
        acc[off + i] = x >= tn ? x - tn : x;
      }
    } else {
      for (let i = 0; i < count; i++) {
        const x = acc[off + i] - block[i];
        acc[off + i] = x < 0 ? x + tn : x;
      }
    }
  }
  block.fill(0);
}

/**
 * Uniform vector over Z_t of `length` slots from a 32-byte seed (see the file
 * comment for the construction and its rejection probability,
 * 1 - t / 2^bitLength(t) per draw). Values as Float64 (exact: t < 2^48 is
 * required, because each draw is 48 bits; TWF_E_SECAGG_PARAMS otherwise).
 * expandMask(seed, k, t) is a prefix of expandMask(seed, m, t) for k <= m.
 */
export function expandMask(seed: Uint8Array, length: number, t: bigint): Float64Array {
  checkLength(length);
  const out = new Float64Array(length);
  addMaskInto(out, seed, t, 1);
  return out;
}

/**
 * Block `block` of PRG(seed) alone: its first `count` (<= MASK_BLOCK_SLOTS)
 * values, equal to expandMask(seed, ·, t).subarray(block·4096, block·4096 + count).
 * Lets a receiver check or recompute part of a mask without the rest.
 */
export function expandMaskBlock(seed: Uint8Array, block: number, count: number, t: bigint): Float64Array {
  const tn = checkPlainModulus(t);
  checkSeed(seed);
  if (!Number.isSafeInteger(block) || block < 0 || block >= 2 ** 32) throw new SecaggError('TWF_E_SECAGG_PARAMS', `block must be an integer 0..2^32-1 (got ${block})`);
  if (!Number.isSafeInteger(count) || count < 0 || count > MASK_BLOCK_SLOTS) throw new SecaggError('TWF_E_SECAGG_PARAMS', `count must be 0..${MASK_BLOCK_SLOTS} (got ${count})`);
  const out = new Float64Array(count);
  expandBlock(seed, block, count, tn, t.toString(2).length, out);
  return out;
}
