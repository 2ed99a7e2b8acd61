/**
 * Adaptive Dormand–Prince RK5(4) integrator for one scalar ODE dy/dt = f(t, y)
 * (Dormand & Prince, J Comput Appl Math 1980; the method behind MATLAB ode45 / SciPy RK45).
 *
 * Tumour volumes must stay positive and power laws V^γ are undefined below zero, so every stage
 * evaluates f at max(y, floor) and the state is clamped to ≥ floor after each step: fast relaxation
 * then produces a tiny volume instead of NaN. Stiffness (a lesion relaxing quickly onto a small
 * carrying capacity makes the explicit step stability-limited) is detected from the local Jacobian
 * ∂f/∂y, estimated by a finite difference at the start and every 16 steps: when stability would need
 * more than ~60 explicit steps for the rest of the interval (h·|J| ≤ 3.3), or the step budget runs
 * out, the rest is integrated with the L-stable Rosenbrock method ROS2 (integrateStiff below).
 */
export interface OdeOptions {
  rtol?: number;
  atol?: number;
  /** Lower clamp for the state. */
  floor?: number;
  /** Initial step guess (same time unit as t). */
  h0?: number;
  /** Carries the step size from one call to the next (read as the initial step, written on exit). */
  hint?: { h: number };
  /** RK45 steps before switching to the stiff solver (default 2000). */
  maxSteps?: number;
}

// Dormand–Prince 5(4) tableau
const C2 = 1 / 5,
  C3 = 3 / 10,
  C4 = 4 / 5,
  C5 = 8 / 9;
const A21 = 1 / 5;
const A31 = 3 / 40,
  A32 = 9 / 40;
const A41 = 44 / 45,
  A42 = -56 / 15,
  A43 = 32 / 9;
const A51 = 19372 / 6561,
  A52 = -25360 / 2187,
  A53 = 64448 / 6561,
  A54 = -212 / 729;
const A61 = 9017 / 3168,
  A62 = -355 / 33,
  A63 = 46732 / 5247,
  A64 = 49 / 176,
  A65 = -5103 / 18656;
const B1 = 35 / 384,
  B3 = 500 / 1113,
  B4 = 125 / 192,
  B5 = -2187 / 6784,
  B6 = 11 / 84;
// error coefficients b - b*
const E1 = 71 / 57600,
  E3 = -71 / 16695,
  E4 = 71 / 1920,
  E5 = -17253 / 339200,
  E6 = 22 / 525,
  E7 = -1 / 40;

/** Integrates from (t0, y0) to t1 (t1 ≥ t0) and returns y(t1). */
export function integrateScalar(f: (t: number, y: number) => number, y0: number, t0: number, t1: number, opts: OdeOptions = {}): number {
  const rtol = opts.rtol ?? 1e-7;
  const atol = opts.atol ?? 1e-10;
  const floor = opts.floor ?? 1e-12;
  const maxSteps = opts.maxSteps ?? 2000;
  let y = Math.max(y0, floor);
  let t = t0;
  const span = t1 - t0;
  if (!(span > 0)) return y;
  const F = (tt: number, yy: number): number => {
    const v = f(tt, yy > floor ? yy : floor);
    return Number.isFinite(v) ? v : 0;
  };
  let k1 = F(t, y);
  // Initial step: Hairer, Nørsett & Wanner, Solving ODEs I, §II.4 (starting step size).
  let h: number;
  if (opts.h0 !== undefined) h = opts.h0;
  else if (opts.hint && opts.hint.h > 0) h = Math.min(opts.hint.h, span);
  else {
    const sc0 = atol + rtol * Math.abs(y);
    const d0 = Math.abs(y) / sc0;
    const d1 = Math.abs(k1) / sc0;
    const h0 = d0 < 1e-5 || d1 < 1e-5 ? 1e-6 * span : (0.01 * d0) / d1;
    const d2 = Math.abs(F(t + h0, y + h0 * k1) - k1) / sc0 / h0;
    const h1 = Math.max(d1, d2) <= 1e-15 ? Math.max(1e-6 * span, h0 * 1e-3) : Math.pow(0.01 / Math.max(d1, d2), 1 / 5);
    h = Math.min(100 * h0, h1, span);
  }
  if (!(h > 0) || !Number.isFinite(h)) h = span / 10;
  h = Math.max(h, span * 1e-9);
  let steps = 0;
  const stiffAhead = (tt: number, yy: number, fy: number): boolean => {
    const eps = 1e-6 * Math.max(Math.abs(yy), 1e-6);
    const J = (F(tt, yy + eps) - fy) / eps;
    return J * (t1 - tt) < -200;
  };
  while (t < t1) {
    if (steps % 16 === 0 && stiffAhead(t, y, k1)) return integrateStiff(f, y, t, t1, { ...opts, rtol: Math.max(rtol, 1e-5), atol: Math.max(atol, 1e-5) });
    if (steps++ > maxSteps) {
      // Stiff (tiny steps for stability, e.g. a lesion relaxing to a near-zero K): switch to the
      // L-stable Rosenbrock method for the rest of the interval.
      return integrateStiff(f, y, t, t1, { ...opts, rtol: Math.max(rtol, 1e-5), atol: Math.max(atol, 1e-5) });
    }
    if (t + h > t1) h = t1 - t;
    const k2 = F(t + C2 * h, y + h * A21 * k1);
    const k3 = F(t + C3 * h, y + h * (A31 * k1 + A32 * k2));
    const k4 = F(t + C4 * h, y + h * (A41 * k1 + A42 * k2 + A43 * k3));
    const k5 = F(t + C5 * h, y + h * (A51 * k1 + A52 * k2 + A53 * k3 + A54 * k4));
    const y6 = y + h * (A61 * k1 + A62 * k2 + A63 * k3 + A64 * k4 + A65 * k5);
    const k6 = F(t + h, y6);
    const y5 = y + h * (B1 * k1 + B3 * k3 + B4 * k4 + B5 * k5 + B6 * k6);
    const k7 = F(t + h, y5);
    const err = Math.abs(h * (E1 * k1 + E3 * k3 + E4 * k4 + E5 * k5 + E6 * k6 + E7 * k7));
    const sc = atol + rtol * Math.max(Math.abs(y), Math.abs(y5));
    const ratio = err / sc;
    if (ratio <= 1 || h <= span * 1e-12) {
      t = t + h === t ? t1 : t + h;
      y = y5 > floor ? y5 : floor;
      k1 = y5 > floor ? k7 : F(t, y); // FSAL
      const fac = ratio === 0 ? 5 : Math.min(5, Math.max(0.2, 0.9 * Math.pow(ratio, -0.2)));
      h *= fac;
    } else {
      h *= Math.max(0.1, 0.9 * Math.pow(ratio, -0.25));
    }
  }
  if (opts.hint) opts.hint.h = h;
  return y;
}

/**
 * Adaptive ROS2 (Verwer, Spee, Blom & Hundsdorfer, SIAM J Sci Comput 20:1456, 1999), a 2nd-order
 * L-stable Rosenbrock method for stiff scalar ODEs, with the linearly implicit Euler solution as the
 * embedded 1st-order estimate. ∂f/∂y by finite differences. State clamped ≥ floor.
 */
export function integrateStiff(f: (t: number, y: number) => number, y0: number, t0: number, t1: number, opts: OdeOptions = {}): number {
  const rtol = opts.rtol ?? 1e-6;
  const atol = opts.atol ?? 1e-10;
  const floor = opts.floor ?? 1e-12;
  const g = 1 + Math.SQRT1_2;
  const F = (tt: number, yy: number): number => {
    const v = f(tt, yy > floor ? yy : floor);
    return Number.isFinite(v) ? v : 0;
  };
  let t = t0;
  let y = Math.max(y0, floor);
  const span = t1 - t0;
  if (!(span > 0)) return y;
  let h = span / 100;
  for (let steps = 0; t < t1 && steps < 100000; steps++) {
    if (t + h > t1) h = t1 - t;
    const fy = F(t, y);
    const eps = 1e-7 * Math.max(Math.abs(y), 1e-8);
    const J = (F(t, y + eps) - fy) / eps;
    const den = 1 - g * h * J;
    const k1 = fy / den;
    const k2 = (F(t + h, y + h * k1) - 2 * k1) / den;
    const yNew = y + 1.5 * h * k1 + 0.5 * h * k2;
    // Embedded error (ROS2 − linearly implicit Euler), filtered by (1 − γhJ)⁻¹ as in Shampine's
    // stiff error estimates, so stiff, already-damped components do not force tiny steps.
    const err = Math.abs((0.5 * h * (k1 + k2)) / den);
    const sc = atol + rtol * Math.max(Math.abs(y), Math.abs(yNew));
    const ratio = err / sc;
    if (!Number.isFinite(ratio) && h > span * 1e-12) {
      h *= 0.25;
      continue;
    }
    if (ratio <= 1 || h <= span * 1e-12) {
      t = t + h === t ? t1 : t + h;
      y = yNew > floor && Number.isFinite(yNew) ? yNew : floor;
      h *= ratio === 0 ? 4 : Math.min(4, Math.max(0.2, 0.9 / Math.sqrt(ratio)));
    } else {
      h *= Math.max(0.1, 0.9 / Math.sqrt(ratio));
    }
  }
  return y;
}
