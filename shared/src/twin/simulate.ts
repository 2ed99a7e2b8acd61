import { getModel, type GrowthModel, type ModelName } from './models.js';
import { integrateScalar, type OdeOptions } from './ode.js';
import { fractionEvents, isEmptySchedule, killRateAt, type Schedule, type TreatmentEffects } from './treatment.js';

/** Smallest volume a simulation keeps (same unit as V0); prevents log(0) and 0^γ. */
export const VOLUME_FLOOR = 1e-12;

export interface SimulateOptions {
  ode?: OdeOptions;
  /** Force RK45 even where a closed form exists (tests compare both). */
  forceOde?: boolean;
}

function clampV(v: number): number {
  if (Number.isNaN(v)) return VOLUME_FLOOR;
  return v > VOLUME_FLOOR ? Math.min(v, 1e300) : VOLUME_FLOOR;
}

const LOG_FLOOR = Math.log(VOLUME_FLOOR);

/**
 * Advances V by dt under a constant log-kill rate k: closed form where the model has one, else
 * RK45 on w = ln V, dw/dt = f(e^w)/e^w − k. Log space keeps V > 0 by construction, turns the
 * exponential-like trajectories into near-straight lines (far fewer steps) and makes the absolute
 * tolerance on w a relative tolerance on V.
 */
function advance(m: GrowthModel, V: number, theta: readonly number[], dt: number, k: number, opts: SimulateOptions, hint: { h: number }): number {
  if (dt <= 0) return V;
  if (m.exact && !opts.forceOde) return clampV(m.exact(V, theta, dt, k));
  const f = (_t: number, w: number) => {
    const v = Math.exp(w);
    return m.rhs(v, theta) / v - k;
  };
  const w = integrateScalar(f, Math.log(clampV(V)), 0, dt, { rtol: 0, atol: 1e-6, floor: LOG_FLOOR, hint, ...opts.ode });
  return clampV(Math.exp(w));
}

/**
 * Volumes at `days` of a model started at V(t0) = V0 under a treatment schedule.
 * θ and V0 must be in the same volume unit (fits work in units of fit.scale: see fit.ts).
 * Radiotherapy fractions act instantaneously (LQ, variant from effects.rtVariant); systemic therapy
 * adds log-kill −k·V during exposure. Fractions before t0 are ignored (V0 already reflects them).
 * An observation on a fraction day sees the volume before that fraction.
 */
export function simulate(
  model: GrowthModel | ModelName,
  theta: readonly number[],
  V0: number,
  t0: number,
  days: readonly number[],
  schedule?: Schedule,
  effects: TreatmentEffects = {},
  opts: SimulateOptions = {},
): number[] {
  const m = getModel(model);
  if (theta.length !== m.params.length) throw new Error(`${m.name}: expected ${m.params.length} parameters, got ${theta.length}`);
  for (const d of days) if (!(d >= t0 - 1e-9)) throw new Error(`simulate: day ${d} is before t0 = ${t0}`);
  const out = new Array<number>(days.length);
  if (isEmptySchedule(schedule) && m.exact && !opts.forceOde) {
    for (let i = 0; i < days.length; i++) out[i] = clampV(m.exact(clampV(V0), theta, days[i] - t0, 0));
    return out;
  }
  // Breakpoints: requested days, fraction days, drug on/off switches.
  const fr = fractionEvents(schedule, effects).filter((e) => e.day >= t0);
  const times = new Set<number>([t0]);
  for (const d of days) times.add(d);
  for (const e of fr) times.add(e.day);
  for (const c of schedule?.systemic ?? []) {
    if (c.startDay > t0 && Number.isFinite(c.startDay)) times.add(c.startDay);
    if (c.stopDay > t0 && Number.isFinite(c.stopDay)) times.add(c.stopDay);
  }
  const sorted = [...times].sort((a, b) => a - b);
  const lastDay = days.length ? Math.max(...days) : t0;
  const order = days.map((d, i) => [d, i] as const).sort((a, b) => a[0] - b[0]);
  const variant = effects.rtVariant ?? 'direct';
  let th = [...theta];
  let V = clampV(V0);
  let oi = 0;
  let fi = 0;
  const hint = { h: 0 };
  for (let s = 0; s < sorted.length; s++) {
    const t = sorted[s];
    if (t > lastDay) break;
    while (oi < order.length && order[oi][0] <= t) out[order[oi++][1]] = V;
    while (fi < fr.length && fr[fi].day <= t) {
      const S = fr[fi++].survivingFraction;
      if (variant === 'capacity' && m.scaleCapacity) th = m.scaleCapacity(th, S);
      else V = clampV(V * S);
    }
    if (s + 1 < sorted.length && sorted[s + 1] <= lastDay) {
      const k = killRateAt(t, schedule, effects);
      V = advance(m, V, th, sorted[s + 1] - t, k, opts, hint);
    }
  }
  while (oi < order.length) out[order[oi++][1]] = V;
  return out;
}
