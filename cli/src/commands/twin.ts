import { readFileSync } from 'node:fs';
import { evaluateHoldout, parseLalehCsv, type HoldoutResult } from '@twinfed/shared/twin/index';

/**
 * `twinfed twin evaluate`: fit every patient with at least K+3 usable
 * measurements on all but the last K, forecast those K, and score each growth
 * model, the MAP-with-population-prior variant, and two baselines.
 */
export function evaluateTwinCsv(file: string, format: string, holdoutLast: number, opts: { seed?: number } = {}): { result: HoldoutResult; patients: number; skippedRows: number } {
  if (format !== 'laleh') throw new Error(`TWF_E_BAD_REQUEST: unknown --format ${format} (built in: laleh)`);
  if (!Number.isInteger(holdoutLast) || holdoutLast < 1) throw new Error('TWF_E_BAD_REQUEST: --holdout-last must be a positive integer');
  const cohort = parseLalehCsv(readFileSync(file, 'utf8'));
  const result = evaluateHoldout(cohort, { holdoutLast, seed: opts.seed ?? 1 });
  return { result, patients: cohort.length, skippedRows: cohort.skipped };
}

export function formatTwinEvaluation(r: HoldoutResult, file: string, k: number): string {
  const f = (x: number | undefined) => (x === undefined || Number.isNaN(x) ? '   n/a' : x.toFixed(3).padStart(6));
  const lines = [`${file}: hold out the last ${k} measurement(s); MAE in volume / patient's max observed volume`, 'model                    n    MAE   coverage90 |  MAP+prior MAE  coverage90'];
  for (const [name, s] of Object.entries(r.models)) {
    const m = r.map[name];
    lines.push(`${name.padEnd(22)} ${String(s.n).padStart(4)} ${f(s.mae)}  ${f(s.coverage90)}      |  ${f(m?.mae)}         ${f(m?.coverage90)}`);
  }
  lines.push(`${'baseline: last obs. (LOCF)'.padEnd(26)} ${f(r.baselines.locf.mae)}`);
  lines.push(`${'baseline: linear (last 2)'.padEnd(26)} ${f(r.baselines.linear.mae)}`);
  return lines.join('\n');
}
