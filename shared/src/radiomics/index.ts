/**
 * IBSI chapter 1 radiomics features (Zwanenburg et al., "The Image Biomarker Standardization Initiative",
 * Radiology 2020; IBSI reference manual, arXiv:1612.07003): image processing, morphology, local intensity,
 * intensity statistics, intensity histogram, intensity-volume histogram, and (from ./texture/) GLCM, GLRLM,
 * GLSZM, GLDZM, NGTDM and NGLDM. Features are keyed by IBSI tag (as in the IBSI reference tables).
 *
 * Pure: takes volumes in memory, returns numbers. Reading files is the caller's job (imaging/ readers).
 */
import type { ImageVolume, MaskVolume } from '../imaging/types.js';
import { RadiomicsError } from './errors.js';
import { histogramFeatures, ivhFeatures, localIntensityFeatures, PEAK_SPHERE_RADIUS_MM, statisticsFeatures } from './intensity.js';
import { morphologyFeatures } from './morphology.js';
import { buildRois, checkSameGrid, discretise, resampleTrilinear, type Grid } from './preprocess.js';
import { FAMILIES, type Family, type RadiomicsSettings } from './settings.js';
import { textureFeatures } from './texture/index.js';

export { RadiomicsError, RADIOMICS_ERRORS, type RadiomicsErrorCode } from './errors.js';
export { parseRadiomicsSettings, RadiomicsSettingsSchema, FAMILIES, PYRADIOMICS_DEFAULT_SETTINGS, type RadiomicsSettings, type Family } from './settings.js';
export { marchingCubes, meshVolumeMm3, meshAreaMm2, type Mesh } from './mesh.js';
export { convexHull, type Hull } from './hull.js';
export { discretise, resampleTrilinear, buildRois, checkSameGrid } from './preprocess.js';
export { distributionStats, statisticsFeatures, histogramFeatures, ivhFeatures, localIntensityFeatures, percentile, PEAK_SPHERE_RADIUS_MM } from './intensity.js';
export { morphologyFeatures, ellipsoidArea, symmetricEigenvalues3 } from './morphology.js';

/** Which family a feature tag belongs to (its prefix before the first underscore). */
export function familyOfTag(tag: string): string {
  return tag.slice(0, tag.indexOf('_'));
}

export interface RadiomicsResult {
  /** Feature value by IBSI tag (texture tags carry their aggregation suffix, e.g. `cm_joint_max_3D_avg`). */
  features: Record<string, number>;
  /** Things the user should know: left-out features, resampling done, ... */
  warnings: string[];
}

/**
 * Computes the IBSI features of the ROI `mask != 0` on `image`.
 * Throws RadiomicsError: TWF_E_RADIOMICS_GRID (mask not on the image grid), TWF_E_RADIOMICS_EMPTY_ROI,
 * TWF_E_RADIOMICS_INTENSITY (non-finite intensities in the ROI, or non-integer grey levels without
 * discretisation), TWF_E_RADIOMICS_SETTINGS.
 */
export function extractRadiomics(image: ImageVolume, mask: MaskVolume | ImageVolume, settings: RadiomicsSettings): RadiomicsResult {
  const warnings: string[] = [];
  checkSameGrid(image, mask);
  const families = new Set<Family>(settings.families ?? FAMILIES);
  const dimensions = settings.dimensions ?? ['2D', '2.5D', '3D'];

  // 1. Interpolation (IBSI 2.4): image trilinear; mask as 0/1 trilinear then thresholded (partial volume).
  let img: Grid = { dims: image.dims, spacingMm: image.spacingMm, originMm: image.originMm, direction: image.direction, data: image.data };
  const bin = new Float32Array(mask.data.length);
  for (let q = 0; q < bin.length; q++) bin[q] = mask.data[q] !== 0 && !Number.isNaN(mask.data[q]) ? 1 : 0;
  let msk: Grid = { ...img, data: bin };
  let threshold = 0.5;
  if (settings.resampling) {
    const sp = settings.resampling.spacingMm;
    img = resampleTrilinear(img, sp);
    msk = resampleTrilinear(msk, sp);
    threshold = settings.resampling.partialVolumeThreshold ?? 0.5;
    if (settings.resampling.roundIntensities) img.data = img.data.map(Math.round);
    warnings.push(`resampled from ${image.spacingMm.join(' x ')} mm (${image.dims.join('x')}) to ${sp.join(' x ')} mm (${img.dims.join('x')}), trilinear, grid centres aligned`);
  }

  // 2. ROI masks and re-segmentation (IBSI 2.5-2.6).
  const rois = buildRois(img.data, msk.data, threshold, settings.resegmentation);
  for (let q = 0; q < img.data.length; q++) {
    if (rois.morphMask[q] && !Number.isFinite(img.data[q])) {
      throw new RadiomicsError('TWF_E_RADIOMICS_INTENSITY', `the image has a non-finite intensity (${img.data[q]}) inside the ROI at voxel index ${q}`);
    }
  }

  // Crop to the ROI's bounding box plus the local-intensity sphere radius (plus one voxel of background for the
  // mesh and distance zones); features do not change, work shrinks.
  const c = cropToRoi(
    img,
    rois.morphMask,
    rois.intensityMask,
    [0, 1, 2].map((a) => Math.ceil(PEAK_SPHERE_RADIUS_MM / img.spacingMm[a]) + 1),
  );
  const { dims, spacingMm } = c;
  const roiValues: number[] = [];
  for (let q = 0; q < c.data.length; q++) if (c.intensityMask[q]) roiValues.push(c.data[q]);

  const features: Record<string, number> = {};
  if (families.has('morph')) {
    Object.assign(
      features,
      morphologyFeatures(
        {
          dims,
          spacingMm,
          morphMask: c.morphMask,
          intensityMask: c.intensityMask,
          intensities: c.data,
          maxVoxelsForPairwise: settings.maxVoxelsForPairwise ?? 20000,
        },
        warnings,
      ),
    );
  }
  if (families.has('loc')) Object.assign(features, localIntensityFeatures(c.data, dims, spacingMm, c.intensityMask));
  if (families.has('stat')) Object.assign(features, statisticsFeatures(roiValues));

  if (families.has('ih') || families.has('ivh') || families.has('texture')) {
    const d = discretise(c.data, c.intensityMask, settings);
    const roiLevels: number[] = [];
    for (let q = 0; q < d.levels.length; q++) if (c.intensityMask[q]) roiLevels.push(d.levels[q]);
    if (families.has('ih')) Object.assign(features, histogramFeatures(roiLevels, d.nLevels));
    if (families.has('ivh')) Object.assign(features, ivhFeatures(roiLevels, d.ivhRange[0], d.ivhRange[1], d.levelIntensity));
    if (families.has('texture')) {
      const t = textureFeatures({ dims, spacingMm, levels: d.levels, morphMask: c.morphMask, nLevels: d.nLevels }, { distance: settings.textureDistance ?? 1, ngldmAlpha: settings.ngldmAlpha ?? 0 });
      const wanted = (tag: string) =>
        (dimensions.includes('2D') && /_2D(_|$)/.test(tag)) || (dimensions.includes('2.5D') && /_2_5D(_|$)/.test(tag)) || (dimensions.includes('3D') && /_3D(_|$)/.test(tag));
      for (const [tag, v] of Object.entries(t)) if (wanted(tag)) features[tag] = v;
    }
  }
  // Features IBSI leaves undefined for this ROI (e.g. PCA axes of a single voxel, ellipsoid densities of a
  // line of voxels): NaN, said once.
  const undefinedTags = Object.keys(features).filter((t) => !Number.isFinite(features[t]));
  for (const t of undefinedTags) features[t] = NaN;
  if (undefinedTags.length) {
    warnings.push(`${undefinedTags.length} features are undefined for this ROI (NaN; null in JSON): ${undefinedTags.slice(0, 10).join(', ')}${undefinedTags.length > 10 ? ', ...' : ''}`);
  }
  return { features, warnings };
}

/** Crops image and both masks to the ROI bounding box grown by `margin` voxels per axis (clamped to the grid). */
function cropToRoi(g: Grid, morph: Uint8Array, inten: Uint8Array, margin: number[]) {
  const [nx, ny, nz] = g.dims;
  const lo = [nx, ny, nz],
    hi = [-1, -1, -1];
  for (let k = 0; k < nz; k++)
    for (let j = 0; j < ny; j++)
      for (let i = 0; i < nx; i++) {
        if (!morph[i + nx * (j + ny * k)]) continue;
        const p = [i, j, k];
        for (let a = 0; a < 3; a++) {
          if (p[a] < lo[a]) lo[a] = p[a];
          if (p[a] > hi[a]) hi[a] = p[a];
        }
      }
  const a0 = [0, 1, 2].map((a) => Math.max(0, lo[a] - margin[a]));
  const a1 = [0, 1, 2].map((a) => Math.min(g.dims[a] - 1, hi[a] + margin[a]));
  const dims = [0, 1, 2].map((a) => a1[a] - a0[a] + 1) as [number, number, number];
  const n = dims[0] * dims[1] * dims[2];
  const data = new Float32Array(n),
    morphMask = new Uint8Array(n),
    intensityMask = new Uint8Array(n);
  for (let k = 0; k < dims[2]; k++)
    for (let j = 0; j < dims[1]; j++)
      for (let i = 0; i < dims[0]; i++) {
        const src = i + a0[0] + nx * (j + a0[1] + ny * (k + a0[2]));
        const dst = i + dims[0] * (j + dims[1] * k);
        data[dst] = g.data[src];
        morphMask[dst] = morph[src];
        intensityMask[dst] = inten[src];
      }
  return { dims, spacingMm: g.spacingMm, data, morphMask, intensityMask };
}
