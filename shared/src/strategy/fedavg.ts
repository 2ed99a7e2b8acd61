/**
 * FedAvg (McMahan, Moore, Ramage, Hampson & Agüera y Arcas, "Communication-Efficient Learning of
 * Deep Networks from Decentralized Data", AISTATS 2017, Algorithm 1):
 *   w ← w + Σ_k n_k Δ_k / Σ_k n_k,   Δ_k = w_k − w.
 * Stateless. In float64 then rounded to float32 — the same bits as the float32 `w[i] += mean[i]`
 * it replaces (the sum of two float32 values is exact in float64 before the single rounding).
 */
import { checkApply, pseudoGradient } from './common.js';
import type { Strategy } from './types.js';

export const FEDAVG_PAPER = 'McMahan et al., Communication-Efficient Learning of Deep Networks from Decentralized Data, AISTATS 2017';

/** w + mean, rounded once to float32. */
export function addMean(global: Float32Array, mean: Float32Array): Float32Array {
  checkApply(global, mean);
  const out = new Float32Array(global.length);
  for (let i = 0; i < out.length; i++) out[i] = global[i] + mean[i];
  return out;
}

export function fedavg(): Strategy {
  return {
    name: 'fedavg',
    linear: true,
    combine: 'encrypted-sum',
    paper: FEDAVG_PAPER,
    stateful: false,
    localObjective: () => ({}),
    encode: pseudoGradient,
    apply: (global, mean) => ({ weights: addMean(global, mean), state: null }),
  };
}
