/**
 * DICOM RT Structure Sets: ROI contours (mm, patient LPS) and their rasterisation to masks on
 * an image grid.
 *
 * Rasterisation: each CLOSED_PLANAR contour is put on the slice whose centre is within half a
 * slice of the contour's plane (found from positions, not from ReferencedSOPInstanceUID, so it
 * works for cropped or resampled series); its points are mapped to continuous pixel indices with
 * the grid's origin/direction/spacing; a pixel is inside when its centre is inside the polygon
 * by the even-odd rule. Several contours of one ROI on one slice are XOR-ed (holes).
 * POINT and OPEN_* contours are skipped (warning).
 */
import type { DataSet } from 'dicom-parser';
import { ImagingError } from './errors.js';
import { worldToVoxelFn } from './geometry.js';
import { parseDicomFile, type DicomFile } from './dicom.js';
import { importLimits, tooLarge, type ImportLimits } from './limits.js';
import type { ImageVolume, MaskVolume } from './types.js';

export interface RtContour {
  /** CLOSED_PLANAR, OPEN_PLANAR, OPEN_NONPLANAR, POINT. */
  geometricType: string;
  /** x, y, z triplets in mm (patient LPS). */
  points: Float64Array;
  referencedSopInstanceUid?: string;
}

export interface RtRoi {
  number: number;
  name: string;
  frameOfReferenceUid?: string;
  contours: RtContour[];
}

export interface RtStruct {
  file: string;
  sopInstanceUid?: string;
  seriesUid?: string;
  frameOfReferenceUid?: string;
  /** SeriesInstanceUIDs of the image series named in ReferencedFrameOfReferenceSequence. */
  referencedSeriesUids: string[];
  rois: RtRoi[];
}

const s = (ds: DataSet, tag: string): string | undefined => {
  const v = ds.string(tag);
  return v === undefined || v === '' ? undefined : v;
};
const items = (ds: DataSet, tag: string): DataSet[] => (ds.elements[tag]?.items ?? []).map((i) => i.dataSet).filter((d): d is DataSet => d != null);

/** SeriesInstanceUIDs referenced by an RTSTRUCT (ReferencedFrameOfReference → RTReferencedStudy → RTReferencedSeries). */
export function rtReferencedSeriesUids(ds: DataSet): string[] {
  const out: string[] = [];
  for (const fr of items(ds, 'x30060010')) {
    for (const st of items(fr, 'x30060012')) {
      for (const se of items(st, 'x30060014')) {
        const uid = s(se, 'x0020000e');
        if (uid && !out.includes(uid)) out.push(uid);
      }
    }
  }
  return out;
}

/** Count of backslash-separated values in a DS list (points = values / 3), without splitting it. */
function valueCount(text: string): number {
  let n = 1;
  for (let i = text.indexOf('\\'); i >= 0; i = text.indexOf('\\', i + 1)) n++;
  return n;
}

/** A DS list as numbers, straight into a Float64Array (no array of substrings: ContourData can be large). */
function parseDsList(text: string, count: number): Float64Array {
  const out = new Float64Array(count);
  let start = 0;
  for (let k = 0; k < count; k++) {
    const end = text.indexOf('\\', start);
    out[k] = Number(text.slice(start, end < 0 ? text.length : end));
    start = end + 1;
  }
  return out;
}

/**
 * Parses an RTSTRUCT from bytes or an already parsed DicomFile. The contour points of all ROIs
 * are counted before any is parsed: more than `limits.maxContourPoints` is TWF_E_IMPORT_TOO_LARGE.
 */
export function parseRtStruct(input: Uint8Array | DicomFile, name = '<rtstruct>', limits: Partial<ImportLimits> = {}): RtStruct {
  const lim = importLimits(limits);
  const f = input instanceof Uint8Array ? parseDicomFile(input, name, { limits: lim }) : input;
  const file = f.name;
  if (f.kind !== 'rtstruct') {
    throw new ImagingError('TWF_E_IMPORT_REFERENCE', file, `is not an RT Structure Set (SOP class ${f.sopClassUid ?? '?'}, modality ${f.modality ?? '?'})`);
  }
  const ds = f.dataSet;
  let points = 0;
  for (const rc of items(ds, 'x30060039')) {
    for (const c of items(rc, 'x30060040')) {
      const text = s(c, 'x30060050');
      if (text) points += valueCount(text) / 3;
    }
  }
  if (points > lim.maxContourPoints) throw tooLarge(file, 'maxContourPoints', `${Math.floor(points)} contour points`, `${lim.maxContourPoints} per RTSTRUCT`);
  const rois = new Map<number, RtRoi>();
  for (const r of items(ds, 'x30060020')) {
    const num = Number(s(r, 'x30060022'));
    if (!Number.isFinite(num)) throw new ImagingError('TWF_E_IMPORT_CORRUPT', file, 'a StructureSetROISequence item has no ROINumber');
    const roi: RtRoi = { number: num, name: s(r, 'x30060026') ?? `ROI ${num}`, contours: [] };
    const fr = s(r, 'x30060024');
    if (fr) roi.frameOfReferenceUid = fr;
    rois.set(num, roi);
  }
  for (const rc of items(ds, 'x30060039')) {
    const num = Number(s(rc, 'x30060084'));
    let roi = rois.get(num);
    if (!roi) {
      roi = { number: num, name: `ROI ${num}`, contours: [] };
      rois.set(num, roi);
    }
    for (const c of items(rc, 'x30060040')) {
      const text = s(c, 'x30060050');
      if (!text) continue;
      const vals = parseDsList(text, valueCount(text));
      const npts = Number(s(c, 'x30060046') ?? vals.length / 3);
      if (vals.length % 3 !== 0 || vals.some((v) => !Number.isFinite(v)) || (Number.isFinite(npts) && npts * 3 !== vals.length)) {
        throw new ImagingError('TWF_E_IMPORT_CORRUPT', file, `ContourData of ROI ${num} (${roi.name}) has ${vals.length} values for ${npts} points, or values that are not numbers`);
      }
      const contour: RtContour = { geometricType: s(c, 'x30060042') ?? 'CLOSED_PLANAR', points: vals };
      const ref = items(c, 'x30060016')[0];
      const refUid = ref ? s(ref, 'x00081155') : undefined;
      if (refUid) contour.referencedSopInstanceUid = refUid;
      roi.contours.push(contour);
    }
  }
  const rt: RtStruct = { file, referencedSeriesUids: rtReferencedSeriesUids(ds), rois: [...rois.values()].sort((a, b) => a.number - b.number) };
  if (f.sopInstanceUid) rt.sopInstanceUid = f.sopInstanceUid;
  if (f.seriesUid) rt.seriesUid = f.seriesUid;
  const fr =
    f.frameOfReferenceUid ??
    items(ds, 'x30060010')
      .map((d) => s(d, 'x00200052'))
      .find((x) => x);
  if (fr) rt.frameOfReferenceUid = fr;
  return rt;
}

export interface RasteriseOptions {
  /** Skip the FrameOfReferenceUID check (both sides must otherwise agree when both are known). */
  ignoreFrameOfReference?: boolean;
  /** Voxel value written for the ROI (default 1). */
  value?: number;
  /** Import limits (limits.ts): rtStructToMasks refuses ROIs × grid voxels beyond maxMaskVoxels. */
  limits?: Partial<ImportLimits>;
}

/**
 * Rasterises one ROI onto the grid of `image` (usually the referenced series). Returns a
 * MaskVolume with the image's geometry, voxels 0 or `value`, one label { value, name }.
 */
export function rasteriseRoi(roi: RtRoi, image: ImageVolume, opts: RasteriseOptions = {}): MaskVolume {
  const value = opts.value ?? 1;
  const [nx, ny, nz] = image.dims;
  const warnings: string[] = [];
  if (!opts.ignoreFrameOfReference && roi.frameOfReferenceUid && image.frameOfReferenceUid && roi.frameOfReferenceUid !== image.frameOfReferenceUid) {
    throw new ImagingError(
      'TWF_E_IMPORT_REFERENCE',
      undefined,
      `ROI "${roi.name}" is in frame of reference ${roi.frameOfReferenceUid}, the image series ${image.seriesUid ?? ''} in ${image.frameOfReferenceUid}: they are not registered; rasterise onto the referenced series`,
    );
  }
  const toVox = worldToVoxelFn(image);
  const mask = new Uint8Array(nx * ny * nz);
  const sliceBuf = new Uint8Array(nx * ny);
  let skippedType = 0,
    outside = 0,
    nonPlanar = 0;
  for (const c of roi.contours) {
    if (c.geometricType !== 'CLOSED_PLANAR' || c.points.length < 9) {
      skippedType++;
      continue;
    }
    const np = c.points.length / 3;
    const xs = new Float64Array(np);
    const ys = new Float64Array(np);
    let kMin = Infinity,
      kMax = -Infinity,
      kSum = 0;
    for (let p = 0; p < np; p++) {
      const [i, j, k] = toVox(c.points[3 * p], c.points[3 * p + 1], c.points[3 * p + 2]);
      xs[p] = i;
      ys[p] = j;
      kMin = Math.min(kMin, k);
      kMax = Math.max(kMax, k);
      kSum += k;
    }
    if (kMax - kMin > 0.5) {
      nonPlanar++;
      continue;
    }
    const k = Math.round(kSum / np);
    if (k < 0 || k >= nz) {
      outside++;
      continue;
    }
    sliceBuf.fill(0);
    fillPolygonEvenOdd(xs, ys, nx, ny, sliceBuf);
    const base = k * nx * ny;
    for (let q = 0; q < sliceBuf.length; q++) if (sliceBuf[q]) mask[base + q] ^= 1;
  }
  if (skippedType) warnings.push(`ROI "${roi.name}": ${skippedType} contour(s) that are not CLOSED_PLANAR polygons were skipped`);
  if (nonPlanar) warnings.push(`ROI "${roi.name}": ${nonPlanar} contour(s) not parallel to the image slices were skipped`);
  if (outside) warnings.push(`ROI "${roi.name}": ${outside} contour(s) lie outside the image's slice range and were skipped`);
  const data = new Float32Array(mask.length);
  for (let q = 0; q < mask.length; q++) if (mask[q]) data[q] = value;
  const out: MaskVolume = {
    dims: [nx, ny, nz],
    spacingMm: [...image.spacingMm],
    originMm: [...image.originMm],
    direction: [...image.direction],
    data,
    labels: [{ value, name: roi.name }],
    source: { ...image.source, files: [...image.source.files] },
  };
  for (const k of ['modality', 'seriesUid', 'studyDate', 'patientId', 'frameOfReferenceUid'] as const) {
    const v = image[k];
    if (v !== undefined) out[k] = v;
  }
  out.seriesDescription = roi.name;
  if (warnings.length) out.warnings = warnings;
  return out;
}

const hasClosedContour = (r: RtRoi) => r.contours.some((c) => c.geometricType === 'CLOSED_PLANAR');

/**
 * Refuses (TWF_E_IMPORT_TOO_LARGE) the masks `rts` would make on `image` when their voxels
 * (one grid per ROI with a closed contour) exceed limits.maxMaskVoxels; pass every RTSTRUCT of a
 * series to check them together.
 */
export function checkMaskVoxels(rts: RtStruct[], image: ImageVolume, limits: ImportLimits): void {
  const rois = rts.reduce((n, rt) => n + rt.rois.filter(hasClosedContour).length, 0);
  const grid = image.dims[0] * image.dims[1] * image.dims[2];
  if (rois * grid > limits.maxMaskVoxels) {
    throw tooLarge(rts[0]?.file, 'maxMaskVoxels', `${rois} ROIs x ${image.dims.join('x')} grid = ${rois * grid} mask voxels`, `${limits.maxMaskVoxels} mask voxels per series`);
  }
}

/**
 * One mask per ROI that has at least one closed polygon, each on the grid of `image`. ROIs ×
 * grid voxels beyond `opts.limits.maxMaskVoxels` is refused before the first mask is made.
 */
export function rtStructToMasks(rt: RtStruct, image: ImageVolume, opts: RasteriseOptions = {}): MaskVolume[] {
  checkMaskVoxels([rt], image, importLimits(opts.limits));
  return rt.rois.filter(hasClosedContour).map((r) => {
    const m = rasteriseRoi(r, image, opts);
    m.source = { ...m.source, files: [rt.file] };
    return m;
  });
}

/**
 * Fills `out` (nx*ny, x fastest) with 1 where the pixel centre (i, j) is inside the polygon
 * (xs, ys) by the even-odd rule; half-open on crossings so shared edges are not counted twice.
 */
export function fillPolygonEvenOdd(xs: Float64Array, ys: Float64Array, nx: number, ny: number, out: Uint8Array): void {
  const n = xs.length;
  let yMin = Infinity,
    yMax = -Infinity;
  for (let p = 0; p < n; p++) {
    yMin = Math.min(yMin, ys[p]);
    yMax = Math.max(yMax, ys[p]);
  }
  const j0 = Math.max(0, Math.ceil(yMin));
  const j1 = Math.min(ny - 1, Math.floor(yMax));
  const cross: number[] = [];
  for (let j = j0; j <= j1; j++) {
    cross.length = 0;
    for (let p = 0, q = n - 1; p < n; q = p++) {
      const ya = ys[q],
        yb = ys[p];
      if ((ya <= j && yb > j) || (yb <= j && ya > j)) cross.push(xs[q] + ((j - ya) * (xs[p] - xs[q])) / (yb - ya));
    }
    cross.sort((a, b) => a - b);
    for (let c = 0; c + 1 < cross.length; c += 2) {
      const i0 = Math.max(0, Math.ceil(cross[c]));
      const i1 = Math.min(nx - 1, Math.ceil(cross[c + 1]) - 1);
      for (let i = i0; i <= i1; i++) out[i + nx * j] ^= 1;
    }
  }
}
