/**
 * Encryption parameters for additions-only aggregation of model updates.
 *
 * Scheme "bfv-sym-seeded": BFV (Brakerski 2012; Fan & Vercauteren 2012,
 * ePrint 2012/144) with
 *  - N = 4096 slots per ciphertext, all used through batching;
 *  - one 60-bit ciphertext prime q. The Homomorphic Encryption Security
 *    Standard (Albrecht et al. 2018, table 1, ternary secrets) allows
 *    log2 q <= 109 at N = 4096 for 128-bit classical security, and SEAL's
 *    CoeffModulus.MaxBitCount(4096, tc128) returns 109; we use 60;
 *  - plain modulus t: the largest 42-bit prime ≡ 1 mod 2N (4398046486529).
 *
 * Noise margin (measured with SEAL 4.1.2 / node-seal 6.0.3, symmetric
 * encryption, Decryptor.invariantNoiseBudget): a fresh ciphertext has a
 * 13-bit budget; after adding 1000 fresh ciphertexts it is 8 bits (the noise
 * grows like a random walk, ~sqrt(k)). Even the worst-case linear growth
 * (log2 1000 ≈ 10 bits) leaves 3 bits, so 1000 site updates per round are
 * safe; every extra bit of t costs one bit of budget (t = 45 bits: fresh 10,
 * after 1000 adds 5, worst case 0 - too tight), every bit less halves
 * maxTotalSamples.
 *
 * Overflow: with precisionBits p, a site's slot value is |q| <= n * 2^p, so
 * the sum over sites stays in the centred range of Z_t when
 * totalSamples * 2^p <= (t - 1) / 2. With t ≈ 2^42 and p = 20 that is about
 * 2.1 million samples per round.
 *
 * Packed parameter set (PACKED_HE_PARAMS, "layout 2": the `lanes` field is
 * present): the same scheme, N and q - hence the same 128-bit security - with
 *  - lanes = 2 quantised values per slot (layout, capacity and error bound in
 *    lanes.ts) and the 60-bit coefficients bit-packed on the wire (TWH2,
 *    wire.ts);
 *  - t: the largest 46-bit prime ≡ 1 mod 2N (70368743669761): lanes of
 *    L = 23 bits holding sums up to C = ±(2^22 - 1) = ±4194303;
 *  - p = 13 precision bits: quantisation error <= B / 2^14 ≈ 6.1e-5 · B per
 *    averaged element, and at most floor(C / 2^13) = 511 samples per round.
 *   Noise budget (Decryptor.invariantNoiseBudget, SEAL 4.1.2 / node-seal
 *   6.0.3, N = 4096, q = one 60-bit prime, fresh seeded symmetric ciphertexts
 *   of uniform random plaintexts, six runs; bits left after adding k of them):
 *
 *     t bits   fresh   k = 100   k = 255   C at 2 lanes (L)
 *       42       13      9-10        9
 *       44       11      7-8         7
 *       45       10      6-7         6
 *       46        9      5-6         5     4194303 (23)
 *       47        8      4-5         4     4194303 (23)
 *       48        7      3-4         3     8388607 (24)
 *       49        6      2-3         2
 *
 *   (255 copies of one plaintext leave 4 bits at 46: their rounding terms
 *   r_i below are equal and add up linearly; lanes.test.ts measures that.)
 *   46 bits: 47 gives the same capacity (two signed lanes need 2L <= 47 - 1)
 *   for one bit less budget, and 46 bits is the largest t for which even
 *   the worst case is safe. A coefficient of the noise of a sum of k fresh
 *   symmetric ciphertexts is Σ_{i<=k} (e_i + r_i): e_i SEAL's error sample,
 *   by default a centred binomial of 2 x 21 bits (SEAL 4.1
 *   util/rlwe.cpp sample_poly_cbd, σ = 3.24, |e_i| <= 21; the clipped
 *   normal of SEAL_USE_GAUSSIAN_NOISE builds is within 6σ = 19.2), and
 *   |r_i| <= 1/2 the rounding of SEAL's encoding round(q·m/t) (Kim, Polyakov
 *   & Zucca 2021, ePrint 2021/204); the sum of the plaintexts wraps mod t at
 *   no cost, and decryption is correct while the noise stays below q / (2t)
 *   (same paper, sec. 3), here 2^60 / 2^47 = 8192. For k = 255 (the roster
 *   maximum) the worst case is 255 · 21.5 = 5483 < 8192: no draw of the
 *   noise makes an honest sum undecryptable. At 47 bits that bound (4096)
 *   fails and only a tail bound holds (Hoeffding 1963, thm. 2, terms in
 *   [-21.5, 21.5]: <= 2^-90 per ciphertext); at 48 bits (capacity doubled)
 *   the measured budget is 3 bits and Hoeffding gives only 2^-12.7 - a
 *   trade a later parameter set could make on a sub-Gaussian argument, not
 *   this one.
 */
import { createHash } from 'node:crypto';
import { HeError } from './errors.js';
import { MAX_LANES, laneCapacityQ } from './lanes.js';
import { largestBatchingPrime } from './primes.js';

export interface HeParams {
  scheme: 'bfv-sym-seeded';
  polyModulusDegree: number;
  coeffModulusBits: number[];
  plainModulusBits: number;
  precisionBits: number;
  /**
   * Quantised values per plaintext slot (1..MAX_LANES). Absent: layout 1, one value per slot,
   * TWH1 framing (every parameter set before issue 11, their digests unchanged). Present (even
   * 1): layout 2, `lanes` values per slot (lanes.ts) and TWH2 framing with bit-packed
   * coefficients (wire.ts).
   */
  lanes?: number;
}

export const DEFAULT_HE_PARAMS: HeParams = Object.freeze({
  scheme: 'bfv-sym-seeded',
  polyModulusDegree: 4096,
  coeffModulusBits: Object.freeze([60]) as number[],
  plainModulusBits: 42,
  precisionBits: 20,
}) as HeParams;

/**
 * Layout 2: two values per slot, t of 46 bits, p = 13 (see the header): about 3.78 bytes per
 * parameter uplink and 7.52 downlink, at most 511 samples per round, error <= B / 2^14.
 */
export const PACKED_HE_PARAMS: HeParams = Object.freeze({
  scheme: 'bfv-sym-seeded',
  polyModulusDegree: 4096,
  coeffModulusBits: Object.freeze([60]) as number[],
  plainModulusBits: 46,
  precisionBits: 13,
  lanes: 2,
}) as HeParams;

/** Max total coefficient-modulus bits for 128-bit security (HE standard, SEAL tc128). */
const MAX_COEFF_BITS_128: Readonly<Record<number, number>> = { 1024: 27, 2048: 54, 4096: 109, 8192: 218, 16384: 438, 32768: 881 };

/** Throws TWF_E_HE_PARAMS unless `p` is a supported, 128-bit-secure parameter set. */
export function checkHeParams(p: HeParams): void {
  const bad = (why: string): never => {
    throw new HeError('TWF_E_HE_PARAMS', why);
  };
  if (!p || typeof p !== 'object') bad('parameters missing');
  if (p.scheme !== 'bfv-sym-seeded') bad(`unsupported scheme ${String(p.scheme)}`);
  const n = p.polyModulusDegree;
  const maxBits = MAX_COEFF_BITS_128[n];
  if (!Number.isInteger(n) || maxBits === undefined || n < 2048) bad(`polyModulusDegree must be 2048..32768, a power of two (got ${n})`);
  if (!Array.isArray(p.coeffModulusBits) || p.coeffModulusBits.length < 1) bad('coeffModulusBits must list at least one prime size');
  for (const b of p.coeffModulusBits) if (!Number.isInteger(b) || b < 20 || b > 60) bad(`coefficient prime sizes must be 20..60 bits (got ${b})`);
  const total = p.coeffModulusBits.reduce((a, b) => a + b, 0);
  if (total > maxBits) bad(`coefficient modulus of ${total} bits exceeds ${maxBits} bits, the 128-bit-security limit at N=${n}`);
  if (!Number.isInteger(p.plainModulusBits) || p.plainModulusBits < 18 || p.plainModulusBits > 60) bad(`plainModulusBits must be 18..60 (got ${p.plainModulusBits})`);
  if (p.plainModulusBits >= total - 10) bad('plainModulusBits leaves no noise budget; it must be at least 10 bits below the coefficient modulus');
  if (!Number.isInteger(p.precisionBits) || p.precisionBits < 1 || p.precisionBits > 40) bad(`precisionBits must be 1..40 (got ${p.precisionBits})`);
  if (p.precisionBits > p.plainModulusBits - 2) bad('precisionBits must be at least 2 bits below plainModulusBits');
  if (p.lanes !== undefined) {
    if (!Number.isInteger(p.lanes) || p.lanes < 1 || p.lanes > MAX_LANES) bad(`lanes must be an integer 1..${MAX_LANES} (got ${p.lanes})`);
    // one lane must hold at least one site of one sample: 2^p <= C
    if (laneCapacityQ(p) < 1n << BigInt(p.precisionBits)) {
      bad(
        `${p.lanes} lanes of a ${p.plainModulusBits}-bit plain modulus hold sums up to ±${laneCapacityQ(p)}, less than one sample at ${p.precisionBits} precision bits (2^${p.precisionBits}); lower precisionBits or lanes`,
      );
    }
  }
}

/**
 * Canonical JSON of the parameters: fixed key order (sorted), no whitespace. `lanes` only when
 * present, so the digests of layout-1 parameter sets are what they were before it existed.
 */
export function canonicalHeParams(p: HeParams): string {
  return JSON.stringify({
    coeffModulusBits: [...p.coeffModulusBits],
    ...(p.lanes === undefined ? {} : { lanes: p.lanes }),
    plainModulusBits: p.plainModulusBits,
    polyModulusDegree: p.polyModulusDegree,
    precisionBits: p.precisionBits,
    scheme: p.scheme,
  });
}

/** SHA-256 (hex) of the canonical JSON; binds ciphertexts and manifests to one parameter set. */
export function heParamsDigest(p: HeParams): string {
  return createHash('sha256').update(canonicalHeParams(p), 'utf8').digest('hex');
}

/** The plain modulus t SEAL will pick for these parameters (PlainModulus.Batching). */
export function plainModulus(p: HeParams): bigint {
  checkHeParams(p);
  return largestBatchingPrime(p.polyModulusDegree, p.plainModulusBits);
}

/**
 * Largest total sample count per round for which the weighted sum cannot leave its lane (wrap
 * modulo t, or carry into the next lane): floor(C / 2^precisionBits), C = laneCapacityQ(p)
 * (lanes.ts); for one value per slot C = (t - 1) / 2, as before lanes existed.
 */
export function maxTotalSamples(p: HeParams): number {
  checkHeParams(p);
  const m = laneCapacityQ(p) / (1n << BigInt(p.precisionBits));
  return m > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(m);
}
