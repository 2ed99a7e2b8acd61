/**
 * Test slices (not a test file itself, so importing it registers no tests): noisy images with one
 * bright square each, the mask being the square; `patientOf` assigns slices to patients (default:
 * two patients, first and second half).
 */
import type { SliceSet } from '../data/slices.js';
import { mulberry32 } from '../model/prng.js';

export function squares(n: number, size: number, seed: number, patientOf: (i: number) => number = (i) => (i < n / 2 ? 0 : 1)): SliceSet {
  const r = mulberry32(seed);
  const images = new Float32Array(n * size * size);
  const masks = new Uint8Array(n * size * size);
  for (let k = 0; k < n; k++) {
    const w = 3 + Math.floor(r() * 4);
    const x0 = Math.floor(r() * (size - w)),
      y0 = Math.floor(r() * (size - w));
    for (let y = 0; y < size; y++)
      for (let x = 0; x < size; x++) {
        const inside = x >= x0 && x < x0 + w && y >= y0 && y < y0 + w;
        images[k * size * size + y * size + x] = (inside ? 1 : 0.2) + 0.2 * r();
        masks[k * size * size + y * size + x] = inside ? 1 : 0;
      }
  }
  return {
    images,
    masks,
    n,
    size,
    spacingMm: [1, 1, 1],
    z: Int32Array.from({ length: n }, (_, i) => i),
    patient: Int32Array.from({ length: n }, (_, i) => patientOf(i)),
    maskVoxelsOutside: 0,
  };
}
