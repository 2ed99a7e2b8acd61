/**
 * Neighbourhood grey tone difference matrix (NGTDM) and its 5 features: IBSI reference manual
 * (arXiv:1612.07003) section 3.10; Amadasun and King, IEEE Trans. Syst. Man Cybern. 1989.
 */
import { type LevelGrid, averageFeatures, chebyshevOffsets, tagged } from './common.js';
import type { TextureMode } from './glszm.js';

/**
 * NGTDM of one slice (2D) or of the volume (3D): for grey level i, n[i-1] = number of ROI voxels of level i
 * that have at least one ROI neighbour, s[i-1] = sum over them of |i - mean level of their ROI neighbours|.
 * Neighbourhood: Chebyshev distance <= `distance` voxels, in-plane in 2D, centre excluded; neighbours
 * outside the ROI are left out of the mean (IBSI 3.10). nValid = N_v,c = sum n.
 */
export interface Ngtdm {
  nLevels: number;
  s: Float64Array;
  n: Float64Array;
  nValid: number;
}

/**
 * Computes NGTDMs. In "3D" returns one matrix; in "2D" one per slice k (index k; slices without ROI
 * voxels give an empty matrix, nValid = 0).
 */
export function ngtdmMatrices(grid: LevelGrid, mode: TextureMode, distance = 1): Ngtdm[] {
  const [nx, ny, nz] = grid.dims;
  const nL = grid.nLevels;
  const lv = grid.levels;
  const off = chebyshevOffsets(distance, mode === '2D');
  const nOff = off.length / 3;
  const count = mode === '2D' ? nz : 1;
  const out: Ngtdm[] = [];
  for (let c = 0; c < count; c++) out.push({ nLevels: nL, s: new Float64Array(nL), n: new Float64Array(nL), nValid: 0 });
  for (let k = 0; k < nz; k++) {
    const m = out[mode === '2D' ? k : 0];
    for (let j = 0; j < ny; j++) {
      for (let i = 0; i < nx; i++) {
        const v = i + nx * (j + ny * k);
        const g = lv[v];
        if (g === 0) continue;
        let sum = 0,
          w = 0;
        for (let o = 0; o < nOff; o++) {
          const ii = i + off[3 * o],
            jj = j + off[3 * o + 1],
            kk = k + off[3 * o + 2];
          if (ii < 0 || ii >= nx || jj < 0 || jj >= ny || kk < 0 || kk >= nz) continue;
          const h = lv[ii + nx * (jj + ny * kk)];
          if (h === 0) continue;
          sum += h;
          w++;
        }
        if (w === 0) continue;
        m.s[g - 1] += Math.abs(g - sum / w);
        m.n[g - 1] += 1;
        m.nValid++;
      }
    }
  }
  return out;
}

/** Sum of NGTDMs (IBSI 3.1.x merging, used for 2.5D). */
export function mergeNgtdm(ms: readonly Ngtdm[]): Ngtdm {
  const nL = ms[0].nLevels;
  const r: Ngtdm = { nLevels: nL, s: new Float64Array(nL), n: new Float64Array(nL), nValid: 0 };
  for (const m of ms) {
    for (let g = 0; g < nL; g++) {
      r.s[g] += m.s[g];
      r.n[g] += m.n[g];
    }
    r.nValid += m.nValid;
  }
  return r;
}

/** IBSI 3.10.1-3.10.5 (keys: tag stems without "ngt_"); null when no voxel has an ROI neighbour. */
export function ngtdmFeatures(m: Ngtdm): Record<string, number> | null {
  const nL = m.nLevels;
  const Nvc = m.nValid;
  if (Nvc <= 0) return null;
  const p = new Float64Array(nL);
  let ngp = 0,
    sumPS = 0,
    sumS = 0;
  for (let g = 0; g < nL; g++) {
    p[g] = m.n[g] / Nvc;
    if (p[g] > 0) ngp++;
    sumPS += p[g] * m.s[g];
    sumS += m.s[g];
  }
  let contrastSum = 0,
    busyDen = 0,
    complexity = 0,
    strengthNum = 0;
  for (let a = 0; a < nL; a++) {
    if (p[a] === 0) continue;
    const i = a + 1;
    for (let b = 0; b < nL; b++) {
      if (p[b] === 0) continue;
      const j = b + 1;
      const d2 = (i - j) * (i - j);
      contrastSum += p[a] * p[b] * d2;
      busyDen += Math.abs(i * p[a] - j * p[b]);
      complexity += (Math.abs(i - j) * (p[a] * m.s[a] + p[b] * m.s[b])) / (p[a] + p[b]);
      strengthNum += (p[a] + p[b]) * d2;
    }
  }
  return {
    // 3.10.1 coarseness 1 / sum p_i s_i. Undefined when the sum is 0 (flat ROI); 10^6 there, the value PyRadiomics
    // returns (van Griethuysen et al., Cancer Res. 2017), so such ROIs stay comparable across tools.
    coarseness: sumPS > 0 ? 1 / sumPS : 1e6,
    // 3.10.2 contrast: (sum_ij p_i p_j (i-j)^2 / (N_g,p (N_g,p - 1))) * (sum_i s_i / N_v,c); 0 for one level.
    contrast: ngp > 1 ? (contrastSum / (ngp * (ngp - 1))) * (sumS / Nvc) : 0,
    // 3.10.3 busyness: sum p_i s_i / sum_ij |i p_i - j p_j|; 0 when the denominator is 0 (one level), as PyRadiomics.
    busyness: busyDen > 0 ? sumPS / busyDen : 0,
    // 3.10.4 complexity: sum_ij |i-j| (p_i s_i + p_j s_j) / (p_i + p_j) / N_v,c
    complexity: complexity / Nvc,
    // 3.10.5 strength: sum_ij (p_i + p_j)(i-j)^2 / sum_i s_i; 0 when sum s_i = 0, as PyRadiomics.
    strength: sumS > 0 ? strengthNum / sumS : 0,
  };
}

/** NGTDM features: _2D per slice averaged, _2_5D per-slice matrices merged, _3D one 3D matrix. */
export function ngtdmTextureFeatures(grid: LevelGrid, distance = 1): Record<string, number> {
  const perSlice = ngtdmMatrices(grid, '2D', distance);
  const f2d = averageFeatures(perSlice.map(ngtdmFeatures));
  const f25 = averageFeatures([ngtdmFeatures(mergeNgtdm(perSlice))]);
  const f3 = averageFeatures(ngtdmMatrices(grid, '3D', distance).map(ngtdmFeatures));
  return { ...tagged('ngt_', f2d, '_2D'), ...tagged('ngt_', f25, '_2_5D'), ...tagged('ngt_', f3, '_3D') };
}
