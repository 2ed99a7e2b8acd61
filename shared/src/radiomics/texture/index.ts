/**
 * IBSI texture feature families (IBSI reference manual, arXiv:1612.07003, sections 3.6-3.11):
 * GLCM, GLRLM, GLSZM, GLDZM, NGTDM, NGLDM.
 *
 * Pure functions: no files, no I/O.
 */

export interface DiscretisedRoi {
  dims: [number, number, number]; // x fastest: index = i + nx * (j + ny * k)
  spacingMm: [number, number, number];
  levels: Int32Array; // grey level 1..nLevels inside the intensity ROI, 0 outside
  morphMask: Uint8Array; // morphological ROI mask (1 inside), for GLDZM distances
  nLevels: number;
}

export interface TextureSettings {
  distance?: number;
  ngldmAlpha?: number;
}

/** All GLCM, GLRLM, GLSZM, GLDZM, NGTDM, NGLDM features keyed by IBSI tag with aggregation suffix. */
export function textureFeatures(roi: DiscretisedRoi, settings?: TextureSettings): Record<string, number> {
  void roi;
  void settings;
  return {};
}
