/**
 * What a running sum does with one chunk: the coordinator's only arithmetic. With encryption
 * (every product round) a chunk is a BFV ciphertext and the sum is the HE layer's
 * addCiphertexts/subtractCiphertext, exact mod q and order-independent, so a sum built on worker
 * threads in any order is bit for bit the serial one (shared/src/he/aggregate.ts). The plaintext
 * adder exists only for the aggregation benchmark (test/src/bench/aggregate-memory.ts,
 * --plaintext-compare): the same round with float32 chunks summed in float64, to put a number on
 * what encryption costs. It is never chosen by a manifest (EngineOptions.benchPlaintext).
 */
import { WireError } from '@twinfed/protocols';
import { addCiphertexts, createHeContext, subtractCiphertext, type HeParams } from '@twinfed/shared/he/index';

/** 'he': ciphertexts (the product). 'plaintext': float32 chunks, bench only. */
export type SumMode = 'he' | 'plaintext';

export interface ChunkAdder {
  /** acc + chunk; acc null starts a sum. Validates the chunk (throws TWF_E_BAD_CIPHERTEXT) and leaves acc untouched on failure. */
  add(acc: Uint8Array | null, chunk: Uint8Array): Uint8Array;
  /** acc - chunk, undoing an earlier add of the same chunk. */
  sub(acc: Uint8Array, chunk: Uint8Array): Uint8Array;
}

export async function createAdder(mode: SumMode, params: HeParams): Promise<ChunkAdder> {
  if (mode === 'plaintext') return plaintextAdder;
  const he = await createHeContext(params);
  return {
    add: (acc, chunk) => addCiphertexts(he, acc, chunk),
    sub: (acc, chunk) => subtractCiphertext(he, acc, chunk),
  };
}

/** Float32 values of a chunk (copied: the bytes may sit at any offset), or TWF_E_BAD_CIPHERTEXT. */
function floats(chunk: Uint8Array): Float32Array {
  if (chunk.byteLength === 0 || chunk.byteLength % 4 !== 0) throw new WireError('TWF_E_BAD_CIPHERTEXT', `plaintext bench chunk of ${chunk.byteLength} bytes (float32 values expected)`);
  const f = new Float32Array(chunk.slice().buffer);
  for (let i = 0; i < f.length; i++) if (!Number.isFinite(f[i])) throw new WireError('TWF_E_BAD_CIPHERTEXT', `plaintext bench chunk holds a non-finite value at ${i}`);
  return f;
}

function combine(acc: Uint8Array, chunk: Uint8Array, sign: 1 | -1): Uint8Array {
  const f = floats(chunk);
  if (acc.byteLength !== f.length * 8) throw new WireError('TWF_E_BAD_CIPHERTEXT', `plaintext bench chunk of ${f.length} values; the sum holds ${acc.byteLength / 8}`);
  const sum = new Float64Array(acc.slice().buffer);
  for (let i = 0; i < f.length; i++) sum[i] += sign * f[i];
  return new Uint8Array(sum.buffer);
}

/** Bench only: float32 chunks, float64 sums (published as float64, 8 bytes per parameter). */
export const plaintextAdder: ChunkAdder = {
  add(acc, chunk) {
    if (acc === null) return new Uint8Array(Float64Array.from(floats(chunk)).buffer);
    return combine(acc, chunk, 1);
  },
  sub: (acc, chunk) => combine(acc, chunk, -1),
};
