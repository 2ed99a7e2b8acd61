/** gzip helpers on top of node:zlib (which checks the CRC and length trailer, so damage is detected). */
import { constants, gunzipSync } from 'node:zlib';
import { ImagingError, describeThrown } from './errors.js';

/** Largest decompressed size accepted (guards against gzip bombs); Node's Buffer limit is about 4 GiB. */
export const MAX_DECOMPRESSED_BYTES = 2 ** 31 - 1;

export const isGzip = (b: Uint8Array): boolean => b.length >= 3 && b[0] === 0x1f && b[1] === 0x8b && b[2] === 8;

/** Whole-file gunzip when the bytes start with the gzip magic; otherwise returns them unchanged. */
export function gunzipIfNeeded(bytes: Uint8Array, file: string | undefined): Uint8Array {
  if (!isGzip(bytes)) return bytes;
  return gunzipOrThrow(bytes, file);
}

export function gunzipOrThrow(bytes: Uint8Array, file: string | undefined): Uint8Array {
  try {
    const out = gunzipSync(bytes, { maxOutputLength: MAX_DECOMPRESSED_BYTES });
    return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
  } catch (e) {
    throw new ImagingError(
      'TWF_E_IMPORT_CORRUPT', file,
      `gzip data is truncated or damaged (zlib: ${describeThrown(e)}); re-copy the file, or check it with "gzip -t"`, { cause: e },
    );
  }
}

/** Decompresses what it can of the first `maxIn` compressed bytes (for format sniffing); null when that fails. */
export function gunzipPrefix(bytes: Uint8Array, maxIn = 65536): Uint8Array | null {
  try {
    const out = gunzipSync(bytes.subarray(0, maxIn), { finishFlush: constants.Z_SYNC_FLUSH, maxOutputLength: 1 << 24 });
    return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
  } catch {
    return null;
  }
}
