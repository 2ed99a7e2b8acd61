/**
 * Layout 2 (lanes.ts, wire.ts, PACKED_HE_PARAMS): packing, capacity, the TWH2 wire encoding and a
 * masked sum of 100 sites, with real SEAL and real secure-aggregation masks. No mocks.
 */
import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import { initSodium } from '../crypto/sodium.js';
import { mulberry32 } from '../model/prng.js';
import { generateRoundSecrets, maskInput, unmaskSum, type RoundContext, type RoundSecrets } from '../secagg/index.js';
import {
  DEFAULT_HE_PARAMS,
  PACKED_HE_PARAMS,
  HeError,
  addCiphertexts,
  averageFromCentred,
  checkHeParams,
  ciphertextCount,
  ciphertextWireBytes,
  createHeContext,
  decryptAverage,
  decryptSlots,
  encryptSlots,
  encryptWeightedUpdate,
  generateSecretKey,
  heParamsDigest,
  laneBits,
  laneCapacityQ,
  laneSumLimitQ,
  maxSamplesPerSiteFor,
  maxTotalSamples,
  noiseBudgetBits,
  packLanes,
  packedLength,
  plainModulus,
  quantizeToZt,
  unpackLanes,
  validateCiphertext,
  type HeContext,
  type HeParams,
  type LaneContext,
} from './index.js';
import { ENVELOPE_HEADER_BYTES, unwrapCiphertext, wrapCiphertext } from './envelope.js';
import { SEAL_CIPHERTEXT_PREFIX_BYTES, SEAL_SEED_INFO_BYTES, compactCiphertext, expandCiphertext } from './wire.js';

const P = PACKED_HE_PARAMS;
const T = plainModulus(P);
const TN = Number(T);
const C = Number(laneCapacityQ(P));
const LANE: LaneContext = { params: P, plainModulus: T };

function assertHeError(fn: () => unknown, code: string, message?: RegExp): void {
  assert.throws(fn, (e: unknown) => e instanceof HeError && e.code === code && (!message || message.test(e.message)), `expected HeError ${code}${message ? ` ${message}` : ''}`);
}

/** Signed integers to Z_t, as quantizeToZt hands them over. */
const zt = (xs: number[]): Float64Array => Float64Array.from(xs, (x) => (x < 0 ? x + TN : x + 0));
/** Σ of slot vectors mod t, as the decrypted sum of ciphertexts. */
function sumZt(vs: Float64Array[]): Float64Array {
  const out = new Float64Array(vs[0].length);
  for (const v of vs) for (let i = 0; i < out.length; i++) out[i] = (out[i] + v[i]) % TN;
  return out;
}

let ctx: HeContext;
let key: Uint8Array;

before(async () => {
  await initSodium();
  ctx = await createHeContext(P);
  key = generateSecretKey(ctx);
});

test('PACKED_HE_PARAMS: 46-bit t, 23-bit lanes holding ±(2^22 - 1), 511 samples per round at p = 13; default digest unchanged', () => {
  checkHeParams(P);
  assert.equal(T, 70368743669761n);
  assert.equal(ctx.plainModulus, T, 'SEAL agrees');
  assert.equal(laneBits(P), 23);
  assert.equal(C, 2 ** 22 - 1);
  assert.equal(maxTotalSamples(P), 511);
  assert.ok(C * (2 ** 23 + 1) <= (TN - 1) / 2, 'two full lanes stay in the centred range of t');
  // q and N unchanged: the same 128-bit security as the default
  assert.deepEqual([P.polyModulusDegree, P.coeffModulusBits], [DEFAULT_HE_PARAMS.polyModulusDegree, DEFAULT_HE_PARAMS.coeffModulusBits]);
  // layout-1 digests are what they were before `lanes` existed (canonical JSON without the key)
  assert.equal(heParamsDigest(DEFAULT_HE_PARAMS), '99a49d6295cd99b74bab7c5dc49f5225af0dba9ac68399acf852bcc16d17879e');
  assert.notEqual(heParamsDigest({ ...DEFAULT_HE_PARAMS, lanes: 1 }), heParamsDigest(DEFAULT_HE_PARAMS), 'lanes: 1 is layout 2 (TWH2), another parameter set');
  assert.equal(maxTotalSamples({ ...DEFAULT_HE_PARAMS, lanes: 1 }), maxTotalSamples(DEFAULT_HE_PARAMS), 'one lane holds what layout 1 holds');
  for (const lanes of [0, 5, 1.5, -1]) assertHeError(() => checkHeParams({ ...P, lanes }), 'TWF_E_HE_PARAMS', /lanes must be/);
  // 4 lanes of 11 bits hold ±1023 < 2^13: not even one sample
  assertHeError(() => checkHeParams({ ...P, lanes: 4 }), 'TWF_E_HE_PARAMS', /less than one sample/);
  checkHeParams({ ...P, lanes: 4, precisionBits: 8 });
  assert.equal(laneCapacityQ({ ...P, lanes: 4, precisionBits: 8 }), 1023n);
});

test('counts: packedLength, ciphertextCount, wire bytes', () => {
  assert.equal(packedLength(P, 1), 1);
  assert.equal(packedLength(P, 8191), 4096);
  assert.equal(ciphertextCount(P, 8192), 1);
  assert.equal(ciphertextCount(P, 8193), 2);
  assert.equal(ciphertextCount(DEFAULT_HE_PARAMS, 8192), 2);
  assert.equal(ciphertextCount(DEFAULT_HE_PARAMS, 4097), 2);
  for (const bad of [0, -1, 1.5, NaN]) assertHeError(() => ciphertextCount(P, bad), 'TWF_E_HE_BAD_UPDATE');
  // TWH1: 113 + 8·4096 (+ 81 seed) + 36; TWH2: 60-bit words
  assert.equal(ciphertextWireBytes(DEFAULT_HE_PARAMS, 'upload'), 32998);
  assert.equal(ciphertextWireBytes(DEFAULT_HE_PARAMS, 'aggregate'), 65685);
  assert.equal(ciphertextWireBytes(P, 'upload'), 36 + 113 + 30720 + 81);
  assert.equal(ciphertextWireBytes(P, 'aggregate'), 36 + 113 + 61440);
  assert.ok(ciphertextWireBytes(P, 'upload') / 8192 < 4, 'under 4 bytes per parameter uplink');
});

test('pack / unpack round trip: negative lanes, ±C, zero, odd lengths (padding lane), 3 and 4 lanes', () => {
  const edges = [C, -C, 0, -1, 1, C - 1, -(C - 1), 12345, -54321];
  for (let len = 1; len <= edges.length; len++) {
    const xs = edges.slice(0, len);
    const slots = packLanes(LANE, zt(xs));
    assert.equal(slots.length, Math.ceil(len / 2));
    for (const v of slots) assert.ok(Number.isInteger(v) && v >= 0 && v < TN);
    assert.deepEqual(Array.from(unpackLanes(LANE, slots, len)), xs);
  }
  // slot = a0 + a1·2^23 mod t, exactly
  assert.deepEqual(Array.from(packLanes(LANE, zt([-1, 1]))), [2 ** 23 - 1]);
  assert.deepEqual(Array.from(packLanes(LANE, zt([1, -1]))), [TN + 1 - 2 ** 23]);
  for (const lanes of [1, 3, 4]) {
    const p: HeParams = { ...P, lanes, precisionBits: 8 };
    const c = Number(laneCapacityQ(p));
    const lc: LaneContext = { params: p, plainModulus: T };
    const r = mulberry32(lanes);
    const xs = Array.from({ length: 1001 }, (_, i) => (i < 4 ? [c, -c, 0, -c][i] : Math.round((r() * 2 - 1) * c)));
    const slots = packLanes(lc, zt(xs));
    assert.equal(slots.length, Math.ceil(1001 / lanes));
    assert.deepEqual(Array.from(unpackLanes(lc, slots, xs.length)), xs, `${lanes} lanes`);
  }
  // layout 1: packing is the identity (no copy), unpacking the centred lift
  const one: LaneContext = { params: DEFAULT_HE_PARAMS, plainModulus: plainModulus(DEFAULT_HE_PARAMS) };
  const v = Float64Array.from([0, 1, Number(one.plainModulus) - 1]);
  assert.equal(packLanes(one, v), v);
  assert.deepEqual(Array.from(unpackLanes(one, v, 3)), [0, 1, -1]);
});

test('packLanes refuses a value beyond one lane (TWF_E_HE_OVERFLOW) and values outside Z_t; unpackLanes a wrong slot count', () => {
  assertHeError(() => packLanes(LANE, zt([0, 0, C + 1])), 'TWF_E_HE_OVERFLOW', /element 2 \(slot 1, lane 0\)/);
  assertHeError(() => packLanes(LANE, zt([-C - 1])), 'TWF_E_HE_OVERFLOW');
  for (const bad of [-1, TN, 0.5, NaN]) assertHeError(() => packLanes(LANE, Float64Array.from([0, bad])), 'TWF_E_HE_BAD_UPDATE');
  assertHeError(() => packLanes(LANE, new Float64Array(0)), 'TWF_E_HE_BAD_UPDATE');
  assertHeError(() => unpackLanes(LANE, new Float64Array(3), 7), 'TWF_E_HE_BAD_UPDATE', /expected 4 slot values/);
  assertHeError(() => unpackLanes(LANE, Float64Array.from([TN]), 2), 'TWF_E_HE_BAD_UPDATE');
});

test('sums of packed vectors mod t unpack to the exact lane sums, up to ±C; the guard fires on a wrapped lane, naming it', () => {
  // 511 sites of weight 1 at ±2^13: the lane sums reach ±511·2^13 = ±4186112 <= C
  const n = 511;
  const full = 2 ** P.precisionBits;
  const sites = Array.from({ length: n }, (_, s) => packLanes(LANE, zt([full, -full, s % 2 ? full : -full, 7])));
  const sum = sumZt(sites);
  const limit = laneSumLimitQ(P, n);
  assert.equal(limit, n * full);
  assert.deepEqual(Array.from(unpackLanes(LANE, sum, 4, limit)), [n * full, -n * full, -full, 7 * n]);
  // lane 0 beyond 2^22: it wraps into lane 1 (a0 = 2^22 + 1 reads as 1 - 2^22, a1 + 1), and the guard says where
  const over = sumZt([packLanes(LANE, zt([C, 5])), packLanes(LANE, zt([2, 0]))]);
  assert.deepEqual(Array.from(unpackLanes(LANE, over, 2)), [C + 2 - 2 ** 23, 6], 'without a limit below C the carry goes unnoticed in lane 1');
  assertHeError(() => unpackLanes(LANE, over, 2, laneSumLimitQ(P, 2)), 'TWF_E_HE_OVERFLOW', /element 0 \(slot 0, lane 0\) sums to -4194303/);
  // a sum beyond the honest bound in the top lane
  assertHeError(() => unpackLanes(LANE, sumZt([packLanes(LANE, zt([0, 3 * full]))]), 2, laneSumLimitQ(P, 2)), 'TWF_E_HE_OVERFLOW', /element 1 \(slot 0, lane 1\)/);
  // DP allowance widens the bound
  unpackLanes(LANE, sumZt([packLanes(LANE, zt([0, 2 * full + 100]))]), 2, laneSumLimitQ(P, 2, 99.5));
  assert.equal(maxSamplesPerSiteFor(P, 100), 5);
  assert.equal(maxSamplesPerSiteFor(P, 3), 170);
  assert.equal(maxSamplesPerSiteFor(P, 100, 20 * full), 4, 'the DP tail takes room from the weights');
  assert.equal(maxSamplesPerSiteFor(P, 1, C), 0);
});

test('TWH2: the SEAL offsets wire.ts parses, compaction round trip (seeded and full), sizes', () => {
  const enc = encryptSlots(
    ctx,
    key,
    Float64Array.from({ length: 4096 }, (_, i) => (i * 7919) % TN),
  );
  const framed = enc.ciphertexts[0];
  assert.deepEqual(Array.from(framed.subarray(0, 4)), [0x54, 0x57, 0x48, 0x32], 'TWH2 magic');
  assert.equal(framed.length, ciphertextWireBytes(P, 'upload'));
  const compact = unwrapCiphertext(ctx.paramsDigest, framed, ctx.maxBodyBytes, 2);
  const seal = expandCiphertext(ctx, compact);
  // SEAL's fields where wire.ts reads them
  const view = new DataView(seal.buffer, seal.byteOffset, seal.byteLength);
  assert.equal(view.getUint16(0, true), 0xa15e);
  assert.equal(view.getBigUint64(8, true), BigInt(seal.length), 'outer size field = expanded length');
  assert.equal(view.getBigUint64(49, true), 2n, 'two polynomials');
  assert.equal(view.getBigUint64(57, true), 4096n);
  assert.equal(view.getBigUint64(65, true), 1n);
  assert.equal(view.getUint16(89, true), 0xa15e, 'coefficient array header');
  assert.equal(view.getBigUint64(105, true), 4096n, 'seeded: one polynomial of words');
  assert.equal(seal.length, SEAL_CIPHERTEXT_PREFIX_BYTES + 8 * 4096 + SEAL_SEED_INFO_BYTES);
  assert.equal(view.getUint16(seal.length - SEAL_SEED_INFO_BYTES, true), 0xa15e, 'seed info header');
  assert.deepEqual(compactCiphertext(ctx, seal), compact, 'compact(expand(x)) = x');
  // the seeded ciphertext expands and loads in SEAL; the coordinator's sum (both polynomials) too
  const agg = addCiphertexts(ctx, null, framed);
  assert.equal(agg.length, ciphertextWireBytes(P, 'aggregate'));
  const full = expandCiphertext(ctx, unwrapCiphertext(ctx.paramsDigest, agg, ctx.maxBodyBytes, 2));
  assert.equal(new DataView(full.buffer).getBigUint64(105, true), 8192n);
  assert.equal(full.length, SEAL_CIPHERTEXT_PREFIX_BYTES + 8 * 8192);
  assert.deepEqual(
    decryptSlots(ctx, key, [agg], 4096),
    Float64Array.from({ length: 4096 }, (_, i) => (i * 7919) % TN),
  );
  // 60 of 64 bits per word
  assert.ok(agg.length / 4096 < 15.1 && framed.length / 4096 < 7.6, `${framed.length / 4096} / ${agg.length / 4096} bytes per slot`);
});

test('TWH2 refuses a word >= q, non-zero padding, a wrong length, and TWH1 framing (and TWH1 parameters refuse TWH2)', () => {
  const framed = encryptSlots(ctx, key, Float64Array.from([1, 2, 3])).ciphertexts[0];
  const agg = addCiphertexts(ctx, null, framed);
  const q = ctx.coeffModuli[0];
  assert.equal(q.toString(2).length, 60);
  for (const bytes of [framed, agg]) {
    const body = unwrapCiphertext(ctx.paramsDigest, bytes, ctx.maxBodyBytes, 2).slice();
    const refused = (b: Uint8Array, why: RegExp): void => {
      assertHeError(() => expandCiphertext(ctx, b), 'TWF_E_BAD_CIPHERTEXT', why);
      assertHeError(() => validateCiphertext(ctx, wrapCiphertext(ctx.paramsDigest, b, 2)), 'TWF_E_BAD_CIPHERTEXT', why);
    };
    // word 5 (bits 300..359) set to all ones: 2^60 - 1 >= q
    const oversized = body.slice();
    for (let bit = 300; bit < 360; bit++) oversized[SEAL_CIPHERTEXT_PREFIX_BYTES + (bit >> 3)] |= 1 << (bit & 7);
    refused(oversized, /word 5 is not below its prime/);
    // word 5 = q exactly
    const equal = body.slice();
    for (let bit = 0; bit < 60; bit++) {
      const at = SEAL_CIPHERTEXT_PREFIX_BYTES + ((300 + bit) >> 3);
      const m = 1 << ((300 + bit) & 7);
      equal[at] = (q >> BigInt(bit)) & 1n ? equal[at] | m : equal[at] & ~m;
    }
    refused(equal, /word 5 is not below its prime/);
    refused(body.subarray(0, body.length - 1), /TWH2 body of/);
    refused(Uint8Array.from([...body, 0]), /TWH2 body of/);
    const count = body.slice();
    new DataView(count.buffer).setBigUint64(105, 3n, true);
    refused(count, /coefficient words/);
    // SEAL's uncompressed TWH1 body inside a TWH2 envelope: too long for its fields
    refused(expandCiphertext(ctx, body), /TWH2 body of/);
  }
  // 4096 · 60 bits fill whole bytes; with 59-bit words (4096 · 59 / 8 = 30208) they do too, so test padding on a 3-slot shape
  const tiny = { params: { polyModulusDegree: 3 }, coeffModuli: [(1n << 59n) - 55n] };
  const seal = new Uint8Array(SEAL_CIPHERTEXT_PREFIX_BYTES + 8 * 6);
  seal.set(unwrapCiphertext(ctx.paramsDigest, agg, ctx.maxBodyBytes, 2).subarray(0, SEAL_CIPHERTEXT_PREFIX_BYTES));
  const sv = new DataView(seal.buffer);
  sv.setBigUint64(57, 3n, true);
  sv.setBigUint64(105, 6n, true);
  for (let w = 0; w < 6; w++) sv.setBigUint64(SEAL_CIPHERTEXT_PREFIX_BYTES + 8 * w, (1n << 59n) - 56n - BigInt(w), true);
  const c = compactCiphertext(tiny, seal);
  assert.equal(c.length, SEAL_CIPHERTEXT_PREFIX_BYTES + Math.ceil((6 * 59) / 8));
  assert.deepEqual(expandCiphertext(tiny, c), seal);
  const padded = c.slice();
  padded[padded.length - 1] |= 0x80; // 354 bits used of 360: bit 359 is padding
  assertHeError(() => expandCiphertext(tiny, padded), 'TWF_E_BAD_CIPHERTEXT', /padding/);
  // framing versions do not cross
  const body = unwrapCiphertext(ctx.paramsDigest, framed, ctx.maxBodyBytes, 2);
  assertHeError(() => validateCiphertext(ctx, wrapCiphertext(ctx.paramsDigest, expandCiphertext(ctx, body), 1)), 'TWF_E_BAD_CIPHERTEXT', /TWH1 framing; these parameters use TWH2/);
  assertHeError(() => unwrapCiphertext(ctx.paramsDigest, framed, ctx.maxBodyBytes, 1), 'TWF_E_BAD_CIPHERTEXT', /TWH2 framing; these parameters use TWH1/);
  // flipped bytes anywhere: the envelope checksum, then the body checks
  for (const pos of [0, 3, 10, 30, ENVELOPE_HEADER_BYTES + 50, ENVELOPE_HEADER_BYTES + 200, framed.length >> 1, framed.length - 1]) {
    const x = framed.slice();
    x[pos] ^= 0x40;
    assertHeError(() => validateCiphertext(ctx, x), 'TWF_E_BAD_CIPHERTEXT');
  }
});

/** Uniform deltas in [-1.2B, 1.2B] with exact ±B edges, so that lanes reach their bounds. */
function delta(length: number, seed: number, B: number): Float32Array {
  const r = mulberry32(seed);
  const d = Float32Array.from({ length }, () => (r() * 2 - 1) * 1.2 * B);
  d[0] = B;
  d[1] = -B;
  d[2] = seed % 2 ? B : -B;
  return d;
}

test('a masked packed sum of 100 sites (Σn = 511, the capacity) decrypts to the exact integer lane sums; error within (#sites/Σn)·B/2^(p+1)', () => {
  const B = 0.5; // exact in float32
  const SITES = 100;
  const LENGTH = 3001; // 1501 slots: one ciphertext, the last slot half padding
  const n = Array.from({ length: SITES }, (_, i) => (i < 11 ? 6 : 5)); // 11·6 + 89·5 = 511
  const total = n.reduce((a, b) => a + b, 0);
  assert.equal(total, maxTotalSamples(P));
  const round: RoundContext = { studyId: 'study-lanes', manifestHash: 'b'.repeat(64), round: 1 };
  const ids = Array.from({ length: SITES }, (_, i) => `site-${String(i).padStart(3, '0')}`);
  const secrets: RoundSecrets[] = ids.map(() => generateRoundSecrets());
  const deltas = ids.map((_, i) => delta(LENGTH, 1000 + i, B));
  const exactQ = new Float64Array(LENGTH); // Σ centred quantised values, the plaintext truth
  const exactAvg = new Float64Array(LENGTH);
  const uploads = ids.map((id, i) => {
    const q = quantizeToZt(deltas[i], n[i], B, P.precisionBits, T);
    for (let k = 0; k < LENGTH; k++) {
      exactQ[k] += q.values[k] > TN / 2 ? q.values[k] - TN : q.values[k];
      exactAvg[k] += (n[i] * Math.max(-B, Math.min(B, deltas[i][k]))) / total;
    }
    const peers = ids.flatMap((p, j) => (j === i ? [] : [{ siteId: p, sPk: secrets[j].sPk }]));
    const y = maskInput(round, T, id, secrets[i], packLanes(ctx, q.values), peers);
    const enc = encryptSlots(ctx, key, y);
    assert.equal(enc.ciphertexts.length, ciphertextCount(P, LENGTH));
    return enc.ciphertexts[0];
  });
  assert.equal(Math.max(...Array.from(exactQ, Math.abs)), total * 2 ** P.precisionBits, 'lane sums reach ±Σn·2^p');
  let acc: Uint8Array | null = null;
  for (const u of uploads) acc = addCiphertexts(ctx, acc, u);
  const budget = noiseBudgetBits(ctx, key, acc!);
  assert.ok(budget >= 4, `noise budget after 100 additions: ${budget} bits`);
  const slots = decryptSlots(ctx, key, [acc!], packedLength(P, LENGTH));
  unmaskSum(
    round,
    T,
    slots,
    ids.map((id, i) => ({ siteId: id, b: secrets[i].b })),
    [],
    new Map(),
  );
  const lanes = unpackLanes(ctx, slots, LENGTH, laneSumLimitQ(P, total));
  assert.deepEqual(lanes, exactQ, 'exact integer lane sums');
  const avg = averageFromCentred(lanes, total, B, P.precisionBits);
  let maxErr = 0;
  for (let k = 0; k < LENGTH; k++) maxErr = Math.max(maxErr, Math.abs(avg[k] - exactAvg[k]));
  const bound = (SITES / total) * B * 2 ** -(P.precisionBits + 1) + 2 ** -24 * B;
  assert.ok(maxErr <= bound, `max error ${maxErr} > bound ${bound}`);
  assert.ok(maxErr < 1e-4 * B);
  process.stderr.write(`# 100 masked sites, Σn = ${total}: budget ${budget} bits, max error ${(maxErr / B).toExponential(2)}·B (bound ${(bound / B).toExponential(2)}·B)\n`);
});

test('encryptWeightedUpdate / decryptAverage with PACKED_HE_PARAMS: the error bound on random data, at one sample per site (the worst case)', () => {
  const B = 0.05;
  const LENGTH = 9000; // 2 ciphertexts
  const sites = [11, 12, 13].map((seed) => delta(LENGTH, seed, B));
  const ups = sites.map((d) => encryptWeightedUpdate(ctx, key, d, 1, B));
  for (const u of ups) {
    assert.equal(u.ciphertexts.length, 2);
    assert.equal(u.bytes, 2 * ciphertextWireBytes(P, 'upload'));
  }
  const sums = [0, 1].map((c) => ups.reduce<Uint8Array | null>((acc, u) => addCiphertexts(ctx, acc, u.ciphertexts[c]), null)!);
  const avg = decryptAverage(ctx, key, sums, LENGTH, 3, B);
  let maxErr = 0;
  for (let k = 0; k < LENGTH; k++) {
    const exact = sites.reduce((a, d) => a + Math.max(-B, Math.min(B, d[k])), 0) / 3;
    maxErr = Math.max(maxErr, Math.abs(avg[k] - exact));
  }
  const bound = B * 2 ** -(P.precisionBits + 1) + 2 ** -24 * B; // #sites / Σn = 1
  assert.ok(maxErr <= bound, `max error ${maxErr} > ${bound}`);
  assert.ok(maxErr > bound / 8, `the bound is nearly reached (${maxErr})`);
  assertHeError(() => encryptWeightedUpdate(ctx, key, sites[0], 512, B), 'TWF_E_HE_OVERFLOW');
  assertHeError(() => decryptAverage(ctx, key, sums, LENGTH, 512, B), 'TWF_E_HE_OVERFLOW');
  assertHeError(() => decryptAverage(ctx, key, sums.slice(1), LENGTH, 3, B), 'TWF_E_HE_BAD_UPDATE');
  // a sum declared for fewer samples than it holds: the guard names the lane
  assertHeError(
    () =>
      decryptAverage(
        ctx,
        key,
        [0, 1].map((c) => addCiphertexts(ctx, sums[c], ups[0].ciphertexts[c])),
        LENGTH,
        3,
        B,
      ),
    'TWF_E_HE_OVERFLOW',
    /lane [01]\)/,
  );
});

test('PACKED_HE_PARAMS: 255 additions of one plaintext (the roster maximum, rounding terms aligned) keep a noise budget of at least 4 bits', () => {
  const values = Float64Array.from({ length: 4096 }, (_, i) => (i * 2654435761) % TN);
  const fresh = encryptSlots(ctx, key, values).ciphertexts[0];
  const first = noiseBudgetBits(ctx, key, fresh);
  let acc: Uint8Array | null = null;
  for (let k = 0; k < 255; k++) acc = addCiphertexts(ctx, acc, encryptSlots(ctx, key, values).ciphertexts[0]);
  const budget = noiseBudgetBits(ctx, key, acc!);
  assert.ok(first >= 8, `fresh budget ${first}`);
  assert.ok(budget >= 4, `budget after 255 additions ${budget}`);
  const got = decryptSlots(ctx, key, [acc!], 4096);
  for (let i = 0; i < 4096; i++) assert.equal(got[i], Number((BigInt(values[i]) * 255n) % T));
  process.stderr.write(`# PACKED_HE_PARAMS noise budget: fresh ${first} bits, after 255 additions ${budget} bits\n`);
});
