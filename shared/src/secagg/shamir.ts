/**
 * Threshold sharing of the round secrets (Shamir, "How to share a secret",
 * CACM 22(11), 1979): a secret is the constant term of a random polynomial of
 * degree t-1; any t points determine it, t-1 points reveal nothing. We use the
 * audited `shamir-secret-sharing` package (Privy, 0.0.4): GF(2^8), byte by
 * byte, x coordinates a random permutation of 1..255, so a share is the y
 * bytes followed by one x byte, and at most 255 shares exist.
 *
 * The package insists on `secret.constructor === Uint8Array` (a Node Buffer
 * is refused), so inputs are copied into plain Uint8Arrays first.
 */
import { secaggThresholdFor } from '@twinfed/protocols';
import { combine, split } from 'shamir-secret-sharing';
import { SecaggError } from './errors.js';

/** Most sites in a round: the GF(2^8) sharing has 255 distinct non-zero x coordinates. */
export const MAX_SITES = 255;

/**
 * t = max(3, floor(n/2) + 1): a strict majority of the round's n participants,
 * never fewer than 3. Why a strict majority: two disjoint sets of sites can
 * never both reach t, so a coordinator that tells one group "u survived" and
 * another "u dropped" cannot collect both b_u and s_u^SK and so cannot unmask
 * u's input (the attack that the signed survivors statement also blocks).
 * The price: at most n - t sites may drop out (0 of 3, 1 of 4, 2 of 5, 4 of 10).
 * Throws TWF_E_SECAGG_PARAMS for n < 3 or n > 255.
 */
export function secaggThreshold(n: number): number {
  if (!Number.isSafeInteger(n) || n < 3 || n > MAX_SITES) {
    throw new SecaggError('TWF_E_SECAGG_PARAMS', `a secure-aggregation round needs 3..${MAX_SITES} sites (got ${n})`);
  }
  return secaggThresholdFor(n);
}

const plain = (u: Uint8Array): Uint8Array => new Uint8Array(u);

/** Shamir t-of-n shares of `secret` (each share secret.length + 1 bytes); bad arguments reject with TWF_E_SECAGG_PARAMS. */
export async function splitSecret(secret: Uint8Array, n: number, t: number): Promise<Uint8Array[]> {
  if (!(secret instanceof Uint8Array) || secret.length === 0) throw new SecaggError('TWF_E_SECAGG_PARAMS', 'secret must be a non-empty Uint8Array');
  if (!Number.isSafeInteger(n) || !Number.isSafeInteger(t) || t < 2 || t > n || n > MAX_SITES) {
    throw new SecaggError('TWF_E_SECAGG_PARAMS', `need 2 <= t <= n <= ${MAX_SITES} (got t = ${t}, n = ${n})`);
  }
  return split(plain(secret), n, t);
}

/**
 * Next t-subset of 0..m-1 in colexicographic order (subsets ordered by their
 * largest element first), in place; false after the last one.
 */
function nextColex(c: number[], m: number): boolean {
  const k = c.length;
  for (let j = 0; j < k; j++) {
    const limit = j + 1 < k ? c[j + 1] : m;
    if (c[j] + 1 < limit) {
      c[j]++;
      for (let i = 0; i < j; i++) c[i] = i;
      return true;
    }
  }
  return false;
}

/**
 * Reconstructs from shares (length >= t): tries the first t, then other
 * t-subsets in colexicographic order (at most maxTries, default 256) until
 * check(secret) is true; null when none passes.
 *
 * Colexicographic order tries every subset that leaves out one of the first
 * t+1 shares before any subset that needs a share beyond them, so one wrong
 * share among t+1 is found within t+1 tries. A subset that does not combine
 * (duplicate x coordinates, unequal lengths: what a rogue site could send)
 * counts as a failed try. Robust to a minority of wrong shares from a rogue
 * site when `check` (the self-mask commitment, or isKeyPair against the signed
 * sPk) catches a wrong secret. Exceptions thrown by `check` propagate.
 * Throws TWF_E_SECAGG_SHARES when fewer than t shares are given.
 */
export async function reconstructChecked(shares: Uint8Array[], t: number, check: (secret: Uint8Array) => boolean, maxTries = 256): Promise<Uint8Array | null> {
  if (!Number.isSafeInteger(t) || t < 2 || t > MAX_SITES) throw new SecaggError('TWF_E_SECAGG_PARAMS', `threshold must be 2..${MAX_SITES} (got ${t})`);
  if (!Number.isSafeInteger(maxTries) || maxTries < 1) throw new SecaggError('TWF_E_SECAGG_PARAMS', `maxTries must be a positive integer (got ${maxTries})`);
  if (!Array.isArray(shares) || shares.length < t) {
    throw new SecaggError('TWF_E_SECAGG_SHARES', `${Array.isArray(shares) ? shares.length : 0} shares given, at least ${t} needed`);
  }
  const usable = shares.map((s) => (s instanceof Uint8Array && s.length >= 2 ? plain(s) : null));
  const subset = Array.from({ length: t }, (_, i) => i);
  for (let tries = 0; tries < maxTries; tries++) {
    const picked = subset.map((i) => usable[i]);
    if (picked.every((s): s is Uint8Array => s !== null)) {
      let secret: Uint8Array | null = null;
      try {
        secret = await combine(picked);
      } catch {
        secret = null; // malformed subset: try the next one
      }
      if (secret && check(secret)) return secret;
    }
    if (!nextColex(subset, shares.length)) break;
  }
  return null;
}
