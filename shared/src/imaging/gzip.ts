/**
 * gzip and raw-deflate inflation with an output cap (node:zlib checks the CRC and length trailer,
 * so damage is detected). The cap comes from the import limits (limits.ts): zlib stops as soon as
 * the output passes `maxOutputLength`, so a bomb costs at most about the cap in memory.
 */
import { constants as bufferConstants } from 'node:buffer';
import { constants, gunzipSync, inflateRawSync } from 'node:zlib';
import { ImagingError, describeThrown } from './errors.js';
import { formatBytes, inflateCap, tooLarge, type ImportLimits } from './limits.js';

/** deflate's largest expansion (258 bytes from about 2 bits): bounds what a prefix of the input can inflate to. */
const DEFLATE_MAX_RATIO = 1032;

export const isGzip = (b: Uint8Array): boolean => b.length >= 3 && b[0] === 0x1f && b[1] === 0x8b && b[2] === 8;

export interface InflateOptions {
  /** 'gzip' (default) or 'deflate-raw' (DICOM Deflated Explicit VR Little Endian). */
  format?: 'gzip' | 'deflate-raw';
  /** Output size the caller expects (from a header it has checked): inflated into one buffer of that size, no copy. */
  expectedBytes?: number;
}

/**
 * Inflates `bytes` whole. Output beyond the limits (inflateCap: the byte cap, or the ratio rule)
 * stops zlib there and throws TWF_E_IMPORT_TOO_LARGE; damaged data throws TWF_E_IMPORT_CORRUPT.
 */
export function inflateLimited(bytes: Uint8Array, file: string | undefined, limits: ImportLimits, opts: InflateOptions = {}): Uint8Array {
  const { cap, by } = inflateCap(bytes.length, limits);
  const maxOutputLength = Math.max(1, Math.min(cap, bufferConstants.MAX_LENGTH));
  // With the size known, one output buffer (zlib's chunk) of that size + 1: no list of chunks, no final concat.
  // (zlib's chunks are 64 bytes at least; the +1 keeps a full buffer from starting another one.)
  const e = opts.expectedBytes;
  const chunkSize = e !== undefined && e > 0 && e <= maxOutputLength && e < 2 ** 31 ? Math.max(64, e + 1) : 1 << 20;
  const raw = opts.format === 'deflate-raw';
  try {
    const out = (raw ? inflateRawSync : gunzipSync)(bytes, { maxOutputLength, chunkSize });
    return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
  } catch (err) {
    if ((err as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE') {
      const inflated = `${formatBytes(bytes.length)} of ${raw ? 'deflated' : 'gzip'} data inflate to more than ${formatBytes(maxOutputLength)}`;
      throw by === 'maxCompressionRatio'
        ? tooLarge(
            file,
            'maxCompressionRatio',
            `${inflated} (over ${Math.floor(maxOutputLength / Math.max(1, bytes.length))}:1)`,
            `${limits.maxCompressionRatio}:1 beyond the first ${formatBytes(limits.compressionRatioFloorBytes)}`,
          )
        : tooLarge(file, 'maxDecompressedBytes', inflated, `${formatBytes(limits.maxDecompressedBytes)} per file`);
    }
    throw new ImagingError(
      'TWF_E_IMPORT_CORRUPT',
      file,
      raw
        ? `deflated data set is truncated or damaged (zlib: ${describeThrown(err)}); re-copy or re-export the file`
        : `gzip data is truncated or damaged (zlib: ${describeThrown(err)}); re-copy the file, or check it with "gzip -t"`,
      { cause: err },
    );
  }
}

/** Whole-file gunzip (capped by `limits`) when the bytes start with the gzip magic; otherwise returns them unchanged. */
export function gunzipIfNeeded(bytes: Uint8Array, file: string | undefined, limits: ImportLimits): Uint8Array {
  if (!isGzip(bytes)) return bytes;
  return inflateLimited(bytes, file, limits);
}

/**
 * The start of a gzip stream, at least `want` bytes of it when the data holds that many (for
 * format sniffing and for reading a header before inflating the rest); null when it does not
 * inflate. Feeds zlib growing prefixes of the input (1 KiB, 8 KiB, then `maxIn`), so the output is
 * bounded by 1032 × the prefix however well the data compresses: 1 MiB for a bomb whose header is in
 * its first KiB (any NIfTI or NRRD), 66 MiB at most.
 */
export function gunzipPrefix(bytes: Uint8Array, want = 65536, maxIn = 65536): Uint8Array | null {
  let out: Uint8Array | null = null;
  for (let n = 1024; ; n *= 8) {
    const input = bytes.subarray(0, Math.min(n, maxIn, bytes.length));
    try {
      const b = gunzipSync(input, { finishFlush: constants.Z_SYNC_FLUSH, maxOutputLength: DEFLATE_MAX_RATIO * input.length + 65536 });
      out = new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
    } catch {
      return out;
    }
    if (out.length >= want || input.length >= Math.min(maxIn, bytes.length)) return out;
  }
}
