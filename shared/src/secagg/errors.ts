/**
 * Errors raised by the secure-aggregation core. `code` is stable and listed
 * once here with what the caller should do about it; the message of a
 * SecaggError is `CODE: detail. advice`, so a log line says both what went
 * wrong and how to recover.
 */
export const SECAGG_ERRORS = Object.freeze({
  TWF_E_SECAGG_PARAMS:
    'check the round parameters: 3..255 sites, a plain modulus t with 3 <= t < 2^48, a non-empty RoundContext (studyId, manifestHash, round a non-negative integer), and vectors of integers in [0, t)',
  TWF_E_SECAGG_KEY:
    'a round key is malformed (wrong length) or weak (low-order X25519 point); treat the site that published it as dropped for this round',
  TWF_E_SECAGG_PEERS:
    'the site lists are inconsistent (a site among its own peers, a duplicate, a survivor also listed as dropped, a survivor without a public key); rebuild them from the signed keys and survivors statements',
  TWF_E_SECAGG_BOX:
    'the share box does not open with these keys or is bound to another study, round, or pair of sites; discard it and treat the sender as having sent no shares',
  TWF_E_SECAGG_SHARES:
    'the secret shares are unusable (fewer than the threshold, or malformed); collect at least t shares from distinct surviving sites, or abandon the round',
} as const);

export type SecaggErrorCode = keyof typeof SECAGG_ERRORS;

export class SecaggError extends Error {
  readonly code: SecaggErrorCode;
  constructor(code: SecaggErrorCode, detail: string, options?: { cause?: unknown }) {
    super(`${code}: ${detail}. ${SECAGG_ERRORS[code]}`, options);
    this.name = 'SecaggError';
    this.code = code;
  }
}
