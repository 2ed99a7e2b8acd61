/**
 * Errors raised by the homomorphic-encryption layer. `code` is stable;
 * TWF_E_BAD_CIPHERTEXT is the same code the wire protocol uses
 * (protocols/src/errors.ts), so the coordinator can pass it through unchanged.
 */
export type HeErrorCode =
  | 'TWF_E_BAD_CIPHERTEXT' // bytes are not a valid ciphertext for these parameters
  | 'TWF_E_HE_PARAMS' // parameter set is invalid or not supported
  | 'TWF_E_HE_OVERFLOW' // sample count would overflow the plaintext modulus
  | 'TWF_E_HE_BAD_UPDATE' // update vector or sample count is unusable (NaN, n <= 0, ...)
  | 'TWF_E_HE_BAD_KEY' // secret key bytes do not load for these parameters
  | 'TWF_E_HE_DECRYPT'; // decryption failed: wrong key or noise budget exhausted

export class HeError extends Error {
  readonly code: HeErrorCode;
  constructor(code: HeErrorCode, message: string, options?: { cause?: unknown }) {
    super(`${code}: ${message}`, options);
    this.name = 'HeError';
    this.code = code;
  }
}
