/**
 * IBSI texture feature families (IBSI reference manual, Zwanenburg et al., arXiv:1612.07003, sections
 * 3.6-3.11; Radiology 2020): GLCM, GLRLM, GLSZM, GLDZM, NGTDM, NGLDM.
 *
 * Pure functions: no files, no I/O. Each family's matrix builder and feature function (glcmMatrix +
 * glcmFeatures, glrlmMatrix + glrlmFeatures, glszmMatrix, gldzmMatrix, ngtdmMatrices, ngldmMatrices, ...) is
 * re-exported here and usable on its own.
 */
import { TextureError, validateGrid } from './common.js';
import { glcmTextureFeatures } from './glcm.js';
import { gldzmTextureFeatures } from './gldzm.js';
import { glrlmTextureFeatures } from './glrlm.js';
import { glszmTextureFeatures, labelZones } from './glszm.js';
import { ngldmTextureFeatures } from './ngldm.js';
import { ngtdmTextureFeatures } from './ngtdm.js';

export { DIRECTIONS_2D, DIRECTIONS_3D, type LevelGrid, MAX_TEXTURE_LEVELS, type SizeMatrix, type SliceRange, TextureError, type TextureErrorCode } from './common.js';
export * from './glcm.js';
export * from './glrlm.js';
export * from './glszm.js';
export * from './gldzm.js';
export * from './ngtdm.js';
export * from './ngldm.js';

export interface DiscretisedRoi {
  dims: [number, number, number]; // x fastest: index = i + nx * (j + ny * k)
  spacingMm: [number, number, number];
  levels: Int32Array; // grey level 1..nLevels inside the intensity ROI, 0 outside
  morphMask: Uint8Array; // morphological ROI mask (1 inside), for GLDZM distances
  nLevels: number;
}

export interface TextureSettings {
  /** Neighbour distance in voxels (Chebyshev) for GLCM, NGTDM and NGLDM; default 1 (IBSI 3.6, 3.10, 3.11). */
  distance?: number;
  /** NGLDM coarseness parameter alpha in grey levels; default 0 (IBSI 3.11). */
  ngldmAlpha?: number;
}

/**
 * All GLCM, GLRLM, GLSZM, GLDZM, NGTDM, NGLDM features keyed by IBSI tag with aggregation suffix.
 *
 * Keys: cm_* and rlm_* with _2D_avg, _2D_comb, _2_5D_avg, _2_5D_comb, _3D_avg, _3D_comb; szm_*, dzm_*,
 * ngt_*, ngl_* with _2D, _2_5D, _3D (IBSI 3.1 aggregation; "2D" slices are planes of constant k, the
 * slowest axis). A feature with no defined value (e.g. GLCM correlation of a one-level ROI) is NaN; an
 * ROI with no voxels gives no keys. Voxel spacing does not enter any texture feature (IBSI texture matrices
 * count voxel steps), it is part of the input only for completeness.
 */
export function textureFeatures(roi: DiscretisedRoi, settings?: TextureSettings): Record<string, number> {
  validateGrid(roi);
  const n = roi.dims[0] * roi.dims[1] * roi.dims[2];
  if (roi.morphMask.length !== n) {
    throw new TextureError('TWF_E_TEXTURE_INPUT', `morphMask has ${roi.morphMask.length} voxels but dims need ${n}`);
  }
  const distance = settings?.distance ?? 1;
  const alpha = settings?.ngldmAlpha ?? 0;
  if (!Number.isInteger(distance) || distance < 1) {
    throw new TextureError('TWF_E_TEXTURE_SETTINGS', `distance must be an integer >= 1 voxel, got ${distance}`);
  }
  if (!Number.isInteger(alpha) || alpha < 0) {
    throw new TextureError('TWF_E_TEXTURE_SETTINGS', `ngldmAlpha must be an integer >= 0 grey levels, got ${alpha}`);
  }
  // GLSZM and GLDZM share their zones (IBSI 3.9 defines the GLDZM zones as the GLSZM ones).
  const zones = { '2D': labelZones(roi, '2D'), '3D': labelZones(roi, '3D') };
  return {
    ...glcmTextureFeatures(roi, distance),
    ...glrlmTextureFeatures(roi),
    ...glszmTextureFeatures(roi, zones),
    ...gldzmTextureFeatures(roi, roi.morphMask, zones),
    ...ngtdmTextureFeatures(roi, distance),
    ...ngldmTextureFeatures(roi, distance, alpha),
  };
}
