/**
 * The server optimiser shared by FedAdam, FedYogi and FedAdagrad (Reddi, Charles, Zaheer, Garrett,
 * Rush, Konečný, Kumar & McMahan, "Adaptive Federated Optimization", ICLR 2021, Algorithm 2), on
 * the mean pseudo-gradient Δ = Σ n_k (w_k − w) / Σ n_k:
 *   m ← β1·m + (1−β1)·Δ
 *   v ← secondMoment(v, Δ²)            (the only line in which the three differ)
 *   w ← w + η·m / (√v + τ)
 * Initial state: m_{-1} = 0 and v_{-1} = τ² (Algorithm 2 asks for v_{-1} ≥ τ²). No bias
 * correction, as in the paper (Flower's FedAdam adds one and starts v at 0; not the same numbers).
 * Plain float64 with +, −, ×, ÷ and sqrt in a fixed order, so every site computes the same bits.
 */
import { checkApply, pseudoGradient, stateVectors } from './common.js';
import type { StrategyName } from '@twinfed/protocols';
import type { Strategy } from './types.js';

export const FEDOPT_PAPER = 'Reddi et al., Adaptive Federated Optimization, ICLR 2021 (Algorithm 2)';

export interface FedOptConfig {
  serverLearningRate: number;
  beta1: number;
  tau: number;
}

/** A FedOpt strategy whose second-moment update is `secondMoment(v, Δ²)`. */
export function fedOpt(name: Extract<StrategyName, 'fedadam' | 'fedyogi' | 'fedadagrad'>, paper: string, cfg: FedOptConfig, secondMoment: (v: number, d2: number) => number): Strategy {
  const { serverLearningRate: eta, beta1, tau } = cfg;
  return {
    name,
    linear: true,
    combine: 'encrypted-sum',
    paper,
    stateful: true,
    localObjective: () => ({}),
    encode: pseudoGradient,
    apply(global, mean, state) {
      checkApply(global, mean);
      const {
        vectors: { m, v },
        steps,
      } = stateVectors(name, state, global.length, { m: 0, v: tau * tau });
      const weights = new Float32Array(global.length);
      for (let i = 0; i < weights.length; i++) {
        const d = mean[i];
        m[i] = beta1 * m[i] + (1 - beta1) * d;
        v[i] = secondMoment(v[i], d * d);
        weights[i] = global[i] + (eta * m[i]) / (Math.sqrt(v[i]) + tau);
      }
      return { weights, state: { strategy: name, steps: steps + 1, vectors: { m, v } } };
    },
  };
}
