/**
 * IBSI local intensity (3.2), intensity statistics (3.3), intensity histogram (3.4) and intensity-volume
 * histogram (3.5) features (IBSI reference manual, arXiv:1612.07003; Zwanenburg et al., Radiology 2020).
 *
 * Pure: no I/O.
 */

/** Percentile of sorted values by linear interpolation between closest ranks (Hyndman & Fan 1996, type 7). */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  const n = sorted.length;
  if (n === 1) return sorted[0];
  const h = (n - 1) * (p / 100);
  const lo = Math.floor(h);
  const hi = Math.min(n - 1, lo + 1);
  return sorted[lo] + (h - lo) * (sorted[hi] - sorted[lo]);
}

/**
 * The distribution statistics shared by IBSI 3.3 (on intensities, prefix `stat_`) and 3.4 (on discretised grey
 * levels, prefix `ih_`): mean, variance (biased, 1/N), skewness, excess kurtosis, median, min, 10th/90th
 * percentile, max, interquartile range, range, mean absolute deviation, robust mean absolute deviation (values
 * between the 10th and 90th percentile), median absolute deviation, coefficient of variation, quartile
 * coefficient of dispersion.
 */
export function distributionStats(values: ArrayLike<number>, prefix: string): Record<string, number> {
  const n = values.length;
  const x = Float64Array.from(values).sort();
  let mean = 0;
  for (let i = 0; i < n; i++) mean += x[i] / n;
  let m2 = 0,
    m3 = 0,
    m4 = 0,
    mad = 0;
  for (let i = 0; i < n; i++) {
    const d = x[i] - mean;
    m2 += (d * d) / n;
    m3 += (d * d * d) / n;
    m4 += (d * d * d * d) / n;
    mad += Math.abs(d) / n;
  }
  const median = percentile(x, 50);
  const p10 = percentile(x, 10),
    p90 = percentile(x, 90),
    p25 = percentile(x, 25),
    p75 = percentile(x, 75);
  const robust = x.filter((v) => v >= p10 && v <= p90);
  const rMean = robust.reduce((a, b) => a + b, 0) / robust.length;
  const rmad = robust.reduce((a, b) => a + Math.abs(b - rMean), 0) / robust.length;
  let medad = 0;
  for (let i = 0; i < n; i++) medad += Math.abs(x[i] - median) / n;
  const f: Record<string, number> = {
    [`${prefix}_mean`]: mean,
    [`${prefix}_var`]: m2,
    // Skewness m3 / m2^(3/2) and excess kurtosis m4 / m2^2 - 3 (IBSI 3.3.3-4); 0 for a constant ROI as IBSI says.
    [`${prefix}_skew`]: m2 === 0 ? 0 : m3 / Math.pow(m2, 1.5),
    [`${prefix}_kurt`]: m2 === 0 ? 0 : m4 / (m2 * m2) - 3,
    [`${prefix}_median`]: median,
    [`${prefix}_min`]: x[0],
    [`${prefix}_p10`]: p10,
    [`${prefix}_p90`]: p90,
    [`${prefix}_max`]: x[n - 1],
    [`${prefix}_iqr`]: p75 - p25,
    [`${prefix}_range`]: x[n - 1] - x[0],
    [`${prefix}_mad`]: mad,
    [`${prefix}_rmad`]: rmad,
    [`${prefix}_medad`]: medad,
    [`${prefix}_cov`]: Math.sqrt(m2) / mean,
    [`${prefix}_qcod`]: (p75 - p25) / (p75 + p25),
  };
  return f;
}

/** IBSI 3.3 intensity statistics: the distribution statistics plus energy (sum of squares) and root mean square. */
export function statisticsFeatures(values: ArrayLike<number>): Record<string, number> {
  const f = distributionStats(values, 'stat');
  let energy = 0;
  for (let i = 0; i < values.length; i++) energy += values[i] * values[i];
  f.stat_energy = energy;
  f.stat_rms = Math.sqrt(energy / values.length);
  return f;
}

/**
 * IBSI 3.4 intensity histogram features on grey levels 1..nLevels: the distribution statistics, mode (the most
 * frequent level; of several, the one closest to the mean), entropy (log2), uniformity, and the histogram
 * gradient H'(i) (forward difference at the first level, backward at the last, central in between) with its
 * maximum and minimum and the levels where they occur.
 */
export function histogramFeatures(levels: ArrayLike<number>, nLevels: number): Record<string, number> {
  const f = distributionStats(levels, 'ih');
  const n = levels.length;
  const H = new Float64Array(nLevels + 1);
  for (let i = 0; i < n; i++) H[levels[i]]++;
  const mean = f.ih_mean;
  let mode = 1;
  for (let g = 1; g <= nLevels; g++) {
    if (H[g] > H[mode] || (H[g] === H[mode] && Math.abs(g - mean) < Math.abs(mode - mean))) mode = g;
  }
  f.ih_mode = mode;
  let entropy = 0,
    uniformity = 0;
  for (let g = 1; g <= nLevels; g++) {
    const p = H[g] / n;
    if (p > 0) entropy -= p * Math.log2(p);
    uniformity += p * p;
  }
  f.ih_entropy = entropy;
  f.ih_uniformity = uniformity;
  if (nLevels >= 2) {
    let maxG = -Infinity,
      maxAt = 1,
      minG = Infinity,
      minAt = 1;
    for (let g = 1; g <= nLevels; g++) {
      const d = g === 1 ? H[2] - H[1] : g === nLevels ? H[g] - H[g - 1] : (H[g + 1] - H[g - 1]) / 2;
      if (d > maxG) {
        maxG = d;
        maxAt = g;
      }
      if (d < minG) {
        minG = d;
        minAt = g;
      }
    }
    f.ih_max_grad = maxG;
    f.ih_max_grad_g = maxAt;
    f.ih_min_grad = minG;
    f.ih_min_grad_g = minAt;
  }
  return f;
}

/**
 * IBSI 3.5 intensity-volume histogram. `levels` are the ROI's discrete grey levels (1..nLevels) and
 * `levelIntensity(g)` the intensity each level stands for (the level itself without discretisation, the bin
 * centre with fixed bin size). Fractional volume nu(g) = fraction of ROI voxels with level >= g; intensity
 * fraction gamma(g) = (g - gmin) / (gmax - gmin) over the level range [gmin, gmax].
 *  - V_x: volume fraction at the lowest level whose intensity fraction is >= x;
 *  - I_x: the lowest level whose fractional volume is <= x (one level above gmax when none is), as intensity.
 * ivh_auc has no IBSI consensus value and is not computed.
 */
export function ivhFeatures(levels: ArrayLike<number>, gmin: number, gmax: number, levelIntensity: (g: number) => number): Record<string, number> {
  const n = levels.length;
  const H = new Float64Array(gmax + 2);
  for (let i = 0; i < n; i++) H[levels[i]]++;
  // nu[g] for g in gmin..gmax+1
  const nu = new Float64Array(gmax + 2);
  let above = 0;
  for (let g = gmax + 1; g >= gmin; g--) {
    above += g <= gmax ? H[g] : 0;
    nu[g] = g <= gmax ? above / n : 0;
  }
  const gamma = (g: number) => (gmax === gmin ? 1 : (g - gmin) / (gmax - gmin));
  const V = (x: number) => {
    for (let g = gmin; g <= gmax; g++) if (gamma(g) >= x) return nu[g];
    return 0;
  };
  const I = (x: number) => {
    for (let g = gmin; g <= gmax; g++) if (nu[g] <= x) return levelIntensity(g);
    return levelIntensity(gmax + 1);
  };
  const v10 = V(0.1),
    v90 = V(0.9),
    i10 = I(0.1),
    i90 = I(0.9);
  return { ivh_v10: v10, ivh_v90: v90, ivh_i10: i10, ivh_i90: i90, ivh_diff_v10_v90: v10 - v90, ivh_diff_i10_i90: i10 - i90 };
}

/** Radius in mm of a sphere of 1 cm^3 (IBSI 3.2: r = (3 / (4 pi))^(1/3) cm). */
export const PEAK_SPHERE_RADIUS_MM = 10 * Math.cbrt(3 / (4 * Math.PI));

/**
 * IBSI 3.2 local intensity peaks: the mean intensity of all image voxels whose centres lie within a 1 cm^3 sphere
 * around a voxel. `loc_peak_loc`: around the intensity-ROI voxel(s) of highest intensity (the highest mean if
 * several); `loc_peak_glob`: the highest mean around any intensity-ROI voxel. Voxels outside the image are not
 * counted.
 */
export function localIntensityFeatures(data: Float32Array | Float64Array, dims: [number, number, number], spacingMm: [number, number, number], roi: Uint8Array): Record<string, number> {
  const [nx, ny, nz] = dims;
  const r = PEAK_SPHERE_RADIUS_MM;
  const offs: [number, number, number][] = [];
  const ri = [0, 1, 2].map((a) => Math.floor(r / spacingMm[a]));
  for (let dk = -ri[2]; dk <= ri[2]; dk++)
    for (let dj = -ri[1]; dj <= ri[1]; dj++)
      for (let di = -ri[0]; di <= ri[0]; di++) {
        if ((di * spacingMm[0]) ** 2 + (dj * spacingMm[1]) ** 2 + (dk * spacingMm[2]) ** 2 <= r * r) offs.push([di, dj, dk]);
      }
  const meanAround = (q: number) => {
    const i = q % nx,
      j = Math.floor(q / nx) % ny,
      k = Math.floor(q / (nx * ny));
    let s = 0,
      c = 0;
    for (const [di, dj, dk] of offs) {
      const a = i + di,
        b = j + dj,
        e = k + dk;
      if (a < 0 || b < 0 || e < 0 || a >= nx || b >= ny || e >= nz) continue;
      s += data[a + nx * (b + ny * e)];
      c++;
    }
    return s / c;
  };
  let maxI = -Infinity;
  for (let q = 0; q < roi.length; q++) if (roi[q] && data[q] > maxI) maxI = data[q];
  let peakLoc = -Infinity,
    peakGlob = -Infinity;
  for (let q = 0; q < roi.length; q++) {
    if (!roi[q]) continue;
    const m = meanAround(q);
    if (m > peakGlob) peakGlob = m;
    if (data[q] === maxI && m > peakLoc) peakLoc = m;
  }
  return { loc_peak_loc: peakLoc, loc_peak_glob: peakGlob };
}
