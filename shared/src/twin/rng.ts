/**
 * Deterministic random numbers for the twin (multistarts, forecast draws).
 * mulberry32 (Tommy Ettinger, public domain): 32-bit integer state, identical on every engine,
 * so a seed gives bit-identical fits and bands on every site.
 */
import { deriveSeed, mulberry32 } from '../model/prng.js';

export interface Rng {
  /** Uniform in [0, 1). */
  uniform(): number;
  /** Standard normal (Box–Muller). */
  normal(): number;
}

export function makeRng(seed: number): Rng {
  const uniform = mulberry32((seed >>> 0) ^ 0x9e3779b9);
  let spare: number | null = null;
  const normal = (): number => {
    if (spare !== null) {
      const s = spare;
      spare = null;
      return s;
    }
    let u = 0;
    while (u <= 1e-300) u = uniform();
    const v = uniform();
    const r = Math.sqrt(-2 * Math.log(u));
    spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  };
  return { uniform, normal };
}

/** Derives a sub-seed from a seed and a label (FNV-1a), so streams do not overlap. */
export const subSeed = deriveSeed;
