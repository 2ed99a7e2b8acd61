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
 */
import { createHash } from 'node:crypto';
import { HeError } from './errors.js';
import { largestBatchingPrime } from './primes.js';

export interface HeParams {
  scheme: 'bfv-sym-seeded';
  polyModulusDegree: number;
  coeffModulusBits: number[];
  plainModulusBits: number;
  precisionBits: number;
}

export const DEFAULT_HE_PARAMS: HeParams = Object.freeze({
  scheme: 'bfv-sym-seeded',
  polyModulusDegree: 4096,
  coeffModulusBits: Object.freeze([60]) as number[],
  plainModulusBits: 42,
  precisionBits: 20,
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
}

/** Canonical JSON of the parameters: fixed key order (sorted), no whitespace. */
export function canonicalHeParams(p: HeParams): string {
  return JSON.stringify({
    coeffModulusBits: [...p.coeffModulusBits],
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
 * Largest total sample count per round for which the weighted sum cannot wrap
 * modulo t: floor(((t - 1) / 2) / 2^precisionBits).
 */
export function maxTotalSamples(p: HeParams): number {
  const t = plainModulus(p);
  const m = (t - 1n) / 2n / (1n << BigInt(p.precisionBits));
  return m > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(m);
}
