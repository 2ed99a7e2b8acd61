/**
 * Secure aggregation inside the HE plaintexts: double masking (Bonawitz et
 * al., CCS 2017) over Z_t, so that a single site's ciphertext decrypts to a
 * uniformly random vector even for someone holding the study key. Pure maths
 * and libsodium; no SEAL, no network, no state. See README.md.
 */
export { SecaggError, SECAGG_ERRORS, type SecaggErrorCode } from './errors.js';
export type { RoundContext } from './context.js';
export { generateRoundSecrets, selfMaskCommitment, isKeyPair, type RoundSecrets } from './keys.js';
export { secaggThreshold, splitSecret, reconstructChecked, MAX_SITES } from './shamir.js';
export { sealShares, openShares, type ShareBundle } from './boxes.js';
export { expandMask, expandMaskBlock, MASK_BLOCK_SLOTS } from './prg.js';
export { pairwiseSeed, selfMaskSeed, maskInput, unmaskSum } from './masking.js';
export { toZt, centreZt, MAX_PLAIN_MODULUS } from './zt.js';
export { SECAGG_KEYS_KIND, SECAGG_SURVIVORS_KIND, keysStatementFields, survivorsStatementFields } from './statements.js';
export { buildMaskSetup, type MaskSetup } from './setup.js';
