/**
 * What a running sum does with one chunk: the coordinator's only arithmetic. With encryption
 * (every product round) a chunk is a BFV ciphertext and the sum is a live SEAL ciphertext the
 * chunks are added to in place (shared/src/he/aggregate.ts CiphertextSum), exact mod q and
 * order-independent, so a sum built on worker threads in any order is bit for bit the serial one.
 * The plaintext adder exists only for the aggregation benchmark (test/src/bench/aggregate-memory.ts,
 * --plaintext-compare): the same round with float32 chunks summed in float64, to put a number on
 * what encryption costs. It is never chosen by a manifest (EngineOptions.benchPlaintext).
 */
import { WireError } from '@twinfed/protocols';
import { CiphertextSum, createHeContext, type HeParams } from '@twinfed/shared/he/index';

/** 'he': ciphertexts (the product). 'plaintext': float32 chunks, bench only. */
export type SumMode = 'he' | 'plaintext';

/** One running sum, updated in place; holds memory until free(). */
export interface RunningSum {
  /** sum += chunk. Validates the chunk (throws TWF_E_BAD_CIPHERTEXT) and leaves the sum untouched on failure. */
  add(chunk: Uint8Array): void;
  /** sum -= chunk, undoing an earlier add of the same chunk. */
  sub(chunk: Uint8Array): void;
  /** The sum's bytes (a ciphertext in its envelope; float64 values in plaintext mode). */
  save(): Uint8Array;
  free(): void;
}

export interface ChunkAdder {
  /** A sum holding one chunk (validated: throws TWF_E_BAD_CIPHERTEXT). */
  start(chunk: Uint8Array): RunningSum;
}

export async function createAdder(mode: SumMode, params: HeParams): Promise<ChunkAdder> {
  if (mode === 'plaintext') return plaintextAdder;
  const he = await createHeContext(params);
  return {
    start(chunk) {
      const s = CiphertextSum.start(he, chunk);
      return { add: (c) => s.add(c), sub: (c) => s.sub(c), save: () => s.save(), free: () => s.delete() };
    },
  };
}

/** Float32 values of a chunk (copied: the bytes may sit at any offset), or TWF_E_BAD_CIPHERTEXT. */
function floats(chunk: Uint8Array): Float32Array {
  if (chunk.byteLength === 0 || chunk.byteLength % 4 !== 0) throw new WireError('TWF_E_BAD_CIPHERTEXT', `plaintext bench chunk of ${chunk.byteLength} bytes (float32 values expected)`);
  const f = new Float32Array(chunk.slice().buffer);
  for (let i = 0; i < f.length; i++) if (!Number.isFinite(f[i])) throw new WireError('TWF_E_BAD_CIPHERTEXT', `plaintext bench chunk holds a non-finite value at ${i}`);
  return f;
}

/** Bench only: float32 chunks, float64 sums (published as float64, 8 bytes per parameter). */
export const plaintextAdder: ChunkAdder = {
  start(first) {
    const sum = Float64Array.from(floats(first));
    const combine = (chunk: Uint8Array, sign: 1 | -1) => {
      const f = floats(chunk);
      if (f.length !== sum.length) throw new WireError('TWF_E_BAD_CIPHERTEXT', `plaintext bench chunk of ${f.length} values; the sum holds ${sum.length}`);
      for (let i = 0; i < f.length; i++) sum[i] += sign * f[i];
    };
    return { add: (c) => combine(c, 1), sub: (c) => combine(c, -1), save: () => new Uint8Array(sum.slice().buffer), free: () => undefined };
  },
};
