import { defineErrors, errorClass, type ErrorSpec } from '@twinfed/protocols/define-errors';

/**
 * Errors raised by the secure-aggregation core. `code` is stable and listed
 * once here with what the caller should do about it; the message of a
 * SecaggError is `CODE: detail. advice`, so a log line says both what went
 * wrong and how to recover.
 */
export const SECAGG_ERRORS = defineErrors({
  TWF_E_SECAGG_PARAMS: {
    message:
      'check the round parameters: 3..255 sites, a plain modulus t with 3 <= t < 2^48, a non-empty RoundContext (studyId, manifestHash, round a non-negative integer), and vectors of integers in [0, t)',
  },
  TWF_E_SECAGG_KEY: {
    message: 'a round key is malformed (wrong length) or weak (low-order X25519 point); treat the site that published it as dropped for this round',
  },
  TWF_E_SECAGG_PEERS: {
    message:
      'the site lists are inconsistent (a site among its own peers, a duplicate, a survivor also listed as dropped, a survivor without a public key); rebuild them from the signed keys and survivors statements',
  },
  TWF_E_SECAGG_BOX: {
    message: 'the share box does not open with these keys or is bound to another study, round, or pair of sites; discard it and treat the sender as having sent no shares',
  },
  TWF_E_SECAGG_SHARES: {
    message: 'the secret shares are unusable (fewer than the threshold, or malformed); collect at least t shares from distinct surviving sites, or abandon the round',
  },
});

export type SecaggErrorCode = keyof typeof SECAGG_ERRORS;

/** `CODE: detail. advice` (the catalogue message is the advice). */
export class SecaggError extends errorClass('SecaggError', SECAGG_ERRORS, (code: string, spec: ErrorSpec, detail: string) => `${code}: ${detail}. ${spec.message}`) {}
