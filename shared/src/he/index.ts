/**
 * Homomorphic encryption of model updates for additions-only aggregation:
 * sites encrypt quantised, sample-weighted updates under a shared secret key
 * (BFV, seeded symmetric ciphertexts); the coordinator validates and adds
 * ciphertexts without any key; a site decrypts the sum into the FedAvg mean.
 * With secure aggregation (shared/src/secagg) a site encrypts a masked input
 * (quantizeToZt, maskInput, encryptSlots) and the sum is unmasked between
 * decryptSlots and averageFromCentred.
 */
export { HeError, HE_ERRORS, type HeErrorCode } from './errors.js';
export { DEFAULT_HE_PARAMS, heParamsDigest, maxTotalSamples, checkHeParams, type HeParams } from './params.js';
export { createHeContext, type HeContext } from './context.js';
export { generateSecretKey } from './keys.js';
export { encryptWeightedUpdate, encryptSlots, type EncryptedUpdate } from './encrypt.js';
export { validateCiphertext, addCiphertexts, subtractCiphertext } from './aggregate.js';
export { decryptAverage, decryptSlots, noiseBudgetBits } from './decrypt.js';
export { quantizeToZt, averageFromCentred } from './quantize.js';
