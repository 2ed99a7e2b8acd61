/**
 * FedYogi (Reddi et al., "Adaptive Federated Optimization", ICLR 2021, Algorithm 2, with the Yogi
 * second moment of Zaheer, Reddi, Sachan, Kale & Kumar, NeurIPS 2018), on the mean
 * pseudo-gradient Δ:
 *   m ← β1·m + (1−β1)·Δ
 *   v ← v − (1−β2)·Δ²·sign(v − Δ²)       (sign(0) = 0)
 *   w ← w + η·m / (√v + τ)
 * Initial state: m_{-1} = 0, v_{-1} = τ². v stays ≥ 0: when v < Δ², v grows toward Δ²; when
 * v > Δ², v − (1−β2)·Δ² > v − Δ² > 0.
 */
import { checkApply, pseudoGradient, stateVectors } from './common.js';
import { FEDOPT_PAPER } from './fedadam.js';
import type { Strategy } from './types.js';

export function fedyogi(cfg: { serverLearningRate: number; beta1: number; beta2: number; tau: number }): Strategy {
  const { serverLearningRate: eta, beta1, beta2, tau } = cfg;
  return {
    name: 'fedyogi',
    linear: true,
    combine: 'encrypted-sum',
    paper: `${FEDOPT_PAPER}; Zaheer et al., Adaptive Methods for Nonconvex Optimization, NeurIPS 2018`,
    stateful: true,
    localObjective: () => ({}),
    encode: pseudoGradient,
    apply(global, mean, state) {
      checkApply(global, mean);
      const {
        vectors: { m, v },
        steps,
      } = stateVectors('fedyogi', state, global.length, { m: 0, v: tau * tau });
      const weights = new Float32Array(global.length);
      for (let i = 0; i < weights.length; i++) {
        const d = mean[i];
        const d2 = d * d;
        m[i] = beta1 * m[i] + (1 - beta1) * d;
        const diff = v[i] - d2;
        if (diff > 0) v[i] = v[i] - (1 - beta2) * d2;
        else if (diff < 0) v[i] = v[i] + (1 - beta2) * d2;
        weights[i] = global[i] + (eta * m[i]) / (Math.sqrt(v[i]) + tau);
      }
      return { weights, state: { strategy: 'fedyogi', steps: steps + 1, vectors: { m, v } } };
    },
  };
}
