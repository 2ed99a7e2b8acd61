import { WireError, WIRE_ERRORS, type WireErrorCode } from '@twinfed/protocols';

/**
 * Errors of the coordinator process itself (configuration, storage). Protocol
 * rejections use the wire catalogue (protocols/src/errors.ts), re-exported here
 * so this file lists every code the coordinator can raise.
 */
export const COORDINATOR_ERRORS = {
  TWF_E_CONFIG: 'Coordinator configuration is invalid; the message names the field.',
  TWF_E_DB: 'The coordinator database could not be opened or migrated; check the path and disk space.',
} as const;
export type CoordinatorErrorCode = keyof typeof COORDINATOR_ERRORS;

export class CoordinatorError extends Error {
  constructor(readonly code: CoordinatorErrorCode, detail: string) {
    super(`${code}: ${COORDINATOR_ERRORS[code]} (${detail})`);
    this.name = 'CoordinatorError';
  }
}

export { WireError, WIRE_ERRORS, type WireErrorCode };
