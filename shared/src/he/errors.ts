import { TwinfedError, defineErrors } from '@twinfed/protocols/define-errors';
import type { WireErrorCode } from '@twinfed/protocols';

/**
 * Errors raised by the homomorphic-encryption layer. `code` is stable; the message of an HeError
 * is `CODE: detail`. TWF_E_BAD_CIPHERTEXT and TWF_E_HE_PARAMS are the wire protocol's codes
 * (protocols/src/errors.ts), so the coordinator can pass them through unchanged (a study created
 * with parameters this layer rejects is refused with TWF_E_HE_PARAMS, 422).
 */
export const HE_ERRORS = defineErrors({
  TWF_E_HE_OVERFLOW: { message: 'The total sample count would overflow the plaintext modulus, so the average could not be decrypted; lower maxSamplesPerSite or the roster size.' },
  TWF_E_HE_BAD_UPDATE: { message: 'The update vector or its sample count is unusable (NaN or infinite weights, n <= 0, wrong length); nothing was encrypted.' },
  TWF_E_HE_BAD_KEY: { message: 'The secret key bytes do not load for these encryption parameters; the key file is damaged or belongs to another study.' },
  TWF_E_HE_DECRYPT: { message: "Decryption failed: the wrong study key, or the ciphertext's noise budget is exhausted." },
});

export type HeErrorCode = keyof typeof HE_ERRORS | Extract<WireErrorCode, 'TWF_E_BAD_CIPHERTEXT' | 'TWF_E_HE_PARAMS'>;

export class HeError extends TwinfedError<HeErrorCode> {
  constructor(code: HeErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, `${code}: ${message}`, message, options);
    this.name = 'HeError';
  }
}
