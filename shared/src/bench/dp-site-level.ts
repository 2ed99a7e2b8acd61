/**
 * `npm run bench:dp`: why site-level DP does not pay with 3 sites. A PLAINTEXT SIMULATION of the
 * site-level mechanism (protocols SiteDpSchema; Kairouz, Liu & Steinke, ICML 2021, with
 * continuous Gaussian noise in place of the distributed discrete Gaussian — the same noise
 * variance, without quantisation or modular wrap-around; encryption does not change the sum).
 *
 * Task: the treatment-response model of `npm run demo:response` on Laleh et al. 2022 Study1-3
 * (fixtures/growth-laleh2022), the same patient split (salted hash, 70 % train) and training
 * (20 full-batch epochs per round, lr 0.5, L2 1e-3). Per round each of the 3 sites trains from the
 * global weights; its update Δ_i is clipped to L2 norm C; the server adds N(0, (σC)²) to each
 * coordinate of ΣΔ_i and applies the mean (sum + noise) / 3 (every site weight 1, as site-level DP
 * requires). σ = noiseMultiplierFor({ samplingRate: 1, steps: R, delta: 1e-5, epsilon }) — one
 * composition per round (Mironov 2017: Gaussian RDP α/(2σ²); Balle et al. 2020 conversion).
 * C is the median unclipped site-update norm of the non-private run (so ε = ∞ barely clips).
 *
 * Printed: the macro one-vs-rest AUC of the final model on the pooled held-out patients, and the
 * noise-to-signal ratio ‖noise / 3‖ / ‖mean clipped update‖ averaged over rounds, as mean ± sd
 * over seeded repeats (the training is deterministic; the repeats draw different noise).
 *
 * Then the analytic ratio for the demo U-Net (shared/src/model, base 8, depth 2: ~29k weights)
 * at ε = 8 over 5 rounds: with each site's update at the clip norm and all three aligned (the best
 * case), ‖noise on the mean‖ / ‖mean update‖ = σ·C·√d / (3·C) = σ·√d / 3.
 *
 *   node shared/dist/bench/dp-site-level.js [--rounds 20] [--repeats 10] [--data DIR]
 */
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { noiseMultiplierFor } from '../dp/accountant.js';
import { countConfigParams } from '../model/specs.js';
import { deriveSeed, mulberry32 } from '../model/prng.js';
import {
  buildExamples,
  evaluateProbs,
  featureNames,
  initLogReg,
  predictProba,
  responsePatientsFromLaleh,
  responseStudySpec,
  splitOf,
  trainLogReg,
  weightedAverage,
  type LogRegConfig,
  type ResponseExample,
} from '../response/index.js';
import { parseLalehCsv } from '../twin/laleh.js';

const arg = (name: string, dflt: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1]! : dflt;
};
const ROUNDS = Number(arg('rounds', '20'));
const REPEATS = Number(arg('repeats', '10'));
const DATA = resolve(arg('data', join(fileURLToPath(new URL('.', import.meta.url)), '../../../fixtures/growth-laleh2022')));
const DELTA = 1e-5;
const N_SITES = 3;

function gaussian(rand: () => number): () => number {
  let spare: number | null = null;
  return () => {
    if (spare !== null) {
      const s = spare;
      spare = null;
      return s;
    }
    let u = 0;
    while (u === 0) u = rand();
    const v = rand();
    const r = Math.sqrt(-2 * Math.log(u));
    spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  };
}
const norm = (v: ArrayLike<number>) => {
  let s = 0;
  for (let i = 0; i < v.length; i++) s += v[i]! * v[i]!;
  return Math.sqrt(s);
};

const spec = responseStudySpec(ROUNDS);
const arms = spec.model.arms;
const cfg: LogRegConfig = { nFeatures: featureNames(arms).length, nClasses: 3, l2: spec.model.l2 };
const train: ResponseExample[][] = [];
const test: ResponseExample[] = [];
for (const s of ['Study1', 'Study2', 'Study3']) {
  const ex = buildExamples(responsePatientsFromLaleh(parseLalehCsv(readFileSync(join(DATA, `${s}.csv`), 'utf8'))), arms, spec.data.minMeasurements).examples;
  train.push(ex.filter((e) => splitOf(e.id, spec.data.splitSalt, spec.data.trainPercent) === 'train'));
  test.push(...ex.filter((e) => splitOf(e.id, spec.data.splitSalt, spec.data.trainPercent) === 'test'));
}
const init = initLogReg(cfg, spec.model.initSeed);
const t = { epochs: spec.training.epochsPerRound, batchSize: spec.training.batchSize, learningRate: spec.training.learningRate, seed: spec.training.seed };
const auc = (w: Float32Array) =>
  evaluateProbs(
    test.map((e) => predictProba(cfg, w, e.x)),
    test.map((e) => e.y),
    cfg.nClasses,
  ).auc;

/** Local training of every site from w for round r: the sites' updates Δ_i = w_i − w. */
function siteUpdates(w: Float32Array, r: number): Float64Array[] {
  const seed = deriveSeed(t.seed, `round-${r}`);
  return train.map((s) => {
    const wi = trainLogReg(cfg, w, s, { ...t, seed }).weights;
    return Float64Array.from(wi, (x, k) => x - w[k]!);
  });
}

// Reference: FedAvg as in the demo (sample-weighted, no clipping), and the update norms that set C.
let w = init;
const norms: number[] = [];
for (let r = 1; r <= ROUNDS; r++) {
  const seed = deriveSeed(t.seed, `round-${r}`);
  const ups = train.map((s) => trainLogReg(cfg, w, s, { ...t, seed }).weights);
  ups.forEach((u) => norms.push(norm(Float64Array.from(u, (x, k) => x - w[k]!))));
  w = weightedAverage(ups.map((weights, i) => ({ weights, nSamples: train[i]!.length })));
}
const fedavgAuc = auc(w);
norms.sort((a, b) => a - b);
const C = Number(norms[Math.floor(norms.length / 2)]!.toPrecision(2));

/** One simulated study at noise multiplier sigma (0 = no noise); returns final AUC and mean noise/signal ratio. */
function simulate(sigma: number, seed: number): { auc: number | null; ratio: number } {
  const normal = gaussian(mulberry32(seed));
  let w = init;
  let ratioSum = 0;
  for (let r = 1; r <= ROUNDS; r++) {
    const ups = siteUpdates(w, r);
    const sum = new Float64Array(w.length);
    for (const u of ups) {
      const n = norm(u);
      const k = n > C ? C / n : 1;
      for (let i = 0; i < u.length; i++) sum[i]! += u[i]! * k;
    }
    const noise = Float64Array.from(sum, () => sigma * C * normal());
    ratioSum += norm(noise) / N_SITES / (norm(sum) / N_SITES);
    w = Float32Array.from(w, (x, i) => x + (sum[i]! + noise[i]!) / N_SITES);
  }
  return { auc: auc(w), ratio: ratioSum / ROUNDS };
}

const ms = (xs: number[]) => {
  const m = xs.reduce((a, b) => a + b, 0) / xs.length;
  const sd = Math.sqrt(xs.reduce((a, b) => a + (b - m) ** 2, 0) / Math.max(1, xs.length - 1));
  return { m, sd };
};
const f = (x: { m: number; sd: number }, d = 3) => `${x.m.toFixed(d)} ± ${x.sd.toFixed(d)}`;

console.log(`site-level DP, PLAINTEXT SIMULATION of the mechanism (3 sites, weight 1 each, updates clipped to C, Gaussian noise sigma·C on the sum), response model on Laleh 2022 Study1-3`);
console.log(
  `${train.map((s) => s.length).join(' / ')} training patients, ${test.length} held-out (pooled); ${ROUNDS} rounds of ${t.epochs} full-batch epochs; delta ${DELTA.toExponential()}; C = ${C} (median unclipped site-update norm, range ${norms[0]!.toFixed(2)}-${norms[norms.length - 1]!.toFixed(2)}); ${REPEATS} noise seeds\n`,
);
console.log(`| epsilon | noise multiplier | final macro AUC (held-out) | noise / signal (mean update) |`);
console.log(`|---|---|---|---|`);
console.log(`| seeded initial model (no training) | - | ${auc(init)?.toFixed(3)} | - |`);
console.log(`| FedAvg, no clipping (demo) | - | ${fedavgAuc?.toFixed(3)} | 0 |`);
for (const eps of [Infinity, 8, 3, 1]) {
  const sigma = eps === Infinity ? 0 : noiseMultiplierFor({ samplingRate: 1, steps: ROUNDS, delta: DELTA, epsilon: eps });
  const runs = Array.from({ length: eps === Infinity ? 1 : REPEATS }, (_, k) => simulate(sigma, 1000 + k));
  const a = ms(runs.map((r) => r.auc ?? NaN));
  const q = ms(runs.map((r) => r.ratio));
  console.log(`| ${eps === Infinity ? '∞ (clipping only)' : eps} | ${sigma || '0'} | ${eps === Infinity ? a.m.toFixed(3) : f(a)} | ${eps === Infinity ? '0' : f(q, 1)} |`);
}

// U-Net: analytic, best case (each site's update at the clip norm, all three aligned).
const unetD = countConfigParams({ inChannels: 1, nClasses: 2, base: 8, depth: 2, size: 48 }); // demoStudySpec's model
const unetSigma = noiseMultiplierFor({ samplingRate: 1, steps: 5, delta: DELTA, epsilon: 8 });
console.log(
  `\nU-Net of npm run demo (${unetD} weights), site-level epsilon 8 over 5 rounds: sigma ${unetSigma}; noise on the mean update / mean update >= sigma·sqrt(d)/3 = ${((unetSigma * Math.sqrt(unetD)) / N_SITES).toFixed(0)}x (each site at the clip norm, all aligned; less aligned updates make it worse)`,
);
