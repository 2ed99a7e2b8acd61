import { TwinfedError, defineErrors } from '@twinfed/protocols/define-errors';
import type { WireErrorCode } from '@twinfed/protocols';

/** Errors of the strategy layer (shared/src/strategy); `code` is stable, the message is `CODE: detail`. */
export const STRATEGY_ERRORS = defineErrors({
  TWF_E_STRATEGY_STATE: {
    message:
      "The server-optimiser state of a stateful strategy is missing, unreadable, or belongs to another strategy or model size; the site cannot apply the aggregate identically to the others. Let it catch up from version 0 (twinfed site doctor shows the study's models), or rejoin.",
  },
});

export type StrategyErrorCode = keyof typeof STRATEGY_ERRORS | Extract<WireErrorCode, 'TWF_E_UPDATE_SHAPE'>;

export class StrategyError extends TwinfedError<StrategyErrorCode> {
  constructor(code: StrategyErrorCode, message: string) {
    super(code, `${code}: ${message}`, message);
    this.name = 'StrategyError';
  }
}
