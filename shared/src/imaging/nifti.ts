/**
 * NIfTI-1 / NIfTI-2 single-file images (.nii, .nii.gz), either byte order, to an ImageVolume.
 *
 * Header fields come from nifti-reader-js; gunzip (with CRC check), the voxel decoding and the
 * orientation are done here. What shared/src/data/nifti.ts (readNifti) lacks and why this file
 * exists: no origin/direction (it drops qform/sform entirely), plain Error instead of coded
 * errors (a damaged .nii.gz surfaces as a raw fflate error, which does not verify the CRC),
 * no refusal of .hdr/.img pairs and Analyze 7.5 headers (it would read them as if single-file).
 *
 * Orientation: world = sform when sform_code > 0, else qform when qform_code > 0, else
 * diag(pixdim) with origin 0 (a warning says so) — the rule nibabel uses. NIfTI world space is
 * RAS+; it is converted to the LPS+ of DICOM/ITK by negating the first two world axes
 * (so originMm and direction are in the same space as a DICOM series of the same patient).
 * 4D+ files: volume 0 only (warning). Units: xyzt_units metres/microns scaled to mm.
 */
import * as nifti from 'nifti-reader-js';
import { ImagingError, wrapThrown } from './errors.js';
import { assertValidGeometry, splitColumns, type Vec3 } from './geometry.js';
import { gunzipPrefix, inflateLimited, isGzip } from './gzip.js';
import { checkDecompressedBytes, checkVoxels, importLimits, type ImportLimits } from './limits.js';
import { SAMPLE_BYTES, copyBytes, decodeSamples, type SampleType } from './pixels.js';
import type { ImageVolume } from './types.js';

const DATATYPES: Record<number, SampleType> = {
  2: 'uint8',
  256: 'int8',
  4: 'int16',
  512: 'uint16',
  8: 'int32',
  768: 'uint32',
  1024: 'int64',
  1280: 'uint64',
  16: 'float32',
  64: 'float64',
};
const UNSUPPORTED_TYPES: Record<number, string> = {
  1: 'binary (1 bit)',
  32: 'complex64',
  128: 'RGB24',
  1536: 'float128',
  1792: 'complex128',
  2048: 'complex256',
  2304: 'RGBA32',
};
const UNIT_TO_MM: Record<number, number> = { 0: 1, 1: 1000, 2: 1, 3: 0.001 };

/** Which NIfTI flavour the bytes (already gunzipped) hold, from sizeof_hdr in either byte order. */
export function niftiHeaderKind(raw: Uint8Array): { version: 1 | 2; littleEndian: boolean } | null {
  if (raw.length < 4) return null;
  const v = new DataView(raw.buffer, raw.byteOffset, 4);
  for (const le of [true, false]) {
    const s = v.getInt32(0, le);
    if (s === 348) return { version: 1, littleEndian: le };
    if (s === 540) return { version: 2, littleEndian: le };
  }
  return null;
}

/**
 * Why a header with a valid sizeof_hdr is not a readable single-file NIfTI (a .hdr/.img pair's
 * header, or Analyze 7.5), or null when its magic is "n+1"/"n+2". `raw` is the gunzipped start.
 */
export function niftiMagicProblem(raw: Uint8Array): string | null {
  const kind = niftiHeaderKind(raw);
  if (kind == null) return 'not a NIfTI header';
  const v = kind.version;
  if (raw.length < (v === 1 ? 348 : 540)) return null; // too short to tell; the reader reports truncation
  const magic = String.fromCharCode(...raw.subarray(v === 1 ? 344 : 4, v === 1 ? 347 : 7));
  if (magic === (v === 1 ? 'ni1' : 'ni2')) {
    return 'this is the header of a .hdr/.img pair; only single-file NIfTI is read: convert it to .nii.gz first, e.g. with nibabel: nib.save(nib.load("x.hdr"), "x.nii.gz")';
  }
  if (magic !== (v === 1 ? 'n+1' : 'n+2')) {
    return `header magic is "${magic.replace(/[^\x20-\x7e]/g, '')}", not "n+${v}": an Analyze 7.5 header (no reliable orientation) or a damaged file; convert it to NIfTI first`;
  }
  return null;
}

/**
 * Sizes a NIfTI header declares, read straight from its bytes (`head`: at least the 348/540-byte
 * header, already gunzipped): the voxels of volume 0 (what the reader allocates) and the bytes
 * of the whole file (vox_offset + every volume). Null when the header is not readable enough to
 * tell; the reader then reports what is wrong with it.
 */
export function niftiDeclaredSize(head: Uint8Array): { dims: number[]; voxels: number; bytes: number } | null {
  const kind = niftiHeaderKind(head);
  if (kind == null) return null;
  const { version, littleEndian: le } = kind;
  if (head.length < (version === 1 ? 348 : 540)) return null;
  const v = new DataView(head.buffer, head.byteOffset, head.byteLength);
  const dim = (i: number) => (version === 1 ? v.getInt16(40 + 2 * i, le) : Number(v.getBigInt64(16 + 8 * i, le)));
  const nd = dim(0);
  if (!Number.isInteger(nd) || nd < 1 || nd > 7) return null;
  const dims = Array.from({ length: nd }, (_, i) => dim(i + 1));
  if (dims.some((d) => !Number.isSafeInteger(d) || d < 1)) return null;
  const datatype = version === 1 ? v.getInt16(70, le) : v.getInt16(12, le);
  const bitpix = version === 1 ? v.getInt16(72, le) : v.getInt16(14, le);
  const type = DATATYPES[datatype];
  const sampleBytes = type ? SAMPLE_BYTES[type] : Math.max(1, bitpix / 8);
  const voxOffset = version === 1 ? v.getFloat32(108, le) : Number(v.getBigInt64(168, le));
  const voxels = dims.slice(0, 3).reduce((p, d) => p * d, 1);
  const all = dims.reduce((p, d) => p * d, 1);
  return { dims, voxels, bytes: (Number.isFinite(voxOffset) && voxOffset > 0 ? Math.floor(voxOffset) : 0) + all * sampleBytes };
}

/**
 * The bytes of a .nii, or of a .nii.gz inflated, once the sizes its header declares are within
 * `limits`: the header is read from the first few KiB of the stream, so a bomb is refused
 * (TWF_E_IMPORT_TOO_LARGE) before the rest is inflated. Inflation itself is capped as well.
 */
export function niftiBytesWithin(bytes: Uint8Array, name: string | undefined, limits: ImportLimits): Uint8Array {
  const gz = isGzip(bytes);
  if (!gz) checkDecompressedBytes(name, 'the uncompressed file is', bytes.length, limits);
  const head = gz ? gunzipPrefix(bytes, 544) : bytes;
  const declared = head ? niftiDeclaredSize(head) : null;
  if (declared) {
    const shown = declared.dims.slice(0, 3).join('x');
    checkVoxels(name, `dims ${shown}${declared.dims.length > 3 ? ` (volume 0 of ${declared.dims.slice(3).join('x')})` : ''}`, declared.voxels, limits);
    checkDecompressedBytes(name, `the header declares dims ${declared.dims.join('x')}:`, declared.bytes, limits);
  }
  return gz ? inflateLimited(bytes, name, limits, declared ? { expectedBytes: declared.bytes } : {}) : bytes;
}

/**
 * Reads a .nii or .nii.gz held in memory. `name` is used in error messages and `source.files`.
 * The header's sizes are checked against `limits` (limits.ts) before anything else is inflated or
 * allocated: TWF_E_IMPORT_TOO_LARGE.
 */
export function readNiftiImage(bytes: Uint8Array, name = '<nifti>', limits: Partial<ImportLimits> = {}): ImageVolume {
  const raw = niftiBytesWithin(bytes, name, importLimits(limits));
  const kind = niftiHeaderKind(raw);
  if (kind == null) {
    throw new ImagingError('TWF_E_IMPORT_UNKNOWN_FORMAT', name, 'not a NIfTI file (sizeof_hdr is neither 348 nor 540 in either byte order)');
  }
  const { version, littleEndian: le } = kind;
  const hdrSize = version === 1 ? 348 : 540;
  if (raw.length < hdrSize) {
    throw new ImagingError('TWF_E_IMPORT_CORRUPT', name, `file is truncated: ${raw.length} bytes, a NIfTI-${version} header alone is ${hdrSize}; re-copy the file`);
  }
  const dv = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const problem = niftiMagicProblem(raw);
  if (problem) throw new ImagingError('TWF_E_IMPORT_UNSUPPORTED', name, problem);
  const voxOffset = version === 1 ? dv.getFloat32(108, le) : Number(dv.getBigInt64(168, le));
  if (!Number.isFinite(voxOffset) || voxOffset < hdrSize || voxOffset > raw.length) {
    throw new ImagingError('TWF_E_IMPORT_CORRUPT', name, `vox_offset ${voxOffset} is outside the file (${raw.length} bytes): the file is truncated or the header is damaged`);
  }
  // Exact-sized copy of header + extensions (nifti-reader-js wants a whole ArrayBuffer).
  const headerBuf = copyBytes(raw, 0, Math.min(raw.length, Math.max(hdrSize + 4, Math.floor(voxOffset)))).buffer as ArrayBuffer;
  const h = wrapThrown('TWF_E_IMPORT_CORRUPT', name, 'NIfTI header could not be parsed', () => nifti.readHeader(headerBuf));
  const type = DATATYPES[h.datatypeCode];
  if (type == null) {
    const what = UNSUPPORTED_TYPES[h.datatypeCode] ?? `unknown datatype code ${h.datatypeCode}`;
    throw new ImagingError('TWF_E_IMPORT_UNSUPPORTED', name, `voxel type ${what} is not read (scalar integer/float only); convert to a scalar image`);
  }
  const nd = Number(h.dims[0]);
  if (!Number.isInteger(nd) || nd < 1 || nd > 7) {
    throw new ImagingError('TWF_E_IMPORT_CORRUPT', name, `dim[0] = ${nd} is not 1..7: the header is damaged`);
  }
  const dimAt = (i: number) => (i <= nd ? Number(h.dims[i]) : 1);
  for (let i = 1; i <= nd; i++) {
    if (!Number.isInteger(dimAt(i)) || dimAt(i) < 1) throw new ImagingError('TWF_E_IMPORT_CORRUPT', name, `dim[${i}] = ${dimAt(i)} is not a positive integer: the header is damaged`);
  }
  const dims: Vec3 = [dimAt(1), dimAt(2), dimAt(3)];
  let extra = 1;
  for (let i = 4; i <= nd; i++) extra *= dimAt(i);
  const warnings: string[] = [];
  if (extra > 1) warnings.push(`${nd}D NIfTI with ${extra} volumes: volume 0 only was read`);
  const n = dims[0] * dims[1] * dims[2];
  const scaled = Number.isFinite(h.scl_slope) && h.scl_slope !== 0;
  const slope = scaled ? h.scl_slope : 1;
  const inter = scaled && Number.isFinite(h.scl_inter) ? h.scl_inter : 0;
  const data = decodeSamples(raw, Math.floor(voxOffset), n, type, le, name, slope, inter);

  // Orientation (RAS+, mm), then to LPS+.
  const unit = UNIT_TO_MM[h.xyzt_units & 7] ?? 1;
  const pix = (i: number) => (h.pixDims[i] > 0 && Number.isFinite(h.pixDims[i]) ? h.pixDims[i] : 1);
  let m: number[]; // 3x3 row-major, columns = axis vectors
  let t: Vec3;
  if (h.sform_code > 0) {
    const srow = (r: number, c: number) => (version === 1 ? dv.getFloat32(280 + 4 * (4 * r + c), le) : h.affine[r][c]);
    m = [srow(0, 0), srow(0, 1), srow(0, 2), srow(1, 0), srow(1, 1), srow(1, 2), srow(2, 0), srow(2, 1), srow(2, 2)];
    t = [srow(0, 3), srow(1, 3), srow(2, 3)];
  } else if (h.qform_code > 0) {
    const R = quaternToMatrix(h.quatern_b, h.quatern_c, h.quatern_d);
    const qfac = h.pixDims[0] < 0 ? -1 : 1;
    const s = [pix(1), pix(2), pix(3) * qfac];
    m = R.map((x, idx) => x * s[idx % 3]);
    const q = h as unknown as { qoffset_x: number; qoffset_y: number; qoffset_z: number };
    t = [q.qoffset_x, q.qoffset_y, q.qoffset_z];
  } else {
    m = [pix(1), 0, 0, 0, pix(2), 0, 0, 0, pix(3)];
    t = [0, 0, 0];
    warnings.push('no qform/sform in the header: axes assumed to be RAS with origin 0 (position in the scanner unknown)');
  }
  m = m.map((x) => x * unit);
  t = t.map((x) => x * unit) as Vec3;
  // RAS -> LPS: negate world x and y.
  for (let c = 0; c < 3; c++) {
    m[c] = -m[c];
    m[3 + c] = -m[3 + c];
  }
  const { direction, spacing } = splitColumns(m);
  const vol: ImageVolume = {
    dims,
    spacingMm: spacing,
    originMm: [-t[0], -t[1], t[2]],
    direction,
    data,
    source: { format: version === 1 ? 'nifti1' : 'nifti2', files: [name], littleEndian: le },
  };
  const descr = (h.description ?? '').replace(/\0/g, '').trim();
  if (descr) vol.seriesDescription = descr;
  if (warnings.length) vol.warnings = warnings;
  assertValidGeometry(vol, name);
  return vol;
}

/** Rotation matrix (row-major) of a NIfTI unit quaternion (b, c, d), a = sqrt(1 - b²-c²-d²) (nifti1.h quatern_to_mat44). */
function quaternToMatrix(b: number, c: number, d: number): number[] {
  let a = 1 - (b * b + c * c + d * d);
  if (a < 1e-7) {
    // 180° rotation: renormalise (b, c, d), a = 0.
    const s = 1 / Math.sqrt(b * b + c * c + d * d);
    b *= s;
    c *= s;
    d *= s;
    a = 0;
  } else {
    a = Math.sqrt(a);
  }
  return [
    a * a + b * b - c * c - d * d,
    2 * (b * c - a * d),
    2 * (b * d + a * c),
    2 * (b * c + a * d),
    a * a + c * c - b * b - d * d,
    2 * (c * d - a * b),
    2 * (b * d - a * c),
    2 * (c * d + a * b),
    a * a + d * d - c * c - b * b,
  ];
}
