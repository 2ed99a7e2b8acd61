/**
 * Grey level run length matrix (GLRLM) and its 16 features: IBSI reference manual (arXiv:1612.07003)
 * section 3.7; Galloway, Comput. Graph. Image Process. 1975.
 */
import {
  DIRECTIONS_2D,
  DIRECTIONS_3D,
  type LevelGrid,
  type SizeMatrix,
  SizeMatrixBuilder,
  type SliceRange,
  averageFeatures,
  countRoiVoxels,
  fullRange,
  mergeSizeMatrices,
  renameSizeFeatures,
  sizeMatrixFeatures,
  tagged,
} from './common.js';

/**
 * Run length matrix for one direction (IBSI 3.7): a run is a maximal line of consecutive ROI voxels with
 * the same grey level along `direction` (a unit step; runs do not use the GLCM distance). Only voxels in
 * slices range.k0..k1-1 take part. N_v of the matrix = ROI voxels in the range.
 */
export function glrlmMatrix(grid: LevelGrid, direction: readonly [number, number, number], range: SliceRange = fullRange(grid.dims)): SizeMatrix {
  const [nx, ny] = grid.dims;
  const lv = grid.levels;
  const [dx, dy, dz] = direction;
  const off = dx + nx * (dy + ny * dz);
  const b = new SizeMatrixBuilder(grid.nLevels);
  const inside = (i: number, j: number, k: number): boolean => i >= 0 && i < nx && j >= 0 && j < ny && k >= range.k0 && k < range.k1;
  for (let k = range.k0; k < range.k1; k++) {
    for (let j = 0; j < ny; j++) {
      for (let i = 0; i < nx; i++) {
        const v = i + nx * (j + ny * k);
        const g = lv[v];
        if (g === 0) continue;
        b.nVoxels++;
        // Start of a run only if the previous voxel along the direction is not the same level.
        if (inside(i - dx, j - dy, k - dz) && lv[v - off] === g) continue;
        let len = 1;
        let ii = i + dx,
          jj = j + dy,
          kk = k + dz,
          w = v + off;
        while (inside(ii, jj, kk) && lv[w] === g) {
          len++;
          ii += dx;
          jj += dy;
          kk += dz;
          w += off;
        }
        b.add(g, len);
      }
    }
  }
  return b.build();
}

/** IBSI 3.7.1-3.7.16 features of a run length matrix (keys: tag stems without "rlm_"); null when empty. */
export function glrlmFeatures(m: SizeMatrix): Record<string, number> | null {
  const f = sizeMatrixFeatures(m);
  if (f === null) return null;
  return renameSizeFeatures(f, {
    smallEmph: 'sre', // 3.7.1 short runs emphasis
    largeEmph: 'lre', // 3.7.2 long runs emphasis
    lowGreyEmph: 'lgre', // 3.7.3
    highGreyEmph: 'hgre', // 3.7.4
    smallLowGreyEmph: 'srlge', // 3.7.5
    smallHighGreyEmph: 'srhge', // 3.7.6
    largeLowGreyEmph: 'lrlge', // 3.7.7
    largeHighGreyEmph: 'lrhge', // 3.7.8
    greyNonUniformity: 'glnu', // 3.7.9
    greyNonUniformityNorm: 'glnu_norm', // 3.7.10
    sizeNonUniformity: 'rlnu', // 3.7.11
    sizeNonUniformityNorm: 'rlnu_norm', // 3.7.12
    percentage: 'r_perc', // 3.7.13 run percentage N_s / N_v (N_v summed over merged matrices)
    greyVariance: 'gl_var', // 3.7.14
    sizeVariance: 'rl_var', // 3.7.15
    entropy: 'rl_entr', // 3.7.16
  });
}

/** GLRLM features with the six aggregation methods (same scheme as glcmTextureFeatures). */
export function glrlmTextureFeatures(grid: LevelGrid): Record<string, number> {
  const nz = grid.dims[2];
  const nL = grid.nLevels;
  const perSliceDir: SizeMatrix[][] = [];
  for (let k = 0; k < nz; k++) {
    const r = { k0: k, k1: k + 1 };
    if (countRoiVoxels(grid, r) === 0) continue;
    perSliceDir.push(DIRECTIONS_2D.map((d) => glrlmMatrix(grid, d, r)));
  }
  const f2dAvg = averageFeatures(perSliceDir.flat().map(glrlmFeatures));
  const f2dComb = averageFeatures(perSliceDir.map((ms) => glrlmFeatures(mergeSizeMatrices(ms, nL))));
  const perDir25 = DIRECTIONS_2D.map((_, d) =>
    mergeSizeMatrices(
      perSliceDir.map((ms) => ms[d]),
      nL,
    ),
  );
  const f25Avg = averageFeatures(perDir25.map(glrlmFeatures));
  const f25Comb = averageFeatures([glrlmFeatures(mergeSizeMatrices(perDir25, nL))]);
  const perDir3 = DIRECTIONS_3D.map((d) => glrlmMatrix(grid, d));
  const f3Avg = averageFeatures(perDir3.map(glrlmFeatures));
  const f3Comb = averageFeatures([glrlmFeatures(mergeSizeMatrices(perDir3, nL))]);
  return {
    ...tagged('rlm_', f2dAvg, '_2D_avg'),
    ...tagged('rlm_', f2dComb, '_2D_comb'),
    ...tagged('rlm_', f25Avg, '_2_5D_avg'),
    ...tagged('rlm_', f25Comb, '_2_5D_comb'),
    ...tagged('rlm_', f3Avg, '_3D_avg'),
    ...tagged('rlm_', f3Comb, '_3D_comb'),
  };
}
