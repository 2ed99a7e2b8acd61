import { parse } from 'csv-parse/sync';

/**
 * Thin reader for the Ghaffari Laleh et al. 2022 (PLoS Comput Biol, S1 Data, CC BY 4.0) tables:
 * columns Patient_Anonmyized, Treatment_Day, TargetLesionLongDiam_mm, Study_Arm.
 * The only I/O-shaped code of the twin core, and it takes text, not a path.
 */

/** One patient's series as used by the twin. */
export interface TwinPatient {
  /** Kept verbatim as a string (the source ids look like floats, e.g. "3.6570156679021609E+18"). */
  id: string;
  days: number[];
  volumesMm3: number[];
  arm?: string;
  diametersMm?: number[];
}

export interface SkippedCell {
  id: string;
  day: string;
  value: string;
}

export type LalehCohort = TwinPatient[] & {
  /** Rows whose diameter or day was not a number (e.g. NOT EVALUABLE, TOO SMALL TO MEASURE, empty). */
  skipped: number;
  skippedByValue: Record<string, number>;
  skippedCells: SkippedCell[];
  /** Rows repeating an already seen (patient, day): diameters averaged. */
  duplicateDaysMerged: number;
  rows: number;
};

/** Ellipsoid volume from a longest diameter: V = 0.52·d³ (mm → mm³). */
export const volumeFromDiameter = (dMm: number): number => 0.52 * dMm * dMm * dMm;

const NUMERIC = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

export function parseLalehCsv(text: string): LalehCohort {
  const rows = parse(text, { columns: true, skip_empty_lines: true, trim: true, bom: true }) as Record<string, string>[];
  const need = ['Patient_Anonmyized', 'Treatment_Day', 'TargetLesionLongDiam_mm'];
  if (rows.length > 0) for (const c of need) if (!(c in rows[0])) throw new Error(`parseLalehCsv: missing column ${c}`);
  const byId = new Map<string, { arm?: string; m: Map<number, number[]> }>();
  const skippedCells: SkippedCell[] = [];
  const skippedByValue: Record<string, number> = {};
  let dup = 0;
  for (const r of rows) {
    const id = String(r.Patient_Anonmyized ?? '').trim();
    const dayS = String(r.Treatment_Day ?? '').trim();
    const dS = String(r.TargetLesionLongDiam_mm ?? '').trim();
    if (!id) continue;
    if (!byId.has(id)) byId.set(id, { arm: r.Study_Arm || undefined, m: new Map() });
    const ok = NUMERIC.test(dayS) && NUMERIC.test(dS) && Number(dS) >= 0;
    if (!ok) {
      skippedCells.push({ id, day: dayS, value: dS });
      const key = !NUMERIC.test(dS) ? dS || '(empty)' : `day:${dayS || '(empty)'}`;
      skippedByValue[key] = (skippedByValue[key] ?? 0) + 1;
      continue;
    }
    const m = byId.get(id)!.m;
    const day = Number(dayS);
    if (m.has(day)) dup++;
    else m.set(day, []);
    m.get(day)!.push(Number(dS));
  }
  const patients: TwinPatient[] = [];
  for (const [id, { arm, m }] of byId) {
    const days = [...m.keys()].sort((a, b) => a - b);
    const diam = days.map((d) => {
      const xs = m.get(d)!;
      return xs.reduce((a, b) => a + b, 0) / xs.length;
    });
    patients.push({ id, arm, days, diametersMm: diam, volumesMm3: diam.map(volumeFromDiameter) });
  }
  return Object.assign(patients, {
    skipped: skippedCells.length,
    skippedByValue,
    skippedCells,
    duplicateDaysMerged: dup,
    rows: rows.length,
  });
}
