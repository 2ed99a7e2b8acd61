/**
 * Pure BigInt number theory used to predict SEAL's choice of plain modulus
 * without loading SEAL, so that limits such as maxTotalSamples() can be
 * computed from the parameters alone.
 */

function modPow(base: bigint, exp: bigint, mod: bigint): bigint {
  let result = 1n;
  let b = base % mod;
  let e = exp;
  while (e > 0n) {
    if (e & 1n) result = (result * b) % mod;
    b = (b * b) % mod;
    e >>= 1n;
  }
  return result;
}

/**
 * Deterministic Miller-Rabin for n < 2^64: the first 12 primes as bases are
 * sufficient (Sorenson & Webster 2015, "Strong pseudoprimes to twelve prime
 * bases", Math. Comp. 86: the test is exact below 3.18e23).
 */
export function isPrime64(n: bigint): boolean {
  if (n < 2n) return false;
  const bases = [2n, 3n, 5n, 7n, 11n, 13n, 17n, 19n, 23n, 29n, 31n, 37n];
  for (const p of bases) {
    if (n === p) return true;
    if (n % p === 0n) return false;
  }
  let d = n - 1n;
  let s = 0;
  while ((d & 1n) === 0n) {
    d >>= 1n;
    s++;
  }
  outer: for (const a of bases) {
    let x = modPow(a, d, n);
    if (x === 1n || x === n - 1n) continue;
    for (let r = 1; r < s; r++) {
      x = (x * x) % n;
      if (x === n - 1n) continue outer;
    }
    return false;
  }
  return true;
}

/**
 * The largest prime p with exactly `bitSize` bits and p ≡ 1 (mod 2N): the
 * condition for batching (SIMD slots) in BFV, because then x^N + 1 splits
 * into N linear factors mod p (Smart & Vercauteren 2014, "Fully homomorphic
 * SIMD operations"). Mirrors SEAL's util::get_primes() as used by
 * PlainModulus::Batching (SEAL 4.1, native/src/seal/util/numth.cpp), which
 * walks down from 2^bitSize in steps of 2N.
 */
export function largestBatchingPrime(polyModulusDegree: number, bitSize: number): bigint {
  const factor = 2n * BigInt(polyModulusDegree);
  const lower = 1n << BigInt(bitSize - 1);
  let value = (((1n << BigInt(bitSize)) - 1n) / factor) * factor + 1n;
  while (value > lower) {
    if (isPrime64(value)) return value;
    value -= factor;
  }
  throw new RangeError(`no ${bitSize}-bit prime ≡ 1 mod ${factor}`);
}
