import { deriveSeed, mulberry32 } from '../model/prng.js';
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
  seed: number;
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
  for (let k = 0; k < z.length; k++) t += (z[k] = Math.exp(z[k] - m));
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

/** Trains from `start` (not modified); returns new weights and the last epoch's mean loss. */
export function trainLogReg(c: LogRegConfig, start: Float32Array, ex: readonly ResponseExample[], o: TrainOptions): { weights: Float32Array; loss: number } {
  const D = c.nFeatures;
  const w = Float64Array.from(start);
  if (ex.length === 0) return { weights: Float32Array.from(w), loss: NaN };
  const cw = classWeights(ex.map((e) => e.y), c.nClasses);
  const rand = mulberry32(o.seed >>> 0);
  const bs = Math.max(1, Math.min(o.batchSize, ex.length));
  const epochs = Math.max(1, Math.round(o.epochs));
  let last = NaN;
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
      for (let k = 0; k < c.nClasses; k++) for (let j = 0; j < D; j++) grad[k * (D + 1) + j] += c.l2 * w[k * (D + 1) + j];
      for (let i = 0; i < w.length; i++) w[i] -= o.learningRate * grad[i];
      sum += loss;
      nb++;
    }
    last = sum / nb;
  }
  return { weights: Float32Array.from(w), loss: last };
}
