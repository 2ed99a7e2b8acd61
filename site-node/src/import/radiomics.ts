import type { ImageVolume, MaskVolume } from '@twinfed/shared/imaging/index';
import { extractRadiomics, PYRADIOMICS_DEFAULT_SETTINGS, type RadiomicsSettings } from '@twinfed/shared/radiomics/index';

/**
 * Settings for the radiomics computed at import: PyRadiomics' defaults (fixed bin width 25, 3D, distance 1;
 * van Griethuysen et al., Cancer Res 2017), except for PET, whose SUVs (typically 0-20) would all fall into one
 * bin of width 25: there the bin width is 0.25 SUV (a few dozen bins over a tumour's range, within the 30-130
 * bins PyRadiomics' documentation recommends for most lesions).
 */
export function importRadiomicsSettings(modality: string): { name: string; settings: RadiomicsSettings } {
  if (modality === 'PET') {
    return { name: 'pyradiomics-default-pet', settings: { ...PYRADIOMICS_DEFAULT_SETTINGS, discretisation: { method: 'fbs', binWidth: 0.25, binOrigin: 'zero' } } };
  }
  return { name: 'pyradiomics-default', settings: PYRADIOMICS_DEFAULT_SETTINGS };
}

export type ImportRadiomics = { ok: true; name: string; features: Record<string, number>; warnings: string[] } | { ok: false; name: string; reason: string };

/**
 * IBSI features of the voxels of `mask` equal to `label`, on `image`. Never throws: a problem of the ROI (mask
 * on another grid, empty ROI, non-finite intensities, too many grey levels) is returned as the reason, so the
 * import goes on and says why features are missing.
 */
export function radiomicsForMask(image: ImageVolume, mask: MaskVolume, label: number, modality: string): ImportRadiomics {
  const { name, settings } = importRadiomicsSettings(modality);
  try {
    const roi = { ...mask, data: Float32Array.from(mask.data, (v) => (v === label ? 1 : 0)) };
    const { features, warnings } = extractRadiomics(image, roi, settings);
    return { ok: true, name, features, warnings };
  } catch (e) {
    // RadiomicsError (grid, empty ROI, intensities) or TextureError (e.g. too many grey levels for the texture
    // matrices): the mask is still imported, without features, and the import row says why.
    return { ok: false, name, reason: e instanceof Error ? e.message : String(e) };
  }
}
