/**
 * Comparison with the IBSI reference values (Zwanenburg et al., Radiology 2020; IBSI reference manual,
 * arXiv:1612.07003, chapter 5): a computed value passes when, rounded to 3 significant figures, it lies within
 * the tolerance of the consensus value. Rows without a consensus value are not counted.
 *
 * Pure: parses text it is given, no I/O.
 */
import { familyOfTag } from './index.js';

export interface ReferenceRow {
  tag: string;
  /** Consensus value; null when IBSI reached no consensus. */
  value: number | null;
  tolerance: number | null;
}

/** Parses the MIRP/IBSI reference table `value;tolerance;tag` (one header line). */
export function parseReferenceTable(text: string): ReferenceRow[] {
  const lines = text.split(/\r?\n/).filter((l) => l.trim() !== '');
  const rows: ReferenceRow[] = [];
  for (const [n, line] of lines.entries()) {
    const parts = line.split(';');
    if (n === 0 && !/^-?[\d.]/.test(parts[0]) && parts[0] !== '') continue; // header
    if (parts.length !== 3) throw new Error(`reference table line ${n + 1}: expected "value;tolerance;tag", got "${line}"`);
    const num = (s: string) => (s.trim() === '' ? null : Number(s));
    const value = num(parts[0]);
    const tolerance = num(parts[1]);
    if ((value !== null && !Number.isFinite(value)) || (tolerance !== null && !Number.isFinite(tolerance))) {
      throw new Error(`reference table line ${n + 1}: value or tolerance is not a number: "${line}"`);
    }
    rows.push({ tag: parts[2].trim(), value, tolerance });
  }
  return rows;
}

/** Rounds to `digits` significant figures (IBSI's reporting rule). */
export function roundSignificant(x: number, digits = 3): number {
  return x === 0 || !Number.isFinite(x) ? x : Number(x.toPrecision(digits));
}

/** IBSI pass rule: |round3(value) - reference| <= tolerance (with a relative 1e-9 allowance for binary round-off). */
export function passesIbsi(value: number, reference: number, tolerance: number): boolean {
  return Math.abs(roundSignificant(value) - reference) <= tolerance + 1e-9 * Math.max(1, Math.abs(reference));
}

export interface TagResult {
  tag: string;
  family: string;
  reference: number;
  tolerance: number;
  /** Computed value; undefined when the feature was not computed. */
  value?: number;
  status: 'pass' | 'fail' | 'missing';
}

export interface FamilySummary {
  family: string;
  pass: number;
  fail: number;
  missing: number;
  /** Rows with a consensus value. */
  total: number;
  /** Rows without a consensus value (not counted). */
  noConsensus: number;
}

export interface ComplianceReport {
  results: TagResult[];
  families: FamilySummary[];
  total: FamilySummary;
}

/** Compares computed features with the reference rows, family by family (families in table order). */
export function compareWithReference(features: Record<string, number>, rows: ReferenceRow[]): ComplianceReport {
  const results: TagResult[] = [];
  const fams = new Map<string, FamilySummary>();
  const fam = (f: string) => {
    let s = fams.get(f);
    if (!s) fams.set(f, (s = { family: f, pass: 0, fail: 0, missing: 0, total: 0, noConsensus: 0 }));
    return s;
  };
  for (const r of rows) {
    const family = familyOfTag(r.tag);
    const s = fam(family);
    if (r.value === null || r.tolerance === null) {
      s.noConsensus++;
      continue;
    }
    s.total++;
    const value = features[r.tag];
    let status: TagResult['status'];
    if (value === undefined || Number.isNaN(value)) status = 'missing';
    else status = passesIbsi(value, r.value, r.tolerance) ? 'pass' : 'fail';
    s[status]++;
    results.push({ tag: r.tag, family, reference: r.value, tolerance: r.tolerance, ...(value !== undefined ? { value } : {}), status });
  }
  const families = [...fams.values()];
  const total: FamilySummary = { family: 'total', pass: 0, fail: 0, missing: 0, total: 0, noConsensus: 0 };
  for (const s of families) for (const k of ['pass', 'fail', 'missing', 'total', 'noConsensus'] as const) total[k] += s[k];
  return { results, families, total };
}

/** Plain-text table of a compliance report, then each failing and (optionally) missing tag. */
export function formatCompliance(report: ComplianceReport, opts: { listMissing?: boolean } = {}): string {
  const out: string[] = [];
  const row = (s: FamilySummary) => `${s.family.padEnd(7)} ${`${s.pass}/${s.total}`.padStart(9)} ${String(s.fail).padStart(5)} ${String(s.missing).padStart(8)} ${String(s.noConsensus).padStart(13)}`;
  out.push(`${'family'.padEnd(7)} ${'pass/total'.padStart(9)} ${'fail'.padStart(5)} ${'missing'.padStart(8)} ${'no consensus'.padStart(13)}`);
  for (const s of report.families) out.push(row(s));
  out.push(row(report.total));
  const failing = report.results.filter((r) => r.status === 'fail');
  if (failing.length) {
    out.push('', 'failing tags (computed, rounded to 3 significant figures, vs reference +/- tolerance):');
    for (const r of failing) out.push(`  ${r.tag}: ${roundSignificant(r.value!)} (computed ${r.value}) vs ${r.reference} +/- ${r.tolerance}`);
  }
  const missing = report.results.filter((r) => r.status === 'missing');
  if (missing.length && opts.listMissing) {
    out.push('', 'missing tags (not computed):');
    out.push(`  ${missing.map((r) => r.tag).join(', ')}`);
  }
  return out.join('\n');
}
