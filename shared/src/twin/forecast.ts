import { cholesky } from './linalg.js';
import { errorInverse, errorTransform, fromZ, predictZ, toZ, type ErrorScale, type Fit } from './fit.js';
import { makeRng } from './rng.js';
import type { Schedule, TreatmentEffects } from './treatment.js';

export interface BandOptions {
  /** Parameter draws (default 200). */
  draws?: number;
  seed?: number;
  /** Central interval mass (default 0.9 → 5% and 95% quantiles). */
  level?: number;
  /** Override the fit's treatment-effect parameters (what-if on α/β, kill rates…). */
  effects?: TreatmentEffects;
  /** Add residual noise σ to each draw (default true: a prediction interval for a new measurement). */
  residualNoise?: boolean;
  /** Also return the draws (per day, sorted, mm³), e.g. for event probabilities such as RECIST progression. */
  keepSamples?: boolean;
}

export interface ForecastBand {
  days: number[];
  /** Prediction at the estimate θ̂ (mm³). */
  point: number[];
  median: number[];
  lower: number[];
  upper: number[];
  level: number;
  /** With `keepSamples`: per day the sorted Monte Carlo draws of the predictive distribution (mm³). */
  samples?: number[][];
}

/** Linear-interpolated quantile of a sorted array (type 7). */
export function quantileSorted(s: readonly number[], q: number): number {
  if (s.length === 0) return NaN;
  const h = (s.length - 1) * q;
  const lo = Math.floor(h);
  const hi = Math.min(lo + 1, s.length - 1);
  return s[lo] + (h - lo) * (s[hi] - s[lo]);
}

/** Point prediction (mm³) of a fit at days (≥ fit.t0), optionally under another schedule. */
export function predictFit(fit: Fit, days: readonly number[], schedule: Schedule | undefined = fit.schedule, effects: TreatmentEffects = fit.effects): number[] {
  return predictZ(fit.model, fit.specs, fit.z, fit.t0, days, schedule, effects, fit.estimateKill).map((v) => v * fit.scale);
}

/**
 * Forecast with a prediction interval: θ is drawn from the Laplace posterior N(ẑ, Σ) in transformed
 * space (draws clamped to the parameter box), each draw is simulated under `schedule` (default: the
 * fit's), Gaussian residual noise N(0, σ²) is added on the fit's error scale (normalised volume or its cube root), volumes are floored at 0, and
 * the median and (1−level)/2, (1+level)/2 quantiles are returned in mm³. Deterministic given the seed.
 */
export function forecastWithBand(fit: Fit, days: readonly number[], schedule: Schedule | undefined = fit.schedule, opts: BandOptions = {}): ForecastBand {
  const draws = opts.draws ?? 200;
  const level = opts.level ?? 0.9;
  const effects = opts.effects ?? fit.effects;
  const noisy = opts.residualNoise ?? true;
  const rng = makeRng(opts.seed ?? 7);
  const p = fit.p;
  const L = cholesky(fit.cov);
  const lo = fit.specs.map((s) => toZ(s, s.lower));
  const hi = fit.specs.map((s) => toZ(s, s.upper));
  const samples: number[][] = days.map(() => []);
  const g = errorTransform(fit.errorScale);
  const gi = errorInverse(fit.errorScale);
  for (let d = 0; d < draws; d++) {
    const e = Array.from({ length: p }, () => rng.normal());
    const z = fit.z.map((zj, i) => {
      let s = zj;
      for (let k = 0; k <= i; k++) s += L[i][k] * e[k];
      return Math.min(hi[i], Math.max(lo[i], s));
    });
    const y = predictZ(fit.model, fit.specs, z, fit.t0, days, schedule, effects, fit.estimateKill);
    for (let i = 0; i < days.length; i++) {
      const yi = noisy ? gi(Math.max(0, g(y[i]) + fit.sigma * rng.normal())) : y[i];
      samples[i].push(Math.max(0, yi) * fit.scale);
    }
  }
  const ql = (1 - level) / 2;
  const median: number[] = [];
  const lower: number[] = [];
  const upper: number[] = [];
  for (const s of samples) {
    s.sort((a, b) => a - b);
    median.push(quantileSorted(s, 0.5));
    lower.push(quantileSorted(s, ql));
    upper.push(quantileSorted(s, 1 - ql));
  }
  return { days: [...days], point: predictFit(fit, days, schedule, effects), median, lower, upper, level, ...(opts.keepSamples ? { samples } : {}) };
}

/** Side-by-side what-if: the same fit (and the same parameter draws, same seed) under several schedules. */
export function compareSchedules(fit: Fit, days: readonly number[], schedules: Record<string, Schedule | undefined>, opts: BandOptions = {}): Record<string, ForecastBand> {
  const out: Record<string, ForecastBand> = {};
  for (const [name, s] of Object.entries(schedules)) out[name] = forecastWithBand(fit, days, s, opts);
  return out;
}

/** Natural-unit parameter estimates with Laplace 95% intervals (back-transformed from z). */
export function parameterSummary(fit: Fit): { name: string; estimate: number; lower95: number; upper95: number; unit: string }[] {
  return fit.specs.map((s, j) => {
    const sd = Math.sqrt(Math.max(fit.cov[j][j], 0));
    const clampZ = (v: number) => Math.min(toZ(s, s.upper), Math.max(toZ(s, s.lower), v));
    return {
      name: s.name,
      estimate: fit.theta[j],
      lower95: fromZ(s, clampZ(fit.z[j] - 1.96 * sd)),
      upper95: fromZ(s, clampZ(fit.z[j] + 1.96 * sd)),
      unit: s.unit,
    };
  });
}

/**
 * Standardised exceedance of an observation relative to a band, on the error scale g of the fit:
 * (g(obs) − g(median)) / (g(upper) − g(median)) above the median, (g(median) − g(obs)) /
 * (g(median) − g(lower)) below. ≤ 1 ⇔ inside the band. Scores of past forecasts calibrate bands.
 */
export function bandScore(band: ForecastBand, i: number, observedMm3: number, errorScale: ErrorScale = 'diameter'): number {
  const g = errorTransform(errorScale);
  const m = g(band.median[i]);
  const o = g(observedMm3);
  if (o >= m) {
    const w = g(band.upper[i]) - m;
    return w > 0 ? (o - m) / w : o === m ? 0 : Infinity;
  }
  const w = m - g(band.lower[i]);
  return w > 0 ? (m - o) / w : Infinity;
}

/**
 * Split-conformal widening factor from past scores (Vovk et al. 2005; Lei et al., JASA 2018): the
 * ⌈(N+1)·level⌉-th smallest score, so that a new exchangeable forecast is covered with probability
 * ≥ level. Infinity when N is too small.
 */
export function conformalFactor(scores: readonly number[], level = 0.9): number {
  const s = scores.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
  const k = Math.ceil((s.length + 1) * level);
  return k <= s.length ? s[k - 1] : Infinity;
}

/** Band widened (or narrowed) by a factor around its median on the error scale g. */
export function widenBand(band: ForecastBand, factor: number, errorScale: ErrorScale = 'diameter'): ForecastBand {
  const g = errorTransform(errorScale);
  const gi = errorInverse(errorScale);
  const lower = band.median.map((m, i) => Math.max(0, gi(Math.max(0, g(m) - factor * (g(m) - g(band.lower[i]))))));
  const upper = band.median.map((m, i) => gi(g(m) + factor * (g(band.upper[i]) - g(m))));
  return { ...band, lower, upper };
}
