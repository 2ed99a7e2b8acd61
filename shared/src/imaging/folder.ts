/**
 * The only file-system code of imaging/: scan a folder into import units, and load a unit.
 * Scanning reads the first 64 KiB of each file (DICOM headers are parsed up to PixelData; a file
 * whose header is longer, e.g. an RTSTRUCT, is read whole), so pixel data is read only once, by
 * loadImportUnit.
 */
import { open, readFile, readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { ImagingError, describeThrown, type ImagingErrorCode } from './errors.js';
import { dicomSeriesToVolume, groupDicomSeries, parseDicomFile, type DicomFile, type DicomSeriesOptions } from './dicom.js';
import { gunzipPrefix, isGzip } from './gzip.js';
import { checkFileSize, importLimits, type ImportLimits } from './limits.js';
import { niftiMagicProblem, readNiftiImage } from './nifti.js';
import { readNrrdImage } from './nrrd.js';
import { checkMaskVoxels, parseRtStruct, rtReferencedSeriesUids, rtStructToMasks } from './rtstruct.js';
import { sniffFormat } from './sniff.js';
import type { ImageVolume, MaskVolume } from './types.js';

export interface ImportUnit {
  kind: 'nifti' | 'nrrd' | 'dicom-series' | 'csv';
  /** Paths; for a DICOM series every slice (in path order; the loader sorts by position). */
  files: string[];
  seriesUid?: string;
  modality?: string;
  seriesDescription?: string;
  patientId?: string;
  studyDate?: string;
  /** RTSTRUCT files whose ReferencedFrameOfReferenceSequence names this series (or, failing that, its frame of reference). */
  rtstructs?: string[];
}

export interface FolderScan {
  root: string;
  units: ImportUnit[];
  /** RTSTRUCTs whose referenced series is not in the folder. */
  unattachedRtstructs: string[];
  /** Files that are not images/tables, or could not be read, with the reason (and its code when an ImagingError said it). */
  skipped: { file: string; reason: string; code?: ImagingErrorCode }[];
}

const PREFIX = 64 * 1024;
const byCodePoint = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

async function readPrefix(file: string, n: number): Promise<Uint8Array> {
  const fh = await open(file, 'r');
  try {
    const buf = new Uint8Array(n);
    const { bytesRead } = await fh.read(buf, 0, n, 0);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

/** The whole file, once its size is known to be within the limits (TWF_E_IMPORT_TOO_LARGE otherwise). */
async function readFileWithin(file: string, limits: ImportLimits): Promise<Uint8Array> {
  checkFileSize(file, (await stat(file)).size, limits);
  return readFile(file);
}

async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string) => {
    const entries = await readdir(d, { withFileTypes: true });
    for (const e of entries) {
      if (e.name.startsWith('.')) continue;
      const p = path.join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.isFile()) out.push(p);
    }
  };
  await walk(dir);
  return out.sort();
}

/** Lists `root` recursively and groups its files into import units (see ImportUnit). `limits` cap the files read whole (DICOM headers longer than 64 KiB). */
export async function scanFolder(root: string, limits: Partial<ImportLimits> = {}): Promise<FolderScan> {
  const lim = importLimits(limits);
  const files = await listFiles(root);
  const units: ImportUnit[] = [];
  const skipped: FolderScan['skipped'] = [];
  const dicom: DicomFile[] = [];
  const BATCH = 16;
  for (let b = 0; b < files.length; b += BATCH) {
    await Promise.all(
      files.slice(b, b + BATCH).map(async (file) => {
        try {
          const head = await readPrefix(file, PREFIX);
          const kind = sniffFormat(file, head);
          const niftiProblem = kind === 'nifti' ? niftiMagicProblem(isGzip(head) ? (gunzipPrefix(head) ?? head) : head) : null;
          if (niftiProblem && niftiProblem !== 'not a NIfTI header') skipped.push({ file, reason: niftiProblem });
          else if (kind === 'nifti' || kind === 'nrrd' || kind === 'csv') units.push({ kind, files: [file] });
          else if (kind === 'dicom') {
            let f: DicomFile;
            try {
              f = parseDicomFile(head, file, { headerOnly: true, limits: lim });
            } catch {
              f = parseDicomFile(await readFileWithin(file, lim), file, { headerOnly: true, limits: lim });
            }
            if (f.kind === 'other') skipped.push({ file, reason: `DICOM object without image (SOP class ${f.sopClassUid ?? '?'})` });
            else dicom.push(f);
          } else skipped.push({ file, reason: 'not a NIfTI, NRRD, DICOM or CSV file' });
        } catch (e) {
          skipped.push({ file, reason: describeThrown(e), ...(e instanceof ImagingError ? { code: e.code } : {}) });
        }
      }),
    );
  }
  const { series, rtstructs, duplicates } = groupDicomSeries(dicom.sort((a, b) => byCodePoint(a.name, b.name)));
  for (const d of duplicates) skipped.push({ file: d.file, reason: `same SOPInstanceUID as ${d.duplicateOf} (a copy of the same image); left out` });
  const seriesUnits = new Map<string, ImportUnit>();
  const forOf = new Map<string, string[]>();
  for (const s of series) {
    const f0 = s.files[0].dataSet;
    const u: ImportUnit = { kind: 'dicom-series', files: s.files.map((f) => f.name).sort(), seriesUid: s.seriesUid };
    if (s.modality) u.modality = s.modality;
    if (s.seriesDescription) u.seriesDescription = s.seriesDescription;
    const pid = f0.string('x00100020');
    if (pid) u.patientId = pid;
    const date = f0.string('x00080020');
    if (date) u.studyDate = date;
    seriesUnits.set(s.seriesUid, u);
    const fr = s.files[0].frameOfReferenceUid;
    if (fr) forOf.set(fr, [...(forOf.get(fr) ?? []), s.seriesUid]);
    units.push(u);
  }
  const unattached: string[] = [];
  for (const rt of rtstructs) {
    let targets = rtReferencedSeriesUids(rt.dataSet).filter((uid) => seriesUnits.has(uid));
    if (targets.length === 0 && rt.frameOfReferenceUid) {
      const same = forOf.get(rt.frameOfReferenceUid) ?? [];
      if (same.length === 1) targets = same;
    }
    if (targets.length === 0) unattached.push(rt.name);
    for (const uid of targets) {
      const u = seriesUnits.get(uid)!;
      (u.rtstructs ??= []).push(rt.name);
    }
  }
  units.sort((a, b) => byCodePoint(a.files[0], b.files[0]));
  skipped.sort((a, b) => byCodePoint(a.file, b.file));
  return { root, units, unattachedRtstructs: unattached.sort(), skipped };
}

/**
 * Reads a unit: the image volume, plus for a DICOM series one mask per ROI of each attached
 * RTSTRUCT, rasterised on the series' grid. CSV units are not images (TWF_E_IMPORT_UNKNOWN_FORMAT).
 * Every file's size, and what its header declares, is checked against `opts.limits` before it is
 * read or allocated from (TWF_E_IMPORT_TOO_LARGE).
 */
export async function loadImportUnit(unit: ImportUnit, opts: DicomSeriesOptions = {}): Promise<{ image: ImageVolume; masks: MaskVolume[] }> {
  const limits = importLimits(opts.limits);
  const file = unit.files[0];
  switch (unit.kind) {
    case 'nifti':
      return { image: readNiftiImage(await readFileWithin(file, limits), file, limits), masks: [] };
    case 'nrrd':
      return { image: readNrrdImage(await readFileWithin(file, limits), file, limits), masks: [] };
    case 'dicom-series': {
      for (const f of [...unit.files, ...(unit.rtstructs ?? [])]) checkFileSize(f, (await stat(f)).size, limits);
      const parsed = await Promise.all(unit.files.map(async (f) => parseDicomFile(await readFile(f), f, { limits })));
      const image = dicomSeriesToVolume(parsed, { ...opts, limits });
      const rts = await Promise.all((unit.rtstructs ?? []).map(async (f) => parseRtStruct(await readFile(f), f, limits)));
      checkMaskVoxels(rts, image, limits);
      const masks: MaskVolume[] = [];
      for (const rt of rts) masks.push(...rtStructToMasks(rt, image, { limits }));
      return { image, masks };
    }
    default:
      throw new ImagingError('TWF_E_IMPORT_UNKNOWN_FORMAT', unit.files[0], 'is a CSV table: read it with the CSV importer, not as an image');
  }
}
