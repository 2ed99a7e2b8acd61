/**
 * Arithmetic in Z_t, t the BFV plain modulus, on Float64Array. Every value is
 * an integer below 2^48, so sums and differences of two values stay below
 * 2^49 and are exact in binary64 (53-bit significand, IEEE 754): no BigInt on
 * the hot path.
 */
import { SecaggError } from './errors.js';

/** Largest plain modulus we accept (exclusive): masks draw 48-bit words (see expandMask). */
export const MAX_PLAIN_MODULUS = 2n ** 48n;

/** Number(t) after checking 3 <= t < 2^48; TWF_E_SECAGG_PARAMS otherwise. */
export function checkPlainModulus(t: bigint): number {
  if (typeof t !== 'bigint' || t < 3n || t >= MAX_PLAIN_MODULUS) {
    throw new SecaggError('TWF_E_SECAGG_PARAMS', `plain modulus must be a bigint with 3 <= t < 2^48 (got ${String(t)})`);
  }
  return Number(t);
}

/** Throws TWF_E_SECAGG_PARAMS unless every value is an integer in [0, t). */
export function checkInZt(what: string, values: Float64Array, t: number): void {
  if (!(values instanceof Float64Array)) throw new SecaggError('TWF_E_SECAGG_PARAMS', `${what} must be a Float64Array`);
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    // v >= 0 && v < t is false for NaN; v % 1 catches fractions
    if (!(v >= 0 && v < t) || v % 1 !== 0) throw new SecaggError('TWF_E_SECAGG_PARAMS', `${what}[${i}] = ${v} is not an integer in [0, t)`);
  }
}

/** x mod t in [0, t) for integer inputs of any sign (binary64 remainder is exact). */
export function toZt(values: Int32Array | Float64Array, t: bigint): Float64Array {
  const tn = checkPlainModulus(t);
  if (!(values instanceof Int32Array || values instanceof Float64Array)) throw new SecaggError('TWF_E_SECAGG_PARAMS', 'values must be an Int32Array or a Float64Array');
  const out = new Float64Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (!Number.isInteger(v)) throw new SecaggError('TWF_E_SECAGG_PARAMS', `values[${i}] = ${v} is not an integer`);
    const r = v % tn; // exact, sign of v
    out[i] = r < 0 ? r + tn : r + 0; // + 0 turns -0 into 0
  }
  return out;
}

/** Lifts values in [0, t) to the centred range (-t/2, t/2]: v > t/2 becomes v - t. */
export function centreZt(values: Float64Array, t: bigint): Float64Array {
  const tn = checkPlainModulus(t);
  checkInZt('values', values, tn);
  const half = tn / 2; // exact: tn < 2^48
  const out = new Float64Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = values[i] > half ? values[i] - tn : values[i];
  return out;
}
