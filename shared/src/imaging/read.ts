/** One entry point for single-file images: NIfTI, NRRD, or one DICOM image file. */
import { ImagingError } from './errors.js';
import { dicomSeriesToVolume, parseDicomFile } from './dicom.js';
import type { ImportLimits } from './limits.js';
import { readNiftiImage } from './nifti.js';
import { readNrrdImage } from './nrrd.js';
import { sniffFormat } from './sniff.js';
import type { ImageVolume } from './types.js';

/** Reads a NIfTI, NRRD or single-slice DICOM file held in memory; the format is sniffed from the bytes. Sizes are checked against `limits`. */
export function readImageFile(name: string, bytes: Uint8Array, limits: Partial<ImportLimits> = {}): ImageVolume {
  const kind = sniffFormat(name, bytes);
  switch (kind) {
    case 'nifti':
      return readNiftiImage(bytes, name, limits);
    case 'nrrd':
      return readNrrdImage(bytes, name, limits);
    case 'dicom': {
      const f = parseDicomFile(bytes, name, { limits });
      if (f.kind !== 'image') throw new ImagingError('TWF_E_IMPORT_REFERENCE', name, `is a DICOM ${f.kind} object, not an image`);
      return dicomSeriesToVolume([f], { limits });
    }
    default:
      throw new ImagingError(
        'TWF_E_IMPORT_UNKNOWN_FORMAT',
        name,
        kind === 'csv' ? 'is a CSV table, not an image' : 'is not a NIfTI (.nii/.nii.gz), NRRD (.nrrd) or DICOM file; convert it to one of these',
      );
  }
}
