/**
 * FedYogi (Reddi et al., "Adaptive Federated Optimization", ICLR 2021, Algorithm 2, with the Yogi
 * second moment of Zaheer, Reddi, Sachan, Kale & Kumar, NeurIPS 2018): the FedOpt server
 * optimiser (fedopt.ts) with
 *   v ← v − (1−β2)·Δ²·sign(v − Δ²)       (sign(0) = 0)
 * v stays ≥ 0: when v < Δ², v grows toward Δ²; when v > Δ², v − (1−β2)·Δ² > v − Δ² > 0.
 */
import { FEDOPT_PAPER, fedOpt } from './fedopt.js';
import type { Strategy } from './types.js';

export function fedyogi(cfg: { serverLearningRate: number; beta1: number; beta2: number; tau: number }): Strategy {
  const { beta2 } = cfg;
  const paper = `${FEDOPT_PAPER}; Zaheer et al., Adaptive Methods for Nonconvex Optimization, NeurIPS 2018`;
  return fedOpt('fedyogi', paper, cfg, (v, d2) => {
    const diff = v - d2;
    return diff > 0 ? v - (1 - beta2) * d2 : diff < 0 ? v + (1 - beta2) * d2 : v;
  });
}
