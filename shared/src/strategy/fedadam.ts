/**
 * FedAdam (Reddi et al., "Adaptive Federated Optimization", ICLR 2021, Algorithm 2): the FedOpt
 * server optimiser (fedopt.ts) with Adam's second moment
 *   v ← β2·v + (1−β2)·Δ²
 */
import { FEDOPT_PAPER, fedOpt } from './fedopt.js';
import type { Strategy } from './types.js';

export { FEDOPT_PAPER };

export function fedadam(cfg: { serverLearningRate: number; beta1: number; beta2: number; tau: number }): Strategy {
  const { beta2 } = cfg;
  return fedOpt('fedadam', FEDOPT_PAPER, cfg, (v, d2) => beta2 * v + (1 - beta2) * d2);
}
