import { defineErrors, errorClass, type ErrorSpec } from '@twinfed/protocols/define-errors';

/**
 * Errors of the CLI's own commands (audit, model and option checks). The CLI also raises codes of
 * other catalogues (TWF_E_BAD_REQUEST, TWF_E_NOT_FOUND of the wire catalogue, TWF_E_NO_DATA of the
 * site node); docs/errors.md lists them all.
 */
export const CLI_ERRORS = defineErrors({
  TWF_E_AUDIT: {
    message:
      'An audit log cannot be checked as asked: it records no owner, or the public key to check it with is missing or not a base64 Ed25519 key. Pass the key (--public-key, --coordinator-key, --site-key) from a trusted source.',
  },
  TWF_E_COORDINATOR_UNREACHABLE: {
    message:
      'The coordinator did not answer at the URL tried (refused, unknown host, timeout) or the URL is malformed. Check that it is running and set --coordinator or TWINFED_COORDINATOR_URL to its address.',
  },
  TWF_E_SPEC: {
    message:
      'A study spec or manifest file cannot be used: it is not valid JSON (the message gives file:line:column), or it breaks the schema (unknown key, with a suggestion, or a wrong value). Fix the file; examples/specs/ has valid ones.',
  },
  TWF_E_BAD_OPTION: { message: 'A command option is out of range or does not fit the data (slice index, layer name, modality); the message names it.' },
  TWF_E_MODEL_KIND: { message: 'The model folder holds another kind of model than the command needs (a U-Net for seg commands, a response model for response commands) or one of another shape.' },
});
export type CliErrorCode = keyof typeof CLI_ERRORS;

/** `CODE: detail` (the CLI prints the message; the catalogue message is in docs/errors.md). */
export class CliError extends errorClass('CliError', CLI_ERRORS, (code: string, _spec: ErrorSpec, detail: string) => `${code}: ${detail}`) {}
