import type { Fit } from './fit.js';
import { spdInverse } from './linalg.js';

/**
 * Population prior of growth parameters, built ONLY from additive per-site sufficient statistics,
 * so sites can sum them through encrypted aggregation (secure sum) without revealing any patient's
 * parameters: n, Σz, Σzzᵀ over per-patient fits (z = transformed parameter vector, log for positive
 * parameters), plus Σ RSS and Σ residual degrees of freedom for a pooled residual-noise level.
 * The prior is Gaussian: z ~ N(mean, cov) with mean = Σz/n and cov = (Σzzᵀ − n·mean·meanᵀ)/(n−1).
 */
export interface SufficientStats {
  model: string;
  paramNames: string[];
  n: number;
  sum: number[];
  sumSq: number[][];
  /** Σ RSS (normalised units) and Σ max(nᵢ − p, 0): pooled residual variance = rss/dof. */
  rss: number;
  dof: number;
}

export interface GaussianPrior {
  model: string;
  paramNames: string[];
  n: number;
  mean: number[];
  cov: number[][];
  precision: number[][];
  /** Pooled residual variance (normalised units) used to weight the data in a MAP fit. */
  sigma2: number;
  /** Weight (pseudo-observations) of sigma2 when shrinking a patient's residual variance. */
  nu: number;
}

export function emptyStats(model: string, paramNames: string[]): SufficientStats {
  const p = paramNames.length;
  return { model, paramNames: [...paramNames], n: 0, sum: new Array<number>(p).fill(0), sumSq: Array.from({ length: p }, () => new Array<number>(p).fill(0)), rss: 0, dof: 0 };
}

/** Sufficient statistics of a set of fits of the same model (one site's contribution). */
export function sufficientStats(fits: readonly Fit[]): SufficientStats {
  if (fits.length === 0) throw new Error('sufficientStats: no fits');
  const f0 = fits[0];
  const s = emptyStats(f0.modelName, f0.paramNames);
  const p = f0.paramNames.length;
  for (const f of fits) {
    if (f.modelName !== s.model || f.paramNames.join() !== s.paramNames.join()) throw new Error('sufficientStats: fits of different models/parameters');
    s.n += 1;
    for (let i = 0; i < p; i++) {
      s.sum[i] += f.z[i];
      for (let j = 0; j < p; j++) s.sumSq[i][j] += f.z[i] * f.z[j];
    }
    s.rss += f.rss;
    s.dof += Math.max(f.n - f.p, 0);
  }
  return s;
}

function check(a: SufficientStats, b: SufficientStats): void {
  if (a.model !== b.model || a.paramNames.join() !== b.paramNames.join()) throw new Error(`stats of ${a.model} and ${b.model} cannot be combined`);
}

/** a + b (element-wise): what encrypted aggregation across sites computes. */
export function mergeStats(a: SufficientStats, b: SufficientStats): SufficientStats {
  check(a, b);
  return {
    model: a.model,
    paramNames: [...a.paramNames],
    n: a.n + b.n,
    sum: a.sum.map((v, i) => v + b.sum[i]),
    sumSq: a.sumSq.map((row, i) => row.map((v, j) => v + b.sumSq[i][j])),
    rss: a.rss + b.rss,
    dof: a.dof + b.dof,
  };
}

/** a − b: removes a patient (or a subset) from aggregate stats, e.g. for leave-one-out priors. */
export function subtractStats(a: SufficientStats, b: SufficientStats): SufficientStats {
  check(a, b);
  return {
    model: a.model,
    paramNames: [...a.paramNames],
    n: a.n - b.n,
    sum: a.sum.map((v, i) => v - b.sum[i]),
    sumSq: a.sumSq.map((row, i) => row.map((v, j) => v - b.sumSq[i][j])),
    rss: a.rss - b.rss,
    dof: a.dof - b.dof,
  };
}

export interface PriorOptions {
  /** Floor added to each variance of z (default 1e-4) so the prior stays proper. */
  minVariance?: number;
  /** Multiplies the covariance (>1 widens the prior; default 1). */
  inflate?: number;
  /** Noise pseudo-observations (default 3). */
  nu?: number;
}

/** Gaussian prior from (aggregated) sufficient statistics; needs n ≥ 2. */
export function priorFromStats(stats: SufficientStats, opts: PriorOptions = {}): GaussianPrior {
  const { n } = stats;
  if (!(n >= 2)) throw new Error(`priorFromStats: need at least 2 fits, got ${n}`);
  const p = stats.paramNames.length;
  const mean = stats.sum.map((s) => s / n);
  const inflate = opts.inflate ?? 1;
  const floor = opts.minVariance ?? 1e-4;
  const cov = stats.sumSq.map((row, i) => row.map((v, j) => (inflate * (v - n * mean[i] * mean[j])) / (n - 1) + (i === j ? floor : 0)));
  // guard against tiny negative round-off on the diagonal
  for (let i = 0; i < p; i++) cov[i][i] = Math.max(cov[i][i], floor);
  const sigma2 = stats.dof > 0 ? Math.max(stats.rss / stats.dof, 1e-8) : 0.01;
  return { model: stats.model, paramNames: [...stats.paramNames], n, mean, cov, precision: spdInverse(cov), sigma2, nu: opts.nu ?? 3 };
}
