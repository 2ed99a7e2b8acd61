import { TwinfedError, defineErrors } from '@twinfed/protocols/define-errors';

/**
 * Errors of the imaging importers. `code` is stable (UIs and the CLI key on it);
 * the message says which file, what is wrong, and what to do about it.
 */
export const IMAGING_ERRORS = defineErrors({
  TWF_E_IMPORT_CORRUPT: { message: 'The file is truncated or damaged; re-export or re-copy it from the source system.' },
  TWF_E_IMPORT_UNSUPPORTED: { message: 'The file is valid but uses a feature this importer does not read; convert it (e.g. to uncompressed DICOM or NIfTI).' },
  TWF_E_IMPORT_GEOMETRY: { message: 'The image geometry is inconsistent or cannot be represented as one regular 3D grid.' },
  TWF_E_IMPORT_UNKNOWN_FORMAT: { message: 'The file is not a NIfTI, NRRD or DICOM file.' },
  TWF_E_IMPORT_REFERENCE: { message: 'A referenced object (series, ROI, slice) is missing or does not match.' },
  TWF_E_IMPORT_TOO_LARGE: {
    message:
      'The file would take more memory than an import limit allows (voxels, decompressed bytes, compression ratio, contour points, mask voxels): a decompression bomb or a damaged header; if it is genuine, raise the limit the message names.',
  },
});

export type ImagingErrorCode = keyof typeof IMAGING_ERRORS;

/** `CODE: file: detail`. */
export class ImagingError extends TwinfedError<ImagingErrorCode> {
  /** File (name or path) the error is about, when there is one. */
  readonly file?: string;
  constructor(code: ImagingErrorCode, file: string | undefined, detail: string, options?: { cause?: unknown }) {
    super(code, `${code}: ${file ? `${file}: ` : ''}${detail}`, detail, options);
    this.name = 'ImagingError';
    if (file !== undefined) this.file = file;
  }
}

/** Text of anything thrown by a library (dicom-parser throws strings and `{ exception }` objects). */
export function describeThrown(e: unknown): string {
  if (e instanceof Error) return e.message;
  if (typeof e === 'string') return e;
  if (e && typeof e === 'object' && 'exception' in e) return String((e as { exception: unknown }).exception);
  return String(e);
}

/** Runs `f`; anything it throws that is not already an ImagingError becomes one with `code`. */
export function wrapThrown<T>(code: ImagingErrorCode, file: string | undefined, what: string, f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (e instanceof ImagingError) throw e;
    throw new ImagingError(code, file, `${what}: ${describeThrown(e)}`, { cause: e });
  }
}
