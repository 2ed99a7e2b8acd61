/**
 * FedAvgM (Hsu, Qi & Brown, "Measuring the Effects of Non-Identical Data Distribution for
 * Federated Visual Classification", arXiv:1909.06335, 2019): server momentum on the mean
 * pseudo-gradient Δ = Σ n_k (w_k − w) / Σ n_k:
 *   v ← momentum·v + Δ;   w ← w + η·v,    v_{-1} = 0.
 * (Hsu et al. write w ← w − v with Δ as w − w_k; the sign convention here is the same update.)
 */
import { checkApply, pseudoGradient, stateVectors } from './common.js';
import type { Strategy } from './types.js';

export const FEDAVGM_PAPER = 'Hsu, Qi & Brown, Measuring the Effects of Non-Identical Data Distribution for Federated Visual Classification, arXiv:1909.06335, 2019';

export function fedavgm(cfg: { serverLearningRate: number; momentum: number }): Strategy {
  const eta = cfg.serverLearningRate;
  const beta = cfg.momentum;
  return {
    name: 'fedavgm',
    linear: true,
    combine: 'encrypted-sum',
    paper: FEDAVGM_PAPER,
    stateful: true,
    localObjective: () => ({}),
    encode: pseudoGradient,
    apply(global, mean, state) {
      checkApply(global, mean);
      const {
        vectors: { v },
        steps,
      } = stateVectors('fedavgm', state, global.length, { v: 0 });
      const weights = new Float32Array(global.length);
      for (let i = 0; i < weights.length; i++) {
        v[i] = beta * v[i] + mean[i];
        weights[i] = global[i] + eta * v[i];
      }
      return { weights, state: { strategy: 'fedavgm', steps: steps + 1, vectors: { v } } };
    },
  };
}
