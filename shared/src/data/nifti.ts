/**
 * NIfTI-1/2 volumes as plain typed arrays.
 *
 * Format: NIfTI-1 (nifti.nimh.nih.gov/nifti-1, 2004) and NIfTI-2 (2011). Parsing of
 * the header comes from nifti-reader-js; we convert the voxel payload ourselves because
 * readImage returns raw bytes in the file's byte order. gunzip and the size checks are the
 * importer's (imaging/gzip.ts, imaging/limits.ts): the header's sizes are checked before the
 * rest is inflated, and inflation is capped, so a gzip bomb is refused (TWF_E_IMPORT_TOO_LARGE).
 */
import * as nifti from 'nifti-reader-js';
import { importLimits, type ImportLimits } from '../imaging/limits.js';
import { niftiBytesWithin } from '../imaging/nifti.js';

export interface NiftiVolume {
  /** Voxels per axis [nx, ny, nz] (a 2D image has nz = 1). Later axes (time, ...) are dropped: volume 0 only. */
  dims: [number, number, number];
  /** Voxel size in millimetres [sx, sy, sz] (header pixdim converted from xyzt_units; unknown units taken as mm). */
  spacingMm: [number, number, number];
  /** Intensities after scl_slope/scl_inter, x fastest: index = x + nx * (y + ny * z). */
  data: Float32Array;
  /** NIfTI datatype code of the stored voxels (2 uint8, 4 int16, 16 float32, ...). */
  datatypeCode: number;
}

const UNIT_TO_MM: Record<number, number> = { 0: 1, 1: 1000, 2: 1, 3: 0.001 };

type Reader = (view: DataView, offset: number, le: boolean) => number;

const READERS: Record<number, { bytes: number; read: Reader }> = {
  2: { bytes: 1, read: (v, o) => v.getUint8(o) }, // UINT8
  256: { bytes: 1, read: (v, o) => v.getInt8(o) }, // INT8
  4: { bytes: 2, read: (v, o, le) => v.getInt16(o, le) }, // INT16
  512: { bytes: 2, read: (v, o, le) => v.getUint16(o, le) }, // UINT16
  8: { bytes: 4, read: (v, o, le) => v.getInt32(o, le) }, // INT32
  768: { bytes: 4, read: (v, o, le) => v.getUint32(o, le) }, // UINT32
  16: { bytes: 4, read: (v, o, le) => v.getFloat32(o, le) }, // FLOAT32
  64: { bytes: 8, read: (v, o, le) => v.getFloat64(o, le) }, // FLOAT64
  1024: { bytes: 8, read: (v, o, le) => Number(v.getBigInt64(o, le)) }, // INT64
  1280: { bytes: 8, read: (v, o, le) => Number(v.getBigUint64(o, le)) }, // UINT64
};

/** Parses a .nii or .nii.gz file held in memory; sizes are checked against `limits` (imaging/limits.ts). */
export function readNifti(bytes: Uint8Array, limits: Partial<ImportLimits> = {}): NiftiVolume {
  const whole = niftiBytesWithin(bytes, undefined, importLimits(limits));
  // Own, exactly-sized buffer (nifti-reader-js wants a whole ArrayBuffer): a Node Buffer is often a
  // view into a shared pool, and .slice() of one is a view too, so copy with Uint8Array's slice
  // unless the bytes already own their buffer.
  const buf = (whole.byteOffset === 0 && whole.byteLength === whole.buffer.byteLength ? whole.buffer : Uint8Array.prototype.slice.call(whole).buffer) as ArrayBuffer;
  if (!nifti.isNIFTI(buf)) throw new Error('readNifti: not a NIfTI-1/2 file');
  const h = nifti.readHeader(buf);
  const reader = READERS[h.datatypeCode];
  if (reader == null) throw new Error(`readNifti: unsupported datatype code ${h.datatypeCode}`);
  const nd = h.dims[0];
  const dims: [number, number, number] = [h.dims[1], nd >= 2 ? h.dims[2] : 1, nd >= 3 ? h.dims[3] : 1];
  const n = dims[0] * dims[1] * dims[2];
  const raw = nifti.readImage(h, buf);
  if (raw.byteLength < n * reader.bytes) throw new Error(`readNifti: ${raw.byteLength} bytes of voxels, expected ${n * reader.bytes}`);
  const view = new DataView(raw);
  const data = new Float32Array(n);
  // NIfTI-1 §scl_slope: y = scl_slope * x + scl_inter, unless scl_slope is 0 (no scaling).
  const scaled = Number.isFinite(h.scl_slope) && h.scl_slope !== 0;
  const slope = scaled ? h.scl_slope : 1;
  const inter = scaled && Number.isFinite(h.scl_inter) ? h.scl_inter : 0;
  const le = h.littleEndian;
  for (let i = 0; i < n; i++) data[i] = reader.read(view, i * reader.bytes, le) * slope + inter;
  const unit = UNIT_TO_MM[h.xyzt_units & 7] ?? 1;
  const pix = (i: number) => (i <= nd && h.pixDims[i] > 0 ? h.pixDims[i] * unit : 1);
  return { dims, spacingMm: [pix(1), pix(2), pix(3)], data, datatypeCode: h.datatypeCode };
}
