/**
 * Pieces every strategy shares: the pseudo-gradient contribution and the checks around `apply`.
 * All arithmetic that reaches a model is float64 +, −, ×, ÷ and Math.sqrt, which IEEE 754
 * rounds correctly (so identically on every CPU and V8 version), in index order; the result is
 * rounded once to float32. No Math.pow/exp/log (implementation-defined accuracy), no reductions
 * whose order could differ.
 */
import type { StrategyName } from '@twinfed/protocols';
import { StrategyError } from './errors.js';
import type { Encoded, StrategyState } from './types.js';

/**
 * The contribution of every linear strategy here: the pseudo-gradient Δ_k = local − global
 * (float32 difference, as the site computed it before the seam) with weight n_k, so the mean is
 * FedAvg's Σ n_k Δ_k / Σ n_k (McMahan et al. 2017, Algorithm 1).
 */
export function pseudoGradient(global: Float32Array, local: Float32Array, nSamples: number): Encoded {
  if (!(global instanceof Float32Array) || !(local instanceof Float32Array)) throw new StrategyError('TWF_E_UPDATE_SHAPE', 'global and local must be Float32Arrays');
  if (global.length !== local.length) throw new StrategyError('TWF_E_UPDATE_SHAPE', `local model has ${local.length} parameters, global ${global.length}`);
  if (!Number.isSafeInteger(nSamples) || nSamples < 1) throw new StrategyError('TWF_E_UPDATE_SHAPE', `nSamples must be a positive integer (got ${nSamples})`);
  const vector = new Float32Array(global.length);
  for (let i = 0; i < vector.length; i++) vector[i] = local[i] - global[i];
  return { vector, weight: nSamples };
}

/** Checks the inputs of `apply`: same length, finite. */
export function checkApply(global: Float32Array, mean: Float32Array): void {
  if (!(global instanceof Float32Array) || !(mean instanceof Float32Array)) throw new StrategyError('TWF_E_UPDATE_SHAPE', 'global and mean must be Float32Arrays');
  if (global.length !== mean.length) throw new StrategyError('TWF_E_UPDATE_SHAPE', `mean has ${mean.length} elements, the model ${global.length}`);
  for (let i = 0; i < mean.length; i++) {
    if (!Number.isFinite(mean[i])) throw new StrategyError('TWF_E_UPDATE_SHAPE', `mean[${i}] is not finite`);
  }
}

/**
 * The named vectors of `state`, checked to belong to `strategy` and to have `length` elements,
 * as fresh copies (apply never mutates its input); at null (version 0) each starts filled with
 * `init[name]`.
 */
export function stateVectors<K extends string>(strategy: StrategyName, state: StrategyState | null, length: number, init: Record<K, number>): { vectors: Record<K, Float64Array>; steps: number } {
  const names = Object.keys(init).sort() as K[];
  const vectors = {} as Record<K, Float64Array>;
  if (state === null) {
    for (const k of names) vectors[k] = new Float64Array(length).fill(init[k]);
    return { vectors, steps: 0 };
  }
  if (state.strategy !== strategy) throw new StrategyError('TWF_E_STRATEGY_STATE', `state of strategy ${state.strategy}, not ${strategy}`);
  const have = Object.keys(state.vectors).sort();
  if (have.join(',') !== names.join(',')) throw new StrategyError('TWF_E_STRATEGY_STATE', `state vectors ${have.join(',')}; ${strategy} keeps ${names.join(',')}`);
  for (const k of names) {
    const v = state.vectors[k];
    if (!(v instanceof Float64Array) || v.length !== length) throw new StrategyError('TWF_E_STRATEGY_STATE', `state vector ${k} has ${v?.length} elements, the model ${length}`);
    vectors[k] = Float64Array.from(v);
  }
  return { vectors, steps: state.steps };
}
