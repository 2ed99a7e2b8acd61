/**
 * Lane layout: how many quantised values one BFV plaintext slot carries, and how much a round's
 * sum may hold. The one place that knows it; everything else asks here (packedLength,
 * ciphertextCount, laneCapacityQ, packLanes, unpackLanes).
 *
 * Layout 1 (HeParams without `lanes`, e.g. DEFAULT_HE_PARAMS): slot i holds element i, v = q mod t.
 *
 * Layout 2 (HeParams with `lanes` = k, e.g. PACKED_HE_PARAMS with k = 2): slot s holds elements
 * s·k .. s·k + k - 1 (interleaved), as signed digits of radix R = 2^L,
 *
 *     v = Σ_{j<k} a_j · 2^(j·L)  mod t,      L = floor(plainModulusBits / k)  (lane width, bits),
 *
 * a_j the centred lift of element s·k + j. Several fixed-point values in one plaintext integer
 * is the batching of BatchCrypt (Zhang et al., "BatchCrypt: Efficient Homomorphic Encryption for
 * Cross-Silo Federated Learning", USENIX ATC 2020), which separates two's-complement lanes with
 * zero padding bits; here lanes are balanced (signed) digits instead, so a lane sum needs no
 * padding, only |sum| <= C below.
 *
 * Why the sum unpacks. Sites mask the packed values with masks uniform on Z_t (Bonawitz et al.
 * 2017, sec. 4): they cancel modulo t and need no headroom. What remains is Σ_sites v =
 * V mod t with V = Σ_j A_j 2^(jL), A_j = Σ_sites a_j the exact integer lane sums. If every
 * |A_j| <= C, where the lane capacity is
 *
 *     C = min(2^(L-1) - 1, floor(((t - 1)/2) / Σ_{j<k} 2^(jL)))         (C = (t - 1)/2 for k = 1),
 *
 * then |V| <= C · Σ_j 2^(jL) <= (t - 1)/2, so V is the centred representative of the decrypted
 * sum; and as |A_0| <= 2^(L-1) - 1, A_0 is the balanced remainder of V mod 2^L (the one in
 * [-2^(L-1), 2^(L-1))), (V - A_0) / 2^L = Σ_{j>=1} A_j 2^((j-1)L), and so on; the top lane is
 * what remains. Two's-complement integers in binary64 are exact here (|V| < t/2 < 2^50).
 * PACKED_HE_PARAMS: t = 70368743669761 (46 bits), L = 23, C = 2^22 - 1 = 4194303.
 *
 * Capacity. A site of weight n quantises |a| = |round(n·clip(Δ)·2^p/B)| <= n·2^p (quantize.ts),
 * so a round of total weight Σn has |A_j| <= Σn·2^p, plus, under site-level DP, the sum of the
 * discrete Gaussian shares (shared/src/dp/site-level.ts), which siteNoiseAllowance bounds by 12
 * standard deviations. A round fits when Σn·2^p + allowance <= C: maxTotalSamples(p) =
 * floor(C / 2^p) (511 for PACKED_HE_PARAMS), and with n sites of at most w samples each
 * (training.maxSamplesPerSite) the coordinator needs n·w·2^p + allowance <= C
 * (maxSamplesPerSiteFor; coordinator/src/study-rules.ts refuses the roster otherwise).
 *
 * Error. Packing is exact on integers, so the error is quantize.ts's: each site rounds each
 * element once (<= 1/2 in units of 1/S, S = 2^p/B), the average Σa / (S·Σn) is off from
 * Σ n_i clip(Δ_i) / Σn by at most (#sites / 2) / (S·Σn) = (#sites/Σn) · B / 2^(p+1) <= B / 2^(p+1)
 * (every n_i >= 1), plus the float32 rounding of the result (<= 2^-24 relative). p = 13 gives
 * 6.1e-5 · B, inside 1e-4 · B.
 *
 * Guard. After unpacking, a lane sum beyond ±(Σn·2^p + allowance) cannot come from honest sites:
 * TWF_E_HE_OVERFLOW naming the element, slot and lane. A lane that overflowed by a multiple of
 * 2^L can land back in range and pass, as a wrap modulo t can in layout 1; honest rounds cannot
 * overflow (capacity above), and a dishonest site that overfills one lane to carry into the next
 * only achieves what writing a different value into that lane does.
 */
import { HeError } from './errors.js';
import type { HeParams } from './params.js';
import { largestBatchingPrime } from './primes.js';
import { checkPlainModulusForFloat } from './quantize.js';

/** Most values per slot a parameter set may ask for. */
export const MAX_LANES = 4;

/** What the lane functions need of an HeContext: the parameters and the plain modulus t. */
export interface LaneContext {
  readonly params: HeParams;
  readonly plainModulus: bigint;
}

/** Values per slot: `lanes`, or 1 for a layout-1 parameter set. */
export function lanesOf(p: HeParams): number {
  return p.lanes ?? 1;
}

/** 1 without a `lanes` field (TWH1 framing), 2 with one (TWH2 framing, wire.ts). */
export function layoutVersion(p: HeParams): 1 | 2 {
  return p.lanes === undefined ? 1 : 2;
}

/** L, the width of one lane in bits: floor(plainModulusBits / lanes). */
export function laneBits(p: HeParams): number {
  return Math.floor(p.plainModulusBits / lanesOf(p));
}

const capacityCache = new Map<string, bigint>();

/**
 * C, the largest |lane sum| that unpacks exactly (header), in quantised units: (t - 1)/2 for one
 * lane. Computes t from the parameters (primes.ts) without validating them: checkHeParams does.
 */
export function laneCapacityQ(p: HeParams): bigint {
  const k = lanesOf(p);
  const key = `${p.polyModulusDegree}/${p.plainModulusBits}/${k}`;
  const hit = capacityCache.get(key);
  if (hit !== undefined) return hit;
  const half = (largestBatchingPrime(p.polyModulusDegree, p.plainModulusBits) - 1n) / 2n;
  let c = half;
  if (k > 1) {
    const L = BigInt(laneBits(p));
    let weights = 0n; // Σ_{j<k} 2^(jL)
    for (let j = 0n; j < BigInt(k); j++) weights += 1n << (j * L);
    const digit = (1n << (L - 1n)) - 1n;
    c = half / weights < digit ? half / weights : digit;
  }
  capacityCache.set(key, c);
  return c;
}

function checkLength(length: number): void {
  if (!Number.isSafeInteger(length) || length < 1) throw new HeError('TWF_E_HE_BAD_UPDATE', `length must be a positive integer (got ${length})`);
}

/** Slot values an update of `length` parameters takes: ceil(length / lanes). */
export function packedLength(p: HeParams, length: number): number {
  checkLength(length);
  return Math.ceil(length / lanesOf(p));
}

/**
 * Ciphertexts an update of `length` parameters takes: ceil(packedLength / N) (BFV batching has
 * N slots). What a site uploads per round and the coordinator expects, chunk count included.
 */
export function ciphertextCount(p: HeParams, length: number): number {
  return Math.ceil(packedLength(p, length) / p.polyModulusDegree);
}

/**
 * The bound every unpacked lane sum of an honest round satisfies: totalSamples · 2^p plus the
 * site-level DP allowance (siteNoiseAllowance(...).sumQ, 0 without DP), rounded up.
 */
export function laneSumLimitQ(p: HeParams, totalSamples: number, noiseAllowanceQ = 0): number {
  if (!Number.isSafeInteger(totalSamples) || totalSamples < 1) throw new HeError('TWF_E_HE_BAD_UPDATE', `totalSamples must be a positive integer (got ${totalSamples})`);
  if (!(noiseAllowanceQ >= 0 && Number.isFinite(noiseAllowanceQ))) throw new HeError('TWF_E_HE_BAD_UPDATE', `noiseAllowanceQ must be a finite number ≥ 0 (got ${noiseAllowanceQ})`);
  const limit = totalSamples * 2 ** p.precisionBits + Math.ceil(noiseAllowanceQ);
  if (!Number.isSafeInteger(limit)) throw new HeError('TWF_E_HE_OVERFLOW', `totalSamples ${totalSamples} · 2^${p.precisionBits} is beyond 2^53`);
  return limit;
}

/**
 * The largest weight cap w (training.maxSamplesPerSite) with sites · w · 2^p + noiseAllowanceQ <= C:
 * what a roster of `sites` may declare so that no round can overflow a lane. 0 when even one
 * sample per site does not fit.
 */
export function maxSamplesPerSiteFor(p: HeParams, sites: number, noiseAllowanceQ = 0): number {
  if (!Number.isSafeInteger(sites) || sites < 1) throw new HeError('TWF_E_HE_BAD_UPDATE', `sites must be a positive integer (got ${sites})`);
  if (!(noiseAllowanceQ >= 0 && Number.isFinite(noiseAllowanceQ))) throw new HeError('TWF_E_HE_BAD_UPDATE', `noiseAllowanceQ must be a finite number ≥ 0 (got ${noiseAllowanceQ})`);
  const room = laneCapacityQ(p) - BigInt(Math.ceil(noiseAllowanceQ));
  if (room <= 0n) return 0;
  const w = room / (BigInt(sites) << BigInt(p.precisionBits));
  return w > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(w);
}

/**
 * Site side, between quantising (quantizeToZt, plus any DP noise) and masking: element values in
 * Z_t to slot values in Z_t, packedLength of them (the last slot's missing lanes are 0). Layout 1
 * returns `values` itself. Throws TWF_E_HE_BAD_UPDATE unless every value is an integer in [0, t),
 * and TWF_E_HE_OVERFLOW when one element's centred value is beyond ±C: this site alone would
 * overfill its lane (its nSamples or noise are beyond what the parameters hold).
 */
export function packLanes(he: LaneContext, values: Float64Array): Float64Array {
  const p = he.params;
  const k = lanesOf(p);
  const tn = checkPlainModulusForFloat(he.plainModulus);
  if (!(values instanceof Float64Array) || values.length === 0) throw new HeError('TWF_E_HE_BAD_UPDATE', 'values must be a non-empty Float64Array');
  if (k === 1) return values;
  const R = 2 ** laneBits(p);
  const C = Number(laneCapacityQ(p));
  const half = (tn - 1) / 2;
  const out = new Float64Array(Math.ceil(values.length / k));
  for (let s = 0; s < out.length; s++) {
    let v = 0;
    // Horner from the top lane: v = (...(a_{k-1}·R + a_{k-2})·R + ...) + a_0, |v| <= C·Σ R^j < t/2
    for (let j = k - 1; j >= 0; j--) {
      const i = s * k + j;
      let a = i < values.length ? values[i] : 0;
      if (!(a >= 0 && a < tn) || a % 1 !== 0) throw new HeError('TWF_E_HE_BAD_UPDATE', `values[${i}] = ${a} is not an integer in [0, t)`);
      if (a > half) a -= tn;
      if (a > C || a < -C) {
        throw new HeError('TWF_E_HE_OVERFLOW', `element ${i} (slot ${s}, lane ${j}) = ${a} exceeds one lane's range ±${C}: lower nSamples (maxSamplesPerSite) or precisionBits`);
      }
      v = v * R + a;
    }
    out[s] = v < 0 ? v + tn : v + 0; // + 0: no -0
  }
  return out;
}

/**
 * Site side, after decrypting (decryptSlots of packedLength values) and unmasking: slot sums in
 * [0, t) to the centred lane sums of the `length` elements, as exact integers in a Float64Array
 * (the input of averageFromCentred). Every lane sum is checked against ±limitQ (laneSumLimitQ;
 * default C, which only an overfilled lane exceeds): beyond it, TWF_E_HE_OVERFLOW naming the
 * element, slot and lane. Lanes past `length` (the last slot's padding) are not returned.
 */
export function unpackLanes(he: LaneContext, slots: Float64Array, length: number, limitQ?: number): Float64Array {
  const p = he.params;
  const k = lanesOf(p);
  const tn = checkPlainModulusForFloat(he.plainModulus);
  const want = packedLength(p, length);
  if (!(slots instanceof Float64Array) || slots.length !== want) {
    throw new HeError('TWF_E_HE_BAD_UPDATE', `expected ${want} slot values for ${length} parameters at ${k} per slot, got ${slots instanceof Float64Array ? slots.length : 'none'}`);
  }
  const C = Number(laneCapacityQ(p) > BigInt(Number.MAX_SAFE_INTEGER) ? BigInt(Number.MAX_SAFE_INTEGER) : laneCapacityQ(p));
  const limit = limitQ ?? C;
  if (!(limit >= 0 && Number.isFinite(limit))) throw new HeError('TWF_E_HE_BAD_UPDATE', `limitQ must be a finite number ≥ 0 (got ${limit})`);
  const R = 2 ** laneBits(p);
  const halfR = R / 2;
  const half = (tn - 1) / 2;
  const out = new Float64Array(length);
  for (let s = 0; s < want; s++) {
    let V = slots[s];
    if (!(V >= 0 && V < tn) || V % 1 !== 0) throw new HeError('TWF_E_HE_BAD_UPDATE', `slots[${s}] = ${V} is not an integer in [0, t)`);
    if (V > half) V -= tn;
    for (let j = 0; j < k; j++) {
      let a = V;
      if (j < k - 1) {
        a = V - Math.floor(V / R) * R; // V mod R in [0, R): R is a power of two, so exact
        if (a >= halfR) a -= R;
        V = (V - a) / R;
      }
      const i = s * k + j;
      if (i >= length) continue;
      if (!(Math.abs(a) <= limit)) {
        throw new HeError(
          'TWF_E_HE_OVERFLOW',
          k === 1
            ? `slot ${s} = ${a} is outside ±${limit}: the sum wrapped modulo t, or masks were not removed (wrong survivors, seeds or totalSamples)`
            : `element ${i} (slot ${s}, lane ${j}) sums to ${a}, outside ±${limit}: the lane overflowed, or masks were not removed (wrong survivors, seeds or totalSamples)`,
        );
      }
      out[i] = a + 0;
    }
  }
  return out;
}
