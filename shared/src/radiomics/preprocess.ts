/**
 * IBSI image processing (IBSI reference manual, arXiv:1612.07003, chapter 2): interpolation (2.4), ROI masks
 * and re-segmentation (2.5-2.6), intensity discretisation (2.7).
 *
 * Pure: no I/O.
 */
import { RadiomicsError } from './errors.js';
import type { RadiomicsSettings } from './settings.js';

/** A scalar volume on a grid (the part of ImageVolume the processing steps need). */
export interface Grid {
  dims: [number, number, number];
  spacingMm: [number, number, number];
  originMm: [number, number, number];
  direction: number[];
  data: Float32Array;
}

/** Throws TWF_E_RADIOMICS_GRID unless image and mask share dims, spacing, origin and direction. */
export function checkSameGrid(image: Grid, mask: Grid): void {
  const bad: string[] = [];
  if (image.dims.some((d, a) => d !== mask.dims[a])) bad.push(`dims ${image.dims.join('x')} vs ${mask.dims.join('x')}`);
  const close = (x: number[], y: number[], tol: number) => x.every((v, a) => Math.abs(v - y[a]) <= tol);
  if (!close(image.spacingMm, mask.spacingMm, 1e-4)) bad.push(`spacing ${image.spacingMm.join(',')} vs ${mask.spacingMm.join(',')} mm`);
  if (!close(image.originMm, mask.originMm, 1e-3)) bad.push(`origin ${image.originMm.join(',')} vs ${mask.originMm.join(',')} mm`);
  if (!close(image.direction, mask.direction, 1e-4)) bad.push('direction cosines differ');
  if (image.data.length !== image.dims[0] * image.dims[1] * image.dims[2]) bad.push(`image has ${image.data.length} voxels, dims say ${image.dims.join('x')}`);
  if (bad.length) throw new RadiomicsError('TWF_E_RADIOMICS_GRID', `image and mask grids differ: ${bad.join('; ')}`);
}

/**
 * Trilinear resampling onto a grid of spacing `spacingMm` whose centre coincides with the original grid's
 * centre (IBSI 2.4, "align grid centres"): n_b = ceil(n_a s_a / s_b), and new voxel m sits at original index
 * (s_a (n_a - 1) - s_b (n_b - 1)) / (2 s_a) + m s_b / s_a. Positions outside the original grid take the nearest
 * edge value.
 */
export function resampleTrilinear(g: Grid, spacingMm: [number, number, number]): Grid {
  const [na, nb] = g.dims;
  const n = [0, 1, 2].map((a) => Math.max(1, Math.ceil((g.dims[a] * g.spacingMm[a]) / spacingMm[a] - 1e-9))) as [number, number, number];
  const start = [0, 1, 2].map((a) => (g.spacingMm[a] * (g.dims[a] - 1) - spacingMm[a] * (n[a] - 1)) / (2 * g.spacingMm[a]));
  const step = [0, 1, 2].map((a) => spacingMm[a] / g.spacingMm[a]);
  // Per-axis lower index and weight, clamped to the grid.
  const axis = (a: number) => {
    const lo = new Int32Array(n[a]),
      hi = new Int32Array(n[a]),
      w = new Float64Array(n[a]);
    const max = g.dims[a] - 1;
    for (let m = 0; m < n[a]; m++) {
      const u = Math.min(max, Math.max(0, start[a] + m * step[a]));
      lo[m] = Math.floor(u);
      hi[m] = Math.min(max, lo[m] + 1);
      w[m] = u - lo[m];
    }
    return { lo, hi, w };
  };
  const X = axis(0),
    Y = axis(1),
    Z = axis(2);
  const out = new Float32Array(n[0] * n[1] * n[2]);
  const at = (i: number, j: number, k: number) => g.data[i + na * (j + nb * k)];
  for (let k = 0; k < n[2]; k++)
    for (let j = 0; j < n[1]; j++)
      for (let i = 0; i < n[0]; i++) {
        const x0 = X.lo[i],
          x1 = X.hi[i],
          wx = X.w[i];
        const y0 = Y.lo[j],
          y1 = Y.hi[j],
          wy = Y.w[j];
        const z0 = Z.lo[k],
          z1 = Z.hi[k],
          wz = Z.w[k];
        const c00 = at(x0, y0, z0) * (1 - wx) + at(x1, y0, z0) * wx;
        const c10 = at(x0, y1, z0) * (1 - wx) + at(x1, y1, z0) * wx;
        const c01 = at(x0, y0, z1) * (1 - wx) + at(x1, y0, z1) * wx;
        const c11 = at(x0, y1, z1) * (1 - wx) + at(x1, y1, z1) * wx;
        out[i + n[0] * (j + n[1] * k)] = (c00 * (1 - wy) + c10 * wy) * (1 - wz) + (c01 * (1 - wy) + c11 * wy) * wz;
      }
  // New origin: original origin moved by D * (start index * original spacing).
  const shift = [0, 1, 2].map((a) => start[a] * g.spacingMm[a]);
  const D = g.direction;
  const originMm = [0, 1, 2].map((r) => g.originMm[r] + D[3 * r] * shift[0] + D[3 * r + 1] * shift[1] + D[3 * r + 2] * shift[2]) as [number, number, number];
  return { dims: n, spacingMm: [...spacingMm] as [number, number, number], originMm, direction: [...g.direction], data: out };
}

export interface Rois {
  /** Morphological ROI (1 inside): the (resampled) mask. */
  morphMask: Uint8Array;
  /** Intensity ROI (1 inside): the morphological ROI after re-segmentation. */
  intensityMask: Uint8Array;
  nMorph: number;
  nIntensity: number;
}

/**
 * The two ROI masks of IBSI 2.5-2.6. `maskValues` is the (possibly resampled) mask; a voxel is in the ROI when its
 * value >= threshold. Re-segmentation keeps intensities in [minIntensity, maxIntensity] and, with outlierSigma,
 * within mean +/- outlierSigma * sd of the ROI (IBSI 2.5, outlier filtering), both applied to the intensity ROI only.
 */
export function buildRois(image: Float32Array, maskValues: Float32Array, threshold: number, reseg: RadiomicsSettings['resegmentation']): Rois {
  const n = image.length;
  const morphMask = new Uint8Array(n);
  const intensityMask = new Uint8Array(n);
  let nMorph = 0;
  for (let q = 0; q < n; q++)
    if (maskValues[q] >= threshold) {
      morphMask[q] = 1;
      nMorph++;
    }
  if (nMorph === 0) throw new RadiomicsError('TWF_E_RADIOMICS_EMPTY_ROI', 'the mask has no voxel inside the ROI (no non-zero voxel)');
  let lo = reseg?.minIntensity ?? -Infinity;
  let hi = reseg?.maxIntensity ?? Infinity;
  if (reseg?.outlierSigma !== undefined) {
    let s = 0,
      s2 = 0;
    for (let q = 0; q < n; q++)
      if (morphMask[q]) {
        s += image[q];
        s2 += image[q] * image[q];
      }
    const mean = s / nMorph;
    const sd = Math.sqrt(Math.max(0, s2 / nMorph - mean * mean));
    lo = Math.max(lo, mean - reseg.outlierSigma * sd);
    hi = Math.min(hi, mean + reseg.outlierSigma * sd);
  }
  let nIntensity = 0;
  for (let q = 0; q < n; q++)
    if (morphMask[q] && image[q] >= lo && image[q] <= hi) {
      intensityMask[q] = 1;
      nIntensity++;
    }
  if (nIntensity === 0) throw new RadiomicsError('TWF_E_RADIOMICS_EMPTY_ROI', `no ROI voxel has an intensity within the re-segmentation range [${lo}, ${hi}] (the ROI has ${nMorph} voxels)`);
  return { morphMask, intensityMask, nMorph, nIntensity };
}

export interface Discretised {
  /** Grey level 1..nLevels inside the intensity ROI, 0 outside. */
  levels: Int32Array;
  nLevels: number;
  /** Intensity a grey level stands for (the level itself for `none`, the bin centre for `fbs`, the level for `fbn`). */
  levelIntensity: (g: number) => number;
  /** Level range used by the intensity-volume histogram. */
  ivhRange: [number, number];
}

/**
 * Intensity discretisation (IBSI 2.7):
 *  - fixed bin number: X_d = floor(N_g (X - X_min) / (X_max - X_min)) + 1, and N_g at X = X_max (IBSI eq. 2.7.1);
 *  - fixed bin size: X_d = floor((X - X_0) / w_b) + 1 (IBSI eq. 2.7.2), X_0 the lower re-segmentation bound or the
 *    ROI minimum (`roi-min`), or the largest multiple of w_b not above the ROI minimum (`zero`, PyRadiomics);
 *  - none: the intensities are the grey levels; they must be integers >= 1.
 */
export function discretise(image: Float32Array, roi: Uint8Array, settings: RadiomicsSettings): Discretised {
  let min = Infinity,
    max = -Infinity;
  for (let q = 0; q < roi.length; q++)
    if (roi[q]) {
      if (image[q] < min) min = image[q];
      if (image[q] > max) max = image[q];
    }
  const levels = new Int32Array(roi.length);
  const d = settings.discretisation;
  if (d.method === 'none') {
    for (let q = 0; q < roi.length; q++) {
      if (!roi[q]) continue;
      const v = image[q];
      if (!Number.isInteger(v) || v < 1) {
        throw new RadiomicsError('TWF_E_RADIOMICS_INTENSITY', `discretisation "none" needs integer intensities >= 1 in the ROI, found ${v}`);
      }
      levels[q] = v;
    }
    if (max > 65536) throw new RadiomicsError('TWF_E_RADIOMICS_INTENSITY', `discretisation "none" with grey levels up to ${max}: too many levels for the texture matrices`);
    return { levels, nLevels: max, levelIntensity: (g) => g, ivhRange: [min, max] };
  }
  if (d.method === 'fbn') {
    const Ng = d.bins;
    for (let q = 0; q < roi.length; q++) {
      if (!roi[q]) continue;
      levels[q] = max === min ? 1 : Math.min(Ng, Math.floor((Ng * (image[q] - min)) / (max - min)) + 1);
    }
    return { levels, nLevels: Ng, levelIntensity: (g) => g, ivhRange: [1, Ng] };
  }
  const w = d.binWidth;
  const x0 = d.binOrigin === 'zero' ? Math.floor(min / w) * w : (settings.resegmentation?.minIntensity ?? min);
  let nLevels = 1;
  for (let q = 0; q < roi.length; q++) {
    if (!roi[q]) continue;
    const g = Math.floor((image[q] - x0) / w) + 1;
    levels[q] = g;
    if (g > nLevels) nLevels = g;
  }
  if (nLevels > 65536) throw new RadiomicsError('TWF_E_RADIOMICS_SETTINGS', `bin width ${w} gives ${nLevels} grey levels; use a larger binWidth`);
  let gmin = nLevels;
  for (let q = 0; q < roi.length; q++) if (roi[q] && levels[q] < gmin) gmin = levels[q];
  return { levels, nLevels, levelIntensity: (g) => x0 + (g - 0.5) * w, ivhRange: [gmin, nLevels] };
}
