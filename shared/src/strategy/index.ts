/**
 * Aggregation strategies behind one seam (types.ts): sites encode what they contribute, the
 * coordinator only sums ciphertexts, and every site applies the mean identically. See
 * docs/strategies.md.
 */
import type { StrategyConfig } from '@twinfed/protocols';
import { fedadagrad } from './fedadagrad.js';
import { fedadam } from './fedadam.js';
import { fedavg } from './fedavg.js';
import { fedavgm } from './fedavgm.js';
import { fedprox } from './fedprox.js';
import { fedyogi } from './fedyogi.js';
import type { Strategy } from './types.js';

export * from './types.js';
export { StrategyError, type StrategyErrorCode } from './errors.js';
export { serialiseState, parseState, stateHash, NO_STATE_HASH, STATE_FORMAT_VERSION } from './state.js';
export { fedavg, fedprox, fedavgm, fedadam, fedyogi, fedadagrad };

/**
 * The strategy a manifest names; absent = FedAvg. The config is the manifest's, already parsed by
 * StrategySchema (defaults filled in, non-linear names refused there).
 */
export function strategyFor(config: StrategyConfig | undefined): Strategy {
  if (!config) return fedavg();
  switch (config.name) {
    case 'fedavg':
      return fedavg();
    case 'fedprox':
      return fedprox(config);
    case 'fedavgm':
      return fedavgm(config);
    case 'fedadam':
      return fedadam(config);
    case 'fedyogi':
      return fedyogi(config);
    case 'fedadagrad':
      return fedadagrad(config);
    default: {
      const name = (config as { name: string }).name;
      throw new Error(`TWF_E_STRATEGY_NOT_LINEAR: no linear strategy named ${JSON.stringify(name)}`);
    }
  }
}
