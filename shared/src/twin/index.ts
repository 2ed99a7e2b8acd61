/**
 * Twinfed digital-twin core: tumour growth models, treatment effects (LQ radiotherapy, log-kill),
 * per-patient calibration with Laplace uncertainty, population priors from additive sufficient
 * statistics, forecasts with prediction intervals, what-if schedules and hold-out evaluation.
 * Pure TypeScript; the only input reader (parseLalehCsv) takes text.
 */
export * from './models.js';
export * from './ode.js';
export * from './treatment.js';
export * from './simulate.js';
export * from './lm.js';
export * from './fit.js';
export * from './forecast.js';
export * from './prior.js';
export * from './prior-codec.js';
export * from './prior-study.js';
export * from './evaluate.js';
export * from './laleh.js';
export { makeRng, subSeed, type Rng } from './rng.js';
export type { Matrix } from './linalg.js';
export { spdInverse } from './linalg.js';
export * from './scores.js';
