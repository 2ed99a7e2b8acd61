/**
 * Shared pieces of the IBSI texture families (IBSI reference manual, Zwanenburg et al., arXiv:1612.07003,
 * chapter 3; Radiology 2020): input checks, directions and neighbourhoods (IBSI 3.6.1 / 3.1.x), the sparse
 * "grey level x size" count matrix used by GLRLM (3.7), GLSZM (3.8), GLDZM (3.9) and NGLDM (3.11), and
 * its feature set.
 *
 * Conventions used throughout this folder:
 *  - the grid is x fastest: index = i + nx * (j + ny * k); "slice" means a plane of constant k;
 *  - grey levels are integers 1..nLevels inside the intensity ROI, 0 outside;
 *  - "2D" means in-plane neighbourhoods (offsets with dz = 0) on one slice; "3D" means the full volume.
 */

import { RadiomicsError, type RadiomicsErrorCode } from '../errors.js';

export type TextureErrorCode = Extract<RadiomicsErrorCode, `TWF_E_TEXTURE_${string}`>;

/** A radiomics error raised by the texture families (codes in ../errors.ts, the package's one catalogue). */
export class TextureError extends RadiomicsError {
  constructor(code: TextureErrorCode, detail: string) {
    super(code, detail);
    this.name = 'TextureError';
  }
}

/** Grid of grey levels the matrix builders read (a subset of DiscretisedRoi, so matrices stay usable alone). */
export interface LevelGrid {
  dims: [number, number, number];
  /** Grey level 1..nLevels inside the ROI, 0 outside. */
  levels: Int32Array;
  nLevels: number;
}

/** Slices k0 <= k < k1 that a matrix is restricted to (voxels outside are treated as outside the ROI). */
export interface SliceRange {
  k0: number;
  k1: number;
}

export function fullRange(dims: [number, number, number]): SliceRange {
  return { k0: 0, k1: dims[2] };
}

/**
 * Most grey levels the texture families accept. The GLCM is a dense nLevels x nLevels matrix and up to ~10 are
 * alive at once (8 bytes per element): 2048 levels is ~34 MB each. IBSI texture features are meant for
 * discretised images (IBSI 2.7: e.g. fixed bin number 32-64, or fixed bin size).
 */
export const MAX_TEXTURE_LEVELS = 2048;

export function validateGrid(grid: LevelGrid): void {
  const [nx, ny, nz] = grid.dims;
  for (const n of grid.dims) {
    if (!Number.isInteger(n) || n < 1) {
      throw new TextureError('TWF_E_TEXTURE_INPUT', `dims must be three positive integers, got [${grid.dims.join(', ')}]`);
    }
  }
  if (!Number.isInteger(grid.nLevels) || grid.nLevels < 1) {
    throw new TextureError('TWF_E_TEXTURE_INPUT', `nLevels must be a positive integer, got ${grid.nLevels}`);
  }
  if (grid.nLevels > MAX_TEXTURE_LEVELS) {
    throw new TextureError(
      'TWF_E_TEXTURE_INPUT',
      `nLevels is ${grid.nLevels}, more than the ${MAX_TEXTURE_LEVELS} grey levels texture matrices accept; discretise the intensities first (fixed bin number or a larger fixed bin size)`,
    );
  }
  if (grid.levels.length !== nx * ny * nz) {
    throw new TextureError('TWF_E_TEXTURE_INPUT', `levels has ${grid.levels.length} voxels but dims ${nx}x${ny}x${nz} need ${nx * ny * nz}`);
  }
  const lv = grid.levels;
  for (let v = 0; v < lv.length; v++) {
    const g = lv[v];
    if (g < 0 || g > grid.nLevels) {
      throw new TextureError('TWF_E_TEXTURE_INPUT', `voxel ${v} has grey level ${g}; levels must be 0 (outside) or 1..nLevels (${grid.nLevels})`);
    }
  }
}

/**
 * The 13 unique unit directions of a 26-connected 3D neighbourhood (IBSI 3.6.1, Fig. 3.2); each direction
 * and its opposite give the same symmetric GLCM / the same runs. The first 4 have dz = 0: they are the
 * 4 in-plane directions used by 2D and 2.5D (0, 45, 90, 135 degrees).
 */
export const DIRECTIONS_3D: ReadonlyArray<readonly [number, number, number]> = [
  [1, 0, 0],
  [1, 1, 0],
  [0, 1, 0],
  [-1, 1, 0],
  [0, 0, 1],
  [1, 0, 1],
  [0, 1, 1],
  [1, 1, 1],
  [-1, 1, 1],
  [-1, 0, 1],
  [0, -1, 1],
  [-1, -1, 1],
  [1, -1, 1],
];
export const DIRECTIONS_2D = DIRECTIONS_3D.slice(0, 4);

/**
 * Offsets of a Chebyshev neighbourhood of radius `distance` voxels, centre excluded (IBSI 3.10, 3.11: NGTDM
 * and NGLDM neighbourhoods). In 2D only in-plane offsets (dz = 0).
 */
export function chebyshevOffsets(distance: number, twoD: boolean): Int32Array {
  const out: number[] = [];
  const dzMax = twoD ? 0 : distance;
  for (let dz = -dzMax; dz <= dzMax; dz++) {
    for (let dy = -distance; dy <= distance; dy++) {
      for (let dx = -distance; dx <= distance; dx++) {
        if (dx === 0 && dy === 0 && dz === 0) continue;
        out.push(dx, dy, dz);
      }
    }
  }
  return Int32Array.from(out);
}

/** Number of ROI voxels (level > 0) in the slice range. */
export function countRoiVoxels(grid: LevelGrid, range: SliceRange): number {
  const [nx, ny] = grid.dims;
  const lv = grid.levels;
  let n = 0;
  for (let v = range.k0 * nx * ny, end = range.k1 * nx * ny; v < end; v++) if (lv[v] > 0) n++;
  return n;
}

/**
 * Sparse count matrix with grey levels 1..nLevels as rows and a positive "size" as columns (run length,
 * zone size, zone distance or dependence count). Only sizes that occur are stored, so a zone-size matrix of a
 * large ROI stays small. `nVoxels` is N_v of IBSI (voxels the matrix was counted over; summed when merged).
 */
export interface SizeMatrix {
  nLevels: number;
  /** Distinct sizes, ascending. */
  sizes: Float64Array;
  /** counts[(level - 1) * sizes.length + c] = number of runs / zones / voxels with that level and sizes[c]. */
  counts: Float64Array;
  nVoxels: number;
}

/** Mutable builder for a SizeMatrix: one Float64Array of per-level counts per distinct size. */
export class SizeMatrixBuilder {
  readonly nLevels: number;
  readonly bySize = new Map<number, Float64Array>();
  nVoxels = 0;
  constructor(nLevels: number) {
    this.nLevels = nLevels;
  }
  add(level: number, size: number, count = 1): void {
    let row = this.bySize.get(size);
    if (row === undefined) {
      row = new Float64Array(this.nLevels);
      this.bySize.set(size, row);
    }
    row[level - 1] += count;
  }
  build(): SizeMatrix {
    const sizes = Float64Array.from([...this.bySize.keys()]).sort();
    const nS = sizes.length;
    const counts = new Float64Array(this.nLevels * nS);
    for (let c = 0; c < nS; c++) {
      const row = this.bySize.get(sizes[c]) as Float64Array;
      for (let g = 0; g < this.nLevels; g++) counts[g * nS + c] = row[g];
    }
    return { nLevels: this.nLevels, sizes, counts, nVoxels: this.nVoxels };
  }
}

/** Element-wise sum of matrices (IBSI 3.1.x "merging"); N_v adds up too. */
export function mergeSizeMatrices(ms: readonly SizeMatrix[], nLevels: number): SizeMatrix {
  const all = new Set<number>();
  let nVoxels = 0;
  for (const m of ms) {
    for (const s of m.sizes) all.add(s);
    nVoxels += m.nVoxels;
  }
  const sizes = Float64Array.from(all).sort();
  const col = new Map<number, number>();
  sizes.forEach((s, c) => col.set(s, c));
  const nS = sizes.length;
  const counts = new Float64Array(nLevels * nS);
  for (const m of ms) {
    const mS = m.sizes.length;
    for (let c = 0; c < mS; c++) {
      const cc = col.get(m.sizes[c]) as number;
      for (let g = 0; g < nLevels; g++) counts[g * nS + cc] += m.counts[g * mS + c];
    }
  }
  return { nLevels, sizes, counts, nVoxels };
}

/** Total count N_s (runs, zones or voxels) of a SizeMatrix. */
export function sizeMatrixTotal(m: SizeMatrix): number {
  let t = 0;
  for (const c of m.counts) t += c;
  return t;
}

/**
 * The feature set shared by GLRLM (IBSI 3.7.1-3.7.16), GLSZM (3.8.1-3.8.16), GLDZM (3.9.1-3.9.16) and
 * NGLDM (3.11.1-3.11.17), with i = grey level, j = size, m_ij the counts, N_s = sum m_ij, p_ij = m_ij / N_s,
 * m_i. = sum_j m_ij, m_.j = sum_i m_ij. Names are generic; each family maps them onto its IBSI tags.
 * Returns null when the matrix is empty (no feature is defined).
 */
export interface SizeMatrixFeatures {
  /** sum m/j^2 / N_s (short runs / small zones / small distances / low dependence emphasis). */
  smallEmph: number;
  /** sum m j^2 / N_s. */
  largeEmph: number;
  /** sum m/i^2 / N_s. */
  lowGreyEmph: number;
  /** sum m i^2 / N_s. */
  highGreyEmph: number;
  /** sum m/(i^2 j^2) / N_s. */
  smallLowGreyEmph: number;
  /** sum m i^2/j^2 / N_s. */
  smallHighGreyEmph: number;
  /** sum m j^2/i^2 / N_s. */
  largeLowGreyEmph: number;
  /** sum m i^2 j^2 / N_s. */
  largeHighGreyEmph: number;
  /** sum_i m_i.^2 / N_s. */
  greyNonUniformity: number;
  /** sum_i m_i.^2 / N_s^2. */
  greyNonUniformityNorm: number;
  /** sum_j m_.j^2 / N_s. */
  sizeNonUniformity: number;
  /** sum_j m_.j^2 / N_s^2. */
  sizeNonUniformityNorm: number;
  /** N_s / N_v. */
  percentage: number;
  /** sum (i - mu_i)^2 p_ij, mu_i = sum i p_ij. */
  greyVariance: number;
  /** sum (j - mu_j)^2 p_ij, mu_j = sum j p_ij. */
  sizeVariance: number;
  /** -sum p_ij log2 p_ij. */
  entropy: number;
  /** sum p_ij^2 (NGLDM dependence count energy, IBSI 3.11.17). */
  energy: number;
}

export function sizeMatrixFeatures(m: SizeMatrix): SizeMatrixFeatures | null {
  const nS = m.sizes.length;
  const nL = m.nLevels;
  const total = sizeMatrixTotal(m);
  if (total <= 0) return null;
  let se = 0,
    le = 0,
    lg = 0,
    hg = 0,
    slg = 0,
    shg = 0,
    llg = 0,
    lhg = 0;
  let muI = 0,
    muJ = 0,
    entropy = 0,
    energy = 0;
  let glnu = 0;
  const colSum = new Float64Array(nS);
  for (let g = 0; g < nL; g++) {
    const i = g + 1;
    const i2 = i * i;
    let rowSum = 0;
    for (let c = 0; c < nS; c++) {
      const v = m.counts[g * nS + c];
      if (v === 0) continue;
      const j = m.sizes[c];
      const j2 = j * j;
      rowSum += v;
      colSum[c] += v;
      se += v / j2;
      le += v * j2;
      lg += v / i2;
      hg += v * i2;
      slg += v / (i2 * j2);
      shg += (v * i2) / j2;
      llg += (v * j2) / i2;
      lhg += v * i2 * j2;
      const p = v / total;
      muI += i * p;
      muJ += j * p;
      entropy -= p * Math.log2(p);
      energy += p * p;
    }
    glnu += rowSum * rowSum;
  }
  let varI = 0,
    varJ = 0,
    slnu = 0;
  for (let g = 0; g < nL; g++) {
    for (let c = 0; c < nS; c++) {
      const v = m.counts[g * nS + c];
      if (v === 0) continue;
      const p = v / total;
      varI += (g + 1 - muI) ** 2 * p;
      varJ += (m.sizes[c] - muJ) ** 2 * p;
    }
  }
  for (let c = 0; c < nS; c++) slnu += colSum[c] * colSum[c];
  return {
    smallEmph: se / total,
    largeEmph: le / total,
    lowGreyEmph: lg / total,
    highGreyEmph: hg / total,
    smallLowGreyEmph: slg / total,
    smallHighGreyEmph: shg / total,
    largeLowGreyEmph: llg / total,
    largeHighGreyEmph: lhg / total,
    greyNonUniformity: glnu / total,
    greyNonUniformityNorm: glnu / (total * total),
    sizeNonUniformity: slnu / total,
    sizeNonUniformityNorm: slnu / (total * total),
    percentage: m.nVoxels > 0 ? total / m.nVoxels : Number.NaN,
    greyVariance: varI,
    sizeVariance: varJ,
    entropy,
    energy,
  };
}

/** Maps generic size-matrix features onto IBSI tag stems (without family prefix or aggregation suffix). */
export function renameSizeFeatures(f: SizeMatrixFeatures, names: Partial<Record<keyof SizeMatrixFeatures, string>>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, name] of Object.entries(names)) {
    if (name !== undefined) out[name] = f[k as keyof SizeMatrixFeatures];
  }
  return out;
}

/**
 * Mean of each feature over several matrices (IBSI 3.1.x: "averaging" aggregation). Matrices without
 * features (null: empty matrix, e.g. a one-voxel slice) are left out; all-null gives an empty record.
 */
export function averageFeatures(list: ReadonlyArray<Record<string, number> | null>): Record<string, number> {
  const present = list.filter((x): x is Record<string, number> => x !== null);
  const out: Record<string, number> = {};
  if (present.length === 0) return out;
  for (const key of Object.keys(present[0])) {
    let s = 0;
    for (const r of present) s += r[key];
    out[key] = s / present.length;
  }
  return out;
}

/** Adds `prefix` and `suffix` to every key: ("cm_", {energy: 1}, "_3D_avg") -> {cm_energy_3D_avg: 1}. */
export function tagged(prefix: string, features: Record<string, number>, suffix: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(features)) out[`${prefix}${k}${suffix}`] = v;
  return out;
}
