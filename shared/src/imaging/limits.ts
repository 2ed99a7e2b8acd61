/**
 * Caps on what one imported file may make the importer allocate. Image files come from
 * elsewhere: a 500 KB .nii.gz can inflate to gigabytes (a gzip bomb), and a 400-byte header can
 * declare a grid of 2^31 voxels. Every reader checks the sizes a header declares before it
 * allocates from them, and inflates with an output cap, so such a file is refused with
 * TWF_E_IMPORT_TOO_LARGE within about the cap's memory.
 *
 * The compression-ratio rule: deflate cannot exceed about 1032:1, and real masks come close
 * (an all-background uint8 label map gzips about 1000:1), so a plain "no more than 200:1" would
 * refuse real masks. The ratio is therefore only enforced on output beyond
 * `compressionRatioFloorBytes` (320 MiB): every uint8 mask the voxel cap admits (2^28 voxels =
 * 256 MiB, plus its header) inflates below the floor whatever its ratio, while a 500 KB file is
 * stopped after 320 MiB of output instead of being inflated to the 1 GiB byte cap. Images
 * (CT, MR, PET: int16 or float) compress 2-10:1 and never meet the ratio rule.
 */
import { ImagingError } from './errors.js';

export interface ImportLimits {
  /**
   * Voxels of the volume a reader builds: nx·ny·nz (NIfTI, NRRD; later axes are not read),
   * Rows·Columns·frames of a DICOM file, Rows·Columns·slices of a DICOM series. Each voxel costs
   * 4 bytes (Float32). Default 2^28 (a 1 GiB volume).
   */
  maxVoxels: number;
  /**
   * Bytes of one file's data once decompressed: the size its header declares (all volumes, before
   * anything is inflated), the size it inflates to, and the file's own size when stored
   * uncompressed. Default 1 GiB.
   */
  maxDecompressedBytes: number;
  /** Decompressed / compressed bytes, enforced beyond `compressionRatioFloorBytes` only. Default 200; 0 or Infinity: off. */
  maxCompressionRatio: number;
  /** Output a compressed stream may reach whatever its ratio. Default 320 MiB (see the file comment). */
  compressionRatioFloorBytes: number;
  /** Contour points in one RTSTRUCT (all ROIs). Each costs 24 bytes once parsed. Default 2^24. */
  maxContourPoints: number;
  /**
   * Voxels of all the masks rasterised from the RTSTRUCTs of one series: ROIs × the series' voxels
   * (one Float32 mask per ROI). Default 2^30 (4 GiB of masks; 27 ROIs on a 512×512×150 CT).
   */
  maxMaskVoxels: number;
}

export const DEFAULT_IMPORT_LIMITS: Readonly<ImportLimits> = Object.freeze({
  maxVoxels: 2 ** 28,
  maxDecompressedBytes: 2 ** 30,
  maxCompressionRatio: 200,
  compressionRatioFloorBytes: 320 * 2 ** 20,
  maxContourPoints: 2 ** 24,
  maxMaskVoxels: 2 ** 30,
});

/** The limits a file can exceed (the ratio floor only tunes the ratio rule). */
export type ImportLimit = Exclude<keyof ImportLimits, 'compressionRatioFloorBytes'>;

/** How the user raises each limit: the `twinfed site import` flag (the ImportLimits field is the key). */
export const LIMIT_OPTIONS: Record<ImportLimit, { what: string; flag: string }> = {
  maxVoxels: { what: 'voxels', flag: '--max-voxels N' },
  maxDecompressedBytes: { what: 'decompressed bytes', flag: '--max-decompressed-mib N' },
  maxCompressionRatio: { what: 'compression ratio', flag: '--max-compression-ratio R (0: off)' },
  maxContourPoints: { what: 'contour points', flag: '--max-contour-points N' },
  maxMaskVoxels: { what: 'mask voxels', flag: '--max-mask-voxels N' },
};

/** The defaults with `given` on top; throws on a value that is not a positive number (0 is allowed for the ratio: off). */
export function importLimits(given: Partial<ImportLimits> = {}): ImportLimits {
  const out: ImportLimits = { ...DEFAULT_IMPORT_LIMITS };
  for (const [k, v] of Object.entries(given) as [keyof ImportLimits, number | undefined][]) {
    if (v === undefined) continue;
    const ratioOff = k === 'maxCompressionRatio' && v === 0;
    if (typeof v !== 'number' || Number.isNaN(v) || (v <= 0 && !ratioOff)) throw new RangeError(`import limit ${k} must be a positive number, got ${String(v)}`);
    out[k] = ratioOff ? Infinity : v;
  }
  return out;
}

export function formatBytes(n: number): string {
  if (n >= 2 ** 30) return `${(n / 2 ** 30).toFixed(2)} GiB`;
  if (n >= 2 ** 20) return `${(n / 2 ** 20).toFixed(1)} MiB`;
  if (n >= 2 ** 10) return `${(n / 2 ** 10).toFixed(1)} KiB`;
  return `${n} bytes`;
}

/**
 * TWF_E_IMPORT_TOO_LARGE naming the limit, the file's value (`value`, already worded), the limit
 * and how to raise it.
 */
export function tooLarge(file: string | undefined, limit: ImportLimit, value: string, max: string): ImagingError {
  const o = LIMIT_OPTIONS[limit];
  return new ImagingError(
    'TWF_E_IMPORT_TOO_LARGE',
    file,
    `${o.what}: ${value}, more than the limit of ${max}; nothing was imported from it (a decompression bomb or a damaged header?). If the file is genuine, raise the limit: twinfed site import ${o.flag}, or ImportLimits.${limit}`,
  );
}

/** Refuses a volume of `voxels` voxels (`dims` worded, e.g. "2048x2048x512") beyond maxVoxels. */
export function checkVoxels(file: string | undefined, dims: string, voxels: number, limits: ImportLimits): void {
  if (voxels > limits.maxVoxels) {
    throw tooLarge(file, 'maxVoxels', `${dims} = ${voxels} voxels`, `${limits.maxVoxels} voxels`);
  }
}

/** Refuses data of `bytes` bytes (declared by a header, or the size of an uncompressed file) beyond maxDecompressedBytes. */
export function checkDecompressedBytes(file: string | undefined, what: string, bytes: number, limits: ImportLimits): void {
  if (bytes > limits.maxDecompressedBytes) {
    throw tooLarge(file, 'maxDecompressedBytes', `${what} ${formatBytes(bytes)} (${bytes} bytes)`, `${formatBytes(limits.maxDecompressedBytes)} per file`);
  }
}

/**
 * The most a stream of `compressedBytes` may inflate to: the byte cap, or less when the ratio rule
 * binds first. `by` says which limit that is.
 */
export function inflateCap(compressedBytes: number, limits: ImportLimits): { cap: number; by: 'maxDecompressedBytes' | 'maxCompressionRatio' } {
  const byRatio = Math.max(limits.compressionRatioFloorBytes, limits.maxCompressionRatio * compressedBytes);
  return byRatio < limits.maxDecompressedBytes ? { cap: Math.floor(byRatio), by: 'maxCompressionRatio' } : { cap: limits.maxDecompressedBytes, by: 'maxDecompressedBytes' };
}

/** Refuses a file whose size on disk is beyond maxDecompressedBytes (it cannot decode to less), before it is read. */
export function checkFileSize(file: string, size: number, limits: Partial<ImportLimits> = {}): void {
  checkDecompressedBytes(file, 'the file is', size, importLimits(limits));
}
