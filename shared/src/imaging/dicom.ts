/**
 * DICOM image files and series to an ImageVolume.
 *
 * Parsing by dicom-parser (Part-10 files and raw data sets without the 128-byte preamble).
 * Pixel data: native Implicit VR LE, Explicit VR LE, Explicit VR BE and Deflated Explicit LE,
 * plus RLE Lossless (decoded here). Other compressed transfer syntaxes (JPEG, JPEG-LS, JPEG 2000,
 * HTJ2K, MPEG) are refused with TWF_E_IMPORT_UNSUPPORTED naming the syntax. Also refused:
 * colour (SamplesPerPixel > 1), multi-frame files, BitsAllocated other than 8/16/32.
 *
 * A series is sorted by the position along the slice normal (ImagePositionPatient ·
 * (row cosine × column cosine)), never by file name or InstanceNumber. Spacing: PixelSpacing
 * in-plane, position differences across slices; non-uniform spacing, duplicate positions,
 * mixed orientations/sizes and sheared stacks (gantry tilt) throw TWF_E_IMPORT_GEOMETRY
 * (non-uniform spacing can be accepted with `allowNonUniformSpacing`).
 * RescaleSlope/RescaleIntercept are applied per slice (PET series often vary them per slice).
 */
import dicomParser from 'dicom-parser';
import type { DataSet } from 'dicom-parser';
import { ImagingError, describeThrown } from './errors.js';
import { assertValidGeometry, cross, dot, norm, type Vec3 } from './geometry.js';
import { gunzipIfNeeded, inflateLimited, isGzip } from './gzip.js';
import { checkDecompressedBytes, checkVoxels, importLimits, type ImportLimits } from './limits.js';
import { decodeRleFrame } from './rle.js';
import type { FileBytes, ImageVolume } from './types.js';

export const TS = {
  implicitLE: '1.2.840.10008.1.2',
  explicitLE: '1.2.840.10008.1.2.1',
  deflatedLE: '1.2.840.10008.1.2.1.99',
  explicitBE: '1.2.840.10008.1.2.2',
  rle: '1.2.840.10008.1.2.5',
} as const;

const TS_NAMES: Record<string, string> = {
  '1.2.840.10008.1.2.4.50': 'JPEG Baseline',
  '1.2.840.10008.1.2.4.51': 'JPEG Extended',
  '1.2.840.10008.1.2.4.57': 'JPEG Lossless',
  '1.2.840.10008.1.2.4.70': 'JPEG Lossless SV1',
  '1.2.840.10008.1.2.4.80': 'JPEG-LS Lossless',
  '1.2.840.10008.1.2.4.81': 'JPEG-LS Near-Lossless',
  '1.2.840.10008.1.2.4.90': 'JPEG 2000 Lossless',
  '1.2.840.10008.1.2.4.91': 'JPEG 2000',
  '1.2.840.10008.1.2.4.201': 'HTJ2K Lossless',
  '1.2.840.10008.1.2.4.202': 'HTJ2K Lossless RPCL',
  '1.2.840.10008.1.2.4.203': 'HTJ2K',
  '1.2.840.10008.1.2.4.100': 'MPEG2',
  '1.2.840.10008.1.2.4.102': 'MPEG-4',
};
const NATIVE = new Set<string>([TS.implicitLE, TS.explicitLE, TS.deflatedLE, TS.explicitBE]);
export const RTSTRUCT_SOP_CLASS = '1.2.840.10008.5.1.4.1.1.481.3';

export function transferSyntaxName(uid: string): string {
  return (
    {
      [TS.implicitLE]: 'Implicit VR Little Endian',
      [TS.explicitLE]: 'Explicit VR Little Endian',
      [TS.deflatedLE]: 'Deflated Explicit VR Little Endian',
      [TS.explicitBE]: 'Explicit VR Big Endian',
      [TS.rle]: 'RLE Lossless',
    }[uid] ??
    TS_NAMES[uid] ??
    'unknown transfer syntax'
  );
}

export interface DicomFile {
  name: string;
  dataSet: DataSet;
  transferSyntaxUid: string;
  /** 'image' (has Rows/Columns), 'rtstruct', or 'other' (SR, RT plan, presentation state, ...). */
  kind: 'image' | 'rtstruct' | 'other';
  /** True when parsed with `headerOnly` (stopped before PixelData): no pixels can be read from it. */
  headerOnly: boolean;
  sopClassUid?: string;
  sopInstanceUid?: string;
  seriesUid?: string;
  studyUid?: string;
  modality?: string;
  frameOfReferenceUid?: string;
}

/** True for a Part-10 file ("DICM" at 128) or a raw little-endian data set starting with group 0002/0008. */
export function looksLikeDicom(b: Uint8Array): boolean {
  if (b.length >= 132 && b[128] === 0x44 && b[129] === 0x49 && b[130] === 0x43 && b[131] === 0x4d) return true;
  return rawDataSetSyntax(b) != null;
}

/** Transfer syntax of a data set without preamble/meta header (explicit vs implicit VR LE), or null. */
function rawDataSetSyntax(b: Uint8Array): string | null {
  if (b.length < 8) return null;
  const group = b[0] | (b[1] << 8);
  const elem = b[2] | (b[3] << 8);
  if ((group !== 0x0002 && group !== 0x0008) || elem > 0x0100) return null;
  const up = (c: number) => c >= 0x41 && c <= 0x5a;
  if (up(b[4]) && up(b[5])) return TS.explicitLE;
  const len = (b[4] | (b[5] << 8) | (b[6] << 16)) + b[7] * 2 ** 24;
  return len < b.length ? TS.implicitLE : null;
}

/** dicom-parser's inflater for Deflated Explicit VR Little Endian, capped by the import limits. */
const inflaterFor =
  (name: string, limits: ImportLimits) =>
  (arr: Uint8Array, position: number): Uint8Array => {
    const inflated = inflateLimited(arr.subarray(position), name, limits, { format: 'deflate-raw' });
    checkDecompressedBytes(name, 'the inflated data set with its meta header is', position + inflated.length, limits);
    const out = new Uint8Array(position + inflated.length);
    out.set(arr.subarray(0, position));
    out.set(inflated, position);
    return out;
  };

const str = (ds: DataSet, tag: string): string | undefined => {
  const s = ds.string(tag);
  return s === undefined || s === '' ? undefined : s;
};

/**
 * Parses one DICOM file. `headerOnly` stops before PixelData (for fast folder scans).
 * Throws TWF_E_IMPORT_CORRUPT for truncated/damaged files, TWF_E_IMPORT_UNKNOWN_FORMAT for non-DICOM bytes,
 * TWF_E_IMPORT_TOO_LARGE when a gzipped file or a deflated data set inflates beyond `opts.limits`.
 */
export function parseDicomFile(bytes: Uint8Array, name = '<dicom>', opts: { headerOnly?: boolean; limits?: Partial<ImportLimits> } = {}): DicomFile {
  const limits = importLimits(opts.limits);
  if (!isGzip(bytes)) checkDecompressedBytes(name, 'the uncompressed file is', bytes.length, limits);
  const b = gunzipIfNeeded(bytes, name, limits);
  const part10 = b.length >= 132 && b[128] === 0x44 && b[129] === 0x49 && b[130] === 0x43 && b[131] === 0x4d;
  const rawTs = part10 ? null : rawDataSetSyntax(b);
  if (!part10 && rawTs == null) {
    throw new ImagingError('TWF_E_IMPORT_UNKNOWN_FORMAT', name, 'not a DICOM file (no "DICM" at byte 128 and no data set at byte 0)');
  }
  const options: Record<string, unknown> = { inflater: inflaterFor(name, limits) };
  if (rawTs) options.TransferSyntaxUID = rawTs;
  if (opts.headerOnly) options.untilTag = 'x7fe00010';
  let ds: DataSet;
  try {
    ds = dicomParser.parseDicom(b, options as Parameters<typeof dicomParser.parseDicom>[1]);
  } catch (e) {
    if (e instanceof ImagingError) throw e; // from the inflater
    const msg = describeThrown(e);
    const truncated = /overrun|past end|outside|beyond/i.test(msg);
    throw new ImagingError(
      'TWF_E_IMPORT_CORRUPT',
      name,
      `${truncated ? 'file is truncated or an element length is damaged' : 'DICOM structure is invalid'} (dicom-parser: ${msg}); re-copy or re-export the file`,
      { cause: e },
    );
  }
  // dicom-parser accepts a last element (or sequence item) that runs past the end of the buffer and
  // only fails later, on access: check every element's extent now.
  const overrun = findOverrun(ds, ds.byteArray.length, opts.headerOnly ? 'x7fe00010' : undefined);
  if (overrun) {
    throw new ImagingError(
      'TWF_E_IMPORT_CORRUPT',
      name,
      `file is truncated or damaged: element (${overrun.slice(1, 5)},${overrun.slice(5)}) runs past the end of the file (${b.length} bytes); re-copy or re-export it`,
    );
  }
  const transferSyntaxUid = str(ds, 'x00020010') ?? rawTs ?? TS.implicitLE;
  const sopClassUid = str(ds, 'x00080016');
  const modality = str(ds, 'x00080060');
  const kind = sopClassUid === RTSTRUCT_SOP_CLASS || modality === 'RTSTRUCT' ? 'rtstruct' : ds.elements.x00280010 && ds.elements.x00280011 ? 'image' : 'other';
  const f: DicomFile = { name, dataSet: ds, transferSyntaxUid, kind, headerOnly: !!opts.headerOnly };
  const set = (k: 'sopClassUid' | 'sopInstanceUid' | 'seriesUid' | 'studyUid' | 'modality' | 'frameOfReferenceUid', v: string | undefined) => {
    if (v !== undefined) f[k] = v;
  };
  set('sopClassUid', sopClassUid);
  set('sopInstanceUid', str(ds, 'x00080018'));
  set('seriesUid', str(ds, 'x0020000e'));
  set('studyUid', str(ds, 'x0020000d'));
  set('modality', modality);
  set('frameOfReferenceUid', str(ds, 'x00200052'));
  return f;
}

/** Tag of the first element (at any sequence depth) whose value extends past `size`, or null. */
function findOverrun(ds: DataSet, size: number, skipTag?: string): string | null {
  for (const [tag, el] of Object.entries(ds.elements)) {
    if (tag === skipTag) continue;
    if (el.items) {
      for (const it of el.items) {
        if (it.dataOffset + (it.length > 0 ? it.length : 0) > size) return tag;
        const inner = it.dataSet ? findOverrun(it.dataSet, size) : null;
        if (inner) return inner;
      }
    } else if (!el.encapsulatedPixelData && el.length > 0 && el.dataOffset + el.length > size) return tag;
    if (el.fragments?.some((f) => f.position + f.length > size)) return tag;
  }
  return null;
}

/** Numbers of a backslash-separated DS/IS value, or undefined when absent; throws when present but not numeric. */
export function dsNumbers(f: DicomFile, tag: string, what: string, count?: number): number[] | undefined {
  const s = str(f.dataSet, tag);
  if (s === undefined) return undefined;
  const v = s.split('\\').map((x) => Number(x.trim()));
  if (v.some((x) => !Number.isFinite(x)) || (count !== undefined && v.length < count)) {
    throw new ImagingError('TWF_E_IMPORT_CORRUPT', f.name, `${what} (${tag.slice(1, 5)},${tag.slice(5)}) is "${s}", expected ${count ?? 'some'} numbers`);
  }
  return count !== undefined ? v.slice(0, count) : v;
}

interface PixelInfo {
  rows: number;
  cols: number;
  bitsAllocated: number;
  bitsStored: number;
  signed: boolean;
  slope: number;
  inter: number;
  warnings: string[];
}

function pixelInfo(f: DicomFile, limits: ImportLimits): PixelInfo {
  const ds = f.dataSet;
  const unsupported = (why: string): never => {
    throw new ImagingError('TWF_E_IMPORT_UNSUPPORTED', f.name, why);
  };
  const rows = ds.uint16('x00280010') ?? 0;
  const cols = ds.uint16('x00280011') ?? 0;
  if (rows < 1 || cols < 1) throw new ImagingError('TWF_E_IMPORT_CORRUPT', f.name, `Rows/Columns are ${rows}x${cols}: not an image`);
  const spp = ds.uint16('x00280002') ?? 1;
  const frames = ds.intString('x00280008') ?? 1;
  const bitsAllocated = ds.uint16('x00280100') ?? 16;
  // What the header would have us allocate, checked before anything else (a refusal that names the limit beats "unsupported").
  const voxels = cols * rows * Math.max(1, frames) * Math.max(1, spp);
  const shown = `Columns x Rows x frames${spp > 1 ? ' x samples' : ''} ${cols}x${rows}x${frames}${spp > 1 ? `x${spp}` : ''}`;
  checkVoxels(f.name, shown, voxels, limits);
  checkDecompressedBytes(f.name, `${shown} at ${bitsAllocated} bits is`, (voxels * bitsAllocated) / 8, limits);
  const photometric = str(ds, 'x00280004') ?? 'MONOCHROME2';
  if (spp !== 1 || !photometric.startsWith('MONOCHROME')) unsupported(`colour image (SamplesPerPixel ${spp}, ${photometric}): only greyscale images are read`);
  if (frames > 1) unsupported(`multi-frame image (${frames} frames): only single-frame series are read; export one file per slice`);
  if (![8, 16, 32].includes(bitsAllocated)) unsupported(`BitsAllocated ${bitsAllocated}: only 8, 16 or 32 are read`);
  const bitsStored = ds.uint16('x00280101') ?? bitsAllocated;
  const highBit = ds.uint16('x00280102') ?? bitsStored - 1;
  if (bitsStored < 1 || bitsStored > bitsAllocated || highBit !== bitsStored - 1) {
    unsupported(`BitsStored ${bitsStored} / HighBit ${highBit} with BitsAllocated ${bitsAllocated}: only HighBit = BitsStored - 1 is read`);
  }
  const signed = (ds.uint16('x00280103') ?? 0) === 1;
  const slope = dsNumbers(f, 'x00281053', 'RescaleSlope', 1)?.[0] ?? 1;
  const inter = dsNumbers(f, 'x00281052', 'RescaleIntercept', 1)?.[0] ?? 0;
  const warnings: string[] = [];
  if (photometric === 'MONOCHROME1') warnings.push(`${f.name}: MONOCHROME1 (inverted display); stored values kept as they are`);
  if (slope === 0) warnings.push(`${f.name}: RescaleSlope is 0`);
  return { rows, cols, bitsAllocated, bitsStored, signed, slope, inter, warnings };
}

/** Pixel values of one single-frame greyscale image, rescale applied, x (column) fastest. Sizes are checked against `limits` first. */
export function dicomPixels(f: DicomFile, limits: Partial<ImportLimits> = {}): { data: Float32Array; rows: number; cols: number; warnings: string[] } {
  if (f.headerOnly) throw new Error(`dicomPixels: ${f.name} was parsed with headerOnly; parse the whole file`);
  const info = pixelInfo(f, importLimits(limits));
  const { rows, cols, bitsAllocated, bitsStored, signed, slope, inter } = info;
  const ts = f.transferSyntaxUid;
  const ds = f.dataSet;
  const el = ds.elements.x7fe00010;
  if (!el) {
    if (ds.elements.x7fe00008 || ds.elements.x7fe00009) {
      throw new ImagingError('TWF_E_IMPORT_UNSUPPORTED', f.name, 'float/double pixel data (7FE0,0008/0009) is not read');
    }
    throw new ImagingError('TWF_E_IMPORT_CORRUPT', f.name, 'image has no PixelData element (7FE0,0010): the file is truncated or incomplete');
  }
  const n = rows * cols;
  const bytesPer = bitsAllocated / 8;
  let raw: ArrayLike<number>;
  if (NATIVE.has(ts)) {
    if (el.encapsulatedPixelData) throw new ImagingError('TWF_E_IMPORT_CORRUPT', f.name, `pixel data is encapsulated but the transfer syntax ${ts} is native`);
    const need = n * bytesPer;
    const ba = ds.byteArray;
    if (el.length < need || el.dataOffset + need > ba.length) {
      throw new ImagingError(
        'TWF_E_IMPORT_CORRUPT',
        f.name,
        `file is truncated: PixelData holds ${Math.min(el.length, ba.length - el.dataOffset)} bytes, ${rows}x${cols}x${bitsAllocated} bits need ${need}; re-copy the file`,
      );
    }
    const le = ts !== TS.explicitBE;
    const v = new DataView(ba.buffer, ba.byteOffset + el.dataOffset, need);
    const r = new Uint32Array(n);
    if (bytesPer === 1) for (let i = 0; i < n; i++) r[i] = v.getUint8(i);
    else if (bytesPer === 2) for (let i = 0; i < n; i++) r[i] = v.getUint16(2 * i, le);
    else for (let i = 0; i < n; i++) r[i] = v.getUint32(4 * i, le);
    raw = r;
  } else if (ts === TS.rle) {
    let frame: Uint8Array;
    try {
      const frags = el.fragments ?? [];
      if (frags.length === 0) throw new Error('no fragments');
      frame = dicomParser.readEncapsulatedPixelDataFromFragments(ds, el, 0, frags.length) as Uint8Array;
    } catch (e) {
      throw new ImagingError('TWF_E_IMPORT_CORRUPT', f.name, `RLE pixel data fragments are unreadable (${describeThrown(e)}); re-export the file`, { cause: e });
    }
    raw = decodeRleFrame(frame, n, bytesPer, f.name);
  } else {
    throw new ImagingError(
      'TWF_E_IMPORT_UNSUPPORTED',
      f.name,
      `pixel data is compressed as ${transferSyntaxName(ts)} (${ts}), which is not decoded; convert the files to uncompressed DICOM first (e.g. "gdcmconv --raw in.dcm out.dcm" or "dcmdjpeg"/"dcmdjpls")`,
    );
  }
  const data = new Float32Array(n);
  const mask = bitsStored === 32 ? 0xffffffff : 2 ** bitsStored - 1;
  const signBit = 2 ** (bitsStored - 1);
  for (let i = 0; i < n; i++) {
    let x = bitsStored < bitsAllocated ? (raw[i] & mask) >>> 0 : raw[i];
    if (signed && x >= signBit) x -= 2 * signBit;
    data[i] = x * slope + inter;
  }
  return { data, rows, cols, warnings: info.warnings };
}

export interface DicomSeries {
  seriesUid: string;
  modality?: string;
  seriesDescription?: string;
  files: DicomFile[];
}

/**
 * Splits parsed files into image series (by SeriesInstanceUID), RTSTRUCTs and everything else.
 * A file with the SOPInstanceUID of an earlier one (the same instance copied or re-encoded) is
 * listed in `duplicates` and left out.
 */
export function groupDicomSeries(files: DicomFile[]): {
  series: DicomSeries[];
  rtstructs: DicomFile[];
  others: DicomFile[];
  duplicates: { file: string; duplicateOf: string }[];
} {
  const map = new Map<string, DicomSeries>();
  const rtstructs: DicomFile[] = [];
  const others: DicomFile[] = [];
  const duplicates: { file: string; duplicateOf: string }[] = [];
  const bySop = new Map<string, string>();
  for (const f of files) {
    if (f.sopInstanceUid) {
      const prev = bySop.get(f.sopInstanceUid);
      if (prev !== undefined) {
        duplicates.push({ file: f.name, duplicateOf: prev });
        continue;
      }
      bySop.set(f.sopInstanceUid, f.name);
    }
    if (f.kind === 'rtstruct') {
      rtstructs.push(f);
      continue;
    }
    if (f.kind !== 'image') {
      others.push(f);
      continue;
    }
    const uid = f.seriesUid ?? `<no SeriesInstanceUID: ${f.name}>`;
    let s = map.get(uid);
    if (!s) {
      s = { seriesUid: uid, files: [] };
      if (f.modality) s.modality = f.modality;
      const d = str(f.dataSet, 'x0008103e');
      if (d) s.seriesDescription = d;
      map.set(uid, s);
    }
    s.files.push(f);
  }
  return { series: [...map.values()], rtstructs, others, duplicates };
}

export interface DicomSeriesOptions {
  /** Accept slice spacing that varies by more than 1% (or 0.01 mm): the mean is used and a warning added. */
  allowNonUniformSpacing?: boolean;
  /** Import limits (limits.ts); the defaults when absent. */
  limits?: Partial<ImportLimits>;
}

/** Builds one volume from the files of one image series (fully parsed, any order). */
export function dicomSeriesToVolume(files: DicomFile[], opts: DicomSeriesOptions = {}): ImageVolume {
  if (files.length === 0) throw new ImagingError('TWF_E_IMPORT_REFERENCE', undefined, 'no DICOM image files given');
  const uids = new Set(files.map((f) => f.seriesUid));
  const label = `series ${files[0].seriesUid ?? '?'} (${files.length} files, e.g. ${files[0].name})`;
  const geo = (why: string): never => {
    throw new ImagingError('TWF_E_IMPORT_GEOMETRY', label, why);
  };
  if (uids.size > 1) throw new ImagingError('TWF_E_IMPORT_REFERENCE', label, `files belong to ${uids.size} series; group them with groupDicomSeries first`);
  const nonImage = files.find((f) => f.kind !== 'image');
  if (nonImage) throw new ImagingError('TWF_E_IMPORT_REFERENCE', nonImage.name, `is a ${nonImage.kind} object, not an image slice`);
  const warnings: string[] = [];

  interface Slice {
    f: DicomFile;
    ipp: Vec3;
    iop: number[];
    ps: [number, number];
    rows: number;
    cols: number;
    d: number;
  }
  const single = files.length === 1;
  const slices: Slice[] = files.map((f) => {
    let iop = dsNumbers(f, 'x00200037', 'ImageOrientationPatient', 6);
    let ipp = dsNumbers(f, 'x00200032', 'ImagePositionPatient', 3) as Vec3 | undefined;
    let ps = dsNumbers(f, 'x00280030', 'PixelSpacing', 2) ?? dsNumbers(f, 'x00181164', 'ImagerPixelSpacing', 2);
    if (!iop || !ipp) {
      if (!single) geo(`${f.name} has no ImageOrientationPatient/ImagePositionPatient: the slices cannot be placed in 3D`);
      iop ??= [1, 0, 0, 0, 1, 0];
      ipp ??= [0, 0, 0];
      warnings.push('no ImageOrientationPatient/ImagePositionPatient: identity orientation and origin 0 assumed');
    }
    if (!ps) {
      ps = [1, 1];
      warnings.push(`${f.name}: no PixelSpacing: 1 mm assumed`);
    }
    return { f, ipp, iop, ps: [ps[0], ps[1]], rows: f.dataSet.uint16('x00280010') ?? 0, cols: f.dataSet.uint16('x00280011') ?? 0, d: 0 };
  });
  const s0 = slices[0];
  const rowCos: Vec3 = [s0.iop[0], s0.iop[1], s0.iop[2]];
  const colCos: Vec3 = [s0.iop[3], s0.iop[4], s0.iop[5]];
  if (Math.abs(norm(rowCos) - 1) > 1e-3 || Math.abs(norm(colCos) - 1) > 1e-3 || Math.abs(dot(rowCos, colCos)) > 1e-3) {
    geo(`ImageOrientationPatient ${s0.iop.join('\\')} of ${s0.f.name} is not two orthogonal unit vectors`);
  }
  const normal = cross(rowCos, colCos);
  for (const s of slices) {
    if (s.iop.some((x, i) => Math.abs(x - s0.iop[i]) > 1e-4))
      geo(`orientation changes within the series (${s.f.name}: ${s.iop.join('\\')} vs ${s0.iop.join('\\')}): a localizer or a reformatted slice is mixed in`);
    if (s.rows !== s0.rows || s.cols !== s0.cols) geo(`slice size changes within the series (${s.f.name}: ${s.rows}x${s.cols} vs ${s0.rows}x${s0.cols})`);
    if (s.ps.some((x, i) => Math.abs(x - s0.ps[i]) > 1e-4 * Math.max(1, x))) geo(`PixelSpacing changes within the series (${s.f.name}: ${s.ps.join('\\')} vs ${s0.ps.join('\\')})`);
    s.d = dot(s.ipp, normal);
  }
  slices.sort((a, b) => a.d - b.d);

  let dz: number;
  if (single) {
    const sbs = dsNumbers(s0.f, 'x00180088', 'SpacingBetweenSlices', 1)?.[0];
    const st = dsNumbers(s0.f, 'x00180050', 'SliceThickness', 1)?.[0];
    dz = sbs && sbs > 0 ? sbs : st && st > 0 ? st : 1;
    if (!(sbs && sbs > 0) && !(st && st > 0)) warnings.push('single slice without SliceThickness: 1 mm slice spacing assumed');
  } else {
    const n = slices.length;
    const diffs = slices.slice(1).map((s, i) => s.d - slices[i].d);
    const dup = diffs.findIndex((x) => x < 1e-3);
    if (dup >= 0) {
      const count = diffs.filter((x) => x < 1e-3).length + 1;
      geo(
        `${slices[dup].f.name} and ${slices[dup + 1].f.name} are at the same position (${slices[dup].d.toFixed(3)} mm along the normal; ${count} slices share positions): the series holds several volumes (time points, echoes, phases); split it before import`,
      );
    }
    dz = (slices[n - 1].d - slices[0].d) / (n - 1);
    // Shear: the step between slices must be along the normal.
    for (let i = 1; i < n; i++) {
      const step = [0, 1, 2].map((k) => slices[i].ipp[k] - slices[i - 1].ipp[k]);
      const along = dot(step, normal);
      const off = Math.hypot(step[0] - along * normal[0], step[1] - along * normal[1], step[2] - along * normal[2]);
      if (off > Math.max(0.01, 0.01 * Math.abs(along))) {
        geo(
          `slices are shifted in-plane by ${off.toFixed(3)} mm between ${slices[i - 1].f.name} and ${slices[i].f.name} (gantry tilt or sheared stack): resample the series to an orthogonal grid first`,
        );
      }
    }
    const tol = Math.max(0.01, 0.01 * dz);
    const bad = diffs.map((x, i) => ({ x, i })).filter(({ x }) => Math.abs(x - dz) > tol);
    if (bad.length) {
      const list = bad
        .slice(0, 5)
        .map(({ x, i }) => `${slices[i].f.name}→${slices[i + 1].f.name}: ${x.toFixed(3)} mm`)
        .join(', ');
      const msg = `slice spacing is not uniform (mean ${dz.toFixed(3)} mm; ${bad.length} step(s) differ by more than ${tol.toFixed(3)} mm: ${list}${bad.length > 5 ? ', ...' : ''})`;
      if (!opts.allowNonUniformSpacing) geo(`${msg}: slices are missing or the series mixes acquisitions; pass allowNonUniformSpacing to accept the mean spacing`);
      warnings.push(`${msg}; the mean spacing was used`);
    }
  }

  const [rows, cols] = [s0.rows, s0.cols];
  const per = rows * cols;
  const limits = importLimits(opts.limits);
  checkVoxels(label, `Columns x Rows x slices ${cols}x${rows}x${slices.length}`, per * slices.length, limits);
  const data = new Float32Array(per * slices.length);
  const tsSet = new Set<string>();
  slices.forEach((s, k) => {
    const px = dicomPixels(s.f, limits);
    data.set(px.data, k * per);
    warnings.push(...px.warnings);
    tsSet.add(s.f.transferSyntaxUid);
  });
  const ts = s0.f.transferSyntaxUid;
  if (tsSet.size > 1) warnings.push(`files use ${tsSet.size} transfer syntaxes: ${[...tsSet].join(', ')}`);
  const first = slices[0].f;
  const vol: ImageVolume = {
    dims: [cols, rows, slices.length],
    spacingMm: [s0.ps[1], s0.ps[0], dz],
    originMm: [...slices[0].ipp] as Vec3,
    direction: [rowCos[0], colCos[0], normal[0], rowCos[1], colCos[1], normal[1], rowCos[2], colCos[2], normal[2]],
    data,
    source: { format: 'dicom', files: slices.map((s) => s.f.name), littleEndian: ts !== TS.explicitBE, transferSyntaxUid: ts },
  };
  const meta: [keyof ImageVolume, string][] = [
    ['modality', 'x00080060'],
    ['seriesUid', 'x0020000e'],
    ['seriesDescription', 'x0008103e'],
    ['studyDate', 'x00080020'],
    ['patientId', 'x00100020'],
    ['frameOfReferenceUid', 'x00200052'],
  ];
  for (const [k, tag] of meta) {
    const v = str(first.dataSet, tag);
    if (v !== undefined) (vol as unknown as Record<string, unknown>)[k] = v;
  }
  const uniq = [...new Set(warnings)];
  if (uniq.length) vol.warnings = uniq;
  assertValidGeometry(vol, label);
  return vol;
}

/**
 * Parses files and builds the one image series among them (RTSTRUCTs and other non-image objects
 * are ignored). With several image series, `seriesUid` picks one; otherwise TWF_E_IMPORT_REFERENCE.
 */
export function readDicomSeries(inputs: FileBytes[], opts: DicomSeriesOptions & { seriesUid?: string } = {}): ImageVolume {
  const { series } = groupDicomSeries(inputs.map((i) => parseDicomFile(i.bytes, i.name, opts.limits ? { limits: opts.limits } : {})));
  const pick = opts.seriesUid ? series.filter((s) => s.seriesUid === opts.seriesUid) : series;
  if (pick.length !== 1) {
    throw new ImagingError(
      'TWF_E_IMPORT_REFERENCE',
      inputs[0]?.name,
      pick.length === 0
        ? `no image series${opts.seriesUid ? ` with SeriesInstanceUID ${opts.seriesUid}` : ''} among ${inputs.length} files`
        : `${pick.length} image series among the files (${pick.map((s) => `${s.seriesUid} ${s.modality ?? ''} ${s.files.length} files`).join('; ')}): pass seriesUid to pick one`,
    );
  }
  return dicomSeriesToVolume(pick[0].files, opts);
}
