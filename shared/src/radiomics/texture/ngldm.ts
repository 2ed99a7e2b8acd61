/**
 * Neighbouring grey level dependence matrix (NGLDM) and its 17 features: IBSI reference manual
 * (arXiv:1612.07003) section 3.11; Sun and Wee, Comput. Vis. Graph. Image Process. 1983.
 */
import { type LevelGrid, type SizeMatrix, SizeMatrixBuilder, averageFeatures, chebyshevOffsets, mergeSizeMatrices, renameSizeFeatures, sizeMatrixFeatures, tagged } from './common.js';
import type { TextureMode } from './glszm.js';

/**
 * NGLDMs (IBSI 3.11): every ROI voxel of level i adds one to element (i, j) with dependence j = 1 + the
 * number of ROI neighbours m with |level(m) - i| <= alpha (coarseness parameter, grey levels). Neighbourhood:
 * Chebyshev distance <= `distance` voxels, in-plane in 2D, centre excluded. In "3D" one matrix; in "2D" one
 * per slice with ROI voxels. N_v = ROI voxels counted.
 */
export function ngldmMatrices(grid: LevelGrid, mode: TextureMode, distance = 1, alpha = 0): SizeMatrix[] {
  const [nx, ny, nz] = grid.dims;
  const lv = grid.levels;
  const off = chebyshevOffsets(distance, mode === '2D');
  const nOff = off.length / 3;
  const builders: SizeMatrixBuilder[] = [];
  const count = mode === '2D' ? nz : 1;
  for (let c = 0; c < count; c++) builders.push(new SizeMatrixBuilder(grid.nLevels));
  for (let k = 0; k < nz; k++) {
    const b = builders[mode === '2D' ? k : 0];
    for (let j = 0; j < ny; j++) {
      for (let i = 0; i < nx; i++) {
        const g = lv[i + nx * (j + ny * k)];
        if (g === 0) continue;
        let dep = 1;
        for (let o = 0; o < nOff; o++) {
          const ii = i + off[3 * o],
            jj = j + off[3 * o + 1],
            kk = k + off[3 * o + 2];
          if (ii < 0 || ii >= nx || jj < 0 || jj >= ny || kk < 0 || kk >= nz) continue;
          const h = lv[ii + nx * (jj + ny * kk)];
          if (h !== 0 && Math.abs(h - g) <= alpha) dep++;
        }
        b.add(g, dep);
        b.nVoxels++;
      }
    }
  }
  return builders.filter((b) => b.nVoxels > 0).map((b) => b.build());
}

/** IBSI 3.11.1-3.11.17 features of an NGLDM (keys: tag stems without "ngl_"); null when empty. */
export function ngldmFeatures(m: SizeMatrix): Record<string, number> | null {
  const f = sizeMatrixFeatures(m);
  if (f === null) return null;
  return renameSizeFeatures(f, {
    smallEmph: 'lde', // 3.11.1 low dependence emphasis
    largeEmph: 'hde', // 3.11.2 high dependence emphasis
    lowGreyEmph: 'lgce', // 3.11.3 low grey level count emphasis
    highGreyEmph: 'hgce', // 3.11.4
    smallLowGreyEmph: 'ldlge', // 3.11.5
    smallHighGreyEmph: 'ldhge', // 3.11.6
    largeLowGreyEmph: 'hdlge', // 3.11.7
    largeHighGreyEmph: 'hdhge', // 3.11.8
    greyNonUniformity: 'glnu', // 3.11.9
    greyNonUniformityNorm: 'glnu_norm', // 3.11.10
    sizeNonUniformity: 'dcnu', // 3.11.11 dependence count non-uniformity
    sizeNonUniformityNorm: 'dcnu_norm', // 3.11.12
    percentage: 'dc_perc', // 3.11.13 dependence count percentage N_s / N_v
    greyVariance: 'gl_var', // 3.11.14
    sizeVariance: 'dc_var', // 3.11.15
    entropy: 'dc_entr', // 3.11.16
    energy: 'dc_energy', // 3.11.17
  });
}

/** NGLDM features: _2D per slice averaged, _2_5D per-slice matrices merged, _3D one 3D matrix. */
export function ngldmTextureFeatures(grid: LevelGrid, distance = 1, alpha = 0): Record<string, number> {
  const perSlice = ngldmMatrices(grid, '2D', distance, alpha);
  const f2d = averageFeatures(perSlice.map(ngldmFeatures));
  const f25 = averageFeatures([ngldmFeatures(mergeSizeMatrices(perSlice, grid.nLevels))]);
  const f3 = averageFeatures(ngldmMatrices(grid, '3D', distance, alpha).map(ngldmFeatures));
  return { ...tagged('ngl_', f2d, '_2D'), ...tagged('ngl_', f25, '_2_5D'), ...tagged('ngl_', f3, '_3D') };
}
