import { cholesky, gram, spdInverse, zeros } from './linalg.js';
import { levenbergMarquardt } from './lm.js';
import { getModel, type GrowthModel, type ModelName, type ParamSpec } from './models.js';
import type { GaussianPrior } from './prior.js';
import { makeRng, subSeed } from './rng.js';
import { simulate } from './simulate.js';
import { hasSystemic, type Schedule, type TreatmentEffects } from './treatment.js';

/**
 * Per-patient calibration.
 *
 * Objective. Least squares on NORMALISED volumes y = V / Vref, Vref = the largest volume observed in
 * the data being fitted (never a later, held-out one). Why not log volumes: (1) real series contain
 * exact zeros (complete responses, lesions "too small" measured as 0 mm) where log V is undefined and
 * any offset would be arbitrary; (2) the clinical error that matters, and the one Ghaffari Laleh
 * et al. 2022 report, is absolute error relative to the patient's largest burden; (3) normalising
 * puts every patient on the same scale, so parameter bounds, the residual noise level and the
 * population prior are comparable across patients and sites.
 * Residuals are taken, by default, on the cube root of y (errorScale 'diameter'): the measured
 * quantity is a longest diameter whose reading error is roughly additive, so volume errors grow like
 * V^{2/3}; unweighted residuals in y would let the one or two largest volumes dominate the fit and
 * give prediction intervals that are too wide for small lesions and too narrow for large ones. On
 * the three Ghaffari Laleh cohorts this gave similar (Studies 1–2) or lower (Study 3) hold-out MAE
 * and better-calibrated intervals than residuals in y (docs/twin.md). errorScale 'volume' is plain
 * least squares on y.
 *
 * Parameters. The fitted vector is [V0 (in Vref), model θ…, (k)] where V0 = V(t0) at the first
 * fitted day t0 and k is an optional log-kill rate for systemic courses of the schedule. Positive
 * parameters are optimised in log space (z = ln θ), signed/shape ones as is; bounds are enforced by
 * projection in z (lm.ts). Multistarts: start 0 is a data-driven guess, starts 1.. are uniform draws
 * in z over each parameter's start range from a seeded generator (deterministic).
 *
 * Uncertainty (Laplace approximation). At the optimum ẑ, Cov(z) ≈ σ²(JᵀJ)⁻¹ with J = ∂ŷ/∂z
 * on the error scale (plus the prior precision for a MAP fit: (JᵀJ/σ² + Λ)⁻¹; without a population
 * prior, a weak prior from the parameter box keeps unidentifiable directions finite, see
 * withNoisePrior). σ² is the residual variance on the error scale, shrunk towards a population
 * noise level σ0² with ν0 pseudo-observations:
 * σ² = (ν0·σ0² + RSS) / (ν0 + max(n − p, 0)); this keeps σ defined for 2–3-point series.
 *
 * Model choice: AIC = n·ln(RSS/n) + 2k, AICc = AIC + 2k(k+1)/(n−k−1) (∞ when n ≤ k+1),
 * BIC = n·ln(RSS/n) + k·ln n, with k = number of fitted parameters + 1 (σ).
 */

export interface Observations {
  days: readonly number[];
  volumesMm3: readonly number[];
}

export interface NoisePrior {
  /** Prior residual variance in normalised units. */
  sigma2: number;
  /** Its weight in pseudo-observations. */
  nu: number;
}

/**
 * Used when no population noise level is known: σ0 = 0.1 on the error scale (10 % of the largest
 * diameter with errorScale 'diameter', 0.1·Vref with 'volume'), worth 2 observations.
 */
export const DEFAULT_NOISE: NoisePrior = { sigma2: 0.01, nu: 2 };

export interface FitOptions {
  schedule?: Schedule;
  effects?: TreatmentEffects;
  /** Estimate one log-kill rate k (1/day) shared by all systemic courses of the schedule. */
  estimateKill?: boolean;
  /** Number of multistarts (default 3). */
  starts?: number;
  seed?: number;
  /** Gaussian prior over the transformed parameter vector → MAP fit. */
  prior?: GaussianPrior;
  /** Residual-noise prior (default: prior.sigma2/nu if a prior is given, else DEFAULT_NOISE). */
  noise?: NoisePrior;
  maxIter?: number;
  /** Reference volume (mm³); default the largest observed volume. */
  scale?: number;
  /** Scale on which residuals are measured (default 'diameter'); see ErrorScale. */
  errorScale?: ErrorScale;
}

/**
 * 'volume': residuals in normalised volume y. 'diameter': residuals in y^{1/3} (= normalised
 * equivalent diameter), i.e. additive error in the measured quantity, the longest diameter, which
 * makes volume errors grow like V^{2/3} and keeps zeros usable.
 */
export type ErrorScale = 'volume' | 'diameter';

export const errorTransform = (s: ErrorScale): ((y: number) => number) => (s === 'diameter' ? Math.cbrt : (y: number) => y);
export const errorInverse = (s: ErrorScale): ((u: number) => number) => (s === 'diameter' ? (u: number) => (u > 0 ? u * u * u : 0) : (u: number) => u);

export type FitParamSpec = ParamSpec;

export interface Fit {
  model: GrowthModel;
  modelName: ModelName;
  paramNames: string[];
  specs: FitParamSpec[];
  /** Natural-unit estimates [V0, θ…, (k)], volumes in Vref. */
  theta: number[];
  /** Transformed estimates (log for positive parameters). */
  z: number[];
  /** Laplace covariance of z. */
  cov: number[][];
  /** JᵀJ of the data residuals at ẑ (to recompute cov under another σ). */
  jtj: number[][];
  /** Residual SD (normalised units) used for prediction intervals. */
  sigma: number;
  rss: number;
  n: number;
  /** Number of fitted parameters (without σ). */
  p: number;
  aic: number;
  aicc: number;
  bic: number;
  /** Vref in mm³. */
  scale: number;
  t0: number;
  days: number[];
  /** Normalised observations and fitted values. */
  y: number[];
  fitted: number[];
  schedule?: Schedule;
  effects: TreatmentEffects;
  estimateKill: boolean;
  map: boolean;
  /** Objective at the optimum (½·weighted SS incl. prior term). */
  objective: number;
  noise: NoisePrior;
  errorScale: ErrorScale;
  /** Model evaluations spent by the optimiser (all starts). */
  evaluations: number;
}

const KILL_SPEC: FitParamSpec = {
  name: 'k',
  lower: 1e-5,
  upper: 0.5,
  unit: '1/day',
  transform: 'log',
  start: [0.002, 0.05],
  description: 'log-kill rate of systemic therapy',
};

const V0_SPEC: FitParamSpec = {
  name: 'V0',
  lower: 1e-4,
  upper: 10,
  unit: 'Vref',
  transform: 'log',
  start: [0.1, 1],
  description: 'volume at the first fitted day',
};

export function fitSpecs(model: GrowthModel, estimateKill: boolean): FitParamSpec[] {
  return [V0_SPEC, ...model.params, ...(estimateKill ? [KILL_SPEC] : [])];
}

export const toZ = (s: ParamSpec, v: number): number => (s.transform === 'log' ? Math.log(v) : v);
export const fromZ = (s: ParamSpec, z: number): number => (s.transform === 'log' ? Math.exp(z) : z);
const zBounds = (specs: ParamSpec[]) => ({ lo: specs.map((s) => toZ(s, s.lower)), hi: specs.map((s) => toZ(s, s.upper)) });

/** Normalised model prediction for a transformed parameter vector. */
export function predictZ(
  model: GrowthModel,
  specs: FitParamSpec[],
  z: readonly number[],
  t0: number,
  days: readonly number[],
  schedule: Schedule | undefined,
  effects: TreatmentEffects,
  estimateKill: boolean,
): number[] {
  const th = z.map((v, j) => fromZ(specs[j], v));
  const pm = model.params.length;
  const eff = estimateKill ? { ...effects, killRateOverride: th[1 + pm] } : effects;
  return simulate(model, th.slice(1, 1 + pm), th[0], t0, days, schedule, eff);
}

function informationCriteria(rss: number, n: number, p: number) {
  const k = p + 1;
  const ll = n * Math.log(Math.max(rss / n, 1e-12));
  const aic = ll + 2 * k;
  const aicc = n - k - 1 > 0 ? aic + (2 * k * (k + 1)) / (n - k - 1) : Infinity;
  const bic = ll + k * Math.log(n);
  return { aic, aicc, bic };
}

function sortedSeries(obs: Observations): { days: number[]; v: number[] } {
  if (obs.days.length !== obs.volumesMm3.length) throw new Error('days and volumes differ in length');
  const idx = obs.days.map((_, i) => i).filter((i) => Number.isFinite(obs.days[i]) && Number.isFinite(obs.volumesMm3[i]) && obs.volumesMm3[i] >= 0);
  idx.sort((a, b) => obs.days[a] - obs.days[b]);
  return { days: idx.map((i) => obs.days[i]), v: idx.map((i) => obs.volumesMm3[i]) };
}

/**
 * Recomputes σ and the Laplace covariance of a fit for another residual-noise prior.
 * Without a population prior, the parameter box acts as a weak Gaussian prior (SD = a quarter of
 * each bound interval in z), so directions the data cannot see (3 points, 4 parameters) get the
 * box's spread instead of an infinite variance: H = JᵀJ/σ² + diag(4/(hi − lo))².
 */
export function withNoisePrior(fit: Fit, noise: NoisePrior, prior?: GaussianPrior): Fit {
  const dof = Math.max(fit.n - fit.p, 0);
  const sigma2 = (noise.nu * noise.sigma2 + fit.rss) / (noise.nu + dof);
  const p = fit.p;
  const H = zeros(p, p);
  for (let i = 0; i < p; i++)
    for (let j = 0; j < p; j++) {
      H[i][j] = fit.jtj[i][j] / sigma2 + (prior ? prior.precision[i][j] : 0);
      if (i === j && !prior) {
        const s = fit.specs[i];
        const w = (toZ(s, s.upper) - toZ(s, s.lower)) / 4;
        H[i][j] += 1 / (w * w);
      }
    }
  return { ...fit, sigma: Math.sqrt(sigma2), cov: spdInverse(H), noise };
}

/**
 * Calibrates one growth model to one patient's series (normalised least squares, or MAP with a
 * population prior). See the file comment for the method.
 */
export function fitPatient(modelIn: GrowthModel | ModelName, obs: Observations, opts: FitOptions = {}): Fit {
  const model = getModel(modelIn);
  const { days, v } = sortedSeries(obs);
  const n = days.length;
  if (n < 1) throw new Error('fitPatient: no usable measurements');
  const estimateKill = !!opts.estimateKill && hasSystemic(opts.schedule);
  const specs = fitSpecs(model, estimateKill);
  const p = specs.length;
  const prior = opts.prior;
  if (prior && (prior.paramNames.length !== p || prior.paramNames.some((nm, j) => nm !== specs[j].name) || prior.model !== model.name)) {
    throw new Error(`prior is for ${prior.model}(${prior.paramNames.join(',')}), fit needs ${model.name}(${specs.map((s) => s.name).join(',')})`);
  }
  const vmax = Math.max(...v);
  const scale = opts.scale ?? (vmax > 0 ? vmax : 1);
  const y = v.map((x) => x / scale);
  const errorScale = opts.errorScale ?? 'diameter';
  const g = errorTransform(errorScale);
  const gy = y.map(g);
  const t0 = days[0];
  const effects = opts.effects ?? {};
  const noise = opts.noise ?? (prior ? { sigma2: prior.sigma2, nu: prior.nu } : DEFAULT_NOISE);
  const { lo, hi } = zBounds(specs);
  const predict = (z: readonly number[]) => predictZ(model, specs, z, t0, days, opts.schedule, effects, estimateKill);

  // MAP: residuals [ (ŷ − y)/σ0 ; Cᵀ(z − μ) ] with Λ = C Cᵀ, so ½‖r‖² = RSS/(2σ0²) + ½(z−μ)ᵀΛ(z−μ).
  const wData = prior ? 1 / Math.sqrt(prior.sigma2) : 1;
  const C = prior ? cholesky(prior.precision) : null;
  const res = (z: number[]): number[] => {
    const f = predict(z);
    const r = f.map((fi, i) => (g(fi) - gy[i]) * wData);
    if (C && prior) {
      for (let c = 0; c < p; c++) {
        let s = 0;
        for (let j = c; j < p; j++) s += C[j][c] * (z[j] - prior.mean[j]);
        r.push(s);
      }
    }
    return r;
  };

  // Deterministic multistarts.
  const rng = makeRng(subSeed(opts.seed ?? 1, model.name));
  const nStarts = Math.max(1, opts.starts ?? 3);
  const guess = specs.map((s) => {
    const [a, b] = s.start;
    return s.transform === 'log' ? 0.5 * (Math.log(a) + Math.log(b)) : 0.5 * (a + b);
  });
  guess[0] = Math.log(Math.max(y[0], 1e-3));
  if (model.name === 'exponential' && n >= 2) {
    const yl = Math.max(y[n - 1], 1e-3);
    const yf = Math.max(y[0], 1e-3);
    guess[1] = Math.log(yl / yf) / Math.max(days[n - 1] - t0, 1);
  }
  const startPoints: number[][] = [guess];
  if (prior) startPoints.push([...prior.mean]);
  while (startPoints.length < nStarts + (prior ? 1 : 0)) {
    startPoints.push(
      specs.map((s, j) => {
        if (j === 0) return Math.log(Math.max(y[0], 1e-3)) + 0.3 * (rng.uniform() - 0.5);
        const [a, b] = s.start;
        const u = rng.uniform();
        return s.transform === 'log' ? Math.log(a) + u * (Math.log(b) - Math.log(a)) : a + u * (b - a);
      }),
    );
  }
  let best: ReturnType<typeof levenbergMarquardt> | null = null;
  let evaluations = 0;
  for (const sp of startPoints) {
    const zc = sp.map((x, j) => Math.min(hi[j], Math.max(lo[j], x)));
    const r = levenbergMarquardt(res, zc, lo, hi, { maxIter: opts.maxIter ?? 60, fdStep: model.exact ? 1e-6 : 1e-4 });
    evaluations += r.evaluations;
    if (!best || r.cost < best.cost) best = r;
  }
  const z = best!.z;
  const fitted = predict(z);
  let rss = 0;
  for (let i = 0; i < n; i++) rss += (g(fitted[i]) - gy[i]) ** 2;
  // Data Jacobian (unweighted) from the LM Jacobian's first n rows.
  const Jd = best!.J.slice(0, n).map((row) => row.map((x) => x / wData));
  const jtj = gram(Jd, p);
  const ic = informationCriteria(rss, n, p);
  const base: Fit = {
    model,
    modelName: model.name,
    paramNames: specs.map((s) => s.name),
    specs,
    theta: z.map((zz, j) => fromZ(specs[j], zz)),
    z,
    cov: [],
    jtj,
    sigma: NaN,
    rss,
    n,
    p,
    ...ic,
    scale,
    t0,
    days,
    y,
    fitted,
    schedule: opts.schedule,
    effects,
    estimateKill,
    map: !!prior,
    objective: best!.cost,
    noise,
    errorScale,
    evaluations,
  };
  return withNoisePrior(base, noise, prior);
}

/**
 * Whether a log-kill rate k of systemic therapy can be estimated from a series: only with a
 * pre-treatment SLOPE, i.e. at least `minBefore` (default 2) measurements before the first systemic
 * course starts. With one baseline scan the growth rate and k are confounded (on therapy only the
 * net rate is seen); the Laplace covariance then spans the whole k box in that direction, and the
 * forecast draws with large k kill the lesion: on a well-fitted Study 1 patient (10 points, residual
 * SD 0.015 in normalised diameter) this gave a 90 % band from 0 to 1.2× the volume at every day
 * (docs/twin.md, "Why the band was so wide"). Without k, the therapy is folded into the growth
 * parameters as in Ghaffari Laleh et al. 2022, who fit growth laws to treated lesions directly.
 */
export function killRateIdentifiable(days: readonly number[], schedule: Schedule | undefined, minBefore = 2): boolean {
  const sys = schedule?.systemic ?? [];
  if (sys.length === 0) return false;
  const start = Math.min(...sys.map((c) => c.startDay));
  return new Set(days.filter((d) => d < start)).size >= minBefore;
}

export interface ModelComparison {
  fits: Partial<Record<ModelName, Fit>>;
  best: { aic: ModelName; aicc: ModelName; bic: ModelName };
  /** Akaike weights (from AICc where finite for all, else AIC). */
  weights: Partial<Record<ModelName, number>>;
}

/** Fits several models to one patient and ranks them by AIC, AICc and BIC. */
export function fitModels(obs: Observations, models: readonly (ModelName | GrowthModel)[], opts: FitOptions = {}): ModelComparison {
  const fits: Partial<Record<ModelName, Fit>> = {};
  for (const m of models) {
    const f = fitPatient(m, obs, opts);
    fits[f.modelName] = f;
  }
  const list = Object.values(fits) as Fit[];
  const argmin = (key: 'aic' | 'aicc' | 'bic'): ModelName => {
    let b = list[0];
    for (const f of list) if (f[key] < b[key]) b = f;
    // AICc may be ∞ for all (too few points): fall back to AIC.
    if (key === 'aicc' && !Number.isFinite(b.aicc)) return argmin('aic');
    return b.modelName;
  };
  const useAicc = list.every((f) => Number.isFinite(f.aicc));
  const crit = list.map((f) => (useAicc ? f.aicc : f.aic));
  const mn = Math.min(...crit);
  const w = crit.map((c) => Math.exp(-0.5 * (c - mn)));
  const sw = w.reduce((a, b) => a + b, 0);
  const weights: Partial<Record<ModelName, number>> = {};
  list.forEach((f, i) => (weights[f.modelName] = w[i] / sw));
  return { fits, best: { aic: argmin('aic'), aicc: argmin('aicc'), bic: argmin('bic') }, weights };
}
