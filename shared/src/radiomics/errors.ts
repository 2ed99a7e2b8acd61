import { defineErrors, errorClass, type ErrorSpec } from '@twinfed/protocols/define-errors';

/**
 * Errors of the radiomics feature extraction (the one catalogue of shared/src/radiomics, texture families included). `code` is stable (the CLI and UIs key on it); the message says
 * what was wrong and what to do about it.
 */
export const RADIOMICS_ERRORS = defineErrors({
  TWF_E_RADIOMICS_GRID: { message: 'The mask must lie on the same voxel grid as the image (same dims, spacing, origin and direction); resample the mask onto the image grid first.' },
  TWF_E_RADIOMICS_EMPTY_ROI: { message: 'The region of interest has no voxel left; check the mask label, and the re-segmentation range if one is set.' },
  TWF_E_RADIOMICS_SETTINGS: { message: 'A radiomics setting is missing or out of range; see docs/radiomics.md for the settings file format.' },
  TWF_E_RADIOMICS_FILE: { message: 'An input file (image, mask or settings) cannot be read or parsed; check the path and the file.' },
  TWF_E_RADIOMICS_INTENSITY: { message: 'The intensities cannot be used as they are with these settings; choose a discretisation (fbn or fbs) or check the image.' },
  TWF_E_TEXTURE_INPUT: { message: 'The discretised ROI handed to the texture features is inconsistent; fix the caller (dims, array lengths, grey levels).' },
  TWF_E_TEXTURE_SETTINGS: { message: 'A texture setting is out of range; use distance >= 1 (integer, voxels) and ngldmAlpha >= 0 (integer, grey levels).' },
});

export type RadiomicsErrorCode = keyof typeof RADIOMICS_ERRORS;

/** `CODE: detail (catalogue message)`. */
export class RadiomicsError extends errorClass('RadiomicsError', RADIOMICS_ERRORS, (code: string, spec: ErrorSpec, detail: string) => `${code}: ${detail} (${spec.message})`) {}
