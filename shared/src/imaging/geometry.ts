/** Small 3x3 linear algebra and the voxel <-> world mapping of an ImageVolume (see types.ts). */
import { ImagingError } from './errors.js';
import type { ImageVolume } from './types.js';

export type Vec3 = [number, number, number];
type GridGeometry = Pick<ImageVolume, 'dims' | 'spacingMm' | 'originMm' | 'direction'>;

export const dot = (a: ArrayLike<number>, b: ArrayLike<number>): number => a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
export const cross = (a: ArrayLike<number>, b: ArrayLike<number>): Vec3 => [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
export const norm = (a: ArrayLike<number>): number => Math.hypot(a[0], a[1], a[2]);

/** Determinant of a row-major 3x3. */
export function det3(m: ArrayLike<number>): number {
  return m[0] * (m[4] * m[8] - m[5] * m[7]) - m[1] * (m[3] * m[8] - m[5] * m[6]) + m[2] * (m[3] * m[7] - m[4] * m[6]);
}

/** Inverse of a row-major 3x3, or null when singular. */
export function inv3(m: ArrayLike<number>): number[] | null {
  const d = det3(m);
  if (!Number.isFinite(d) || Math.abs(d) < 1e-12) return null;
  const r = [
    m[4] * m[8] - m[5] * m[7],
    m[2] * m[7] - m[1] * m[8],
    m[1] * m[5] - m[2] * m[4],
    m[5] * m[6] - m[3] * m[8],
    m[0] * m[8] - m[2] * m[6],
    m[2] * m[3] - m[0] * m[5],
    m[3] * m[7] - m[4] * m[6],
    m[1] * m[6] - m[0] * m[7],
    m[0] * m[4] - m[1] * m[3],
  ];
  return r.map((x) => x / d);
}

/** M = D · diag(spacing): voxel index offset -> world offset (row-major). */
export function indexToWorldMatrix(g: GridGeometry): number[] {
  const [sx, sy, sz] = g.spacingMm;
  const d = g.direction;
  return [d[0] * sx, d[1] * sy, d[2] * sz, d[3] * sx, d[4] * sy, d[5] * sz, d[6] * sx, d[7] * sy, d[8] * sz];
}

/** World (LPS mm) position of the centre of voxel (i, j, k); fractional indices allowed. */
export function voxelToWorld(g: GridGeometry, i: number, j: number, k: number): Vec3 {
  const m = indexToWorldMatrix(g);
  const o = g.originMm;
  return [o[0] + m[0] * i + m[1] * j + m[2] * k, o[1] + m[3] * i + m[4] * j + m[5] * k, o[2] + m[6] * i + m[7] * j + m[8] * k];
}

/** Returns a function mapping a world (LPS mm) point to continuous voxel indices. */
export function worldToVoxelFn(g: GridGeometry): (x: number, y: number, z: number) => Vec3 {
  const inv = inv3(indexToWorldMatrix(g));
  if (inv == null) throw new ImagingError('TWF_E_IMPORT_GEOMETRY', undefined, 'direction/spacing matrix is singular; the grid cannot be inverted');
  const [ox, oy, oz] = g.originMm;
  return (x, y, z) => {
    const dx = x - ox,
      dy = y - oy,
      dz = z - oz;
    return [inv[0] * dx + inv[1] * dy + inv[2] * dz, inv[3] * dx + inv[4] * dy + inv[5] * dz, inv[6] * dx + inv[7] * dy + inv[8] * dz];
  };
}

/** Volume of one voxel in mm³ (|det(D·diag(spacing))|). */
export function voxelVolumeMm3(g: GridGeometry): number {
  return Math.abs(det3(indexToWorldMatrix(g)));
}

/** Identity direction. */
export const IDENTITY3 = (): number[] => [1, 0, 0, 0, 1, 0, 0, 0, 1];

/**
 * Throws TWF_E_IMPORT_GEOMETRY unless dims are positive integers, spacing is positive and finite,
 * the origin is finite, the direction is a non-degenerate 3x3, and data has dims[0]·dims[1]·dims[2] values.
 */
export function assertValidGeometry(v: ImageVolume, file: string | undefined): void {
  const bad = (what: string) => {
    throw new ImagingError('TWF_E_IMPORT_GEOMETRY', file, `${what}; check the header (dims/spacing/orientation fields) or re-export the image`);
  };
  if (!v.dims.every((d) => Number.isInteger(d) && d > 0)) bad(`dimensions ${v.dims.join('x')} are not positive integers`);
  if (!v.spacingMm.every((s) => Number.isFinite(s) && s > 0)) bad(`voxel spacing ${v.spacingMm.join(', ')} mm is not positive and finite`);
  if (!v.originMm.every(Number.isFinite)) bad(`origin ${v.originMm.join(', ')} is not finite`);
  if (v.direction.length !== 9 || !v.direction.every(Number.isFinite)) bad('direction cosines are missing or not finite');
  if (Math.abs(det3(v.direction)) < 1e-6) bad('direction cosines are degenerate (axes are parallel)');
  if (v.data.length !== v.dims[0] * v.dims[1] * v.dims[2]) bad(`voxel data holds ${v.data.length} values, dims need ${v.dims[0] * v.dims[1] * v.dims[2]}`);
}

/** Splits a 3x3 matrix whose columns are axis vectors into unit columns (direction) and their lengths (spacing). */
export function splitColumns(m: number[]): { direction: number[]; spacing: Vec3 } {
  const spacing: Vec3 = [0, 0, 0];
  const direction = m.slice();
  for (let c = 0; c < 3; c++) {
    const n = Math.hypot(m[c], m[3 + c], m[6 + c]);
    spacing[c] = n;
    if (n > 0) for (let r = 0; r < 3; r++) direction[3 * r + c] = m[3 * r + c] / n;
  }
  return { direction, spacing };
}
