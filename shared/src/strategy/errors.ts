/** Errors of the strategy layer; `code` is stable. */
export type StrategyErrorCode =
  | 'TWF_E_STRATEGY_STATE' // state missing, unreadable, or of another strategy or length
  | 'TWF_E_UPDATE_SHAPE'; // vectors of different lengths, non-finite values, bad weight

export class StrategyError extends Error {
  readonly code: StrategyErrorCode;
  constructor(code: StrategyErrorCode, message: string) {
    super(`${code}: ${message}`);
    this.name = 'StrategyError';
    this.code = code;
  }
}
