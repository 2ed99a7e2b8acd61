/**
 * Rényi-DP accountant of the (Poisson-)subsampled Gaussian mechanism: the privacy cost of DP-SGD
 * steps (patient level) and of noised site-level rounds, composed over steps, rounds and studies.
 *
 * Pure arithmetic in float64, no randomness. Everything is computed in log space (log binomials,
 * log-sum-exp), so orders up to 256 and noise multipliers down to 0.3 neither overflow nor lose
 * the small terms.
 *
 * References:
 *  - I. Mironov, "Rényi Differential Privacy", CSF 2017: RDP composes by addition at each order.
 *  - I. Mironov, K. Talwar, L. Zhang, "Rényi Differential Privacy of the Sampled Gaussian
 *    Mechanism", arXiv:1908.10530, 2019, Sec. 3.3: RDP at integer orders α of the sampled Gaussian.
 *  - B. Balle, G. Barthe, M. Gaboardi, J. Hsu, T. Sato, "Hypothesis Testing Interpretations and
 *    Renyi Differential Privacy", AISTATS 2020, Thm 21: conversion RDP → (ε, δ) (the one Opacus
 *    and TF-Privacy use).
 *  - M. Abadi et al., "Deep Learning with Differential Privacy", CCS 2016: DP-SGD.
 */
import { WireError } from '@twinfed/protocols/errors'; // not the index: `twinfed --help` loads this module, and the index loads zod

/** Integer Rényi orders α = 2..256 at which RDP is tracked (the ledger stores one float64 per order, in this order). */
export const RDP_ORDERS: readonly number[] = Object.freeze(Array.from({ length: 255 }, (_, i) => i + 2));

/** Range of noise multipliers the manifest accepts (protocols DpSchema `noiseMultiplier`); the search of noiseMultiplierFor stays inside it. */
export const MIN_NOISE_MULTIPLIER = 0.3;
export const MAX_NOISE_MULTIPLIER = 1000;

/** log(n!) for n = 0..N, extended on demand (orders are small integers, so a table is exact enough: ~1e-13 relative). */
const logFactTable: number[] = [0];
function logFactorial(n: number): number {
  for (let i = logFactTable.length; i <= n; i++) logFactTable.push(logFactTable[i - 1]! + Math.log(i));
  return logFactTable[n]!;
}
/** log C(n, k). */
function logBinomial(n: number, k: number): number {
  return logFactorial(n) - logFactorial(k) - logFactorial(n - k);
}

function checkOrders(orders: readonly number[]): void {
  for (const a of orders) if (!Number.isInteger(a) || a < 2) throw new RangeError(`RDP orders must be integers >= 2 (got ${a})`);
}

/**
 * log A_α of the sampled Gaussian mechanism at an integer order α ≥ 2 (Mironov, Talwar & Zhang
 * 2019, Sec. 3.3, integer α):
 *
 *   A_α = Σ_{k=0}^{α} C(α,k) (1−q)^{α−k} q^k exp((k² − k) / (2σ²))
 *
 * evaluated as a log-sum-exp of the log terms.
 */
export function logAOfSampledGaussian(samplingRate: number, noiseMultiplier: number, order: number): number {
  const q = samplingRate;
  const s2 = noiseMultiplier * noiseMultiplier;
  const logQ = Math.log(q);
  const log1mQ = Math.log1p(-q);
  const terms = new Float64Array(order + 1);
  let max = -Infinity;
  for (let k = 0; k <= order; k++) {
    const t = logBinomial(order, k) + (order - k) * log1mQ + k * logQ + (k * k - k) / (2 * s2);
    terms[k] = t;
    if (t > max) max = t;
  }
  let sum = 0;
  for (let k = 0; k <= order; k++) sum += Math.exp(terms[k]! - max);
  return max + Math.log(sum);
}

/**
 * RDP ε(α) of ONE application of the Poisson-subsampled Gaussian mechanism with sampling rate q
 * and noise multiplier σ (noise std = σ × L2 sensitivity), at each integer order α:
 * ε(α) = log(A_α) / (α − 1) (Mironov, Talwar & Zhang 2019, Sec. 3.3).
 * Special cases: q = 0 → 0; q = 1 → α / (2σ²) exactly (the plain Gaussian mechanism, Mironov 2017, Prop. 7).
 */
export function rdpSubsampledGaussian(samplingRate: number, noiseMultiplier: number, orders: readonly number[] = RDP_ORDERS): Float64Array {
  if (!(samplingRate >= 0 && samplingRate <= 1)) throw new RangeError(`sampling rate must be in [0, 1] (got ${samplingRate})`);
  if (!(noiseMultiplier > 0) || !Number.isFinite(noiseMultiplier)) throw new RangeError(`noise multiplier must be a positive number (got ${noiseMultiplier})`);
  checkOrders(orders);
  const out = new Float64Array(orders.length);
  if (samplingRate === 0) return out;
  for (let i = 0; i < orders.length; i++) {
    const a = orders[i]!;
    if (samplingRate === 1) out[i] = a / (2 * noiseMultiplier * noiseMultiplier);
    // Clamped at 0: A_α ≥ 1 mathematically (it is a moment of a likelihood ratio); rounding may give −1e-17.
    else out[i] = Math.max(0, logAOfSampledGaussian(samplingRate, noiseMultiplier, a) / (a - 1));
  }
  return out;
}

/** Sum of RDP vectors at the same orders (composition: Mironov 2017, Prop. 1). */
export function composeRdp(...vectors: ArrayLike<number>[]): Float64Array {
  if (vectors.length === 0) return new Float64Array(RDP_ORDERS.length);
  const n = vectors[0]!.length;
  const out = new Float64Array(n);
  for (const v of vectors) {
    if (v.length !== n) throw new RangeError(`RDP vectors of different lengths (${v.length} vs ${n})`);
    for (let i = 0; i < n; i++) out[i]! += v[i]!;
  }
  return out;
}

/** (ε, δ) of an RDP curve, and the order α that attains it. */
export interface EpsilonAtOrder {
  epsilon: number;
  order: number;
}

/**
 * Smallest ε such that the mechanism with RDP curve `rdp` is (ε, δ)-DP, by the conversion of
 * Balle et al. (AISTATS 2020, Thm 21), minimised over the orders:
 *
 *   ε = min_α  rdp(α) + log((α − 1)/α) − (log δ + log α) / (α − 1)
 *
 * clamped at 0, and 0 when the RDP is 0 at every order (identical outputs). (Tighter than Mironov 2017 Prop. 3, ε = rdp(α) + log(1/δ)/(α−1), by roughly
 * log(α)/(α−1) − log((α−1)/α).) This is `get_privacy_spent` of Opacus (≥ 1.0) and of TF-Privacy's
 * `compute_eps` since 2020.
 */
export function epsilonFromRdp(rdp: ArrayLike<number>, delta: number, orders: readonly number[] = RDP_ORDERS): EpsilonAtOrder {
  if (!(delta > 0 && delta < 1)) throw new RangeError(`delta must be in (0, 1) (got ${delta})`);
  if (rdp.length !== orders.length) throw new RangeError(`RDP vector has ${rdp.length} entries for ${orders.length} orders`);
  checkOrders(orders);
  // RDP 0 means the output distributions are equal (D_α(P‖Q) = 0 iff P = Q): (0, 0)-DP. The formula
  // below would instead report the finite-orders artefact log((α−1)/α) − (log δ + log α)/(α−1) > 0.
  // All orders, not some: a low order may round to 0 where a high one still counts.
  if (Array.prototype.every.call(rdp, (x: number) => x === 0)) return { epsilon: 0, order: orders[0]! };
  const logDelta = Math.log(delta);
  let best = Infinity;
  let bestOrder = orders[0]!;
  for (let i = 0; i < orders.length; i++) {
    const a = orders[i]!;
    const r = rdp[i]!;
    if (Number.isNaN(r)) continue;
    const eps = r + Math.log((a - 1) / a) - (logDelta + Math.log(a)) / (a - 1);
    if (eps < best) {
      best = eps;
      bestOrder = a;
    }
  }
  return { epsilon: Math.max(0, best), order: bestOrder };
}

/** Parameters of `steps` compositions of the sampled Gaussian mechanism. */
export interface SampledGaussianParams {
  /** q: Poisson sampling probability of each record (patient) per step; 1 = no subsampling. */
  samplingRate: number;
  /** σ: noise std divided by the L2 sensitivity (clip norm). */
  noiseMultiplier: number;
  /** Compositions (DP-SGD steps, or site-level rounds). */
  steps: number;
  delta: number;
}

/** (ε, δ) after `steps` compositions: RDP scales linearly with steps (Mironov 2017, Prop. 1), then Balle et al. 2020. */
export function epsilonFor(p: SampledGaussianParams, orders: readonly number[] = RDP_ORDERS): EpsilonAtOrder {
  if (!(p.steps >= 0) || !Number.isFinite(p.steps)) throw new RangeError(`steps must be a non-negative number (got ${p.steps})`);
  const rdp = rdpSubsampledGaussian(p.samplingRate, p.noiseMultiplier, orders);
  for (let i = 0; i < rdp.length; i++) rdp[i]! *= p.steps;
  return epsilonFromRdp(rdp, p.delta, orders);
}

/** Rounds x up to 3 significant digits (1.0234 → 1.03; 12.3 → 12.3; 0.4561 → 0.457). */
function ceil3(x: number): number {
  const e = Math.floor(Math.log10(x)) - 2;
  const unit = 10 ** e;
  // The small slack keeps an x that is already on the grid (up to float noise) where it is.
  const r = Math.ceil(x / unit - 1e-9) * unit;
  return Number(r.toPrecision(3));
}
/** The next value on the 3-significant-digit grid above x (x on the grid). */
function nextUp3(x: number): number {
  const e = Math.floor(Math.log10(x)) - 2;
  return Number((x + 10 ** e).toPrecision(3));
}

/**
 * Smallest noise multiplier σ, to 3 significant digits and rounded UP (so the budget still holds),
 * for which `steps` compositions of the sampled Gaussian at rate q stay within (ε, δ) by
 * `epsilonFor`. The search stays in the manifest's range [0.3, 1000]: if σ = 0.3 already meets
 * the budget, 0.3 is returned. Throws WireError TWF_E_DP_PARAMS (protocols/src/errors.ts) when
 * not even σ = 1000 reaches it, or on parameters out of range.
 */
export function noiseMultiplierFor(p: { samplingRate: number; steps: number; delta: number; epsilon: number }): number {
  const { samplingRate: q, steps, delta, epsilon } = p;
  if (!(epsilon > 0) || !Number.isFinite(epsilon)) throw new WireError('TWF_E_DP_PARAMS', `epsilon must be a positive number (got ${epsilon})`);
  if (!(delta > 0 && delta < 1)) throw new WireError('TWF_E_DP_PARAMS', `delta must be in (0, 1) (got ${delta})`);
  if (!(q > 0 && q <= 1)) throw new WireError('TWF_E_DP_PARAMS', `samplingRate must be in (0, 1] (got ${q})`);
  if (!(Number.isInteger(steps) && steps >= 1)) throw new WireError('TWF_E_DP_PARAMS', `steps must be a positive integer (got ${steps})`);
  const eps = (sigma: number) => epsilonFor({ samplingRate: q, noiseMultiplier: sigma, steps, delta }).epsilon;
  if (eps(MIN_NOISE_MULTIPLIER) <= epsilon) return MIN_NOISE_MULTIPLIER;
  const atMax = eps(MAX_NOISE_MULTIPLIER);
  if (atMax > epsilon) {
    throw new WireError(
      'TWF_E_DP_PARAMS',
      `epsilon: no noiseMultiplier <= ${MAX_NOISE_MULTIPLIER} reaches epsilon ${epsilon} at delta ${delta} over ${steps} steps at samplingRate ${q} (sigma ${MAX_NOISE_MULTIPLIER} gives ${atMax.toPrecision(4)}); raise epsilon or lower steps or samplingRate`,
    );
  }
  // ε(σ) is decreasing in σ: bisect on log σ between a σ that fails and one that meets the budget.
  let lo = MIN_NOISE_MULTIPLIER;
  let hi = MAX_NOISE_MULTIPLIER;
  while (hi / lo > 1 + 1e-6) {
    const mid = Math.sqrt(lo * hi);
    if (eps(mid) <= epsilon) hi = mid;
    else lo = mid;
  }
  let sigma = ceil3(hi);
  while (eps(sigma) > epsilon) sigma = nextUp3(sigma); // float noise at the boundary only
  return Math.min(sigma, MAX_NOISE_MULTIPLIER);
}

/** DP-SGD steps in one round: max(1, round(epochsPerRound / q)) (one epoch = 1/q expected Poisson batches). */
export function dpStepsPerRound(epochsPerRound: number, samplingRate: number): number {
  if (!(samplingRate > 0 && samplingRate <= 1)) throw new WireError('TWF_E_DP_PARAMS', `samplingRate must be in (0, 1], got ${samplingRate}`);
  return Math.max(1, Math.round(epochsPerRound / samplingRate));
}

/** The parts of a study manifest the projection reads (structurally a protocols DpConfig, training and rounds). */
export interface StudyDpInput {
  dp:
    | { level: 'patient'; epsilon: number; delta: number; noiseMultiplier?: number; samplingRate: number; clipNorm: number }
    | { level: 'site'; epsilon: number; delta: number; noiseMultiplier?: number; clipNorm: number };
  training: { epochsPerRound: number };
  rounds: number;
}

export interface StudyEpsilonProjection {
  /** ε one site's dataset spends on this study if every round closes, at the manifest's δ. */
  epsilon: number;
  order: number;
  /** Compositions over the whole study (DP-SGD steps for patient level; rounds for site level). */
  steps: number;
  /** The manifest's σ, or the smallest meeting its ε when it names none. */
  noiseMultiplier: number;
  samplingRate: number;
}

/**
 * ε a study will spend on each site's dataset over all its rounds. Patient level (DP-SGD):
 * q = dp.samplingRate, steps = rounds × dpStepsPerRound(epochsPerRound, q). Site level: each round
 * is one Gaussian mechanism over the whole update, q = 1, steps = rounds.
 */
export function projectStudyEpsilon(m: StudyDpInput): StudyEpsilonProjection {
  const samplingRate = m.dp.level === 'patient' ? m.dp.samplingRate : 1;
  const steps = m.dp.level === 'patient' ? m.rounds * dpStepsPerRound(m.training.epochsPerRound, samplingRate) : m.rounds;
  const noiseMultiplier = m.dp.noiseMultiplier ?? noiseMultiplierFor({ samplingRate, steps, delta: m.dp.delta, epsilon: m.dp.epsilon });
  const { epsilon, order } = epsilonFor({ samplingRate, noiseMultiplier, steps, delta: m.dp.delta });
  return { epsilon, order, steps, noiseMultiplier, samplingRate };
}

/** A ledger row's RDP vector as stored (float64 little-endian, one per RDP_ORDERS entry). */
export function rdpToBuffer(rdp: Float64Array): Buffer {
  const b = Buffer.alloc(rdp.length * 8);
  for (let i = 0; i < rdp.length; i++) b.writeDoubleLE(rdp[i]!, i * 8);
  return b;
}
export function rdpFromBuffer(b: Uint8Array): Float64Array {
  if (b.byteLength % 8 !== 0) throw new RangeError(`RDP blob of ${b.byteLength} bytes is not a float64 vector`);
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const out = new Float64Array(b.byteLength / 8);
  for (let i = 0; i < out.length; i++) out[i] = view.getFloat64(i * 8, true);
  return out;
}
