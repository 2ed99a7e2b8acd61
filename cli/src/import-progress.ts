/**
 * What `twinfed site import` prints while it works: one line per file as soon as it is done, with
 * its place in the import (`[12/40] imported  file.nii.gz [P7]: ...`), then the twins refitted and
 * a count. With --json the same as NDJSON: one `{"type":"file",...}` line per file, then one
 * `{"type":"summary",...}` line that also carries every row and refit (the whole report), so a
 * script can stream the file lines or read only the last line.
 */
import type { ImportReport, ImportRow } from '@twinfed/site-node';

type Refit = ImportReport['refits'][number];

export function importRowLine(r: ImportRow, index: number, total: number): string {
  const w = String(total).length;
  return `[${String(index).padStart(w)}/${total}] ${r.status.padEnd(9)} ${r.unit}${r.patientId ? ` [${r.patientId}]` : ''}: ${r.detail}`;
}

export function importRowJson(r: ImportRow, index: number, total: number): string {
  return JSON.stringify({ type: 'file', index, total, ...r });
}

/** The twin line of a refit, or null when nothing was selected (too few measurements, fit failed: in --json). */
export function refitLine(r: Refit): string | null {
  if (!r.selected) return null;
  const scored = r.scored.length
    ? `; scored ${r.scored.length} earlier forecast(s), mean |error| ${(r.scored.reduce((a, s) => a + s.absErrorNorm, 0) / r.scored.length).toFixed(3)} of max volume`
    : '';
  return `twin      ${r.patientId}: ${r.points} measurements -> ${r.selected} (${r.method})${scored}`;
}

export function importCounts(rows: readonly ImportRow[]): { imported: number; unchanged: number; skipped: number; failed: number } {
  const n = (s: ImportRow['status']) => rows.filter((r) => r.status === s).length;
  return { imported: n('imported'), unchanged: n('unchanged'), skipped: n('skipped'), failed: n('failed') };
}

export function importSummaryLine(rep: ImportReport): string {
  const c = importCounts(rep.rows);
  return `${c.imported} imported, ${c.unchanged} unchanged, ${c.skipped} skipped, ${c.failed} failed`;
}

export function importSummaryJson(rep: ImportReport): string {
  return JSON.stringify({ type: 'summary', ...importCounts(rep.rows), rows: rep.rows, refits: rep.refits });
}
