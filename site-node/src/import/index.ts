import { and, eq, isNotNull } from 'drizzle-orm';
import { closeSync, openSync, readFileSync, readSync, statSync } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import { sha256Hex } from '@twinfed/protocols';
import type { AuditLog } from '@twinfed/shared/audit/index';
import { extractSlices, type NiftiVolume } from '@twinfed/shared/data/index';
import {
  ImagingError,
  checkFileSize,
  fileDigest,
  importLimits,
  loadImportUnit,
  longestDiameterMm,
  maskVolumeMm3,
  maskVoxelCount,
  scanFolder,
  sniffFormat,
  type ImageVolume,
  type ImportLimits,
  type ImportUnit,
  type MaskVolume,
} from '@twinfed/shared/imaging/index';
import type { SiteDb } from '../db/index.js';
import { importedFiles, imagingSeries, lesions, masks, measurements, radiomicsFeatures, segSlices, timepoints, treatments, twinPatients } from '../db/schema.js';
import { TwinService, type RefitResult } from '../twin/service.js';
import { BUILTIN_MAPPINGS, mapMeasurementCsv, type CsvMapping } from './csv-mapping.js';
import { radiomicsForMask, type ImportRadiomics } from './radiomics.js';

export interface ImportOptions {
  /** Only these patients (ids as the importer derives them). */
  patients?: string[];
  /** Patients held out as validation for segmentation studies (default: a stable 1-in-4 by id hash). */
  val?: string[];
  /** Segmentation slice edge in pixels. */
  size?: number;
  /** CSV mapping (default: recognised built-in layouts, e.g. laleh). */
  mapping?: CsvMapping;
  /** Override the patient id / day of image files that carry none (NIfTI, NRRD). */
  patient?: string;
  day?: number;
  /** Refit the twins of patients whose measurements changed (default true). */
  refit?: boolean;
  /** Compute IBSI radiomics features of every imported mask (default true; docs/radiomics.md). */
  radiomics?: boolean;
  /**
   * Caps on what one file may make the importer allocate (voxels, decompressed bytes, compression
   * ratio, RTSTRUCT points and masks); the defaults of DEFAULT_IMPORT_LIMITS for those not given.
   * A file beyond one is reported `failed` with TWF_E_IMPORT_TOO_LARGE and nothing of it is stored.
   */
  limits?: Partial<ImportLimits>;
  /**
   * Called with each row as soon as its file is done (skipped files found while scanning first),
   * `index` of `total` counting from 1, so a long import can show progress as it goes.
   */
  onRow?: (row: ImportRow, index: number, total: number) => void;
  /** Called with each twin refit as it finishes (after every file), `index` of `total`. */
  onRefit?: (refit: RefitResult, index: number, total: number) => void;
}

export interface ImportRow {
  unit: string;
  kind: string;
  status: 'imported' | 'unchanged' | 'skipped' | 'failed';
  patientId?: string;
  /** Segmentation training data made from this unit (PET with a tumour mask). */
  seg?: { split: 'train' | 'val'; nSlices: number };
  detail: string;
}

export interface ImportReport {
  rows: ImportRow[];
  refits: RefitResult[];
}

const MASK_RE = /([_-]?)(mask|label|labels|seg|segmentation)$/i;

/** The first `n` bytes of a file (format sniffing reads no more, whatever the file's size). */
function readHead(file: string, n: number): Uint8Array {
  const fd = openSync(file, 'r');
  try {
    const buf = new Uint8Array(n);
    return buf.subarray(0, readSync(fd, buf, 0, n, 0));
  } finally {
    closeSync(fd);
  }
}
const stem = (f: string) => basename(f).replace(/\.(nii\.gz|nii|nrrd|nhdr|csv|gz)$/i, '');

function modalityOf(image: ImageVolume, file: string): string {
  if (image.modality) return image.modality === 'PT' ? 'PET' : image.modality;
  const s = basename(file).toUpperCase();
  return /PET|SUV/.test(s) ? 'PET' : /(^|[_-])(MR|T1|T2|FLAIR)/.test(s) ? 'MR' : /(^|[_-])CT/.test(s) ? 'CT' : 'unknown';
}

function daysBetween(a: string, b: string): number {
  const d = (s: string) => Date.UTC(Number(s.slice(0, 4)), Number(s.slice(4, 6)) - 1, Number(s.slice(6, 8)));
  return Math.round((d(b) - d(a)) / 86_400_000);
}

/**
 * `twinfed site import PATH`: NIfTI (1/2, both byte orders), NRRD, DICOM
 * series (with RTSTRUCT contours rasterised to masks) and measurement CSVs
 * through a mapping. Each unit (a file, or a DICOM series with its
 * structures) is stored in one transaction or not at all; bad files are
 * reported and the rest go on; re-importing identical bytes changes nothing.
 * Patients whose measurements changed get their twin refitted.
 */
export async function importPath(db: SiteDb, audit: AuditLog, path: string, opts: ImportOptions = {}): Promise<ImportReport> {
  const root = resolve(path);
  const isDir = statSync(root).isDirectory();
  const limits = importLimits(opts.limits);
  opts = { ...opts, limits };
  let units: ImportUnit[];
  const rows: ImportRow[] = [];
  if (isDir) {
    const scan = await scanFolder(root, limits);
    units = scan.units;
    // A file refused by an import limit while scanning (a gzipped DICOM bomb) failed; the rest are not for us.
    for (const s of scan.skipped) rows.push({ unit: s.file, kind: 'unknown', status: s.code === 'TWF_E_IMPORT_TOO_LARGE' ? 'failed' : 'skipped', detail: s.reason });
    for (const r of scan.unattachedRtstructs) rows.push({ unit: r, kind: 'rtstruct', status: 'skipped', detail: 'its referenced image series is not in this folder; import them together' });
  } else {
    const kind = sniffFormat(root, readHead(root, 65536));
    if (kind === 'unknown') {
      const row: ImportRow = { unit: root, kind, status: 'skipped', detail: 'not NIfTI, NRRD, DICOM or CSV' };
      opts.onRow?.(row, 1, 1);
      return { rows: [row], refits: [] };
    }
    units = [{ kind: kind === 'dicom' ? 'dicom-series' : kind, files: [root] }];
  }

  // NIfTI/NRRD label files travel with the image of the same stem in the same folder.
  const imageUnits = units.filter((u) => (u.kind === 'nifti' || u.kind === 'nrrd') && !MASK_RE.test(stem(u.files[0])));
  const maskFor = new Map<ImportUnit, ImportUnit[]>();
  for (const u of units.filter((x) => (x.kind === 'nifti' || x.kind === 'nrrd') && MASK_RE.test(stem(x.files[0])))) {
    const s = stem(u.files[0]);
    const wanted = [s.replace(MASK_RE, ''), s.replace(/mask|label|seg/i, 'image')];
    const img = imageUnits.find((i) => dirname(i.files[0]) === dirname(u.files[0]) && wanted.includes(stem(i.files[0])));
    if (img) maskFor.set(img, [...(maskFor.get(img) ?? []), u]);
    else rows.push({ unit: u.files[0], kind: u.kind, status: 'skipped', detail: `label file without its image (looked for ${wanted.join(' or ')})` });
  }

  const patientOf = (u: ImportUnit, image?: ImageVolume): string => {
    if (opts.patient) return opts.patient;
    if (image?.patientId) return image.patientId;
    const d = dirname(u.files[0]);
    return isDir && d !== root ? basename(d) : stem(u.files[0]).replace(/[_-]?(image|img|ct|pet|mr)$/i, '') || stem(u.files[0]);
  };
  const changed = new Set<string>();

  const isLabel = (u: ImportUnit) => (u.kind === 'nifti' || u.kind === 'nrrd') && !imageUnits.includes(u);
  const total = rows.length + units.filter((u) => !isLabel(u)).length;
  rows.forEach((r, i) => opts.onRow?.(r, i + 1, total));
  const report = (r: ImportRow) => {
    rows.push(r);
    opts.onRow?.(r, rows.length, total);
  };
  for (const u of units) {
    if (u.kind === 'csv') {
      report(importCsv(db, audit, u.files[0], opts, changed));
      continue;
    }
    if (isLabel(u)) continue; // a label, handled with its image
    report(await importImageUnit(db, audit, u, maskFor.get(u) ?? [], patientOf, opts, changed));
  }

  const refits: RefitResult[] = [];
  if (opts.refit !== false) {
    const twin = new TwinService(db, audit);
    const patients = [...changed].sort();
    for (const p of patients) {
      try {
        refits.push(twin.refit(p));
      } catch (e) {
        refits.push({ patientId: p, points: 0, selected: null, method: null, scored: [], reason: `TWF_E_TWIN_FIT: ${(e as Error).message}` });
      }
      opts.onRefit?.(refits[refits.length - 1], refits.length, patients.length);
    }
  }
  return { rows, refits };
}

async function importImageUnit(
  db: SiteDb,
  audit: AuditLog,
  u: ImportUnit,
  labelUnits: ImportUnit[],
  patientOf: (u: ImportUnit, i?: ImageVolume) => string,
  opts: ImportOptions,
  changed: Set<string>,
): Promise<ImportRow> {
  const name = u.kind === 'dicom-series' ? `${dirname(u.files[0])} (DICOM series, ${u.files.length} files)` : u.files[0];
  const allFiles = [...u.files, ...(u.rtstructs ?? []), ...labelUnits.flatMap((l) => l.files)];
  let digest: string;
  try {
    for (const f of allFiles) checkFileSize(f, statSync(f).size, opts.limits);
    digest = sha256Hex(allFiles.map((f) => fileDigest(new Uint8Array(readFileSync(f)))).join(''));
  } catch (e) {
    return { unit: name, kind: u.kind, status: 'failed', detail: (e as Error).message };
  }
  if (db.select().from(importedFiles).where(eq(importedFiles.digest, digest)).get()) return { unit: name, kind: u.kind, status: 'unchanged', detail: 'already imported (same bytes)' };
  let image: ImageVolume;
  let labelMasks: MaskVolume[];
  try {
    const loaded = await loadImportUnit(u, { limits: opts.limits ?? {} });
    image = loaded.image;
    labelMasks = loaded.masks;
    for (const l of labelUnits) {
      const m = (await loadImportUnit(l, { limits: opts.limits ?? {} })).image;
      if (m.dims.join() !== image.dims.join()) throw new ImagingError('TWF_E_IMPORT_GEOMETRY', l.files[0], `has dims ${m.dims.join('x')}, its image ${image.dims.join('x')}`);
      labelMasks.push({ ...m, labels: [{ value: 1, name: 'GTV' }] });
    }
  } catch (e) {
    return { unit: name, kind: u.kind, status: 'failed', detail: e instanceof ImagingError ? e.message : `TWF_E_IMPORT: ${(e as Error).message}` };
  }
  const patientId = patientOf(u, image);
  if (opts.patients && !opts.patients.includes(patientId)) return { unit: name, kind: u.kind, status: 'skipped', patientId, detail: 'patient not selected (--patients)' };
  const modality = modalityOf(image, u.files[0]);
  // Radiomics of each mask label, computed before the transaction (pure, may take a second or two).
  const radiomics = new Map<string, ImportRadiomics>();
  if (opts.radiomics !== false) {
    labelMasks.forEach((m, i) => {
      for (const lab of m.labels.length ? m.labels : [{ value: 1, name: 'GTV' }]) {
        if (maskVoxelCount(m, lab.value) > 0) radiomics.set(`${i}:${lab.value}`, radiomicsForMask(image, m, lab.value, modality));
      }
    });
  }
  const studyDate = image.studyDate && /^\d{8}$/.test(image.studyDate) ? image.studyDate : null;

  try {
    let seg: ImportRow['seg'];
    const detail = db.transaction((tx) => {
      tx.insert(twinPatients).values({ patientId, createdAtMs: Date.now() }).onConflictDoNothing().run();
      // Day 0 is the patient's first dated study unless --day says otherwise.
      let day = opts.day ?? 0;
      if (opts.day === undefined && studyDate) {
        const first = tx
          .select({ date: timepoints.date })
          .from(timepoints)
          .where(and(eq(timepoints.patientId, patientId), isNotNull(timepoints.date)))
          .all()
          .map((r) => r.date!)
          .sort()[0];
        day = first ? daysBetween(first.replace(/-/g, ''), studyDate) : 0;
      }
      const iso = studyDate ? `${studyDate.slice(0, 4)}-${studyDate.slice(4, 6)}-${studyDate.slice(6, 8)}` : null;
      tx.insert(timepoints).values({ patientId, day, date: iso }).onConflictDoNothing().run();
      const tp = tx
        .select()
        .from(timepoints)
        .where(and(eq(timepoints.patientId, patientId), eq(timepoints.day, day)))
        .get()!;
      const series = tx
        .insert(imagingSeries)
        .values({
          patientId,
          timepointId: tp.id,
          modality,
          sequence: image.seriesDescription ?? (modality === 'PET' ? 'SUV' : null),
          seriesUid: image.seriesUid ?? null,
          format: image.source.format,
          dimsJson: JSON.stringify(image.dims),
          spacingMmJson: JSON.stringify(image.spacingMm),
          orientationJson: JSON.stringify(image.direction),
          fileDigest: digest,
          path: u.files[0],
        })
        .returning({ id: imagingSeries.id })
        .get();
      const notes: string[] = [`${modality} ${image.dims.join('x')} @ ${image.spacingMm.map((s) => s.toFixed(2)).join('x')} mm, day ${day}`];
      for (const [maskIndex, m] of labelMasks.entries()) {
        for (const lab of m.labels.length ? m.labels : [{ value: 1, name: 'GTV' }]) {
          const voxels = maskVoxelCount(m, lab.value);
          if (voxels === 0) continue;
          tx.insert(lesions).values({ patientId, name: lab.name }).onConflictDoNothing().run();
          const lesion = tx
            .select()
            .from(lesions)
            .where(and(eq(lesions.patientId, patientId), eq(lesions.name, lab.name)))
            .get()!;
          const volumeMm3 = maskVolumeMm3(m, lab.value);
          const diameter = longestDiameterMm(m, 'in-plane', lab.value);
          const mask = tx
            .insert(masks)
            .values({ seriesId: series.id, lesionId: lesion.id, origin: u.rtstructs?.length ? 'rtstruct' : 'manual', voxels, volumeMm3, longestDiameterMm: diameter, fileDigest: digest })
            .returning({ id: masks.id })
            .get();
          const rad = radiomics.get(`${maskIndex}:${lab.value}`);
          if (rad?.ok) {
            const rows = Object.entries(rad.features).map(([tag, value]) => ({
              maskId: mask.id,
              patientId,
              lesionId: lesion.id,
              settings: rad.name,
              tag,
              value: Number.isFinite(value) ? value : null,
            }));
            for (let r = 0; r < rows.length; r += 200)
              tx.insert(radiomicsFeatures)
                .values(rows.slice(r, r + 200))
                .run();
            notes.push(`${lab.name}: ${rows.length} radiomics features (${rad.name})${rad.warnings.length ? ` [${rad.warnings.join('; ')}]` : ''}`);
          } else if (rad) notes.push(`${lab.name}: no radiomics features: ${rad.reason}`);
          tx.insert(measurements)
            .values({ patientId, lesionId: lesion.id, timepointId: tp.id, day, volumeMm3, longestDiameterMm: diameter, source: 'mask', sourceDigest: digest })
            .onConflictDoUpdate({
              target: [measurements.patientId, measurements.lesionId, measurements.day, measurements.source],
              set: { volumeMm3, longestDiameterMm: diameter, sourceDigest: digest },
            })
            .run();
          changed.add(patientId);
          notes.push(`${lab.name} ${volumeMm3.toFixed(0)} mm³, longest diameter ${diameter.toFixed(1)} mm`);
        }
      }
      // PET with a tumour mask also becomes segmentation training data.
      const first = labelMasks[0];
      if (modality === 'PET' && first) {
        const size = opts.size ?? 48;
        const binary = Float32Array.from(first.data, (v) => (v > 0 ? 1 : 0));
        const asNifti = (v: ImageVolume, data: Float32Array): NiftiVolume => ({ dims: v.dims, spacingMm: v.spacingMm, data, datatypeCode: 16 });
        const s = extractSlices(asNifti(image, image.data), asNifti(first, binary), { size });
        const split = opts.val ? (opts.val.includes(patientId) ? 'val' : 'train') : parseInt(sha256Hex(patientId).slice(0, 8), 16) % 4 === 0 ? 'val' : 'train';
        const values = {
          patientId,
          split,
          modality,
          sourceDigest: digest,
          nSlices: s.n,
          size: s.size,
          images: Buffer.from(s.images.buffer, s.images.byteOffset, s.images.byteLength),
          masks: Buffer.from(s.masks.buffer, s.masks.byteOffset, s.masks.byteLength),
          pixelSpacingMm: image.spacingMm[0],
          sliceThicknessMm: image.spacingMm[2],
          importedAtMs: Date.now(),
        };
        if (s.n > 0) {
          tx.insert(segSlices).values(values).onConflictDoUpdate({ target: segSlices.patientId, set: values }).run();
          notes.push(`${s.n} segmentation slices (${split})`);
          seg = { split: split as 'train' | 'val', nSlices: s.n };
        }
      }
      for (const f of [digest]) tx.insert(importedFiles).values({ digest: f, path: u.files[0], kind: u.kind, patientId, importedAtMs: Date.now() }).run();
      audit.append({ actor: audit.ownerId, action: 'data.imported', digest, detail: `${patientId}: ${notes.join('; ')}` });
      return notes.join('; ');
    });
    return { unit: name, kind: u.kind, status: 'imported', patientId, detail, ...(seg ? { seg } : {}) };
  } catch (e) {
    return { unit: name, kind: u.kind, status: 'failed', patientId, detail: `TWF_E_IMPORT: ${(e as Error).message}` };
  }
}

function importCsv(db: SiteDb, audit: AuditLog, file: string, opts: ImportOptions, changed: Set<string>): ImportRow {
  let text: string;
  try {
    checkFileSize(file, statSync(file).size, opts.limits);
    text = readFileSync(file, 'utf8');
  } catch (e) {
    return { unit: file, kind: 'csv', status: 'failed', detail: (e as Error).message };
  }
  const digest = sha256Hex(text);
  if (db.select().from(importedFiles).where(eq(importedFiles.digest, digest)).get()) return { unit: file, kind: 'csv', status: 'unchanged', detail: 'already imported (same bytes)' };
  const header = text.slice(0, text.indexOf('\n'));
  const mapping = opts.mapping ?? Object.values(BUILTIN_MAPPINGS).find((m) => header.includes(m.columns.patientId) && header.includes(m.columns.day));
  if (!mapping) return { unit: file, kind: 'csv', status: 'skipped', detail: 'no mapping for this CSV layout: pass --mapping FILE (see docs/twin.md)' };
  try {
    const mapped = mapMeasurementCsv(text, mapping);
    const selected = mapped.patients.filter((p) => !opts.patients || opts.patients.includes(p.patientId));
    db.transaction((tx) => {
      for (const p of selected) {
        tx.insert(twinPatients)
          .values({ patientId: p.patientId, cohort: stem(file), createdAtMs: Date.now() })
          .onConflictDoNothing()
          .run();
        tx.insert(lesions).values({ patientId: p.patientId, name: mapping.lesion }).onConflictDoNothing().run();
        const lesion = tx
          .select()
          .from(lesions)
          .where(and(eq(lesions.patientId, p.patientId), eq(lesions.name, mapping.lesion)))
          .get()!;
        for (const m of p.measurements) {
          tx.insert(timepoints).values({ patientId: p.patientId, day: m.day }).onConflictDoNothing().run();
          const tp = tx
            .select()
            .from(timepoints)
            .where(and(eq(timepoints.patientId, p.patientId), eq(timepoints.day, m.day)))
            .get()!;
          tx.insert(measurements)
            .values({
              patientId: p.patientId,
              lesionId: lesion.id,
              timepointId: tp.id,
              day: m.day,
              volumeMm3: m.volumeMm3,
              longestDiameterMm: m.longestDiameterMm,
              source: 'csv',
              sourceDigest: digest,
            })
            .onConflictDoUpdate({
              target: [measurements.patientId, measurements.lesionId, measurements.day, measurements.source],
              set: { volumeMm3: m.volumeMm3, longestDiameterMm: m.longestDiameterMm, sourceDigest: digest },
            })
            .run();
        }
        if (
          p.arm &&
          !tx
            .select()
            .from(treatments)
            .where(and(eq(treatments.patientId, p.patientId), eq(treatments.agentClass, p.arm)))
            .get()
        ) {
          tx.insert(treatments).values({ patientId: p.patientId, kind: 'systemic', startDay: mapping.armStartDay, stopDay: null, agentClass: p.arm, sourceDigest: digest }).run();
        }
        changed.add(p.patientId);
      }
      tx.insert(importedFiles).values({ digest, path: file, kind: 'csv', patientId: null, importedAtMs: Date.now() }).run();
      audit.append({
        actor: audit.ownerId,
        action: 'data.imported',
        digest,
        detail: `${basename(file)} (${mapping.name}): ${selected.length} patients, ${selected.reduce((a, p) => a + p.measurements.length, 0)} measurements, ${mapped.skipped.length} rows skipped`,
      });
    });
    const reasons = [...new Set(mapped.skipped.map((s) => s.reason.replace(/".*"/, '"…"')))].slice(0, 3).join('; ');
    return {
      unit: file,
      kind: 'csv',
      status: 'imported',
      detail: `${mapping.name}: ${selected.length} patients, ${selected.reduce((a, p) => a + p.measurements.length, 0)} measurements; ${mapped.skipped.length} rows skipped${reasons ? ` (${reasons})` : ''}`,
    };
  } catch (e) {
    return { unit: file, kind: 'csv', status: 'failed', detail: (e as Error).message };
  }
}
