/**
 * FedAdagrad (Reddi et al., "Adaptive Federated Optimization", ICLR 2021, Algorithm 2), on the
 * mean pseudo-gradient Δ:
 *   m ← β1·m + (1−β1)·Δ          (β1 = 0 by default: m = Δ)
 *   v ← v + Δ²
 *   w ← w + η·m / (√v + τ)
 * Initial state: m_{-1} = 0, v_{-1} = τ².
 */
import { checkApply, pseudoGradient, stateVectors } from './common.js';
import { FEDOPT_PAPER } from './fedadam.js';
import type { Strategy } from './types.js';

export function fedadagrad(cfg: { serverLearningRate: number; beta1: number; tau: number }): Strategy {
  const { serverLearningRate: eta, beta1, tau } = cfg;
  return {
    name: 'fedadagrad',
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
      } = stateVectors('fedadagrad', state, global.length, { m: 0, v: tau * tau });
      const weights = new Float32Array(global.length);
      for (let i = 0; i < weights.length; i++) {
        const d = mean[i];
        m[i] = beta1 * m[i] + (1 - beta1) * d;
        v[i] = v[i] + d * d;
        weights[i] = global[i] + (eta * m[i]) / (Math.sqrt(v[i]) + tau);
      }
      return { weights, state: { strategy: 'fedadagrad', steps: steps + 1, vectors: { m, v } } };
    },
  };
}
