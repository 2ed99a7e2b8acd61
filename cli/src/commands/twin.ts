import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { evaluateHoldout, MODEL_NAMES, parseLalehCsv, priorFromStats, spdInverse, type GaussianPrior, type HoldoutResult, type ModelName, type ReliabilityBin } from '@twinfed/shared/twin/index';

/**
 * `twinfed twin evaluate`: fit every patient with at least K+3 usable
 * measurements on all but the last K, forecast those K, and score each growth
 * model, the MAP-with-population-prior variant, two baselines, and the default
 * twin as a probabilistic forecaster (calibrated band, RECIST progression).
 */

const vec = z.array(z.number().finite());
const mat = z.array(vec);
/** A Gaussian prior over the transformed parameter vector, as `priorFromStats` returns it (precision optional). */
const PriorJson = z.object({
  paramNames: z.array(z.string()).min(1),
  n: z.number().int().min(2).optional(),
  mean: vec,
  cov: mat,
  precision: mat.optional(),
  sigma2: z.number().positive(),
  nu: z.number().positive().optional(),
});
/** Sufficient statistics per model, as `sufficientStats`/`mergeStats` return them (what a federated study sums). */
const StatsJson = z.object({ paramNames: z.array(z.string()).min(1), n: z.number().int().min(2), sum: vec, sumSq: mat, rss: z.number().min(0), dof: z.number().min(0) });
/** The --prior file: { "models": { "gompertz": <GaussianPrior or SufficientStats>, ... } } (docs/twin.md). */
const PriorFile = z.object({ models: z.record(z.string(), z.union([StatsJson, PriorJson])) });

/** Reads a `--prior` file: per model either a GaussianPrior or SufficientStats (converted with priorFromStats). */
export function readPriorFile(file: string): Partial<Record<ModelName, GaussianPrior>> {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(
      `TWF_E_BAD_REQUEST: --prior ${file} is not readable JSON (${(e as Error).message}); give a file { "models": { "gompertz": { "paramNames": [...], "mean": [...], "cov": [[...]], "sigma2": 0.01 } } } (docs/twin.md)`,
    );
  }
  const parsed = PriorFile.safeParse(raw);
  if (!parsed.success)
    throw new Error(
      `TWF_E_BAD_REQUEST: --prior ${file} is not a prior file: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}. Expected { "models": { MODEL: GaussianPrior | SufficientStats } } (docs/twin.md)`,
    );
  const out: Partial<Record<ModelName, GaussianPrior>> = {};
  for (const [name, v] of Object.entries(parsed.data.models)) {
    if (!(MODEL_NAMES as readonly string[]).includes(name)) throw new Error(`TWF_E_BAD_REQUEST: --prior ${file} names model "${name}"; known models: ${MODEL_NAMES.join(', ')}`);
    const p = v.paramNames.length;
    const square = (m: number[][]) => m.length === p && m.every((r) => r.length === p);
    if ('sum' in v) {
      if (v.sum.length !== p || !square(v.sumSq)) throw new Error(`TWF_E_BAD_REQUEST: --prior ${file}, model ${name}: sum/sumSq do not match ${p} parameter names`);
      out[name as ModelName] = priorFromStats({ model: name, ...v });
    } else {
      if (v.mean.length !== p || !square(v.cov) || (v.precision && !square(v.precision)))
        throw new Error(`TWF_E_BAD_REQUEST: --prior ${file}, model ${name}: mean/cov do not match ${p} parameter names`);
      out[name as ModelName] = { model: name, paramNames: v.paramNames, n: v.n ?? 0, mean: v.mean, cov: v.cov, precision: v.precision ?? spdInverse(v.cov), sigma2: v.sigma2, nu: v.nu ?? 3 };
    }
  }
  if (Object.keys(out).length === 0) throw new Error(`TWF_E_BAD_REQUEST: --prior ${file} has no models`);
  return out;
}

export function evaluateTwinCsv(file: string, format: string, holdoutLast: number, opts: { seed?: number; priorFile?: string } = {}): { result: HoldoutResult; patients: number; skippedRows: number } {
  if (format !== 'laleh') throw new Error(`TWF_E_BAD_REQUEST: unknown --format ${format} (built in: laleh)`);
  if (!Number.isInteger(holdoutLast) || holdoutLast < 1) throw new Error('TWF_E_BAD_REQUEST: --holdout-last must be a positive integer');
  const givenPrior = opts.priorFile ? readPriorFile(opts.priorFile) : undefined;
  const cohort = parseLalehCsv(readFileSync(file, 'utf8'));
  const result = evaluateHoldout(cohort, { holdoutLast, seed: opts.seed ?? 1, givenPrior });
  return { result, patients: cohort.length, skippedRows: cohort.skipped };
}

const f3 = (x: number | undefined) => (x === undefined || Number.isNaN(x) ? '   n/a' : x.toFixed(3).padStart(6));

function reliabilityLines(title: string, bins: ReliabilityBin[]): string[] {
  return [
    title,
    '  predicted     n   mean predicted   observed',
    ...bins.filter((b) => b.n > 0).map((b) => `  ${b.from.toFixed(1)}-${b.to.toFixed(1)}  ${String(b.n).padStart(5)}   ${f3(b.meanPredicted)}           ${f3(b.observedFrequency)}`),
  ];
}

export function formatTwinEvaluation(r: HoldoutResult, file: string, k: number): string {
  const f = f3;
  const lines = [`${file}: hold out the last ${k} measurement(s); MAE in volume / patient's max observed volume`, 'model                    n    MAE   coverage90 |  MAP+prior MAE  coverage90'];
  for (const [name, s] of Object.entries(r.models)) {
    const m = r.map[name];
    lines.push(`${name.padEnd(22)} ${String(s.n).padStart(4)} ${f(s.mae)}  ${f(s.coverage90)}      |  ${f(m?.mae)}         ${f(m?.coverage90)}`);
  }
  lines.push(`${'baseline: last obs. (LOCF)'.padEnd(26)} ${f(r.baselines.locf.mae)}`);
  lines.push(`${'baseline: linear (last 2)'.padEnd(26)} ${f(r.baselines.linear.mae)}`);
  if (r.intervalScore90 && r.meanWidth90) {
    lines.push(
      '',
      `default twin (AICc-selected per patient), 90% band calibrated leave-one-patient-out (factor on all patients ${f(r.calibrationFactor)}):`,
      'band                          coverage90  interval score  mean width   (normalised volume)',
      `twin, calibrated                 ${f(r.coverage90Calibrated)}      ${f(r.intervalScore90.twin)}       ${f(r.meanWidth90.twin)}`,
      `twin, model band                 ${f(r.coverage90Model)}      ${f(r.intervalScore90.twinModelBand)}       ${f(r.meanWidth90.twinModelBand)}`,
      `LOCF, empirical band                -         ${f(r.intervalScore90.locfEmpirical)}       ${f(r.meanWidth90.locfEmpirical)}`,
      `(diagnostic) twin median, empirical band  -    ${f(r.intervalScore90.twinEmpiricalBand)}       ${f(r.meanWidth90.twinEmpiricalBand)}`,
      `interval score twin - LOCF-empirical, paired per patient: ${f(r.intervalScore90.twinMinusLocfEmpirical.mean)} +- ${f(1.96 * r.intervalScore90.twinMinusLocfEmpirical.se)} (95%)`,
      `point MAE twin / LOCF: ${f(r.maeRatioToLocf)}`,
    );
  }
  const p = r.progression;
  if (p) {
    lines.push(
      '',
      `RECIST 1.1 progression at the next visit (>= 20% and >= 5 mm above nadir): ${p.events} of ${p.n} patients`,
      'forecaster                               AUC    Brier',
      `twin, calibrated draws                ${f(p.auc)}  ${f(p.brier)}`,
      `twin, model-band draws                ${f(p.aucModelBand)}  ${f(p.brierModelBand)}`,
      `baseline: last observed change (0/1)  ${f(p.baselineAuc)}  ${f(p.baselineBrier)}`,
      `baseline: logistic, leave-one-out     ${f(p.logisticAuc)}  ${f(p.logisticBrier)}`,
      ...reliabilityLines('reliability, twin (calibrated draws):', p.reliability),
      ...reliabilityLines('reliability, logistic baseline:', p.logisticReliability),
    );
  }
  if (r.sparse) {
    const s = r.sparse;
    lines.push(
      '',
      `sparse patients (2-3 fitted points), n = ${s.n}, MAE (${s.model}): given prior ${f(s.maeWithPrior)}, local leave-one-out prior ${f(s.maeLocalPrior)}, no prior ${f(s.maeNoPrior)}, LOCF ${f(s.maeLocf)}`,
      ...Object.entries(s.perModel).map(([m, v]) => `  ${m.padEnd(20)} given ${f(v.maeWithPrior)}  local ${f(v.maeLocalPrior)}  none ${f(v.maeNoPrior)}`),
      `  progression at the next visit (${s.progression.events} of ${s.n}), AUC of the point forecast's diameter / nadir: given prior ${f(s.progression.aucWithPrior)}, local ${f(s.progression.aucLocalPrior)}, none ${f(s.progression.aucNoPrior)}`,
    );
  }
  return lines.join('\n');
}
