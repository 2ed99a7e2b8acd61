import { parse } from 'csv-parse/sync';
import { z } from 'zod';
import { volumeFromDiameter } from '@twinfed/shared/twin/index';

/**
 * A small mapping file tells the importer which CSV columns hold what, so a
 * hospital's clinical export can be read without code. Volumes come either
 * from a column or from the longest diameter with the ellipsoid approximation
 * V = 0.52·d³ used in the growth literature (d in mm gives mm³).
 */
export const CsvMappingSchema = z.object({
  name: z.string(),
  columns: z
    .object({
      patientId: z.string(),
      day: z.string(),
      longestDiameterMm: z.string().optional(),
      volumeMm3: z.string().optional(),
      /** Treatment arm or agent class; becomes a systemic-therapy record. */
      arm: z.string().optional(),
    })
    .refine((c) => c.longestDiameterMm || c.volumeMm3, 'map longestDiameterMm or volumeMm3'),
  /** Lesion name the measurements belong to. */
  lesion: z.string().default('target'),
  /** Systemic therapy from the arm column starts at this day (trial day 0 = treatment start). */
  armStartDay: z.number().default(0),
  /** Prefix so patient ids of different files cannot collide (e.g. the file name). */
  patientPrefix: z.string().default(''),
  delimiter: z.string().default(','),
});
export type CsvMapping = z.infer<typeof CsvMappingSchema>;

/** Built-in mapping of the Ghaffari Laleh et al. 2022 (PLoS Comput Biol) S1 Data layout. */
export const LALEH_MAPPING: CsvMapping = CsvMappingSchema.parse({
  name: 'laleh',
  columns: { patientId: 'Patient_Anonmyized', day: 'Treatment_Day', longestDiameterMm: 'TargetLesionLongDiam_mm', arm: 'Study_Arm' },
});

export const BUILTIN_MAPPINGS: Record<string, CsvMapping> = { laleh: LALEH_MAPPING };

export interface MappedPatient {
  patientId: string;
  arm: string | null;
  measurements: { day: number; longestDiameterMm: number | null; volumeMm3: number }[];
}

export interface MappedCsv {
  patients: MappedPatient[];
  /** Rows not used, with why (1-based data row numbers). */
  skipped: { row: number; reason: string }[];
}

/** Applies a mapping to CSV text; pure. Throws naming a missing column. */
export function mapMeasurementCsv(text: string, mapping: CsvMapping): MappedCsv {
  const rows = parse(text, { columns: true, skip_empty_lines: true, trim: true, delimiter: mapping.delimiter, bom: true }) as Record<string, string>[];
  const c = mapping.columns;
  if (rows.length > 0) {
    for (const col of [c.patientId, c.day, c.longestDiameterMm, c.volumeMm3, c.arm].filter((x): x is string => !!x)) {
      if (!(col in rows[0])) throw new Error(`TWF_E_IMPORT: column "${col}" (mapping ${mapping.name}) not in the CSV header: ${Object.keys(rows[0]).join(', ')}`);
    }
  }
  const byId = new Map<string, MappedPatient>();
  const skipped: MappedCsv['skipped'] = [];
  rows.forEach((r, i) => {
    const id = String(r[c.patientId] ?? '').trim();
    const day = Number(r[c.day]);
    if (!id) return void skipped.push({ row: i + 1, reason: 'no patient id' });
    if (r[c.day] === '' || !Number.isFinite(day)) return void skipped.push({ row: i + 1, reason: `day "${r[c.day]}" is not a number` });
    const d = c.longestDiameterMm ? Number(r[c.longestDiameterMm]) : NaN;
    const v = c.volumeMm3 ? Number(r[c.volumeMm3]) : NaN;
    let volumeMm3: number;
    if (c.volumeMm3 && r[c.volumeMm3] !== '' && Number.isFinite(v)) volumeMm3 = v;
    else if (c.longestDiameterMm && r[c.longestDiameterMm] !== '' && Number.isFinite(d)) volumeMm3 = volumeFromDiameter(d);
    else return void skipped.push({ row: i + 1, reason: `no usable measurement ("${c.longestDiameterMm ? r[c.longestDiameterMm] : r[c.volumeMm3!]}")` });
    const pid = mapping.patientPrefix + id;
    const p = byId.get(pid) ?? { patientId: pid, arm: c.arm ? r[c.arm] || null : null, measurements: [] };
    p.measurements.push({ day, longestDiameterMm: Number.isFinite(d) ? d : null, volumeMm3 });
    byId.set(pid, p);
  });
  for (const p of byId.values()) p.measurements.sort((a, b) => a.day - b.day);
  return { patients: [...byId.values()], skipped };
}
