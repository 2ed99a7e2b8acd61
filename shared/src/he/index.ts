/**
 * Homomorphic encryption of model updates for additions-only aggregation:
 * sites encrypt quantised, sample-weighted updates under a shared secret key
 * (BFV, seeded symmetric ciphertexts); the coordinator validates and adds
 * ciphertexts without any key; a site decrypts the sum into the FedAvg mean.
 * With secure aggregation (shared/src/secagg) a site encrypts a masked input
 * (quantizeToZt, maskInput, encryptSlots) and the sum is unmasked between
 * decryptSlots and averageFromCentred. Parameter sets with `lanes` (layout 2,
 * PACKED_HE_PARAMS) carry several values per slot: packLanes after quantising,
 * unpackLanes after unmasking, ciphertextCount for the chunk count (lanes.ts),
 * and bit-packed TWH2 framing (wire.ts).
 */
export { HeError, HE_ERRORS, type HeErrorCode } from './errors.js';
export { DEFAULT_HE_PARAMS, PACKED_HE_PARAMS, heParamsDigest, maxTotalSamples, checkHeParams, plainModulus, type HeParams } from './params.js';
export { MAX_LANES, ciphertextCount, laneBits, laneCapacityQ, laneSumLimitQ, lanesOf, layoutVersion, maxSamplesPerSiteFor, packLanes, packedLength, unpackLanes, type LaneContext } from './lanes.js';
export { ciphertextWireBytes } from './wire.js';
export { createHeContext, type HeContext } from './context.js';
export { generateSecretKey } from './keys.js';
export { encryptWeightedUpdate, encryptSlots, type EncryptedUpdate } from './encrypt.js';
export { validateCiphertext, addCiphertexts, subtractCiphertext, CiphertextSum } from './aggregate.js';
export { decryptAverage, decryptSlots, noiseBudgetBits } from './decrypt.js';
export { quantizeToZt, averageFromCentred } from './quantize.js';
