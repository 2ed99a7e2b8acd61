import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { readModelDir, writeModelDir } from '@twinfed/site-node';
import { parseLalehCsv } from '@twinfed/shared/twin/index';
import {
  buildExamples,
  compareRegimes,
  evaluateResponse,
  featureNames,
  initLogReg,
  permutationImportance,
  responsePatientsFromLaleh,
  responseStudySpec,
  splitOf,
  RESPONSE_CLASSES,
  type FeatureImportance,
  type LogRegConfig,
  type RegimeRow,
  type ResponseEvaluation,
  type ResponseExample,
} from '@twinfed/shared/response/index';
import { CliError } from '../errors.js';

/** Built-in CSV layouts `twinfed response evaluate --format` reads. */
const FORMATS = ['laleh'] as const;

function readExamples(csvPath: string, format: string, arms: readonly string[], minMeasurements: number) {
  if (!(FORMATS as readonly string[]).includes(format)) throw new Error(`TWF_E_BAD_REQUEST: unknown --format ${format} (built in: ${FORMATS.join(', ')})`);
  if (!existsSync(csvPath)) throw new Error(`TWF_E_NOT_FOUND: ${csvPath} does not exist (give a Laleh-layout CSV: Patient_Anonmyized, Treatment_Day, TargetLesionLongDiam_mm, Study_Arm)`);
  const cohort = parseLalehCsv(readFileSync(csvPath, 'utf8'));
  return { ...buildExamples(responsePatientsFromLaleh(cohort), arms, minMeasurements), patients: cohort.length };
}

export interface ResponseModelEvaluation extends ResponseEvaluation {
  patientsInFile: number;
  /** Patients with fewer than minMeasurements usable measurements (left out). */
  excluded: number;
  /** Patients whose arm is not in the model's arm vocabulary (arm columns all zero). */
  unknownArm: number;
  heldOutOnly: boolean;
  importance: FeatureImportance[];
  importanceMethod: string;
}

/**
 * `twinfed response evaluate`: scores a response model folder on every patient of a CSV with
 * ≥ minMeasurements measurements (or, with heldOutOnly, only those the model's manifest split held
 * out), with permutation importances of its features on the same patients.
 */
export function evaluateResponseModel(modelDir: string, csvPath: string, format: string, opts: { heldOutOnly?: boolean; repeats?: number } = {}): ResponseModelEvaluation {
  const { meta, weights } = readModelDir(modelDir);
  if (meta.model.arch !== 'logreg')
    throw new CliError('TWF_E_MODEL_KIND', `${modelDir} holds a '${meta.model.arch}' model; response evaluate needs a response (logreg) model, e.g. out/response/model`);
  const arms = meta.model.arms;
  const cfg: LogRegConfig = { nFeatures: featureNames(arms).length, nClasses: meta.model.nClasses, l2: meta.model.l2 };
  const minMeasurements = meta.split?.minMeasurements ?? 5;
  const r = readExamples(csvPath, format, arms, minMeasurements);
  let ex: ResponseExample[] = r.examples;
  if (opts.heldOutOnly) {
    if (!meta.split) throw new Error(`TWF_E_BAD_REQUEST: ${modelDir}/model.json records no patient split; drop --held-out to score every patient`);
    const s = meta.split;
    ex = ex.filter((e) => splitOf(e.id, s.splitSalt, s.trainPercent) === 'test');
  }
  if (ex.length === 0) throw new Error(`TWF_E_NO_DATA: no patient in ${csvPath} has ≥ ${minMeasurements} usable measurements${opts.heldOutOnly ? ' and is held out' : ''}`);
  const ev = evaluateResponse(cfg, weights, ex);
  const repeats = opts.repeats ?? 20;
  return {
    ...ev,
    patientsInFile: r.patients,
    excluded: r.excluded,
    unknownArm: r.unknownArm,
    heldOutOnly: !!opts.heldOutOnly,
    importance: permutationImportance(cfg, weights, ex, featureNames(arms), { repeats, seed: 1 }),
    importanceMethod: `permutation importance: mean (SD) drop of macro one-vs-rest AUC over ${repeats} seeded shuffles of one feature column (not SHAP)`,
  };
}

const f3 = (x: number | null | undefined) => (x === null || x === undefined ? '  n/a' : x.toFixed(3));

export function formatResponseEvaluation(r: ResponseModelEvaluation, csv: string): string {
  const lines = [
    `${csv}: ${r.patientsInFile} patients, ${r.excluded} left out (< 5 usable measurements)${r.heldOutOnly ? ', held-out patients only' : ''}; ${r.n} scored`,
    `classes (true): ${RESPONSE_CLASSES.map((k) => `${k} ${r.classCounts[k]}`).join(', ')}${r.unknownArm ? `; ${r.unknownArm} patients with an arm outside the model's vocabulary` : ''}`,
    `macro one-vs-rest AUC ${f3(r.auc)}  (${RESPONSE_CLASSES.map((k) => `${k} ${f3(r.perClassAuc[k])}`).join(', ')})${r.skippedClasses.length ? `; not scored: ${r.skippedClasses.join(', ')}` : ''}`,
    `balanced accuracy     ${f3(r.balancedAccuracy)}  (chance 0.333)`,
    `confusion (rows true, columns predicted ${RESPONSE_CLASSES.join('/')}): ${r.confusion.map((row) => row.join(' ')).join(' | ')}`,
    `feature importances, ${r.importanceMethod}:`,
    ...r.importance.map((i) => `  ${i.feature.padEnd(22)} ${i.meanAucDrop >= 0 ? ' ' : ''}${i.meanAucDrop.toFixed(3)} (${i.sdAucDrop.toFixed(3)})`),
  ];
  return lines.join('\n');
}

/**
 * `twinfed response compare`: federated vs local-only vs centralised on the same salted patient
 * split of Study1-3 (one site each), same model, seed and total epochs. The federated model is
 * the one `npm run demo:response` decrypted when given; otherwise plaintext FedAvg is simulated
 * (equal to the encrypted path up to quantisation; see the federated response test).
 */
export function compareResponse(opts: { dataDir: string; outDir: string; rounds: number; federatedModel?: string; log?: (s: string) => void }) {
  const log = opts.log ?? (() => undefined);
  const spec = responseStudySpec(opts.rounds);
  const arms = spec.model.arms;
  const cfg: LogRegConfig = { nFeatures: featureNames(arms).length, nClasses: 3, l2: spec.model.l2 };
  const sites = [1, 2, 3].map((s) => {
    const { examples, excluded, patients } = readExamples(join(opts.dataDir, `Study${s}.csv`), 'laleh', arms, spec.data.minMeasurements);
    const split = (e: ResponseExample) => splitOf(e.id, spec.data.splitSalt, spec.data.trainPercent);
    log(`Study${s}: ${patients} patients, ${examples.length} with ≥ ${spec.data.minMeasurements} measurements (${excluded} left out)`);
    return { name: `Study${s}`, train: examples.filter((e) => split(e) === 'train'), test: examples.filter((e) => split(e) === 'test') };
  });
  let federated: Float32Array | undefined;
  let federatedSource = `plaintext FedAvg simulated, ${opts.rounds} rounds x ${spec.training.epochsPerRound} epochs`;
  if (opts.federatedModel && existsSync(join(opts.federatedModel, 'model.json'))) {
    const m = readModelDir(opts.federatedModel);
    if (m.meta.model.arch !== 'logreg' || m.weights.length !== cfg.nClasses * (cfg.nFeatures + 1))
      throw new CliError('TWF_E_MODEL_KIND', `${opts.federatedModel} is not a response model of this study's shape`);
    federated = m.weights;
    federatedSource = `${opts.federatedModel} (encrypted FedAvg from the demo, round ${m.meta.version})`;
  }
  log(`federated: ${federatedSource}`);
  const t = { epochs: spec.training.epochsPerRound, batchSize: spec.training.batchSize, learningRate: spec.training.learningRate, seed: spec.training.seed, rounds: opts.rounds };
  const { rows, models } = compareRegimes(cfg, initLogReg(cfg, spec.model.initSeed), sites, t, federated);
  mkdirSync(opts.outDir, { recursive: true });
  for (const [name, w] of Object.entries(models)) {
    writeModelDir(
      join(opts.outDir, name),
      {
        studyId: `compare-${name}`,
        title: `${name} (response compare)`,
        manifestHash: '-',
        model: spec.model,
        version: opts.rounds,
        meanDiceAtSite: null,
        decryptedAt: 'local',
        createdAt: new Date().toISOString(),
        split: { splitSalt: spec.data.splitSalt, trainPercent: spec.data.trainPercent, minMeasurements: spec.data.minMeasurements },
      },
      w,
    );
  }
  const heldOut = sites.flatMap((s) => s.test);
  const importance = permutationImportance(cfg, models.federated, heldOut, featureNames(arms), { repeats: 20, seed: 1 });
  const report = {
    rounds: opts.rounds,
    epochsTotal: opts.rounds * spec.training.epochsPerRound,
    federatedSource,
    sites: sites.map((s) => ({ name: s.name, train: s.train.length, heldOut: s.test.length })),
    rows: rows.map((r) => ({
      regime: r.regime,
      evaluatedOn: r.evaluatedOn,
      n: r.eval.n,
      auc: r.eval.auc,
      aucCi95: r.aucCi95 ?? null,
      balancedAccuracy: r.eval.balancedAccuracy,
      perClassAuc: r.eval.perClassAuc,
      skippedClasses: r.eval.skippedClasses,
      classCounts: r.eval.classCounts,
    })),
    importance: { model: 'federated', patients: 'pooled held-out', method: 'permutation importance, drop of macro OvR AUC, 20 seeded shuffles', features: importance },
  };
  writeFileSync(join(opts.outDir, 'report.json'), JSON.stringify(report, null, 2) + '\n');
  return report;
}

export function formatResponseCompare(r: ReturnType<typeof compareResponse>): string {
  const lines = [
    `sites: ${r.sites.map((s) => `${s.name} ${s.train} train / ${s.heldOut} held out`).join('; ')}; ${r.epochsTotal} epochs per regime`,
    '',
    '| regime | held-out patients of | n | macro OvR AUC (95% bootstrap CI) | balanced accuracy |',
    '|---|---|---|---|---|',
    ...r.rows.map((x) => `| ${x.regime} | ${x.evaluatedOn} | ${x.n} | ${f3(x.auc)}${x.aucCi95 ? ` (${f3(x.aucCi95[0])}–${f3(x.aucCi95[1])})` : ''} | ${f3(x.balancedAccuracy)} |`),
    '',
    `feature importances of the federated model on the pooled held-out patients (${r.importance.method}):`,
    ...r.importance.features.map((i) => `  ${i.feature.padEnd(22)} ${i.meanAucDrop >= 0 ? ' ' : ''}${i.meanAucDrop.toFixed(3)} (${i.sdAucDrop.toFixed(3)})`),
  ];
  return lines.join('\n');
}

export type { RegimeRow };
