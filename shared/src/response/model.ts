import { addClipped, checkDpSgdOptions, poissonSample, privatiseClippedSum, type DpSgdOptions } from '../dp/dpsgd.js';
import { cryptoGaussian, cryptoUniform01 } from '../dp/noise.js';
import { deriveSeed, mulberry32 } from '../model/prng.js';
import { addProximalGradient, checkProximal, type ProximalOptions } from '../strategy/proximal.js';
import type { ResponseExample } from './features.js';

/**
 * Multinomial logistic regression (softmax regression; e.g. Bishop, "Pattern Recognition and
 * Machine Learning", 2006, §4.3.4) with hand-written gradients:
 *   p_k(x) = exp(w_k·x + b_k) / Σ_j exp(w_j·x + b_j)
 *   loss = Σ_i c_{y_i} · (−ln p_{y_i}(x_i)) / Σ_i c_{y_i} + ½·λ·‖W‖² (biases not penalised)
 *   ∂loss/∂w_k = Σ_i c_{y_i}(p_k(x_i) − [y_i = k]) x_i / Σ_i c_{y_i} + λ w_k
 * with class weights c_k = 1 / (K · n_k / n) computed from the LOCAL training set only ("balanced"
 * weighting, King & Zeng 2001), so a site's update does not simply learn its majority class.
 * Mini-batch gradient descent, batches drawn by a seeded permutation.
 *
 * Options of trainLogReg:
 * - `proximal` (FedProx, Li et al., MLSys 2020): adds mu·(w − anchor) to every step's gradient,
 *   the gradient of (mu/2)·‖w − anchor‖² (train/proximal.ts).
 * - `dp` (patient-level DP-SGD, Abadi et al., CCS 2016; dp/dpsgd.ts): each example is one patient.
 *   `dp.steps` steps replace the epochs; each Poisson-samples patients with rate q, takes the
 *   gradient of each sampled patient's own loss −ln p_y(x) (UNWEIGHTED: the balanced class
 *   weights come from the whole local set, so with them one patient's label would change every
 *   other patient's gradient and the clip bound C would no longer bound one patient's influence),
 *   clips it to L2 norm C, sums, adds N(0, (σC)²) per coordinate, divides by q·P; then the
 *   data-independent L2 penalty λw and the proximal term are added (post-processing) and the
 *   gradient step is taken.
 *
 * Flat weights (Float32Array, the spine's format): row-major K × (D + 1), column D is the bias.
 */
export interface LogRegConfig {
  nFeatures: number;
  nClasses: number;
  /** L2 penalty λ on the weights (not the biases). */
  l2: number;
}

export interface TrainOptions {
  epochs: number;
  batchSize: number;
  learningRate: number;
  /** Seeds the data order (the DP sampling and noise never use it). */
  seed: number;
  /** FedProx proximal term; absent or mu = 0 = plain local objective. */
  proximal?: ProximalOptions;
  /** Patient-level DP-SGD; `epochs` and `batchSize` are then unused. */
  dp?: DpSgdOptions;
}

export interface LogRegTrainResult {
  weights: Float32Array;
  /** Mean data loss: over the last epoch's batches, or under DP over the sampled patients of all steps. */
  loss: number;
  /** Gradient steps taken (under DP: the noisy steps the accountant must compose). */
  steps: number;
}

export const weightCount = (c: LogRegConfig): number => c.nClasses * (c.nFeatures + 1);

/** Seeded initial weights: N(0, 0.01²) by Box–Muller on mulberry32, biases 0. */
export function initLogReg(c: LogRegConfig, seed: number): Float32Array {
  const r = mulberry32(deriveSeed(seed, 'logreg-init'));
  const w = new Float32Array(weightCount(c));
  for (let k = 0; k < c.nClasses; k++) {
    for (let j = 0; j < c.nFeatures; j++) {
      const u = Math.max(r(), 1e-12);
      w[k * (c.nFeatures + 1) + j] = 0.01 * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * r());
    }
  }
  return w;
}

/** Class probabilities for one feature vector. */
export function predictProba(c: LogRegConfig, w: ArrayLike<number>, x: ArrayLike<number>): Float64Array {
  const D = c.nFeatures;
  if (x.length !== D) throw new Error(`predictProba: ${x.length} features, model expects ${D}`);
  const z = new Float64Array(c.nClasses);
  for (let k = 0; k < c.nClasses; k++) {
    let s = w[k * (D + 1) + D];
    for (let j = 0; j < D; j++) s += w[k * (D + 1) + j] * x[j];
    z[k] = s;
  }
  const m = Math.max(...z);
  let t = 0;
  for (let k = 0; k < z.length; k++) t += z[k] = Math.exp(z[k] - m);
  for (let k = 0; k < z.length; k++) z[k] /= t;
  return z;
}

export function classWeights(y: readonly number[], nClasses: number): number[] {
  const n = new Array(nClasses).fill(0);
  for (const c of y) n[c]++;
  return n.map((nk) => (nk > 0 ? y.length / (nClasses * nk) : 0));
}

/** Weighted mean loss (without the penalty) and its gradient over a subset of examples. */
export function lossAndGradient(c: LogRegConfig, w: ArrayLike<number>, ex: readonly ResponseExample[], cw: readonly number[]): { loss: number; grad: Float64Array } {
  const D = c.nFeatures;
  const g = new Float64Array(weightCount(c));
  let loss = 0;
  let tw = 0;
  for (const e of ex) {
    const p = predictProba(c, w, e.x);
    const wi = cw[e.y];
    tw += wi;
    loss -= wi * Math.log(Math.max(p[e.y], 1e-300));
    for (let k = 0; k < c.nClasses; k++) {
      const r = wi * (p[k] - (e.y === k ? 1 : 0));
      for (let j = 0; j < D; j++) g[k * (D + 1) + j] += r * e.x[j];
      g[k * (D + 1) + D] += r;
    }
  }
  if (tw > 0) {
    for (let i = 0; i < g.length; i++) g[i] /= tw;
    loss /= tw;
  }
  return { loss, grad: g };
}

/** Trains from `start` (not modified); returns new weights, the mean loss and the steps taken. */
export function trainLogReg(c: LogRegConfig, start: Float32Array, ex: readonly ResponseExample[], o: TrainOptions): LogRegTrainResult {
  const D = c.nFeatures;
  const w = Float64Array.from(start);
  const prox = o.proximal;
  if (prox) checkProximal(prox, w.length, 'trainLogReg');
  const addPenalties = (grad: Float64Array) => {
    for (let k = 0; k < c.nClasses; k++) for (let j = 0; j < D; j++) grad[k * (D + 1) + j] += c.l2 * w[k * (D + 1) + j];
    if (prox && prox.mu > 0) addProximalGradient(grad, w, prox);
  };
  if (o.dp) return trainLogRegDp(c, w, ex, o, o.dp, addPenalties);
  if (ex.length === 0) return { weights: Float32Array.from(w), loss: NaN, steps: 0 };
  const cw = classWeights(
    ex.map((e) => e.y),
    c.nClasses,
  );
  const rand = mulberry32(o.seed >>> 0);
  const bs = Math.max(1, Math.min(o.batchSize, ex.length));
  const epochs = Math.max(1, Math.round(o.epochs));
  let last = NaN;
  let steps = 0;
  for (let ep = 0; ep < epochs; ep++) {
    const order = Array.from({ length: ex.length }, (_, i) => i);
    for (let i = order.length - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1));
      [order[i], order[j]] = [order[j], order[i]];
    }
    let sum = 0;
    let nb = 0;
    for (let b = 0; b < ex.length; b += bs) {
      const batch = order.slice(b, b + bs).map((i) => ex[i]);
      const { loss, grad } = lossAndGradient(c, w, batch, cw);
      addPenalties(grad);
      for (let i = 0; i < w.length; i++) w[i] -= o.learningRate * grad[i];
      sum += loss;
      nb++;
      steps++;
    }
    last = sum / nb;
  }
  return { weights: Float32Array.from(w), loss: last, steps };
}

/** The DP-SGD loop of trainLogReg (see the module comment); `w` is updated in place. */
function trainLogRegDp(c: LogRegConfig, w: Float64Array, ex: readonly ResponseExample[], o: TrainOptions, dp: DpSgdOptions, addPenalties: (grad: Float64Array) => void): LogRegTrainResult {
  checkDpSgdOptions(dp, 'trainLogReg');
  const nPatients = ex.length;
  if (nPatients === 0) throw new Error('trainLogReg: DP-SGD needs at least one training patient');
  const unweighted = new Array<number>(c.nClasses).fill(1);
  const sampling = dp.random?.sampling ?? cryptoUniform01();
  const noise = dp.random?.noise ?? cryptoGaussian();
  const expectedBatchSize = dp.samplingRate * nPatients;
  let lossSum = 0;
  let lossCount = 0;
  for (let step = 0; step < dp.steps; step++) {
    const clippedSum = new Float64Array(w.length);
    for (const p of poissonSample(nPatients, dp.samplingRate, sampling)) {
      const { loss, grad } = lossAndGradient(c, w, [ex[p]], unweighted);
      addClipped(clippedSum, grad, dp.clipNorm);
      lossSum += loss;
      lossCount++;
    }
    const grad = privatiseClippedSum(clippedSum, { clipNorm: dp.clipNorm, noiseMultiplier: dp.noiseMultiplier, expectedBatchSize }, noise);
    addPenalties(grad);
    for (let i = 0; i < w.length; i++) w[i] -= o.learningRate * grad[i];
  }
  return { weights: Float32Array.from(w), loss: lossCount > 0 ? lossSum / lossCount : NaN, steps: dp.steps };
}
