import { fitPatient, withNoisePrior, type ErrorScale, type Fit, type NoisePrior } from './fit.js';
import { bandScore, conformalFactor, forecastWithBand, predictFit, type ForecastBand } from './forecast.js';
import { getModel, MODEL_NAMES, type ModelName } from './models.js';
import { priorFromStats, subtractStats, sufficientStats, type SufficientStats } from './prior.js';
import { subSeed } from './rng.js';

/**
 * Hold-out evaluation of the twin's forecasts (the protocol of Ghaffari Laleh et al. 2022: fit the
 * early part of each patient's series, predict the last measurements).
 *
 * For each patient with ≥ K+3 usable measurements: fit each model on all but the last K points,
 * forecast those K. Errors are absolute errors in normalised volume (volume / the patient's largest
 * observed volume over the whole series: a fixed per-patient scale shared by every method), averaged
 * per patient then over patients (all patients have exactly K points, so this equals the pooled mean).
 * coverage90 = share of held-out points inside the 5–95% prediction interval.
 *
 * Leakage. Nothing about a patient's held-out points enters its own forecast. The population prior
 * of the MAP variant and the population noise level σ0² are leave-one-out: aggregate sufficient
 * statistics of the fit-window fits of all evaluated patients of the same cohort, minus the
 * patient's own contribution (subtractStats); only fit windows (never held-out points) of the
 * other patients are used. The sparse group (exactly K+2 points) uses the prior of all evaluated
 * patients (a disjoint set). The only use of other patients' held-out points is the optional
 * conformal calibration score (coverage90Calibrated), which is leave-one-patient-out: patient i's
 * band is widened using the held-out scores of patients j ≠ i (as a site would calibrate on its
 * past, completed forecasts). coverage90 itself is the model-based band, uncalibrated.
 * The AICc-selected row picks, per patient, the plain fit with the lowest AICc on the fit window.
 */
export interface EvalPatient {
  id: string;
  days: number[];
  volumesMm3: number[];
  arm?: string;
}

export interface HoldoutOptions {
  holdoutLast: number;
  models?: ModelName[];
  seed?: number;
  /** Multistarts per fit (default 3). */
  starts?: number;
  /** Forecast draws per patient and model (default 200). */
  draws?: number;
  /** Also evaluate the MAP-with-population-prior variant (default true). */
  withPrior?: boolean;
  /** Also evaluate patients with exactly K+2 points (2 fitted points) in `sparse` (default true). */
  withSparse?: boolean;
  /** Weight of the population noise level in pseudo-observations (default 3). */
  noiseNu?: number;
  errorScale?: ErrorScale;
}

export interface ModelScore {
  n: number;
  mae: number;
  /** Coverage of the model-based (Laplace + residual noise) 90% prediction interval. */
  coverage90: number;
  /**
   * Coverage after leave-one-patient-out conformal calibration: the band of patient i is widened
   * (factor on the error scale) so that 90% of the OTHER patients' held-out points would be covered.
   */
  coverage90Calibrated?: number;
  /** The calibration factor on all patients (1 = model band already calibrated; >1 = too narrow). */
  calibrationFactor?: number;
}

export interface HoldoutResult {
  models: Record<string, ModelScore>;
  baselines: { locf: { mae: number; n: number }; linear: { mae: number; n: number } };
  /** MAP fits with the leave-one-out population prior, per model. */
  map: Record<string, ModelScore>;
  /** Per patient, the plain fit with the lowest AICc (AIC when AICc is undefined). */
  selected: { aicc: ModelScore & { chosen: Record<string, number> } };
  /** Patients with only 2 fitted points (K+2 measurements): MAP with the cohort prior vs LOCF. */
  sparse?: { n: number; locf: { mae: number }; linear: { mae: number }; map: Record<string, ModelScore>; models: Record<string, ModelScore> };
  meta: {
    holdoutLast: number;
    patientsIn: number;
    patientsEvaluated: number;
    /** Patients with < K+3 usable points (those with exactly K+2 are scored separately in `sparse`). */
    excludedTooFewPoints: number;
    excludedAllZero: number;
    priorSource: string;
    seconds: number;
  };
}

interface Prepared {
  p: EvalPatient;
  fitDays: number[];
  fitV: number[];
  testDays: number[];
  testV: number[];
  norm: number;
}

function usable(p: EvalPatient): { days: number[]; v: number[] } {
  const idx = p.days.map((_, i) => i).filter((i) => Number.isFinite(p.days[i]) && Number.isFinite(p.volumesMm3[i]) && p.volumesMm3[i] >= 0);
  idx.sort((a, b) => p.days[a] - p.days[b]);
  return { days: idx.map((i) => p.days[i]), v: idx.map((i) => p.volumesMm3[i]) };
}

function prepare(p: EvalPatient, K: number): Prepared | null {
  const { days, v } = usable(p);
  const norm = Math.max(...v);
  if (!(norm > 0)) return null;
  const m = days.length - K;
  return { p, fitDays: days.slice(0, m), fitV: v.slice(0, m), testDays: days.slice(m), testV: v.slice(m), norm };
}

class Acc {
  n = 0;
  ae = 0;
  cov = 0;
  pts = 0;
  /** Per patient, band scores of its held-out points (≤ 1 ⇔ covered). */
  scores: number[][] = [];
  add(pred: number[], obs: number[], norm: number, band?: ForecastBand, errorScale?: ErrorScale): void {
    let s = 0;
    const sc: number[] = [];
    for (let i = 0; i < obs.length; i++) {
      s += Math.abs(pred[i] - obs[i]) / norm;
      if (band) {
        this.pts++;
        if (obs[i] >= band.lower[i] && obs[i] <= band.upper[i]) this.cov++;
        sc.push(bandScore(band, i, obs[i], errorScale));
      }
    }
    if (band) this.scores.push(sc);
    this.ae += s / obs.length;
    this.n++;
  }
  score(): ModelScore {
    const out: ModelScore = { n: this.n, mae: this.n ? this.ae / this.n : NaN, coverage90: this.pts ? this.cov / this.pts : NaN };
    if (this.scores.length >= 2) {
      // Leave-one-patient-out split-conformal calibration of the band width.
      let covered = 0;
      let pts = 0;
      this.scores.forEach((own, i) => {
        const others: number[] = [];
        this.scores.forEach((o, j) => {
          if (j !== i) others.push(...o);
        });
        const c = conformalFactor(others, 0.9);
        for (const x of own) {
          pts++;
          if (x <= c) covered++;
        }
      });
      out.coverage90Calibrated = covered / pts;
      out.calibrationFactor = conformalFactor(this.scores.flat(), 0.9);
    }
    return out;
  }
}

const locf = (x: Prepared) => x.testDays.map(() => x.fitV[x.fitV.length - 1]);
const linear = (x: Prepared) => {
  const n = x.fitV.length;
  const slope = (x.fitV[n - 1] - x.fitV[n - 2]) / Math.max(x.fitDays[n - 1] - x.fitDays[n - 2], 1e-9);
  return x.testDays.map((t) => Math.max(0, x.fitV[n - 1] + slope * (t - x.fitDays[n - 1])));
};

export function evaluateHoldout(patients: readonly EvalPatient[], opts: HoldoutOptions): HoldoutResult {
  const t0 = Date.now();
  const K = opts.holdoutLast;
  if (!(Number.isInteger(K) && K >= 1)) throw new Error('holdoutLast must be an integer ≥ 1');
  const models = opts.models ?? [...MODEL_NAMES];
  models.forEach((m) => getModel(m));
  const seed = opts.seed ?? 1;
  const starts = opts.starts ?? 3;
  const draws = opts.draws ?? 200;
  const withPrior = opts.withPrior ?? true;
  const nu = opts.noiseNu ?? 3;
  const errorScale = opts.errorScale;

  const main: Prepared[] = [];
  const sparse: Prepared[] = [];
  let tooFew = 0;
  let allZero = 0;
  for (const p of patients) {
    const n = usable(p).days.length;
    if (n < K + 2) {
      tooFew++;
      continue;
    }
    const x = prepare(p, K);
    if (!x) {
      allZero++;
      continue;
    }
    if (n >= K + 3) main.push(x);
    else {
      sparse.push(x);
      tooFew++;
    }
  }

  const bl = { locf: new Acc(), linear: new Acc() };
  for (const x of main) {
    bl.locf.add(locf(x), x.testV, x.norm);
    bl.linear.add(linear(x), x.testV, x.norm);
  }

  const res: HoldoutResult['models'] = {};
  const mapRes: HoldoutResult['map'] = {};
  const sparseMap: Record<string, ModelScore> = {};
  const sparseModels: Record<string, ModelScore> = {};
  const fitsByModel = new Map<ModelName, Fit[]>();
  const bandOf = (fit: Fit, x: Prepared, label: string) => forecastWithBand(fit, x.testDays, fit.schedule, { draws, seed: subSeed(seed, `${label}:${x.p.id}`) });

  for (const m of models) {
    const raw = main.map((x) => fitPatient(m, { days: x.fitDays, volumesMm3: x.fitV }, { starts, seed: subSeed(seed, x.p.id), errorScale }));
    fitsByModel.set(m, raw);
    const total = sufficientStats(raw);
    const acc = new Acc();
    const accMap = new Acc();
    raw.forEach((f0, i) => {
      const x = main[i];
      const loo: SufficientStats = subtractStats(total, sufficientStats([f0]));
      const noise: NoisePrior = { sigma2: loo.dof > 0 ? loo.rss / loo.dof : 0.01, nu };
      const fit = withNoisePrior(f0, noise);
      const band = bandOf(fit, x, m);
      acc.add(predictFit(fit, x.testDays), x.testV, x.norm, band, fit.errorScale);
      if (withPrior && loo.n >= 2) {
        const prior = priorFromStats(loo, { nu });
        const mf = fitPatient(m, { days: x.fitDays, volumesMm3: x.fitV }, { starts, seed: subSeed(seed, x.p.id), prior, errorScale });
        const mb = bandOf(mf, x, `map:${m}`);
        accMap.add(predictFit(mf, x.testDays), x.testV, x.norm, mb, mf.errorScale);
      }
    });
    res[m] = acc.score();
    if (withPrior) mapRes[m] = accMap.score();

    if ((opts.withSparse ?? true) && sparse.length > 0 && total.n >= 2) {
      const prior = priorFromStats(total, { nu });
      const noise: NoisePrior = { sigma2: total.dof > 0 ? total.rss / total.dof : 0.01, nu };
      const aM = new Acc();
      const aP = new Acc();
      for (const x of sparse) {
        const obs = { days: x.fitDays, volumesMm3: x.fitV };
        const pf = fitPatient(m, obs, { starts, seed: subSeed(seed, x.p.id), noise, errorScale });
        const pb = bandOf(pf, x, m);
        aP.add(predictFit(pf, x.testDays), x.testV, x.norm, pb, pf.errorScale);
        const mf = fitPatient(m, obs, { starts, seed: subSeed(seed, x.p.id), prior, errorScale });
        const mb = bandOf(mf, x, `map:${m}`);
        aM.add(predictFit(mf, x.testDays), x.testV, x.norm, mb, mf.errorScale);
      }
      sparseModels[m] = aP.score();
      sparseMap[m] = aM.score();
    }
  }

  // AICc model selection per patient among the plain fits.
  const totals = new Map<ModelName, SufficientStats>();
  for (const m of models) totals.set(m, sufficientStats(fitsByModel.get(m)!));
  const sel = new Acc();
  const chosen: Record<string, number> = {};
  main.forEach((x, i) => {
    let best: Fit | null = null;
    const all = models.map((m) => fitsByModel.get(m)![i]);
    const useAicc = all.some((f) => Number.isFinite(f.aicc));
    for (const f of all) if (!best || (useAicc ? f.aicc : f.aic) < (useAicc ? best.aicc : best.aic)) best = f;
    const b = best!;
    chosen[b.modelName] = (chosen[b.modelName] ?? 0) + 1;
    const loo = subtractStats(totals.get(b.modelName)!, sufficientStats([b]));
    const fit = withNoisePrior(b, { sigma2: loo.dof > 0 ? loo.rss / loo.dof : 0.01, nu });
    const band = bandOf(fit, x, b.modelName);
    sel.add(predictFit(fit, x.testDays), x.testV, x.norm, band, fit.errorScale);
  });

  const out: HoldoutResult = {
    models: res,
    baselines: { locf: { mae: bl.locf.score().mae, n: bl.locf.n }, linear: { mae: bl.linear.score().mae, n: bl.linear.n } },
    map: mapRes,
    selected: { aicc: { ...sel.score(), chosen } },
    meta: {
      holdoutLast: K,
      patientsIn: patients.length,
      patientsEvaluated: main.length,
      excludedTooFewPoints: tooFew,
      excludedAllZero: allZero,
      priorSource: 'leave-one-out: sufficient statistics of the fit-window fits of all other evaluated patients of the same cohort (held-out points never used)',
      seconds: (Date.now() - t0) / 1000,
    },
  };
  if ((opts.withSparse ?? true) && sparse.length > 0) {
    const sl = new Acc();
    const sn = new Acc();
    for (const x of sparse) {
      sl.add(locf(x), x.testV, x.norm);
      sn.add(linear(x), x.testV, x.norm);
    }
    out.sparse = { n: sparse.length, locf: { mae: sl.score().mae }, linear: { mae: sn.score().mae }, map: sparseMap, models: sparseModels };
  }
  return out;
}
