import { errorInverse, errorTransform, fitPatient, withNoisePrior, type ErrorScale, type Fit, type NoisePrior } from './fit.js';
import { bandScore, conformalFactor, forecastWithBand, predictFit, quantileSorted, widenBand, type ForecastBand } from './forecast.js';
import { getModel, MODEL_NAMES, type ModelName } from './models.js';
import { priorFromStats, subtractStats, sufficientStats, type GaussianPrior, type SufficientStats } from './prior.js';
import { subSeed } from './rng.js';
import { auc, brier, diameterFromVolume, fitLogistic, intervalScore, predictLogistic, recistProgression, reliabilityTable, type ReliabilityBin } from './scores.js';

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
  /**
   * A population prior given from outside (e.g. a federated prior from other sites or trials), per
   * model. Scored on the sparse patients (2–3 fitted points) against a local leave-one-out prior
   * and no prior, in `sparse`.
   */
  givenPrior?: Partial<Record<ModelName, GaussianPrior>>;
  /**
   * Diagnostic: re-anchor the default twin's forecast (point, band and draws) at the last fitted
   * measurement, V̂(t) = V_last·f̂(t)/f̂(t_last) (docs/twin.md, "anchored"). Default false.
   */
  anchorTwin?: boolean;
  /** Also return the default twin's per-patient forecasts in `patients` (for audits and leakage tests). */
  perPatient?: boolean;
}

/** The default twin's forecast of one patient's held-out visits (mm³), with the calibrated band. */
export interface TwinPatientForecast {
  id: string;
  model: string;
  days: number[];
  point: number[];
  lower90Mm3: number[];
  upper90Mm3: number[];
  /** Leave-one-patient-out conformal factor used for this patient. */
  calibrationFactor: number;
  /** Probability of RECIST progression at the first held-out visit, and whether it happened. */
  pProgression: number;
  progressed: boolean;
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
  sparseTwoPoint?: { n: number; locf: { mae: number }; linear: { mae: number }; map: Record<string, ModelScore>; models: Record<string, ModelScore> };
  /**
   * The default twin (per patient the AICc-selected plain fit, as at a site) with its band calibrated
   * leave-one-patient-out (split conformal on the OTHER patients' held-out scores): coverage, and the
   * interval score and mean width against LOCF with an empirical band; see `scoreDefaultTwin`.
   */
  coverage90Calibrated?: number;
  /** Uncalibrated (model-based) coverage of the same twin, for comparison. */
  coverage90Model?: number;
  /** Conformal factor from all patients' held-out scores (reported only; each patient uses its LOPO factor). */
  calibrationFactor?: number;
  /**
   * twinEmpiricalBand (diagnostic): the twin's median with the LOCF baseline's kind of band, i.e. the
   * 5 %/95 % quantiles of the other patients' residuals (observed − twin median) on the same u scale;
   * it separates the cost of the twin's centre from the cost of its band shape.
   */
  intervalScore90?: {
    twin: number;
    twinModelBand: number;
    locfEmpirical: number;
    twinEmpiricalBand: number;
    /** Paired difference twin − locfEmpirical per patient (mean over its held-out points): mean and its standard error over patients. */
    twinMinusLocfEmpirical: { mean: number; se: number };
  };
  meanWidth90?: { twin: number; twinModelBand: number; locfEmpirical: number; twinEmpiricalBand: number };
  /** Point MAE of the default twin (median of its draws at θ̂, i.e. predictFit) over LOCF's. Not a claimed win. */
  maeRatioToLocf?: number;
  progression?: ProgressionScore;
  /** Only with `givenPrior`: patients with 2–3 fitted points, the given prior vs a local leave-one-out prior vs none. */
  sparse?: SparsePriorScore;
  patients?: TwinPatientForecast[];
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

/** Next-visit RECIST progression as a probabilistic forecast (see `scoreDefaultTwin`). */
export interface ProgressionScore {
  /** Patients scored (one event each: the first held-out measurement). */
  n: number;
  /** Of which progressed (RECIST 1.1 on the diameter vs the fit-window nadir). */
  events: number;
  /** The default twin, calibrated band draws, diameters rounded to whole mm. */
  auc: number;
  brier: number;
  /** The same twin with its uncalibrated model band. */
  aucModelBand: number;
  brierModelBand: number;
  /** Last observed change (d_last − d_prev)/(d_prev + 1 mm) as the score; Brier of the 0/1 rule "the same change again meets RECIST". */
  baselineAuc: number;
  baselineBrier: number;
  /** Ridge-logistic on [last change, (d_last + 1)/(nadir + 1)] fitted leave-one-patient-out on the other patients' next-visit outcomes. */
  logisticAuc: number;
  logisticBrier: number;
  reliability: ReliabilityBin[];
  logisticReliability: ReliabilityBin[];
}

export interface SparsePriorScore {
  /** Patients with 2 or 3 fitted points. */
  n: number;
  /** What the top-level numbers are for: the prior file's one model, or with several, per patient the AICc-selected fit among them (as at a site). */
  model: string;
  maeWithPrior: number;
  maeLocalPrior: number;
  maeNoPrior: number;
  maeLocf: number;
  perModel: Record<string, { maeWithPrior: number; maeLocalPrior: number; maeNoPrior: number }>;
  /**
   * RECIST 1.1 progression at the first held-out visit (vs the fit-window nadir), ranked by the
   * AICc-selected point forecast's diameter over the nadir: AUC per prior (NaN without both classes).
   */
  progression: { events: number; aucWithPrior: number; aucLocalPrior: number; aucNoPrior: number };
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
  const bandOf = (fit: Fit, x: Prepared, label: string, keepSamples = false) => forecastWithBand(fit, x.testDays, fit.schedule, { draws, seed: subSeed(seed, `${label}:${x.p.id}`), keepSamples });

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
  const twinFits: Fit[] = [];
  const twinBands: ForecastBand[] = [];
  main.forEach((x, i) => {
    let best: Fit | null = null;
    const all = models.map((m) => fitsByModel.get(m)![i]);
    const useAicc = all.some((f) => Number.isFinite(f.aicc));
    for (const f of all) if (!best || (useAicc ? f.aicc : f.aic) < (useAicc ? best.aicc : best.aic)) best = f;
    const b = best!;
    chosen[b.modelName] = (chosen[b.modelName] ?? 0) + 1;
    const loo = subtractStats(totals.get(b.modelName)!, sufficientStats([b]));
    const fit = withNoisePrior(b, { sigma2: loo.dof > 0 ? loo.rss / loo.dof : 0.01, nu });
    const band0 = bandOf(fit, x, b.modelName, true);
    const lastF = predictFit(fit, [x.fitDays[x.fitDays.length - 1]])[0];
    const r = opts.anchorTwin && lastF > 0 ? x.fitV[x.fitV.length - 1] / lastF : 1;
    const times = (a: number[]) => a.map((v) => v * r);
    const band = r === 1 ? band0 : { ...band0, point: times(band0.point), median: times(band0.median), lower: times(band0.lower), upper: times(band0.upper), samples: band0.samples!.map(times) };
    twinFits.push(fit);
    twinBands.push(band);
    sel.add(band.point, x.testV, x.norm, band, fit.errorScale);
  });
  const twinScore = main.length >= 3 ? scoreDefaultTwin(main, twinFits, twinBands, !!opts.perPatient) : null;

  const out: HoldoutResult = {
    models: res,
    baselines: { locf: { mae: bl.locf.score().mae, n: bl.locf.n }, linear: { mae: bl.linear.score().mae, n: bl.linear.n } },
    map: mapRes,
    selected: { aicc: { ...sel.score(), chosen } },
    ...(twinScore ?? {}),
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
  if (opts.givenPrior && Object.keys(opts.givenPrior).length > 0) {
    out.sparse = scoreGivenPrior(opts.givenPrior, main, sparse, fitsByModel, { starts, seed, nu, errorScale });
  }
  if ((opts.withSparse ?? true) && sparse.length > 0) {
    const sl = new Acc();
    const sn = new Acc();
    for (const x of sparse) {
      sl.add(locf(x), x.testV, x.norm);
      sn.add(linear(x), x.testV, x.norm);
    }
    out.sparseTwoPoint = { n: sparse.length, locf: { mae: sl.score().mae }, linear: { mae: sn.score().mae }, map: sparseMap, models: sparseModels };
  }
  return out;
}

/** Normalised equivalent diameter u = (V / Vref)^(1/3) with Vref the largest FIT-WINDOW volume (never a held-out one). */
function fitRef(x: Prepared): number {
  const m = Math.max(...x.fitV);
  return m > 0 ? m : 0.52; // all fitted volumes zero: a 1 mm lesion as the reference
}

/**
 * Scores the default twin as a probabilistic forecaster (everything leave-one-patient-out: nothing
 * of patient i's held-out points enters its calibration, its band or its probability).
 *
 * Calibrated band. Split-conformal (Lei et al., JASA 2018): patient i's model band is widened by the
 * ⌈0.9(N+1)⌉-th smallest band score of the OTHER patients' held-out points (bandScore, on the fit's
 * diameter scale), as a site calibrates on its own completed follow-ups.
 *
 * LOCF with an empirical band (the naive probabilistic baseline). Point = last fitted measurement;
 * the band for the k-th held-out visit adds the 5 % and 95 % empirical quantiles (type 7) of the
 * other patients' k-step changes of u = (V/Vref)^(1/3), Vref = each patient's largest fit-window
 * volume, to the patient's last u; back to mm³ as Vref·max(u, 0)³. Same (diameter) scale as the twin.
 *
 * Interval score (Gneiting & Raftery 2007, α = 0.1) and width in normalised volume (V / the patient's
 * largest observed volume, the scale of the MAE), averaged over held-out points.
 *
 * Progression (RECIST 1.1, Eisenhauer et al. 2009): the event is that the FIRST held-out
 * measurement's diameter is ≥ 20 % and ≥ 5 mm above the nadir, the smallest diameter of the fit
 * window (baseline included); diameters from volumes by d = (V/0.52)^(1/3) (laleh.ts). The Laleh
 * data hold one target lesion per patient, so its diameter is the sum of diameters. The twin's
 * probability is the share of its predictive draws (Laplace parameter draws plus residual noise),
 * widened around the median by the patient's conformal factor on the diameter scale and rounded to
 * whole millimetres as the readings are recorded, that meet the rule.
 */
function meanSe(a: number[]): { mean: number; se: number } {
  const n = a.length;
  const mean = a.reduce((s, v) => s + v, 0) / n;
  const v = n > 1 ? a.reduce((s, x) => s + (x - mean) ** 2, 0) / (n - 1) : NaN;
  return { mean, se: Math.sqrt(v / n) };
}

function scoreDefaultTwin(
  main: Prepared[],
  fits: Fit[],
  bands: ForecastBand[],
  perPatient: boolean,
): Pick<HoldoutResult, 'coverage90Calibrated' | 'coverage90Model' | 'calibrationFactor' | 'intervalScore90' | 'meanWidth90' | 'maeRatioToLocf' | 'progression' | 'patients'> {
  const K = main[0].testDays.length;
  const scores = main.map((x, i) => x.testV.map((v, k) => bandScore(bands[i], k, v, fits[i].errorScale)));
  // k-step changes of u for the LOCF-empirical band.
  const du = main.map((x) => {
    const ref = fitRef(x);
    const uLast = Math.cbrt(x.fitV[x.fitV.length - 1] / ref);
    return x.testV.map((v) => Math.cbrt(v / ref) - uLast);
  });
  // Residuals of the twin's median on the same scale, for the diagnostic twinEmpiricalBand.
  const res = main.map((x, i) => {
    const ref = fitRef(x);
    return x.testV.map((v, k) => Math.cbrt(v / ref) - Math.cbrt(bands[i].median[k] / ref));
  });
  let cov = 0;
  let covModel = 0;
  let pts = 0;
  const is = { twin: 0, twinModelBand: 0, locfEmpirical: 0, twinEmpiricalBand: 0 };
  const w = { twin: 0, twinModelBand: 0, locfEmpirical: 0, twinEmpiricalBand: 0 };
  let aeTwin = 0;
  let aeLocf = 0;
  const labels: boolean[] = [];
  const pTwin: number[] = [];
  const pModel: number[] = [];
  const lastChange: number[] = [];
  const persistence: number[] = [];
  const features: number[][] = [];
  const patients: TwinPatientForecast[] = [];
  const diffs: number[] = [];
  main.forEach((x, i) => {
    const others: number[] = [];
    scores.forEach((o, j) => {
      if (j !== i) others.push(...o);
    });
    const c = conformalFactor(others, 0.9);
    const f = fits[i];
    const cal = widenBand(bands[i], c, f.errorScale);
    const ref = fitRef(x);
    const uLast = Math.cbrt(x.fitV[x.fitV.length - 1] / ref);
    const point = bands[i].point;
    let ae = 0;
    let aeL = 0;
    let diffOwn = 0;
    x.testV.forEach((v, k) => {
      pts++;
      if (v >= cal.lower[k] && v <= cal.upper[k]) cov++;
      if (v >= bands[i].lower[k] && v <= bands[i].upper[k]) covModel++;
      const qs = du
        .filter((_, j) => j !== i)
        .map((d) => d[k])
        .sort((a, b) => a - b);
      const lo = ref * Math.max(uLast + quantileSorted(qs, 0.05), 0) ** 3;
      const hi = ref * Math.max(uLast + quantileSorted(qs, 0.95), 0) ** 3;
      const rs = res
        .filter((_, j) => j !== i)
        .map((d) => d[k])
        .sort((a, b) => a - b);
      const um = Math.cbrt(bands[i].median[k] / ref);
      const tlo = ref * Math.max(um + quantileSorted(rs, 0.05), 0) ** 3;
      const thi = ref * Math.max(um + quantileSorted(rs, 0.95), 0) ** 3;
      const n = x.norm;
      is.twinEmpiricalBand += intervalScore(tlo / n, thi / n, v / n);
      w.twinEmpiricalBand += (thi - tlo) / n;
      const isTwin = intervalScore(cal.lower[k] / n, cal.upper[k] / n, v / n);
      const isLocf = intervalScore(lo / n, hi / n, v / n);
      diffOwn += (isTwin - isLocf) / K;
      is.twin += isTwin;
      is.twinModelBand += intervalScore(bands[i].lower[k] / n, bands[i].upper[k] / n, v / n);
      is.locfEmpirical += isLocf;
      w.twin += (cal.upper[k] - cal.lower[k]) / n;
      w.twinModelBand += (bands[i].upper[k] - bands[i].lower[k]) / n;
      w.locfEmpirical += (hi - lo) / n;
      ae += Math.abs(point[k] - v) / n;
      aeL += Math.abs(x.fitV[x.fitV.length - 1] - v) / n;
    });
    diffs.push(diffOwn);
    aeTwin += ae / K;
    aeLocf += aeL / K;

    // Progression at the first held-out visit.
    const d = x.fitV.map(diameterFromVolume);
    const nadir = Math.min(...d);
    const dLast = d[d.length - 1];
    const dPrev = d[d.length - 2];
    labels.push(recistProgression(diameterFromVolume(x.testV[0]), nadir));
    const g = errorTransform(f.errorScale);
    const gi = errorInverse(f.errorScale);
    const draws = bands[i].samples![0];
    const med = g(bands[i].median[0] / f.scale);
    const prob = (factor: number) =>
      draws.filter((v) => {
        const u = gi(Math.max(0, med + factor * (g(v / f.scale) - med)));
        return recistProgression(Math.round(diameterFromVolume(u * f.scale)), nadir);
      }).length / draws.length;
    pTwin.push(Number.isFinite(c) ? prob(c) : prob(1));
    pModel.push(prob(1));
    if (perPatient)
      patients.push({
        id: x.p.id,
        model: f.modelName,
        days: [...x.testDays],
        point,
        lower90Mm3: cal.lower,
        upper90Mm3: cal.upper,
        calibrationFactor: c,
        pProgression: pTwin[pTwin.length - 1],
        progressed: labels[labels.length - 1],
      });
    const lc = (dLast - dPrev) / (dPrev + 1);
    lastChange.push(lc);
    persistence.push(recistProgression(dLast + (dLast - dPrev), nadir) ? 1 : 0);
    features.push([lc, (dLast + 1) / (nadir + 1)]);
  });
  const pLogit = main.map((_, i) => {
    const m = fitLogistic(
      features.filter((_, j) => j !== i),
      labels.filter((_, j) => j !== i),
    );
    return predictLogistic(m, features[i]);
  });
  const allScores = scores.flat();
  return {
    coverage90Calibrated: cov / pts,
    coverage90Model: covModel / pts,
    calibrationFactor: conformalFactor(allScores, 0.9),
    intervalScore90: {
      twin: is.twin / pts,
      twinModelBand: is.twinModelBand / pts,
      locfEmpirical: is.locfEmpirical / pts,
      twinEmpiricalBand: is.twinEmpiricalBand / pts,
      twinMinusLocfEmpirical: meanSe(diffs),
    },
    meanWidth90: { twin: w.twin / pts, twinModelBand: w.twinModelBand / pts, locfEmpirical: w.locfEmpirical / pts, twinEmpiricalBand: w.twinEmpiricalBand / pts },
    maeRatioToLocf: aeTwin / aeLocf,
    progression: {
      n: labels.length,
      events: labels.filter((y) => y).length,
      auc: auc(pTwin, labels),
      brier: brier(pTwin, labels),
      aucModelBand: auc(pModel, labels),
      brierModelBand: brier(pModel, labels),
      baselineAuc: auc(lastChange, labels),
      baselineBrier: brier(persistence, labels),
      logisticAuc: auc(pLogit, labels),
      logisticBrier: brier(pLogit, labels),
      reliability: reliabilityTable(pTwin, labels),
      logisticReliability: reliabilityTable(pLogit, labels),
    },
    ...(perPatient ? { patients } : {}),
  };
}

/**
 * Sparse patients (2 or 3 fitted points) forecast with a GIVEN prior (e.g. from a federated study or
 * another trial), with the local leave-one-out prior (this cohort's other evaluated patients' fit
 * windows, the patient's own contribution subtracted) and with no prior (plain fit with the local
 * leave-one-out noise level). MAE in normalised volume of the point forecast, averaged per patient.
 */
function scoreGivenPrior(
  given: Partial<Record<ModelName, GaussianPrior>>,
  main: Prepared[],
  sparse: Prepared[],
  fitsByModel: Map<ModelName, Fit[]>,
  o: { starts: number; seed: number; nu: number; errorScale?: ErrorScale },
): SparsePriorScore {
  const group: { x: Prepared; mainIndex: number }[] = [...sparse.map((x) => ({ x, mainIndex: -1 })), ...main.map((x, i) => ({ x, mainIndex: i })).filter(({ x }) => x.fitDays.length <= 3)];
  const maeOf = (pred: number[], x: Prepared) => pred.reduce((s, v, k) => s + Math.abs(v - x.testV[k]) / x.norm, 0) / x.testV.length;
  const mean = (a: number[]) => (a.length ? a.reduce((s, v) => s + v, 0) / a.length : NaN);
  const perModel: SparsePriorScore['perModel'] = {};
  const names = Object.keys(given) as ModelName[];
  // Per variant, per patient of the group, the fit of each model (for the per-patient AICc choice).
  const byVariant = { w: group.map(() => [] as Fit[]), l: group.map(() => [] as Fit[]), n: group.map(() => [] as Fit[]) };
  for (const m of names) {
    const prior = given[m]!;
    const fits = fitsByModel.get(m);
    if (!fits) throw new Error(`TWF_E_BAD_REQUEST: the given prior has model ${m}, which this evaluation did not fit (models: ${[...fitsByModel.keys()].join(', ')})`);
    const total = sufficientStats(fits);
    const a = { w: [] as number[], l: [] as number[], n: [] as number[] };
    group.forEach(({ x, mainIndex }, gi) => {
      const obs = { days: x.fitDays, volumesMm3: x.fitV };
      const loo = mainIndex >= 0 ? subtractStats(total, sufficientStats([fits[mainIndex]])) : total;
      const local = priorFromStats(loo, { nu: o.nu });
      const noise: NoisePrior = { sigma2: loo.dof > 0 ? loo.rss / loo.dof : 0.01, nu: o.nu };
      const fo = { starts: o.starts, seed: subSeed(o.seed, x.p.id), errorScale: o.errorScale };
      const fw = fitPatient(m, obs, { ...fo, prior });
      const fl = fitPatient(m, obs, { ...fo, prior: local });
      const fn = fitPatient(m, obs, { ...fo, noise });
      byVariant.w[gi].push(fw);
      byVariant.l[gi].push(fl);
      byVariant.n[gi].push(fn);
      a.w.push(maeOf(predictFit(fw, x.testDays), x));
      a.l.push(maeOf(predictFit(fl, x.testDays), x));
      a.n.push(maeOf(predictFit(fn, x.testDays), x));
    });
    perModel[m] = { maeWithPrior: mean(a.w), maeLocalPrior: mean(a.l), maeNoPrior: mean(a.n) };
  }
  // As at a site (TwinService.refit): per patient the fit with the lowest AICc, AIC when AICc is undefined for any.
  const selectedMae = (fitsPerPatient: Fit[][]) =>
    mean(
      fitsPerPatient.map((list, gi) => {
        const useAicc = list.every((f) => Number.isFinite(f.aicc));
        const best = list.reduce((a, b) => ((useAicc ? b.aicc : b.aic) < (useAicc ? a.aicc : a.aic) ? b : a));
        return maeOf(predictFit(best, group[gi].x.testDays), group[gi].x);
      }),
    );
  const labels = group.map(({ x }) => recistProgression(diameterFromVolume(x.testV[0]), Math.min(...x.fitV.map(diameterFromVolume))));
  const selectedAuc = (fitsPerPatient: Fit[][]) => {
    if (!labels.some((l) => l) || labels.every((l) => l)) return NaN;
    const score = fitsPerPatient.map((list, gi) => {
      const useAicc = list.every((f) => Number.isFinite(f.aicc));
      const best = list.reduce((a, b) => ((useAicc ? b.aicc : b.aic) < (useAicc ? a.aicc : a.aic) ? b : a));
      const x = group[gi].x;
      return diameterFromVolume(predictFit(best, [x.testDays[0]])[0]) / Math.max(Math.min(...x.fitV.map(diameterFromVolume)), 1e-9);
    });
    return auc(score, labels);
  };
  return {
    n: group.length,
    progression: { events: labels.filter((l) => l).length, aucWithPrior: selectedAuc(byVariant.w), aucLocalPrior: selectedAuc(byVariant.l), aucNoPrior: selectedAuc(byVariant.n) },
    model: names.length === 1 ? names[0] : 'AICc-selected per patient',
    maeWithPrior: selectedMae(byVariant.w),
    maeLocalPrior: selectedMae(byVariant.l),
    maeNoPrior: selectedMae(byVariant.n),
    maeLocf: mean(group.map(({ x }) => maeOf(locf(x), x))),
    perModel,
  };
}
