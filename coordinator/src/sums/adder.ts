/**
 * What a running sum does with one chunk: the coordinator's only arithmetic. With encryption
 * (every product round) a chunk is a BFV ciphertext and the sum is a live SEAL ciphertext the
 * chunks are added to in place (shared/src/he/aggregate.ts CiphertextSum), exact mod q and
 * order-independent, so a sum built on worker threads in any order is bit for bit the serial one.
 * The plaintext adder exists only for the aggregation benchmark (test/src/bench/aggregate-memory.ts,
 * --plaintext-compare): the same round with float32 chunks summed in float64, to put a number on
 * what encryption costs. It is never chosen by a manifest (EngineOptions.benchPlaintext).
 */
import { WireError, unpackFrames } from '@twinfed/protocols';
import { CiphertextSum, createHeContext, type HeParams } from '@twinfed/shared/he/index';

/** 'he': ciphertexts (the product). 'plaintext': float32 chunks, bench only. */
export type SumMode = 'he' | 'plaintext';

/** The running sums of one chunk index, updated in place; hold memory until free(). */
export interface RunningSum {
  /** sums += chunk. Validates the chunk (throws TWF_E_BAD_CIPHERTEXT) and leaves the sums untouched on failure. */
  add(chunk: Uint8Array): void;
  /** sums -= chunk, undoing an earlier add of the same chunk. */
  sub(chunk: Uint8Array): void;
  /** The sums' bytes, one per ciphertext of the chunk (a ciphertext in its envelope; float64 values in plaintext mode). */
  save(): Uint8Array[];
  free(): void;
}

export interface ChunkAdder {
  /** Ciphertexts per chunk: 1 (the chunk is one) or more (packFrames of them). */
  readonly perChunk: number;
  /** Sums holding one chunk (validated: throws TWF_E_BAD_CIPHERTEXT). */
  start(chunk: Uint8Array): RunningSum;
}

/** One value's sum: a ciphertext's, or a float32 chunk's in plaintext mode. */
interface Sum {
  add(bytes: Uint8Array): void;
  sub(bytes: Uint8Array): void;
  save(): Uint8Array;
  free(): void;
}

/** The chunk's parts: itself, or its frames (TWF_E_BAD_CIPHERTEXT unless there are 1..perChunk). */
function parts(chunk: Uint8Array, perChunk: number): Uint8Array[] {
  if (perChunk === 1) return [chunk];
  let frames: Uint8Array[];
  try {
    frames = unpackFrames(chunk);
  } catch (e) {
    throw new WireError('TWF_E_BAD_CIPHERTEXT', `chunk of ciphertexts: ${(e as Error).message}`);
  }
  if (frames.length < 1 || frames.length > perChunk) throw new WireError('TWF_E_BAD_CIPHERTEXT', `chunk of ${frames.length} ciphertexts (1..${perChunk} expected)`);
  return frames;
}

/**
 * The sums of a chunk's ciphertexts, all or nothing: a part that fails validation undoes the
 * parts already added (BFV subtraction is exact), so a refused chunk leaves every sum as it was.
 */
function chunkSums(first: Uint8Array, perChunk: number, start: (bytes: Uint8Array) => Sum): RunningSum {
  const sums: Sum[] = [];
  try {
    for (const p of parts(first, perChunk)) sums.push(start(p));
  } catch (e) {
    for (const x of sums) x.free();
    throw e;
  }
  const apply = (chunk: Uint8Array, op: 'add' | 'sub') => {
    const ps = parts(chunk, perChunk);
    if (ps.length !== sums.length) throw new WireError('TWF_E_BAD_CIPHERTEXT', `chunk of ${ps.length} ciphertexts; its sums hold ${sums.length}`);
    let done = 0;
    try {
      for (; done < ps.length; done++) sums[done][op](ps[done]);
    } catch (e) {
      for (let u = 0; u < done; u++) sums[u][op === 'add' ? 'sub' : 'add'](ps[u]);
      throw e;
    }
  };
  return {
    add: (c) => apply(c, 'add'),
    sub: (c) => apply(c, 'sub'),
    save: () => sums.map((x) => x.save()),
    free: () => sums.forEach((x) => x.free()),
  };
}

export async function createAdder(mode: SumMode, params: HeParams, perChunk = 1): Promise<ChunkAdder> {
  if (mode === 'plaintext') return { perChunk, start: (chunk) => chunkSums(chunk, perChunk, plaintextSum) };
  const he = await createHeContext(params);
  return {
    perChunk,
    start: (chunk) =>
      chunkSums(chunk, perChunk, (bytes) => {
        const s = CiphertextSum.start(he, bytes);
        return { add: (c) => s.add(c), sub: (c) => s.sub(c), save: () => s.save(), free: () => s.delete() };
      }),
  };
}

/** Float32 values of a chunk (copied: the bytes may sit at any offset), or TWF_E_BAD_CIPHERTEXT. */
function floats(chunk: Uint8Array): Float32Array {
  if (chunk.byteLength === 0 || chunk.byteLength % 4 !== 0) throw new WireError('TWF_E_BAD_CIPHERTEXT', `plaintext bench chunk of ${chunk.byteLength} bytes (float32 values expected)`);
  const f = new Float32Array(chunk.slice().buffer);
  for (let i = 0; i < f.length; i++) if (!Number.isFinite(f[i])) throw new WireError('TWF_E_BAD_CIPHERTEXT', `plaintext bench chunk holds a non-finite value at ${i}`);
  return f;
}

/** Bench only: float32 values, summed in float64 (published as float64, 8 bytes per parameter). */
function plaintextSum(first: Uint8Array): Sum {
  const sum = Float64Array.from(floats(first));
  const combine = (chunk: Uint8Array, sign: 1 | -1) => {
    const f = floats(chunk);
    if (f.length !== sum.length) throw new WireError('TWF_E_BAD_CIPHERTEXT', `plaintext bench chunk of ${f.length} values; the sum holds ${sum.length}`);
    for (let i = 0; i < f.length; i++) sum[i] += sign * f[i];
  };
  return { add: (c) => combine(c, 1), sub: (c) => combine(c, -1), save: () => new Uint8Array(sum.slice().buffer), free: () => undefined };
}
