/**
 * Classical tumour growth models as ODEs dV/dt = f(V; θ).
 *
 * The set is the one compared by Ghaffari Laleh et al., "Classical mathematical models for prediction
 * of response to chemotherapy and immunotherapy", PLoS Comput Biol 18(2):e1009822 (2022):
 * exponential, logistic, Gompertz, general Gompertz, classic Bertalanffy, general Bertalanffy.
 * Equations follow Benzekry et al., "Classical mathematical models for description and prediction
 * of experimental tumor growth", PLoS Comput Biol 10(8):e1003800 (2014), unless stated.
 *
 * Units: the twin fits volumes normalised by a reference volume (the patient's largest observed
 * volume, see fit.ts), so every volume-valued parameter (K) is in units of that reference ("Vref")
 * and rates are per day. θ never contains the initial volume V0; the fit adds it.
 *
 * Every model also has a closed-form solution under a constant log-kill rate k (dV/dt = f(V) − kV),
 * used for speed; general Gompertz has none and is integrated with RK45 (ode.ts). Tests check that
 * closed forms and RK45 agree.
 */

export type ModelName = 'exponential' | 'logistic' | 'gompertz' | 'generalGompertz' | 'classicBertalanffy' | 'generalBertalanffy';

export interface ParamSpec {
  name: string;
  lower: number;
  upper: number;
  unit: string;
  /** 'log' for strictly positive parameters (fitted, sampled and given priors in log space). */
  transform: 'log' | 'identity';
  /** Range (natural units) from which deterministic multistart points are drawn. */
  start: [number, number];
  description?: string;
}

export interface GrowthModel {
  name: ModelName;
  /** Human-readable equation. */
  equation: string;
  citation: string;
  params: ParamSpec[];
  /** dV/dt without treatment. V is already clamped ≥ a tiny positive floor by the caller. */
  rhs(V: number, theta: readonly number[]): number;
  /** Exact V(dt) from V0 under a constant log-kill rate k ≥ 0: dV/dt = f(V) − kV. */
  exact?(V0: number, theta: readonly number[], dt: number, k: number): number;
  /**
   * θ with the carrying capacity multiplied by s (radiotherapy variant "K → S·K"). Undefined for
   * models without a carrying capacity (exponential).
   */
  scaleCapacity?(theta: readonly number[], s: number): number[];
  /** Carrying capacity (steady state without treatment) in Vref, if any. */
  capacity?(theta: readonly number[]): number;
}

/** (1 − e^{−x}) / x, accurate near 0. */
function phi(x: number): number {
  return Math.abs(x) < 1e-8 ? 1 - x / 2 : -Math.expm1(-x) / x;
}

export const exponential: GrowthModel = {
  name: 'exponential',
  equation: 'dV/dt = a·V',
  citation:
    'Benzekry et al. 2014 (PLoS Comput Biol 10:e1003800), exponential model; Ghaffari Laleh et al. 2022. ' +
    'a may be negative here: patients are measured under therapy, so the fitted rate is the net rate.',
  params: [{ name: 'a', lower: -0.1, upper: 0.1, unit: '1/day', transform: 'identity', start: [-0.01, 0.01], description: 'net growth rate' }],
  rhs: (V, th) => th[0] * V,
  exact: (V0, th, dt, k) => V0 * Math.exp((th[0] - k) * dt),
};

export const logistic: GrowthModel = {
  name: 'logistic',
  equation: 'dV/dt = a·V·(1 − V/K)',
  citation: 'Verhulst 1838; Benzekry et al. 2014, logistic model; Ghaffari Laleh et al. 2022.',
  params: [
    { name: 'a', lower: 1e-4, upper: 1, unit: '1/day', transform: 'log', start: [0.002, 0.05], description: 'proliferation rate' },
    { name: 'K', lower: 1e-3, upper: 100, unit: 'Vref', transform: 'log', start: [0.1, 3], description: 'carrying capacity' },
  ],
  rhs: (V, th) => th[0] * V * (1 - V / th[1]),
  // Bernoulli substitution u = 1/V: du/dt = −r·u + a/K with r = a − k.
  exact: (V0, th, dt, k) => {
    const a = th[0],
      K = th[1];
    const r = a - k;
    const u0 = 1 / V0;
    const u = u0 * Math.exp(-r * dt) + (a / K) * dt * phi(r * dt);
    return 1 / u;
  },
  scaleCapacity: (th, s) => [th[0], th[1] * s],
  capacity: (th) => th[1],
};

export const gompertz: GrowthModel = {
  name: 'gompertz',
  equation: 'dV/dt = β·V·ln(K/V)   (≡ (α − β·ln V)·V with α = β·ln K)',
  citation: 'Gompertz 1825; Benzekry et al. 2014, Gompertz model (α, β form, reparameterised with K = e^{α/β}); Ghaffari Laleh et al. 2022.',
  params: [
    { name: 'beta', lower: 1e-4, upper: 0.5, unit: '1/day', transform: 'log', start: [0.002, 0.05], description: 'deceleration rate' },
    { name: 'K', lower: 1e-3, upper: 100, unit: 'Vref', transform: 'log', start: [0.1, 3], description: 'carrying capacity' },
  ],
  rhs: (V, th) => th[0] * V * Math.log(th[1] / V),
  // w = ln V: dw/dt = β(ln K − w) − k, linear.
  exact: (V0, th, dt, k) => {
    const b = th[0],
      lnK = Math.log(th[1]);
    const w0 = Math.log(V0);
    const e = -Math.expm1(-b * dt); // 1 − e^{−β dt}
    const w = w0 + (lnK - w0) * e - k * dt * phi(b * dt);
    return Math.exp(w);
  },
  scaleCapacity: (th, s) => [th[0], th[1] * s],
  capacity: (th) => th[1],
};

export const generalGompertz: GrowthModel = {
  name: 'generalGompertz',
  equation: 'dV/dt = β·V^γ·ln(K/V)',
  citation:
    'Ghaffari Laleh et al. 2022 ("general Gompertz"); Gompertz with a power-law proliferating mass, ' +
    'reducing to the Gompertz model of Benzekry et al. 2014 at γ = 1. No closed form: integrated with RK45.',
  params: [
    { name: 'beta', lower: 1e-4, upper: 0.5, unit: '1/day·Vref^(1−γ)', transform: 'log', start: [0.002, 0.05] },
    { name: 'K', lower: 1e-3, upper: 100, unit: 'Vref', transform: 'log', start: [0.1, 3] },
    { name: 'gamma', lower: 0.5, upper: 1, unit: '1', transform: 'identity', start: [0.6, 0.95], description: 'γ ≤ 1: a super-linear proliferating mass (γ > 1) blows up in finite time' },
  ],
  rhs: (V, th) => th[0] * Math.pow(V, th[2]) * Math.log(th[1] / V),
  scaleCapacity: (th, s) => [th[0], th[1] * s, th[2]],
  capacity: (th) => th[1],
};

/** Shared closed form for dV/dt = a·V^γ − (b + k)·V via u = V^{1−γ}: du/dt = (1−γ)(a − (b+k)u). */
function bertalanffyExact(V0: number, a: number, b: number, g: number, dt: number, k: number): number {
  const m = 1 - g;
  const B = b + k;
  const u0 = Math.pow(V0, m);
  const x = m * B * dt;
  const u = u0 * Math.exp(-x) + a * m * dt * phi(x);
  return u > 0 ? Math.pow(u, 1 / m) : 0;
}

export const classicBertalanffy: GrowthModel = {
  name: 'classicBertalanffy',
  equation: 'dV/dt = a·V^(2/3) − b·V',
  citation: 'von Bertalanffy 1957 (Q Rev Biol 32:217); Benzekry et al. 2014, Bertalanffy model; Ghaffari Laleh et al. 2022.',
  params: [
    { name: 'a', lower: 1e-6, upper: 2, unit: 'Vref^(1/3)/day', transform: 'log', start: [0.002, 0.05], description: 'growth (surface-limited)' },
    { name: 'b', lower: 1e-6, upper: 2, unit: '1/day', transform: 'log', start: [0.002, 0.05], description: 'loss rate' },
  ],
  rhs: (V, th) => th[0] * Math.pow(V, 2 / 3) - th[1] * V,
  exact: (V0, th, dt, k) => bertalanffyExact(V0, th[0], th[1], 2 / 3, dt, k),
  // K = (a/b)^3, so K → sK is a → a·s^{1/3}.
  scaleCapacity: (th, s) => [th[0] * Math.cbrt(s), th[1]],
  capacity: (th) => Math.pow(th[0] / th[1], 3),
};

export const generalBertalanffy: GrowthModel = {
  name: 'generalBertalanffy',
  equation: 'dV/dt = a·V^γ − b·V',
  citation: 'von Bertalanffy 1957; Benzekry et al. 2014 (Bertalanffy and power-law models); Ghaffari Laleh et al. 2022 ("general Bertalanffy").',
  params: [
    { name: 'a', lower: 1e-6, upper: 2, unit: 'Vref^(1−γ)/day', transform: 'log', start: [0.002, 0.05] },
    { name: 'b', lower: 1e-6, upper: 2, unit: '1/day', transform: 'log', start: [0.002, 0.05] },
    { name: 'gamma', lower: 0.1, upper: 0.95, unit: '1', transform: 'identity', start: [0.4, 0.85] },
  ],
  rhs: (V, th) => th[0] * Math.pow(V, th[2]) - th[1] * V,
  exact: (V0, th, dt, k) => bertalanffyExact(V0, th[0], th[1], th[2], dt, k),
  // K = (a/b)^{1/(1−γ)}, so K → sK is a → a·s^{1−γ}.
  scaleCapacity: (th, s) => [th[0] * Math.pow(s, 1 - th[2]), th[1], th[2]],
  capacity: (th) => Math.pow(th[0] / th[1], 1 / (1 - th[2])),
};

export const GROWTH_MODELS: Readonly<Record<ModelName, GrowthModel>> = {
  exponential,
  logistic,
  gompertz,
  generalGompertz,
  classicBertalanffy,
  generalBertalanffy,
};

export const MODEL_NAMES: readonly ModelName[] = Object.keys(GROWTH_MODELS) as ModelName[];

export function getModel(name: ModelName | GrowthModel): GrowthModel {
  if (typeof name !== 'string') return name;
  const m = (GROWTH_MODELS as Record<string, GrowthModel>)[name];
  if (!m) throw new Error(`unknown growth model '${name}' (known: ${MODEL_NAMES.join(', ')})`);
  return m;
}
