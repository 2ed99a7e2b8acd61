/** Format detection from magic numbers (and the name, for gzip files that will not inflate and for CSV). */
import { looksLikeDicom } from './dicom.js';
import { gunzipPrefix, isGzip } from './gzip.js';
import { niftiHeaderKind } from './nifti.js';
import { isNrrd } from './nrrd.js';

export type SniffedFormat = 'nifti' | 'nrrd' | 'dicom' | 'csv' | 'unknown';

function sniffPlain(name: string, b: Uint8Array): SniffedFormat {
  if (b.length >= 132 && b[128] === 0x44 && b[129] === 0x49 && b[130] === 0x43 && b[131] === 0x4d) return 'dicom';
  if (isNrrd(b)) return 'nrrd';
  if (niftiHeaderKind(b) != null && b.length >= 348) return 'nifti';
  if (looksLikeDicom(b)) return 'dicom';
  if (/\.(csv|tsv)$/i.test(name) && !b.subarray(0, 4096).includes(0)) return 'csv';
  return 'unknown';
}

/**
 * 'dicom': "DICM" at byte 128, or a raw data set (group 0002/0008 at byte 0);
 * 'nrrd': "NRRD000x" magic; 'nifti': sizeof_hdr 348 (NIfTI-1/Analyze) or 540 (NIfTI-2) in either
 * byte order; gzip: the same checks on the inflated start (name decides when it does not inflate);
 * 'csv': a .csv/.tsv name and no NUL bytes. `bytes` may be just the first few KiB of the file.
 */
export function sniffFormat(name: string, bytes: Uint8Array): SniffedFormat {
  if (isGzip(bytes)) {
    const inner = gunzipPrefix(bytes);
    const base = name.replace(/\.gz$/i, '');
    const k = inner ? sniffPlain(base, inner) : 'unknown';
    if (k !== 'unknown') return k;
    if (/\.nii$/i.test(base)) return 'nifti';
    if (/\.nrrd$/i.test(base)) return 'nrrd';
    return 'unknown';
  }
  return sniffPlain(name, bytes);
}
