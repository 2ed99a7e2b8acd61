/**
 * Deterministic pseudo-random numbers shared by every site.
 *
 * Model initialisation and data shuffling must be bit-identical on every site
 * and every tfjs backend, so we never use Math.random or tf.random*: those
 * depend on the backend (and, for Math.random, on the process). mulberry32 is
 * a tiny 32-bit generator (Tommy Ettinger, public domain) whose state update
 * uses only 32-bit integer arithmetic (Math.imul), so its stream is identical
 * on every JavaScript engine.
 */

/** Returns a generator of uniform numbers in [0, 1) seeded by a 32-bit integer. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Derives an independent 32-bit seed from a base seed and a stream label (FNV-1a over the label). */
export function deriveSeed(seed: number, label: string): number {
  let h = (0x811c9dc5 ^ (seed >>> 0)) >>> 0;
  for (let i = 0; i < label.length; i++) {
    h ^= label.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

/** Fisher-Yates shuffle of 0..n-1 driven by `rand` (Knuth, TAOCP vol. 2, Algorithm P). */
export function permutation(n: number, rand: () => number): Int32Array {
  const p = new Int32Array(n);
  for (let i = 0; i < n; i++) p[i] = i;
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    const t = p[i];
    p[i] = p[j];
    p[j] = t;
  }
  return p;
}
