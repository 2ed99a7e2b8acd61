import { deriveSeed } from '../model/prng.js';
import { evaluateProbs, evaluateResponse, weightedAverage, type ResponseEvaluation } from './evaluate.js';
import type { ResponseExample } from './features.js';
import { bootstrapMacroAucCi } from './metrics.js';
import { predictProba, trainLogReg, type LogRegConfig, type TrainOptions } from './model.js';

export interface SiteSplit {
  name: string;
  train: ResponseExample[];
  test: ResponseExample[];
}

export interface RegimeRow {
  regime: string;
  /** Where the held-out patients come from: a site name or 'pooled'. */
  evaluatedOn: string;
  eval: ResponseEvaluation;
  /** Percentile-bootstrap 95 % interval of the macro AUC (pooled rows only). */
  aucCi95?: [number, number] | null;
}

/**
 * Plaintext FedAvg (McMahan et al. 2017) of the response model: per round every site trains
 * `epochsPerRound` from the global weights with the round's derived seed (as ResponseTrainer does),
 * then the sample-weighted mean. The encrypted spine computes the same mean up to quantisation
 * (precisionBits of the manifest) and the clip bound; the demo's model is that encrypted one.
 */
export function federatedPlain(c: LogRegConfig, init: Float32Array, sites: readonly ResponseExample[][], t: TrainOptions & { rounds: number }): Float32Array {
  let w = init;
  for (let r = 1; r <= t.rounds; r++) {
    const seed = deriveSeed(t.seed, `round-${r}`);
    w = weightedAverage(sites.filter((s) => s.length).map((s) => ({ weights: trainLogReg(c, w, s, { ...t, seed }).weights, nSamples: s.length })));
  }
  return w;
}

/**
 * The three regimes on the same patient splits and the same total number of epochs
 * (rounds × epochsPerRound): federated (given weights, or plaintext FedAvg), each site alone
 * (scored on its own held-out patients only — it is that site's model), and all training patients
 * pooled. Every model is scored on every site's held-out patients and on their union ('pooled');
 * for local-only, 'pooled' is each site's model on its own patients, concatenated.
 */
export function compareRegimes(
  c: LogRegConfig,
  init: Float32Array,
  sites: readonly SiteSplit[],
  t: TrainOptions & { rounds: number },
  federated?: Float32Array,
): { rows: RegimeRow[]; models: Record<string, Float32Array> } {
  const total = { ...t, epochs: t.rounds * t.epochs };
  const fed =
    federated ??
    federatedPlain(
      c,
      init,
      sites.map((s) => s.train),
      t,
    );
  const central = trainLogReg(
    c,
    init,
    sites.flatMap((s) => s.train),
    total,
  ).weights;
  const local = sites.map((s) => trainLogReg(c, init, s.train, total).weights);
  const allTest = sites.flatMap((s) => s.test);
  const rows: RegimeRow[] = [];
  for (const [regime, w] of [
    ['federated', fed],
    ['centralised', central],
  ] as const) {
    for (const s of sites) rows.push({ regime, evaluatedOn: s.name, eval: evaluateResponse(c, w, s.test) });
    rows.push({
      regime,
      evaluatedOn: 'pooled',
      ...pooledScore(
        allTest.map((e) => predictProba(c, w, e.x)),
        allTest,
        c.nClasses,
      ),
    });
  }
  sites.forEach((s, i) => rows.push({ regime: 'local-only', evaluatedOn: s.name, eval: evaluateResponse(c, local[i], s.test) }));
  const tagged = sites.flatMap((s, i) => s.test.map((e) => ({ e, w: local[i] })));
  rows.push({
    regime: 'local-only',
    evaluatedOn: 'pooled',
    ...pooledScore(
      tagged.map((t) => predictProba(c, t.w, t.e.x)),
      tagged.map((t) => t.e),
      c.nClasses,
    ),
  });
  // No learning: the category already reached at the third measurement, carried forward (one-hot scores, so AUC has ties).
  const carry = (ex: readonly ResponseExample[]) =>
    evaluateProbs(
      ex.map((e) => [0, 1, 2].map((k) => (k === e.atThird ? 1 : 0))),
      ex.map((e) => e.y),
      c.nClasses,
    );
  for (const s of sites) rows.push({ regime: 'carry-forward (category at 3rd measurement)', evaluatedOn: s.name, eval: carry(s.test) });
  rows.push({
    regime: 'carry-forward (category at 3rd measurement)',
    evaluatedOn: 'pooled',
    ...pooledScore(
      allTest.map((e) => [0, 1, 2].map((k) => (k === e.atThird ? 1 : 0))),
      allTest,
      c.nClasses,
    ),
  });
  const models: Record<string, Float32Array> = { federated: fed, centralised: central };
  sites.forEach((s, i) => (models[`local-${s.name}`] = local[i]));
  return { rows, models };
}

/** Metrics of the pooled held-out patients with a seeded bootstrap interval of the macro AUC. */
function pooledScore(probs: ArrayLike<number>[], ex: readonly ResponseExample[], nClasses: number): { eval: ResponseEvaluation; aucCi95: [number, number] | null } {
  const y = ex.map((e) => e.y);
  return { eval: evaluateProbs(probs, y, nClasses), aucCi95: bootstrapMacroAucCi(probs, y, nClasses, { resamples: 1000, seed: 1 }) };
}
