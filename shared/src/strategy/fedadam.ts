/**
 * FedAdam (Reddi, Charles, Zaheer, Garrett, Rush, Konečný, Kumar & McMahan, "Adaptive Federated
 * Optimization", ICLR 2021, Algorithm 2), on the mean pseudo-gradient Δ = Σ n_k (w_k − w) / Σ n_k:
 *   m ← β1·m + (1−β1)·Δ
 *   v ← β2·v + (1−β2)·Δ²
 *   w ← w + η·m / (√v + τ)
 * Initial state: m_{-1} = 0 and v_{-1} = τ² (Algorithm 2 asks for v_{-1} ≥ τ²). No bias
 * correction, as in the paper (Flower's FedAdam adds one and starts v at 0; not the same numbers).
 */
import { checkApply, pseudoGradient, stateVectors } from './common.js';
import type { Strategy } from './types.js';

export const FEDOPT_PAPER = 'Reddi et al., Adaptive Federated Optimization, ICLR 2021 (Algorithm 2)';

export function fedadam(cfg: { serverLearningRate: number; beta1: number; beta2: number; tau: number }): Strategy {
  const { serverLearningRate: eta, beta1, beta2, tau } = cfg;
  return {
    name: 'fedadam',
    linear: true,
    combine: 'encrypted-sum',
    paper: FEDOPT_PAPER,
    stateful: true,
    localObjective: () => ({}),
    encode: pseudoGradient,
    apply(global, mean, state) {
      checkApply(global, mean);
      const {
        vectors: { m, v },
        steps,
      } = stateVectors('fedadam', state, global.length, { m: 0, v: tau * tau });
      const weights = new Float32Array(global.length);
      for (let i = 0; i < weights.length; i++) {
        const d = mean[i];
        m[i] = beta1 * m[i] + (1 - beta1) * d;
        v[i] = beta2 * v[i] + (1 - beta2) * (d * d);
        weights[i] = global[i] + (eta * m[i]) / (Math.sqrt(v[i]) + tau);
      }
      return { weights, state: { strategy: 'fedadam', steps: steps + 1, vectors: { m, v } } };
    },
  };
}
