/** Measurements on masks (volume, longest diameter), mask helpers and file digests. */
import { createHash } from 'node:crypto';
import { indexToWorldMatrix, voxelVolumeMm3 } from './geometry.js';
import type { ImageVolume, MaskVolume } from './types.js';

type Grid = Pick<ImageVolume, 'dims' | 'spacingMm' | 'originMm' | 'direction' | 'data'>;

/** SHA-256 of the bytes, lower-case hex. */
export function fileDigest(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

const inLabel = (label: number | undefined) => (label === undefined ? (v: number) => v !== 0 : (v: number) => v === label);

/** Voxel count of the mask (non-zero voxels, or voxels equal to `label`). */
export function maskVoxelCount(mask: Grid, label?: number): number {
  const test = inLabel(label);
  let n = 0;
  for (let i = 0; i < mask.data.length; i++) if (test(mask.data[i])) n++;
  return n;
}

/** Volume in mm³: voxel count × voxel volume (|det(direction·diag(spacing))|). */
export function maskVolumeMm3(mask: Grid, label?: number): number {
  return maskVoxelCount(mask, label) * voxelVolumeMm3(mask);
}

/**
 * Labels the foreground (non-zero, or == label) into 26-connected components and returns the
 * voxel indices of the largest one (empty array for an empty mask).
 */
export function largestComponent(mask: Grid, label?: number): Int32Array {
  const [nx, ny, nz] = mask.dims;
  const test = inLabel(label);
  const seen = new Uint8Array(mask.data.length);
  const queue = new Int32Array(mask.data.length);
  let best = new Int32Array(0);
  for (let start = 0; start < mask.data.length; start++) {
    if (seen[start] || !test(mask.data[start])) continue;
    let head = 0,
      tail = 0;
    queue[tail++] = start;
    seen[start] = 1;
    while (head < tail) {
      const v = queue[head++];
      const x = v % nx,
        y = Math.floor(v / nx) % ny,
        z = Math.floor(v / (nx * ny));
      for (let dz = -1; dz <= 1; dz++) {
        const zz = z + dz;
        if (zz < 0 || zz >= nz) continue;
        for (let dy = -1; dy <= 1; dy++) {
          const yy = y + dy;
          if (yy < 0 || yy >= ny) continue;
          for (let dx = -1; dx <= 1; dx++) {
            const xx = x + dx;
            if (xx < 0 || xx >= nx) continue;
            const w = xx + nx * (yy + ny * zz);
            if (!seen[w] && test(mask.data[w])) {
              seen[w] = 1;
              queue[tail++] = w;
            }
          }
        }
      }
    }
    if (tail > best.length) best = queue.slice(0, tail);
  }
  return best;
}

export interface DiameterResult {
  /** Longest distance in mm between two voxel centres of the largest 26-connected component. */
  diameterMm: number;
  /** Voxel indices [i, j, k] of the two end points. */
  from: [number, number, number];
  to: [number, number, number];
  /** Slice index (k) for 'in-plane'. */
  slice?: number;
}

/**
 * Longest diameter of the largest 26-connected component, between voxel centres (so about one
 * voxel shorter than the outer extent).
 * - 'in-plane' (default, RECIST-like): the longest distance within any one slice (grid axes 0,1).
 * - '3d': the maximum 3D Feret diameter.
 * Exact: only the first/last voxel of each row (along x) can be a convex-hull vertex, so
 * distances are taken over those candidates only. 0 for an empty or one-voxel mask.
 */
export function longestDiameterMm(mask: Grid, mode: 'in-plane' | '3d' = 'in-plane', label?: number): number {
  return longestDiameter(mask, mode, label).diameterMm;
}

export function longestDiameter(mask: Grid, mode: 'in-plane' | '3d' = 'in-plane', label?: number): DiameterResult {
  const [nx, ny] = mask.dims;
  const comp = largestComponent(mask, label);
  const none: DiameterResult = { diameterMm: 0, from: [0, 0, 0], to: [0, 0, 0] };
  if (comp.length === 0) return none;
  // Row extremes: key (y, z) -> min x, max x.
  const rows = new Map<number, [number, number]>();
  for (const v of comp) {
    const x = v % nx,
      row = Math.floor(v / nx);
    const r = rows.get(row);
    if (!r) rows.set(row, [x, x]);
    else {
      if (x < r[0]) r[0] = x;
      if (x > r[1]) r[1] = x;
    }
  }
  const m = indexToWorldMatrix(mask);
  type P = { i: number; j: number; k: number; w: [number, number, number] };
  const pts: P[] = [];
  for (const [row, [x0, x1]] of rows) {
    const j = row % ny,
      k = Math.floor(row / ny);
    for (const i of x0 === x1 ? [x0] : [x0, x1]) {
      pts.push({ i, j, k, w: [m[0] * i + m[1] * j + m[2] * k, m[3] * i + m[4] * j + m[5] * k, m[6] * i + m[7] * j + m[8] * k] });
    }
  }
  let best = -1,
    a = pts[0],
    b = pts[0];
  const consider = (group: P[]) => {
    for (let p = 0; p < group.length; p++) {
      const P1 = group[p].w;
      for (let q = p + 1; q < group.length; q++) {
        const P2 = group[q].w;
        const d = (P1[0] - P2[0]) ** 2 + (P1[1] - P2[1]) ** 2 + (P1[2] - P2[2]) ** 2;
        if (d > best) {
          best = d;
          a = group[p];
          b = group[q];
        }
      }
    }
  };
  if (mode === '3d') consider(pts);
  else {
    const bySlice = new Map<number, P[]>();
    for (const p of pts) {
      const g = bySlice.get(p.k);
      if (g) g.push(p);
      else bySlice.set(p.k, [p]);
    }
    for (const g of bySlice.values()) consider(g);
  }
  if (best < 0) return { diameterMm: 0, from: [a.i, a.j, a.k], to: [a.i, a.j, a.k], ...(mode === 'in-plane' ? { slice: a.k } : {}) };
  return { diameterMm: Math.sqrt(best), from: [a.i, a.j, a.k], to: [b.i, b.j, b.k], ...(mode === 'in-plane' ? { slice: a.k } : {}) };
}

/**
 * Views an image as a mask: labels are the distinct non-zero values (names from `names`,
 * else "label <v>"). Voxel data is shared, not copied.
 */
export function toMaskVolume(image: ImageVolume, names: Record<number, string> = {}): MaskVolume {
  const values = new Set<number>();
  for (let i = 0; i < image.data.length; i++) if (image.data[i] !== 0) values.add(image.data[i]);
  const labels = [...values].sort((x, y) => x - y).map((value) => ({ value, name: names[value] ?? `label ${value}` }));
  return { ...image, labels };
}
