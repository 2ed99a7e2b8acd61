import { eq, isNotNull } from 'drizzle-orm';
import { WireError, type ResponseManifest, type StudyManifest } from '@twinfed/protocols';
import { deriveSeed } from '@twinfed/shared/model/index';
import {
  buildExamples,
  evaluateResponse,
  featureNames,
  initLogReg,
  RESPONSE_CLASSES,
  splitOf,
  trainLogReg,
  type LogRegConfig,
  type ResponseExample,
  type ResponsePatient,
} from '@twinfed/shared/response/index';
import type { SiteDb } from './db/index.js';
import { measurements, treatments } from './db/schema.js';
import { dpReport, localObjective, type LocalEvalResult, type LocalTrainResult, type LocalTrainer } from './trainer.js';

function resp(m: StudyManifest): ResponseManifest {
  if (m.task !== 'response') throw new WireError('TWF_E_BAD_REQUEST', `the response trainer runs response studies, study ${m.studyId} is task '${m.task}'`);
  return m;
}

/** The softmax-regression shape a response manifest implies. */
export function responseModelConfig(m: ResponseManifest): LogRegConfig {
  return { nFeatures: featureNames(m.model.arms).length, nClasses: m.model.nClasses, l2: m.model.l2 };
}

/**
 * The site's patients as the response core needs them, from the twin tables that
 * `twinfed site import` fills: per patient and day the sum of the longest diameters of its
 * lesions (RECIST's sum of diameters; one lesion in the Laleh tables), and the arm = the
 * agentClass of the patient's first systemic-therapy record (null when none).
 */
export function loadResponsePatients(db: SiteDb): ResponsePatient[] {
  const rows = db.select({ patientId: measurements.patientId, day: measurements.day, d: measurements.longestDiameterMm }).from(measurements).where(isNotNull(measurements.longestDiameterMm)).all();
  const byPatient = new Map<string, Map<number, number>>();
  for (const r of rows) {
    const m = byPatient.get(r.patientId) ?? new Map<number, number>();
    m.set(r.day, (m.get(r.day) ?? 0) + r.d!);
    byPatient.set(r.patientId, m);
  }
  const arms = new Map<string, string>();
  for (const t of db
    .select()
    .from(treatments)
    .where(eq(treatments.kind, 'systemic'))
    .all()
    .sort((a, b) => a.startDay - b.startDay || a.id - b.id)) {
    if (t.agentClass && !arms.has(t.patientId)) arms.set(t.patientId, t.agentClass);
  }
  return [...byPatient.entries()]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([id, m]) => {
      const days = [...m.keys()].sort((a, b) => a - b);
      return { id, days, diametersMm: days.map((d) => m.get(d)!), arm: arms.get(id) ?? null };
    });
}

/** Examples of this site split by the manifest's salted hash. */
export function siteResponseSplit(patients: readonly ResponsePatient[], m: ResponseManifest): { train: ResponseExample[]; test: ResponseExample[]; excluded: number } {
  const { examples, excluded } = buildExamples(patients, m.model.arms, m.data.minMeasurements);
  const split = (e: ResponseExample) => splitOf(e.id, m.data.splitSalt, m.data.trainPercent);
  return { train: examples.filter((e) => split(e) === 'train'), test: examples.filter((e) => split(e) === 'test'), excluded };
}

/**
 * The response trainer: softmax regression (shared/src/response) on the patients of this
 * site's database, re-read on every call so a new import is used in the next round. Training
 * patients and held-out patients come from a salted hash of the patient id (manifest.data).
 * Evaluation reports macro one-vs-rest AUC as the task metric; meanDice stays null.
 *
 * Local objective (localObjective in trainer.ts): strategy 'fedprox' adds mu·(w − w_global) to
 * every gradient step, w_global = the weights handed to train(); dp.level 'patient' runs DP-SGD
 * in trainLogReg (one example = one patient; unweighted per-patient loss, see
 * shared/src/response/model.ts) for dpStepsPerRound(epochsPerRound, q) noisy steps and reports
 * them in `dp`. nSamples is the number of training patients either way.
 */
export function createResponseTrainer(db: SiteDb): LocalTrainer {
  const data = (m: ResponseManifest) => siteResponseSplit(loadResponsePatients(db), m);
  return {
    backend: 'cpu-js',
    dataSummary(mIn) {
      const d = data(resp(mIn));
      return { trainSlices: d.train.length, valPatients: d.test.length };
    },
    initialWeights(mIn) {
      const m = resp(mIn);
      return initLogReg(responseModelConfig(m), m.model.initSeed);
    },
    async train(mIn, weights, round, onProgress): Promise<LocalTrainResult> {
      const m = resp(mIn);
      const t0 = performance.now();
      const d = data(m);
      const t = m.training;
      const { proximal, dp } = localObjective(m, weights);
      const r = trainLogReg(responseModelConfig(m), weights, d.train, {
        epochs: t.epochsPerRound,
        batchSize: t.batchSize,
        learningRate: t.learningRate,
        seed: deriveSeed(t.seed, `round-${round}`),
        proximal,
        dp,
      });
      // Training takes milliseconds (a linear model, synchronous): one progress report when it is done.
      onProgress?.({ epoch: t.epochsPerRound, epochs: t.epochsPerRound, loss: r.loss, elapsedMs: performance.now() - t0 });
      return { weights: r.weights, nSamples: d.train.length, loss: r.loss, ms: performance.now() - t0, ...(dp && { dp: dpReport(dp, r.steps) }) };
    },
    async evaluate(mIn, weights): Promise<LocalEvalResult> {
      const m = resp(mIn);
      const d = data(m);
      const ev = evaluateResponse(responseModelConfig(m), weights, d.test);
      return { meanDice: null, valPatients: d.test.length, perPatient: [], metric: { name: 'macroAucOvr', value: ev.auc } };
    },
  };
}

/**
 * A trainer for every task a site supports, chosen per call from the manifest's task, so one
 * site process takes part in segmentation and response studies alike.
 */
export function createTaskTrainer(byTask: { segmentation: LocalTrainer; response: LocalTrainer; 'twin-prior'?: LocalTrainer }): LocalTrainer {
  const pick = (m: StudyManifest): LocalTrainer => {
    const t = byTask[m.task];
    if (!t) throw new WireError('TWF_E_BAD_REQUEST', `this site runs no trainer for task '${m.task}' (study ${m.studyId})`);
    return t;
  };
  return {
    backend: byTask.segmentation.backend,
    dataSummary: (m) => pick(m).dataSummary(m),
    initialWeights: (m) => pick(m).initialWeights(m),
    train: (m, w, r, p) => pick(m).train(m, w, r, p),
    evaluate: (m, w) => pick(m).evaluate(m, w),
    onAggregate: (m, w, i) => pick(m).onAggregate?.(m, w, i) ?? {},
    close: async () => {
      await Promise.all([byTask.segmentation.close?.(), byTask.response.close?.(), byTask['twin-prior']?.close?.()]);
    },
  };
}

export { RESPONSE_CLASSES };
