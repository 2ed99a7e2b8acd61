/**
 * Treatment schedules and their effect on a growth model.
 *
 * Radiotherapy: linear-quadratic (LQ) cell kill per fraction of dose d (Gy): surviving fraction
 *   S = exp(−α·d − β·d²)
 * (Fowler, "The linear-quadratic formula and progress in fractionated radiotherapy", Br J Radiol
 * 62:679, 1989; McMahon, "The linear quadratic model: usage, interpretation and challenges",
 * Phys Med Biol 64:01TR01, 2018). Each fraction is instantaneous at its day and acts either
 *   (a) 'direct':   V → S·V                      (cells killed and cleared at once), or
 *   (b) 'capacity': K → S·K (cumulative)         (the fraction damages the supporting
 *       vasculature/stroma, lowering the carrying capacity; the volume then relaxes towards the
 *       new K at the model's own pace). For exponential (no K) 'capacity' falls back to 'direct'.
 *
 * Systemic therapy: log-kill (Skipper, Schabel & Wilcox 1964; Norton & Simon, Cancer Treat Rep
 * 61:1307, 1977): while a drug is on, dV/dt = f(V) − k·V, k ≥ 0 per day; rates of concurrent
 * drugs add. Exposure is the half-open interval [startDay, stopDay).
 *
 * Timing convention: an observation at day t sees the volume just before any fraction given at t
 * (imaging precedes treatment on the same day).
 */

export interface RadiotherapyCourse {
  /** First treatment day (same day axis as the measurements). */
  dayStart: number;
  /** Number of fractions. */
  fractions: number;
  doseGyPerFraction: number;
  /** Fractions per week on a fixed weekday pattern (default 5 = Mon–Fri). Ignored if `days` is given. */
  fractionsPerWeek?: number;
  /** Weekday of dayStart, 0 = Monday … 6 = Sunday (default 0). */
  startWeekday?: number;
  /** Explicit fraction days (overrides the weekly pattern; must have `fractions` entries). */
  days?: number[];
  /** LQ α (1/Gy) and β (1/Gy²) for this course; default from TreatmentEffects. */
  alpha?: number;
  beta?: number;
}

export interface SystemicCourse {
  /** e.g. 'chemotherapy', 'immunotherapy', 'targeted', or a drug name. */
  agentClass: string;
  startDay: number;
  /** Exclusive; use Infinity for ongoing therapy. */
  stopDay: number;
  /** Log-kill rate k (1/day); default from TreatmentEffects.killRates[agentClass]. */
  killRatePerDay?: number;
}

export interface Schedule {
  radiotherapy?: RadiotherapyCourse[];
  systemic?: SystemicCourse[];
}

export type RadiotherapyVariant = 'direct' | 'capacity';

export interface TreatmentEffects {
  /** LQ α in 1/Gy (default 0.3). */
  alpha?: number;
  /** LQ β in 1/Gy² (default 0.03, α/β = 10 Gy, a typical early-responding tumour). */
  beta?: number;
  /** How a fraction acts (default 'direct'). */
  rtVariant?: RadiotherapyVariant;
  /** Log-kill rate per agent class (1/day). */
  killRates?: Record<string, number>;
  /** If set, every systemic course uses this rate (used when the fit estimates k). */
  killRateOverride?: number;
}

export const DEFAULT_ALPHA = 0.3;
export const DEFAULT_BETA = 0.03;

/** LQ surviving fraction of one fraction of d Gy. */
export function lqSurvivingFraction(doseGy: number, alpha = DEFAULT_ALPHA, beta = DEFAULT_BETA): number {
  if (!(doseGy >= 0)) throw new Error(`dose must be ≥ 0 Gy, got ${doseGy}`);
  return Math.exp(-alpha * doseGy - beta * doseGy * doseGy);
}

/** Weekday offsets (0 = Monday) used for n fractions per week. */
export const WEEKLY_PATTERNS: Readonly<Record<number, readonly number[]>> = {
  1: [0],
  2: [0, 3],
  3: [0, 2, 4],
  4: [0, 1, 3, 4],
  5: [0, 1, 2, 3, 4],
  6: [0, 1, 2, 3, 4, 5],
  7: [0, 1, 2, 3, 4, 5, 6],
};

/**
 * The days on which the fractions of a course are given. With a weekly pattern, the course starts
 * on dayStart (weekday `startWeekday`) and delivers one fraction on each pattern weekday until
 * `fractions` are given; e.g. 10 fractions, 5/week from a Monday on day 0 → days 0–4 and 7–11.
 */
export function expandFractionDays(rt: RadiotherapyCourse): number[] {
  if (!(Number.isInteger(rt.fractions) && rt.fractions >= 0)) throw new Error(`fractions must be a non-negative integer, got ${rt.fractions}`);
  if (rt.days) {
    if (rt.days.length !== rt.fractions) throw new Error(`radiotherapy course lists ${rt.days.length} days for ${rt.fractions} fractions`);
    return [...rt.days].sort((a, b) => a - b);
  }
  const perWeek = rt.fractionsPerWeek ?? 5;
  const pattern = WEEKLY_PATTERNS[perWeek];
  if (!pattern) throw new Error(`fractionsPerWeek must be an integer 1..7, got ${perWeek}`);
  const wd0 = rt.startWeekday ?? 0;
  if (!(Number.isInteger(wd0) && wd0 >= 0 && wd0 <= 6)) throw new Error(`startWeekday must be 0..6, got ${wd0}`);
  const out: number[] = [];
  for (let d = 0; out.length < rt.fractions; d++) {
    if (pattern.includes((wd0 + d) % 7)) out.push(rt.dayStart + d);
  }
  return out;
}

/** One radiotherapy fraction, resolved to its day and surviving fraction. */
export interface FractionEvent {
  day: number;
  doseGy: number;
  survivingFraction: number;
}

/** All fractions of a schedule, sorted by day. */
export function fractionEvents(schedule: Schedule | undefined, effects: TreatmentEffects = {}): FractionEvent[] {
  const out: FractionEvent[] = [];
  for (const rt of schedule?.radiotherapy ?? []) {
    const a = rt.alpha ?? effects.alpha ?? DEFAULT_ALPHA;
    const b = rt.beta ?? effects.beta ?? DEFAULT_BETA;
    const s = lqSurvivingFraction(rt.doseGyPerFraction, a, b);
    for (const day of expandFractionDays(rt)) out.push({ day, doseGy: rt.doseGyPerFraction, survivingFraction: s });
  }
  return out.sort((x, y) => x.day - y.day);
}

/** Total LQ surviving fraction of a whole schedule's radiotherapy (product over fractions). */
export function totalSurvivingFraction(schedule: Schedule, effects: TreatmentEffects = {}): number {
  return fractionEvents(schedule, effects).reduce((p, e) => p * e.survivingFraction, 1);
}

/** Resolved log-kill rate of a systemic course. */
export function killRateOf(c: SystemicCourse, effects: TreatmentEffects = {}): number {
  const k = effects.killRateOverride ?? c.killRatePerDay ?? effects.killRates?.[c.agentClass];
  if (k === undefined) {
    throw new Error(`no log-kill rate for agent class '${c.agentClass}': set killRatePerDay on the course, effects.killRates, or fit it (estimateKill)`);
  }
  if (!(k >= 0)) throw new Error(`log-kill rate must be ≥ 0, got ${k}`);
  return k;
}

/** Total log-kill rate in effect at time t (sum over courses with startDay ≤ t < stopDay). */
export function killRateAt(t: number, schedule: Schedule | undefined, effects: TreatmentEffects = {}): number {
  let k = 0;
  for (const c of schedule?.systemic ?? []) if (t >= c.startDay && t < c.stopDay) k += killRateOf(c, effects);
  return k;
}

export function hasSystemic(schedule: Schedule | undefined): boolean {
  return (schedule?.systemic?.length ?? 0) > 0;
}

export function isEmptySchedule(schedule: Schedule | undefined): boolean {
  return (schedule?.radiotherapy?.length ?? 0) === 0 && (schedule?.systemic?.length ?? 0) === 0;
}
