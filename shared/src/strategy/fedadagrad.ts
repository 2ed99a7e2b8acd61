/**
 * FedAdagrad (Reddi et al., "Adaptive Federated Optimization", ICLR 2021, Algorithm 2): the FedOpt
 * server optimiser (fedopt.ts) with Adagrad's accumulated second moment
 *   v ← v + Δ²
 * and β1 = 0 by default (m = Δ).
 */
import { FEDOPT_PAPER, fedOpt } from './fedopt.js';
import type { Strategy } from './types.js';

export function fedadagrad(cfg: { serverLearningRate: number; beta1: number; tau: number }): Strategy {
  return fedOpt('fedadagrad', FEDOPT_PAPER, cfg, (v, d2) => v + d2);
}
