import { WireError, WIRE_ERRORS, defineErrors, errorClass, type WireErrorCode } from '@twinfed/protocols';

/**
 * Errors of the coordinator process itself (configuration, storage). Protocol
 * rejections use the wire catalogue (protocols/src/errors.ts), re-exported here
 * so this file lists every code the coordinator can raise.
 */
export const COORDINATOR_ERRORS = defineErrors({
  TWF_E_CONFIG: { message: 'Coordinator configuration is invalid; the message names the field.' },
  TWF_E_DB: {
    message:
      'The coordinator database could not be opened, migrated or reached; check the path and disk space, or, with the PostgreSQL store (--store), that the server runs and answers, then restart the coordinator.',
  },
});
export type CoordinatorErrorCode = keyof typeof COORDINATOR_ERRORS;

/** `CODE: catalogue message (detail)`. */
export class CoordinatorError extends errorClass('CoordinatorError', COORDINATOR_ERRORS) {}

export { WireError, WIRE_ERRORS, type WireErrorCode };
