import { fitPatient } from '../twin/fit.js';
import type { GaussianPrior } from '../twin/prior.js';
import { volumeFromDiameter } from '../twin/laleh.js';
import { recistLabel, type ClassIndex } from './labels.js';

/**
 * Features of the response model, from a patient's FIRST THREE measurements only (plus the arm).
 *
 * Scaling is by fixed, documented constants (no learned standardisation): a site never sees the
 * other sites' data, so means/SDs could only be learned through another secure-sum round; fixed
 * constants make every site compute the same features from its own rows. Every numeric feature is
 * O(1) on these trials and is clipped to [−FEATURE_CLIP, FEATURE_CLIP].
 *
 * Diameters d0, d1, d2 (mm) at days t0 < t1 < t2; ratios use an offset of DIAMETER_OFFSET_MM = 1 mm so
 * that a lesion measured as 0 mm (disappeared) keeps finite logs.
 *   logRatioD1 = ln((d1+1)/(d0+1))        logRatioD2 = ln((d2+1)/(d0+1))
 *   day1Per100 = (t1−t0)/100 d            day2Per100 = (t2−t0)/100 d
 *   slopeLogDPer100d = logRatioD2 / max(day2Per100, 0.01)
 *   logBaselinePer50mm = ln((d0+1)/50 mm)
 *   logReboundFromNadir = ln((d2+1)/(min(d0,d1,d2)+1))
 *   expRatePer100d = 100 · a, a (1/day) the net rate of the exponential model dV/dt = a·V
 *     (Benzekry et al. 2014, PLoS Comput Biol 10:e1003800; Ghaffari Laleh et al. 2022, PLoS Comput
 *     Biol 18:e1009822) MAP-fitted by the twin core (fitPatient, diameter-scale residuals) to the
 *     three volumes V = 0.52·d³ with the fixed prior GROWTH_PRIOR below.
 * Arm: one-hot over the manifest's arm vocabulary (unknown arm → all zeros). Study_Arm values of
 * the Laleh tables are study-specific (Study_1_Arm_1 …), so these columns are mostly a site
 * indicator; see docs/response.md.
 */
export const NUMERIC_FEATURES = ['logRatioD1', 'logRatioD2', 'day1Per100', 'day2Per100', 'slopeLogDPer100d', 'logBaselinePer50mm', 'logReboundFromNadir', 'expRatePer100d'] as const;

export const DIAMETER_OFFSET_MM = 1;
export const FEATURE_CLIP = 5;
/** Number of leading measurements the features may use. */
export const FIRST_N = 3;

/**
 * Fixed population prior of the exponential fit, z = [ln V0 (Vref), a (1/day)]:
 * ln V0 ~ N(0, 1) (V0 near the largest of the three volumes, which is Vref), a ~ N(0, 0.01²)
 * (a net volume rate of ±1 %/day ≈ doubling or halving in 70 days is one SD). Noise prior
 * σ² = 0.01 (10 % of the largest diameter), worth 2 observations (the twin's DEFAULT_NOISE).
 * Fixed rather than learned so that no site needs the others' fits.
 */
export const GROWTH_PRIOR: GaussianPrior = {
  model: 'exponential',
  paramNames: ['V0', 'a'],
  n: 0,
  mean: [0, 0],
  cov: [
    [1, 0],
    [0, 1e-4],
  ],
  precision: [
    [1, 0],
    [0, 1e4],
  ],
  sigma2: 0.01,
  nu: 2,
};

export interface ResponsePatient {
  id: string;
  /** Measurement days in increasing order. */
  days: number[];
  diametersMm: number[];
  arm: string | null;
}

export interface ResponseExample {
  id: string;
  x: Float64Array;
  y: ClassIndex;
  /** RECIST-style category already reached at the third measurement (the carry-forward baseline). */
  atThird: ClassIndex;
}

export function featureNames(arms: readonly string[]): string[] {
  return [...NUMERIC_FEATURES, ...arms.map((a) => `arm=${a}`)];
}

const clip = (v: number): number => (Number.isFinite(v) ? Math.max(-FEATURE_CLIP, Math.min(FEATURE_CLIP, v)) : 0);

/** Feature vector from the first three measurements (days ascending) and the arm. */
export function responseFeatures(p: ResponsePatient, arms: readonly string[]): Float64Array {
  if (p.days.length < FIRST_N) throw new Error(`responseFeatures: patient ${p.id} has ${p.days.length} measurements, needs ≥ ${FIRST_N}`);
  const [t0, t1, t2] = p.days;
  const [d0, d1, d2] = p.diametersMm;
  const o = DIAMETER_OFFSET_MM;
  const r1 = Math.log((d1 + o) / (d0 + o));
  const r2 = Math.log((d2 + o) / (d0 + o));
  const day1 = (t1 - t0) / 100;
  const day2 = (t2 - t0) / 100;
  const fit = fitPatient(
    'exponential',
    { days: p.days.slice(0, FIRST_N), volumesMm3: p.diametersMm.slice(0, FIRST_N).map(volumeFromDiameter) },
    { prior: GROWTH_PRIOR, errorScale: 'diameter', seed: 1 },
  );
  const aPerDay = fit.theta[1];
  const numeric = [r1, r2, day1, day2, r2 / Math.max(day2, 0.01), Math.log((d0 + o) / 50), Math.log((d2 + o) / (Math.min(d0, d1, d2) + o)), 100 * aPerDay];
  const x = new Float64Array(NUMERIC_FEATURES.length + arms.length);
  numeric.forEach((v, i) => (x[i] = clip(v)));
  const ai = p.arm === null ? -1 : arms.indexOf(p.arm);
  if (ai >= 0) x[NUMERIC_FEATURES.length + ai] = 1;
  return x;
}

/** Minimum number of usable measurements for a patient to be used (3 for features + ≥ 2 later). */
export const MIN_MEASUREMENTS = 5;

/**
 * Examples (features of the first three measurements, RECIST label at the last) of every patient
 * with ≥ minMeasurements usable measurements; the others are counted in `excluded`.
 */
export function buildExamples(
  patients: readonly ResponsePatient[],
  arms: readonly string[],
  minMeasurements = MIN_MEASUREMENTS,
): { examples: ResponseExample[]; excluded: number; unknownArm: number } {
  const examples: ResponseExample[] = [];
  let excluded = 0;
  let unknownArm = 0;
  for (const p of patients) {
    const ok = p.days
      .map((d, i) => ({ d, v: p.diametersMm[i] }))
      .filter((m) => Number.isFinite(m.d) && Number.isFinite(m.v) && m.v >= 0)
      .sort((a, b) => a.d - b.d);
    if (ok.length < Math.max(minMeasurements, FIRST_N + 1)) {
      excluded++;
      continue;
    }
    const q: ResponsePatient = { id: p.id, days: ok.map((m) => m.d), diametersMm: ok.map((m) => m.v), arm: p.arm };
    if (p.arm !== null && !arms.includes(p.arm)) unknownArm++;
    examples.push({ id: p.id, x: responseFeatures(q, arms), y: recistLabel(q.diametersMm), atThird: recistLabel(q.diametersMm.slice(0, FIRST_N)) });
  }
  return { examples, excluded, unknownArm };
}
