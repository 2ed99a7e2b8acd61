/**
 * FedProx (Li, Sahu, Zaheer, Sanjabi, Talwalkar & Smith, "Federated Optimization in Heterogeneous
 * Networks", MLSys 2020): each site minimises F_k(w) + (mu/2)·||w − w_global||² (the trainers add
 * the proximal term; they read `manifest.strategy`), and the server aggregates as FedAvg.
 */
import { addMean } from './fedavg.js';
import { pseudoGradient } from './common.js';
import type { Strategy } from './types.js';

export const FEDPROX_PAPER = 'Li et al., Federated Optimization in Heterogeneous Networks, MLSys 2020';

export function fedprox(cfg: { mu: number }): Strategy {
  const mu = cfg.mu;
  return {
    name: 'fedprox',
    linear: true,
    combine: 'encrypted-sum',
    paper: FEDPROX_PAPER,
    stateful: false,
    localObjective: () => ({ proximalMu: mu }),
    encode: pseudoGradient,
    apply: (global, mean) => ({ weights: addMean(global, mean), state: null }),
  };
}
