/**
 * NRRD (.nrrd, attached data; raw, gzip, hex or ascii encoding; either byte order) to an ImageVolume.
 *
 * The header is parsed by nrrd-js. Its gaps, handled here: it does not decode gzip or hex data
 * (only raw/ascii), it ignores "line skip"/"byte skip", and it crashes (ReferenceError
 * "length is not defined") on any quoted-string list field ("space units", "units", "labels"),
 * so those lines are parsed here and removed before nrrd-js sees the header.
 *
 * Geometry from "space directions"/"space origin" (or "spacings"); "space" RAS or LAS is
 * converted to LPS (see types.ts). Refused with TWF_E_IMPORT_UNSUPPORTED: detached data files
 * (.nhdr), bzip2 encoding, the "block" type, multi-component voxels (a non-spatial first axis),
 * more than 3 spatial axes. Trailing non-spatial axes (time, list): volume 0 only (warning).
 */
import nrrdJs, { type NrrdParsed } from 'nrrd-js';
import { ImagingError, describeThrown } from './errors.js';
import { IDENTITY3, assertValidGeometry, cross, splitColumns, type Vec3 } from './geometry.js';
import { gunzipIfNeeded, inflateLimited, isGzip } from './gzip.js';
import { checkDecompressedBytes, checkVoxels, importLimits, type ImportLimits } from './limits.js';
import { SAMPLE_BYTES, decodeSamples, type SampleType } from './pixels.js';
import type { ImageVolume } from './types.js';

const TYPES: Record<string, SampleType> = {
  int8: 'int8',
  uint8: 'uint8',
  int16: 'int16',
  uint16: 'uint16',
  int32: 'int32',
  uint32: 'uint32',
  int64: 'int64',
  uint64: 'uint64',
  float: 'float32',
  double: 'float64',
};
const UNIT_TO_MM: Record<string, number> = { mm: 1, millimeter: 1, millimeters: 1, cm: 10, m: 1000, um: 0.001, µm: 0.001, micron: 0.001 };
/** Fields nrrd-js cannot parse (quoted-string lists); read here instead. */
const QUOTED_LIST_FIELDS = new Set(['space units', 'spaceunits', 'units', 'labels']);

export const NRRD_MAGIC = /^NRRD000[1-5]\r?\n/;

export function isNrrd(b: Uint8Array): boolean {
  return b.length >= 9 && NRRD_MAGIC.test(latin1(b.subarray(0, 10)));
}

function latin1(b: Uint8Array): string {
  let s = '';
  for (let i = 0; i < b.length; i += 8192) s += String.fromCharCode(...b.subarray(i, i + 8192));
  return s;
}

/** Offset of the first byte after the blank line that ends the header, or -1. */
function headerEnd(b: Uint8Array, limit: number): number {
  const end = Math.min(b.length, limit);
  for (let i = 1; i < end; i++) {
    if (b[i] !== 10) continue;
    if (b[i - 1] === 10) return i + 1;
    if (b[i - 1] === 13 && i >= 2 && b[i - 2] === 10) return i + 1;
  }
  return -1;
}

function parseQuotedList(s: string): string[] {
  return [...s.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((m) => m[1].replace(/\\"/g, '"'));
}

/**
 * Reads a .nrrd file held in memory. The sizes in the header are checked against `limits`
 * (limits.ts) before the data is inflated or decoded: TWF_E_IMPORT_TOO_LARGE.
 */
export function readNrrdImage(bytes: Uint8Array, name = '<nrrd>', limits: Partial<ImportLimits> = {}): ImageVolume {
  const lim = importLimits(limits);
  if (!isGzip(bytes)) checkDecompressedBytes(name, 'the uncompressed file is', bytes.length, lim);
  const b = gunzipIfNeeded(bytes, name, lim);
  if (!isNrrd(b)) throw new ImagingError('TWF_E_IMPORT_UNKNOWN_FORMAT', name, 'not a NRRD file (no "NRRD000x" magic line)');
  const end = headerEnd(b, 4 << 20);
  if (end < 0) {
    const head = latin1(b.subarray(0, Math.min(b.length, 1 << 16))).toLowerCase();
    if (/^data ?file:/m.test(head)) {
      throw new ImagingError('TWF_E_IMPORT_UNSUPPORTED', name, 'detached-header NRRD (.nhdr with a separate data file) is not read; save it as a single .nrrd file');
    }
    throw new ImagingError('TWF_E_IMPORT_CORRUPT', name, 'NRRD header has no blank line before the data: the file is truncated or not a NRRD file');
  }
  // Header lines: pull out what nrrd-js cannot handle.
  const headerLines = latin1(b.subarray(0, end)).split(/\r?\n/);
  const kept: string[] = [];
  const quoted: Record<string, string[]> = {};
  for (const line of headerLines) {
    const m = /^([^:]*): (.*)$/.exec(line);
    const key = m?.[1].trim().toLowerCase();
    if (m && key !== undefined && QUOTED_LIST_FIELDS.has(key)) quoted[key.replace('spaceunits', 'space units')] = parseQuotedList(m[2]);
    else kept.push(line);
  }
  const headerBytes = Uint8Array.from(kept.join('\n'), (c) => c.charCodeAt(0) & 0xff);
  const payload = b.subarray(end);
  const forLib = new Uint8Array(headerBytes.length + payload.length);
  forLib.set(headerBytes);
  forLib.set(payload, headerBytes.length);

  const libWarnings: string[] = [];
  let h: NrrdParsed;
  const warn = console.warn;
  console.warn = (...a: unknown[]) => {
    libWarnings.push(a.map(String).join(' '));
  };
  try {
    h = nrrdJs.parse(forLib.buffer);
  } catch (e) {
    const msg = describeThrown(e);
    const truncated = /enough data|neither inline|outside the bounds|offset is out/i.test(msg);
    throw new ImagingError('TWF_E_IMPORT_CORRUPT', name, truncated ? `file is truncated (${msg}); re-copy or re-export it` : `NRRD header is invalid: ${msg}`, { cause: e });
  } finally {
    console.warn = warn;
  }

  if (h.dataFile !== undefined) {
    throw new ImagingError('TWF_E_IMPORT_UNSUPPORTED', name, 'NRRD with a detached data file ("data file:" field) is not read; save it as a single .nrrd file');
  }
  const type = TYPES[h.type ?? ''];
  if (type == null) {
    throw new ImagingError('TWF_E_IMPORT_UNSUPPORTED', name, `NRRD type "${h.type}" is not read (scalar integer/float types only)`);
  }
  const sizes = h.sizes ?? [];
  const nd = sizes.length;
  const warnings: string[] = libWarnings.filter((w) => !/Unsupported NRRD encoding|Unrecognized NRRD field: (space units|units|labels)/i.test(w));

  // Which axes are spatial.
  const dirs = h.spaceDirections;
  const isSpatial = (i: number) => (dirs ? dirs[i] != null : h.kinds?.[i] == null || h.kinds[i] === 'domain' || h.kinds[i] === 'space');
  const axes = sizes.map((s, i) => ({ i, s, spatial: isSpatial(i) })).filter((a) => a.spatial || a.s > 1);
  const spatial = axes.filter((a) => a.spatial);
  const firstNonSpatial = axes.findIndex((a) => !a.spatial);
  if (firstNonSpatial >= 0 && firstNonSpatial < spatial.length) {
    throw new ImagingError(
      'TWF_E_IMPORT_UNSUPPORTED',
      name,
      `axis ${axes[firstNonSpatial].i} (kind ${h.kinds?.[axes[firstNonSpatial].i] ?? 'non-spatial'}, size ${axes[firstNonSpatial].s}) comes before a spatial axis: multi-component voxels are not read; extract one component first`,
    );
  }
  if (spatial.length < 2 || spatial.length > 3) {
    throw new ImagingError('TWF_E_IMPORT_UNSUPPORTED', name, `${spatial.length} spatial axes: only 2D and 3D images are read`);
  }
  const extraVolumes = axes.filter((a) => !a.spatial).reduce((p, a) => p * a.s, 1);
  if (extraVolumes > 1) warnings.push(`${nd}-axis NRRD with ${extraVolumes} volumes: volume 0 only was read`);
  const dims: Vec3 = [spatial[0].s, spatial[1]?.s ?? 1, spatial[2]?.s ?? 1];
  const n = dims[0] * dims[1] * dims[2];
  const total = sizes.reduce((p, s) => p * s, 1);
  checkVoxels(name, `sizes ${dims.join('x')}${extraVolumes > 1 ? ` (volume 0 of ${extraVolumes})` : ''}`, n, lim);
  checkDecompressedBytes(name, `the header declares sizes ${sizes.join('x')} of ${type}:`, total * SAMPLE_BYTES[type], lim);

  // Voxel data.
  const le = h.endian !== 'big';
  if (SAMPLE_BYTES[type] > 1 && (h.encoding === 'raw' || h.encoding === 'gzip') && h.endian !== 'little' && h.endian !== 'big') {
    throw new ImagingError('TWF_E_IMPORT_CORRUPT', name, `NRRD "endian" is "${h.endian}", expected little or big`);
  }
  let data: Float32Array;
  const need = total * SAMPLE_BYTES[type];
  const skipLines = (p: Uint8Array) => {
    let off = 0;
    for (let l = 0; l < (h.lineSkip ?? 0); l++) {
      const nl = p.indexOf(10, off);
      if (nl < 0) throw new ImagingError('TWF_E_IMPORT_CORRUPT', name, `"line skip: ${h.lineSkip}" skips past the end of the data`);
      off = nl + 1;
    }
    return p.subarray(off);
  };
  const atSkip = (p: Uint8Array) => {
    const bs = h.byteSkip ?? 0;
    return bs === -1 ? p.length - need : bs;
  };
  switch (h.encoding) {
    case 'raw': {
      const p = skipLines(payload);
      data = decodeSamples(p, atSkip(p), n, type, le, name);
      break;
    }
    case 'gzip': {
      const simple = !h.lineSkip && !h.byteSkip;
      const p = inflateLimited(skipLines(payload), name, lim, simple ? { expectedBytes: need } : {});
      data = decodeSamples(p, atSkip(p), n, type, le, name);
      break;
    }
    case 'hex': {
      const hex = latin1(skipLines(payload)).replace(/\s+/g, '');
      if (!/^[0-9a-fA-F]*$/.test(hex)) throw new ImagingError('TWF_E_IMPORT_CORRUPT', name, 'hex-encoded data holds non-hex characters');
      const p = new Uint8Array(hex.length >> 1);
      for (let i = 0; i < p.length; i++) p[i] = parseInt(hex.substr(2 * i, 2), 16);
      data = decodeSamples(p, atSkip(p), n, type, le, name);
      break;
    }
    case 'ascii': {
      const src = h.data;
      if (src == null || src.length < n) throw new ImagingError('TWF_E_IMPORT_CORRUPT', name, 'ascii data has fewer values than the sizes need: the file is truncated');
      data = new Float32Array(n);
      for (let i = 0; i < n; i++) data[i] = src[i];
      if (data.some((x) => Number.isNaN(x)) && type !== 'float32' && type !== 'float64') {
        throw new ImagingError('TWF_E_IMPORT_CORRUPT', name, 'ascii data holds values that are not numbers');
      }
      break;
    }
    default:
      throw new ImagingError('TWF_E_IMPORT_UNSUPPORTED', name, `NRRD encoding "${h.encoding}" is not read (raw, gzip, hex, ascii are); re-save with gzip encoding`);
  }

  // Geometry.
  const spaceUnits = quoted['space units'];
  let unit = 1;
  if (spaceUnits?.length) {
    const u = UNIT_TO_MM[spaceUnits[0].toLowerCase()];
    if (u === undefined) warnings.push(`space units "${spaceUnits[0]}" not recognised: taken as mm`);
    else unit = u;
  }
  const cols: number[][] = [];
  let origin: Vec3 = [0, 0, 0];
  if (dirs) {
    const sd = h.spaceDimension ?? (h.space ? (h.space.endsWith('-time') ? 4 : 3) : (dirs.find((d) => d)?.length ?? 3));
    for (const a of spatial) {
      const v = dirs[a.i] as number[];
      if (v.length !== sd) throw new ImagingError('TWF_E_IMPORT_CORRUPT', name, `space direction of axis ${a.i} has ${v.length} components, space dimension is ${sd}`);
      cols.push([v[0], v[1] ?? 0, v[2] ?? 0].map((x) => x * unit));
    }
    if (h.spaceOrigin) origin = [h.spaceOrigin[0], h.spaceOrigin[1] ?? 0, h.spaceOrigin[2] ?? 0].map((x) => x * unit) as Vec3;
  } else {
    spatial.forEach((a, c) => {
      const s = h.spacings?.[a.i];
      const col = [0, 0, 0];
      col[c] = (s !== undefined && Number.isFinite(s) && s > 0 ? s : 1) * unit;
      cols.push(col);
    });
    if (!h.spacings) warnings.push('no "space directions" or "spacings": 1 mm isotropic voxels, identity orientation assumed');
  }
  // 2D: complete the frame with a unit normal.
  while (cols.length < 3) {
    const c = cols.length === 2 ? cross(cols[0], cols[1]) : [0, 0, 0];
    const nn = Math.hypot(c[0], c[1], c[2]);
    cols.push(nn > 0 ? c.map((x) => x / nn) : IDENTITY3().filter((_, k) => k % 3 === cols.length));
  }
  const m = [cols[0][0], cols[1][0], cols[2][0], cols[0][1], cols[1][1], cols[2][1], cols[0][2], cols[1][2], cols[2][2]];
  const space = h.space ?? '';
  const flip: Vec3 = space.startsWith('right-anterior-superior') ? [-1, -1, 1] : space.startsWith('left-anterior-superior') ? [1, -1, 1] : [1, 1, 1];
  if (dirs && space && !space.startsWith('left-posterior-superior') && flip[1] === 1) warnings.push(`space "${space}" taken as LPS`);
  for (let r = 0; r < 3; r++) for (let c = 0; c < 3; c++) m[3 * r + c] *= flip[r];
  origin = origin.map((x, r) => x * flip[r]) as Vec3;
  const { direction, spacing } = splitColumns(m);
  const vol: ImageVolume = {
    dims,
    spacingMm: spacing,
    originMm: origin,
    direction,
    data,
    source: { format: 'nrrd', files: [name], ...(SAMPLE_BYTES[type] > 1 && h.encoding !== 'ascii' ? { littleEndian: le } : {}) },
  };
  if (typeof h.content === 'string' && h.content.trim()) vol.seriesDescription = h.content.trim();
  if (warnings.length) vol.warnings = warnings;
  assertValidGeometry(vol, name);
  return vol;
}
