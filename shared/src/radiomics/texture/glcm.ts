/**
 * Grey level co-occurrence matrix (GLCM) and its 25 features: IBSI reference manual (arXiv:1612.07003)
 * section 3.6; Haralick et al., IEEE Trans. Syst. Man Cybern. 1973.
 */
import { DIRECTIONS_2D, DIRECTIONS_3D, type LevelGrid, type SliceRange, averageFeatures, fullRange, tagged } from './common.js';

/**
 * Symmetric co-occurrence counts for one direction (IBSI 3.6: each pair of ROI voxels x, x + distance * dir
 * is counted in both (i, j) and (j, i)). Returns an nLevels x nLevels row-major Float64Array of counts,
 * element (i - 1) * nLevels + (j - 1). Only voxels in slices range.k0..k1-1 take part.
 */
export function glcmMatrix(grid: LevelGrid, direction: readonly [number, number, number], distance = 1, range: SliceRange = fullRange(grid.dims)): Float64Array {
  const [nx, ny] = grid.dims;
  const nL = grid.nLevels;
  const lv = grid.levels;
  const dx = direction[0] * distance;
  const dy = direction[1] * distance;
  const dz = direction[2] * distance;
  const m = new Float64Array(nL * nL);
  const off = dx + nx * (dy + ny * dz);
  // Restrict the loops so that x + offset stays inside the grid and the slice range.
  const i0 = Math.max(0, -dx),
    i1 = Math.min(nx, nx - dx);
  const j0 = Math.max(0, -dy),
    j1 = Math.min(ny, ny - dy);
  const k0 = Math.max(range.k0, range.k0 - dz),
    k1 = Math.min(range.k1, range.k1 - dz);
  for (let k = k0; k < k1; k++) {
    for (let j = j0; j < j1; j++) {
      const base = nx * (j + ny * k);
      for (let i = i0; i < i1; i++) {
        const v = base + i;
        const a = lv[v];
        if (a === 0) continue;
        const b = lv[v + off];
        if (b === 0) continue;
        m[(a - 1) * nL + (b - 1)] += 1;
        m[(b - 1) * nL + (a - 1)] += 1;
      }
    }
  }
  return m;
}

/** Element-wise sum of co-occurrence count matrices (IBSI 3.1.x "merging"). */
export function sumMatrices(ms: readonly Float64Array[]): Float64Array {
  const out = new Float64Array(ms[0].length);
  for (const m of ms) for (let e = 0; e < m.length; e++) out[e] += m[e];
  return out;
}

/**
 * The 25 GLCM features of IBSI 3.6.1-3.6.25 from a count matrix (normalised here: p_ij = m_ij / sum m).
 * Returns null for an empty matrix (no pairs). Keys are IBSI tag stems without "cm_" and suffix.
 * Correlation is NaN when a marginal has zero variance (IBSI leaves it undefined).
 */
export function glcmFeatures(counts: Float64Array, nLevels: number): Record<string, number> | null {
  const Ng = nLevels;
  let total = 0;
  for (const c of counts) total += c;
  if (total <= 0) return null;
  const px = new Float64Array(Ng); // p_i. (row marginal)
  const py = new Float64Array(Ng); // p_.j (column marginal)
  const pDiff = new Float64Array(Ng); // p_{x-y}(k), k = |i - j| = 0..Ng-1
  const pSum = new Float64Array(2 * Ng + 1); // p_{x+y}(k), k = i + j = 2..2Ng
  let jointMax = 0,
    jointAvg = 0,
    jointEntr = 0,
    energy = 0,
    contrast = 0,
    dissim = 0;
  let invDiff = 0,
    invDiffNorm = 0,
    invDiffMom = 0,
    invDiffMomNorm = 0,
    autoCorr = 0;
  for (let a = 0; a < Ng; a++) {
    const i = a + 1;
    for (let b = 0; b < Ng; b++) {
      const c = counts[a * Ng + b];
      if (c === 0) continue;
      const j = b + 1;
      const p = c / total;
      const d = Math.abs(i - j);
      px[a] += p;
      py[b] += p;
      pDiff[d] += p;
      pSum[i + j] += p;
      if (p > jointMax) jointMax = p; // 3.6.1 joint maximum
      jointAvg += i * p; // 3.6.2 joint average
      jointEntr -= p * Math.log2(p); // 3.6.4 joint entropy
      energy += p * p; // 3.6.11 angular second moment
      contrast += d * d * p; // 3.6.12
      dissim += d * p; // 3.6.13
      invDiff += p / (1 + d); // 3.6.14
      invDiffNorm += p / (1 + d / Ng); // 3.6.15
      invDiffMom += p / (1 + d * d); // 3.6.16
      invDiffMomNorm += p / (1 + (d * d) / (Ng * Ng)); // 3.6.17
      autoCorr += i * j * p; // 3.6.20
    }
  }
  let jointVar = 0; // 3.6.3
  let muX = 0,
    muY = 0;
  for (let a = 0; a < Ng; a++) {
    muX += (a + 1) * px[a];
    muY += (a + 1) * py[a];
  }
  let sigX2 = 0,
    sigY2 = 0;
  for (let a = 0; a < Ng; a++) {
    sigX2 += (a + 1 - muX) ** 2 * px[a];
    sigY2 += (a + 1 - muY) ** 2 * py[a];
  }
  let cov = 0,
    clustTend = 0,
    clustShade = 0,
    clustProm = 0,
    hxy1 = 0,
    hxy2 = 0;
  for (let a = 0; a < Ng; a++) {
    for (let b = 0; b < Ng; b++) {
      const q = px[a] * py[b];
      if (q > 0) hxy2 -= q * Math.log2(q); // 3.6.24-25 HXY2
      const c = counts[a * Ng + b];
      if (c === 0) continue;
      const p = c / total;
      jointVar += (a + 1 - jointAvg) ** 2 * p;
      cov += (a + 1 - muX) * (b + 1 - muY) * p;
      const t = a + 1 + b + 1 - muX - muY;
      clustTend += t * t * p; // 3.6.21
      clustShade += t * t * t * p; // 3.6.22
      clustProm += t * t * t * t * p; // 3.6.23
      hxy1 -= p * Math.log2(q); // 3.6.24 HXY1
    }
  }
  let diffAvg = 0,
    diffEntr = 0;
  for (let k = 0; k < Ng; k++) {
    const p = pDiff[k];
    if (p === 0) continue;
    diffAvg += k * p; // 3.6.5
    diffEntr -= p * Math.log2(p); // 3.6.7
  }
  let diffVar = 0,
    invVar = 0;
  for (let k = 0; k < Ng; k++) {
    const p = pDiff[k];
    if (p === 0) continue;
    diffVar += (k - diffAvg) ** 2 * p; // 3.6.6
    if (k > 0) invVar += p / (k * k); // 3.6.18 inverse variance (k = 1..Ng-1)
  }
  let sumAvg = 0,
    sumEntr = 0;
  for (let k = 2; k <= 2 * Ng; k++) {
    const p = pSum[k];
    if (p === 0) continue;
    sumAvg += k * p; // 3.6.8
    sumEntr -= p * Math.log2(p); // 3.6.10
  }
  let sumVar = 0;
  for (let k = 2; k <= 2 * Ng; k++) {
    const p = pSum[k];
    if (p !== 0) sumVar += (k - sumAvg) ** 2 * p; // 3.6.9
  }
  let hx = 0;
  for (let a = 0; a < Ng; a++) if (px[a] > 0) hx -= px[a] * Math.log2(px[a]);
  return {
    joint_max: jointMax,
    joint_avg: jointAvg,
    joint_var: jointVar,
    joint_entr: jointEntr,
    diff_avg: diffAvg,
    diff_var: diffVar,
    diff_entr: diffEntr,
    sum_avg: sumAvg,
    sum_var: sumVar,
    sum_entr: sumEntr,
    energy,
    contrast,
    dissimilarity: dissim,
    inv_diff: invDiff,
    inv_diff_norm: invDiffNorm,
    inv_diff_mom: invDiffMom,
    inv_diff_mom_norm: invDiffMomNorm,
    inv_var: invVar,
    // 3.6.19 correlation: (sum (i - mu_x)(j - mu_y) p_ij) / (sigma_x sigma_y)
    corr: sigX2 > 0 && sigY2 > 0 ? cov / Math.sqrt(sigX2 * sigY2) : Number.NaN,
    auto_corr: autoCorr,
    clust_tend: clustTend,
    clust_shade: clustShade,
    clust_prom: clustProm,
    // 3.6.24 information correlation 1: (HXY - HXY1) / HX; undefined (NaN) when HX = 0.
    info_corr1: hx > 0 ? (jointEntr - hxy1) / hx : Number.NaN,
    // 3.6.25 information correlation 2: sqrt(1 - exp(-2 (HXY2 - HXY))).
    info_corr2: Math.sqrt(Math.max(0, 1 - Math.exp(-2 * (hxy2 - jointEntr)))),
  };
}

/**
 * GLCM features with the six IBSI aggregation methods (IBSI 3.1.x; MIRP names):
 *  _2D_avg   per slice and in-plane direction, features averaged;
 *  _2D_comb  per slice, the 4 in-plane directions merged, features averaged over slices;
 *  _2_5D_avg per in-plane direction, merged over slices, features averaged over directions;
 *  _2_5D_comb all slices and in-plane directions merged into one matrix;
 *  _3D_avg   per 3D direction (13), features averaged;
 *  _3D_comb  13 directions merged into one matrix.
 */
export function glcmTextureFeatures(grid: LevelGrid, distance = 1): Record<string, number> {
  const nz = grid.dims[2];
  const nL = grid.nLevels;
  // Slice by slice, so only 4 per-slice matrices and 4 running per-direction sums are alive at a time.
  const perDir25 = DIRECTIONS_2D.map(() => new Float64Array(nL * nL));
  const sliceDirFeatures: Array<Record<string, number> | null> = [];
  const sliceFeatures: Array<Record<string, number> | null> = [];
  for (let k = 0; k < nz; k++) {
    const ms = DIRECTIONS_2D.map((d) => glcmMatrix(grid, d, distance, { k0: k, k1: k + 1 }));
    for (let d = 0; d < ms.length; d++) {
      sliceDirFeatures.push(glcmFeatures(ms[d], nL));
      const acc = perDir25[d];
      for (let e = 0; e < acc.length; e++) acc[e] += ms[d][e];
    }
    sliceFeatures.push(glcmFeatures(sumMatrices(ms), nL));
  }
  const f2dAvg = averageFeatures(sliceDirFeatures);
  const f2dComb = averageFeatures(sliceFeatures);
  const f25Avg = averageFeatures(perDir25.map((m) => glcmFeatures(m, nL)));
  const f25Comb = averageFeatures([glcmFeatures(sumMatrices(perDir25), nL)]);
  const comb3 = new Float64Array(nL * nL);
  const dirFeatures3: Array<Record<string, number> | null> = [];
  for (const d of DIRECTIONS_3D) {
    const m = glcmMatrix(grid, d, distance);
    dirFeatures3.push(glcmFeatures(m, nL));
    for (let e = 0; e < m.length; e++) comb3[e] += m[e];
  }
  const f3Avg = averageFeatures(dirFeatures3);
  const f3Comb = averageFeatures([glcmFeatures(comb3, nL)]);
  return {
    ...tagged('cm_', f2dAvg, '_2D_avg'),
    ...tagged('cm_', f2dComb, '_2D_comb'),
    ...tagged('cm_', f25Avg, '_2_5D_avg'),
    ...tagged('cm_', f25Comb, '_2_5D_comb'),
    ...tagged('cm_', f3Avg, '_3D_avg'),
    ...tagged('cm_', f3Comb, '_3D_comb'),
  };
}
