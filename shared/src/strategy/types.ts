/**
 * The strategy seam: how a study turns the round's aggregate into the next global model.
 *
 * Under additive encryption plus secure-aggregation masking, the coordinator can do exactly one
 * thing with the sites' contributions: add them. So the seam is split by where code runs:
 *
 * - at each site, before upload: `encode` says what the site contributes, a vector and a weight.
 *   The site quantises weight·clip(vector) (shared/src/he/quantize.ts), masks and encrypts it, and
 *   declares `weight` as the update's `nSamples`;
 * - at the coordinator: `combine`, the encrypted sum Σ_k weight_k·vector_k (and the plain sum of
 *   the declared weights). It is the only coordinator hook and it is fixed — the same for every
 *   strategy — so a strategy can never ask the coordinator for anything but a sum;
 * - at each site, after decryption and unmasking: the site divides by Σ weight to get the mean,
 *   and `apply` turns (global, mean, state) into the next global model and the next
 *   server-optimiser state. Every site runs `apply` on the same inputs with the same
 *   deterministic float64 JavaScript, so every site ends with bit-identical weights and state.
 *
 * `localObjective` is what the strategy asks of local training (FedProx's proximal term); the
 * trainers read `manifest.strategy` and implement it, so here it is informational.
 */
import type { StrategyName } from '@twinfed/protocols';

/** The coordinator's only operation on contributions, whatever the strategy: the encrypted sum. */
export const COORDINATOR_COMBINE = 'encrypted-sum' as const;
export type CoordinatorCombine = typeof COORDINATOR_COMBINE;

/** What a site contributes to the encrypted sum: Σ weight·vector is summed, sites divide by Σ weight. */
export interface Encoded {
  /** Before clipping to ±clipBound and quantisation. */
  vector: Float32Array;
  /** Positive integer; declared as the update's nSamples (the coordinator caps it at maxSamplesPerSite). */
  weight: number;
}

/** What a strategy asks of each site's local training (implemented by the trainers). */
export interface LocalObjective {
  /** FedProx: add (mu/2)·||w − w_global||² to the local loss. */
  proximalMu?: number;
}

/**
 * Server-optimiser state after an aggregate was applied (FedAvgM's momentum, FedOpt's first and
 * second moments), float64 throughout. `steps` counts the aggregates applied to reach it.
 * Stateless strategies (FedAvg, FedProx) have state null.
 */
export interface StrategyState {
  readonly strategy: StrategyName;
  readonly steps: number;
  /** Named float64 vectors, each as long as the model; serialised in sorted name order. */
  readonly vectors: Readonly<Record<string, Float64Array>>;
}

/** The result of applying one aggregate. `weights` rounded once to float32 from float64. */
export interface Applied {
  weights: Float32Array;
  state: StrategyState | null;
}

/**
 * One aggregation strategy. Every strategy here is linear in the site updates (`linear: true`):
 * the mean of the contributions is all it needs, which the encrypted sum provides.
 */
export interface Strategy {
  readonly name: StrategyName;
  /** Linear in the site updates: the only kind additive encryption can aggregate. */
  readonly linear: true;
  /** The coordinator hook, fixed for every strategy. */
  readonly combine: CoordinatorCombine;
  /** The paper that defines it. */
  readonly paper: string;
  /** Whether `apply` carries server-optimiser state from one aggregate to the next. */
  readonly stateful: boolean;

  // ----- site hooks, before upload
  localObjective(): LocalObjective;
  encode(global: Float32Array, local: Float32Array, nSamples: number): Encoded;

  // ----- site hook, after decryption (identical at every site)
  /**
   * Next global model and state from the current global model, the weighted mean of the
   * contributions (Σ weight·clip(vector) / Σ weight, after quantisation) and the state stored
   * for the current version (null at version 0, and always for stateless strategies).
   * Deterministic: float64 +, −, ×, ÷, Math.sqrt and comparisons only, in index order.
   */
  apply(global: Float32Array, mean: Float32Array, state: StrategyState | null): Applied;
}
