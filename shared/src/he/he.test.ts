/**
 * Real SEAL, no mocks. Three sites with different sample counts and random
 * deltas of 30000 parameters (8 ciphertexts, the last one partly padded).
 */
import assert from 'node:assert/strict';
import { test, before } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  CiphertextSum,
  DEFAULT_HE_PARAMS,
  HeError,
  addCiphertexts,
  averageFromCentred,
  createHeContext,
  decryptAverage,
  decryptSlots,
  encryptSlots,
  encryptWeightedUpdate,
  generateSecretKey,
  heParamsDigest,
  maxTotalSamples,
  noiseBudgetBits,
  quantizeToZt,
  subtractCiphertext,
  validateCiphertext,
  type EncryptedUpdate,
  type HeContext,
  type HeParams,
} from './index.js';
import { decryptSlotSums } from './decrypt.js';
import { wrapCiphertext, ENVELOPE_HEADER_BYTES } from './envelope.js';
import { isPrime64, largestBatchingPrime } from './primes.js';
import { quantizeChunk } from './quantize.js';

const LENGTH = 30000;
const B = 0.05; // clip bound, in the range of real weight deltas
const P = DEFAULT_HE_PARAMS.precisionBits;
const SITES = [
  { n: 120, seed: 11 },
  { n: 45, seed: 22 },
  { n: 301, seed: 33 },
];
const TOTAL = SITES.reduce((s, x) => s + x.n, 0);

function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 0xffffffff;
  };
}

/** Deltas uniform in [-1.2B, 1.2B]: about 1/6 of them get clipped. */
function randomDelta(seed: number): Float32Array {
  const r = rng(seed);
  return Float32Array.from({ length: LENGTH }, () => (r() * 2 - 1) * 1.2 * B);
}

const clip = (x: number): number => Math.max(-B, Math.min(B, x));

function assertHeError(fn: () => unknown, code: string): void {
  assert.throws(fn, (e: unknown) => e instanceof HeError && e.code === code, `expected HeError ${code}`);
}

/** Element-wise sum of the updates, chunk by chunk, in the given site order. */
function aggregate(ctx: HeContext, updates: EncryptedUpdate[], order: number[]): Uint8Array[] {
  const chunks = updates[0].ciphertexts.length;
  const sums: Uint8Array[] = [];
  for (let c = 0; c < chunks; c++) {
    let acc: Uint8Array | null = null;
    for (const s of order) acc = addCiphertexts(ctx, acc, updates[s].ciphertexts[c]);
    sums.push(acc!);
  }
  return sums;
}

let ctx: HeContext;
let key: Uint8Array;
let deltas: Float32Array[];
let updates: EncryptedUpdate[];
let sums: Uint8Array[];
let expected: Float64Array;

before(async () => {
  ctx = await createHeContext(DEFAULT_HE_PARAMS);
  key = generateSecretKey(ctx);
  deltas = SITES.map((s) => randomDelta(s.seed));
  updates = SITES.map((s, i) => encryptWeightedUpdate(ctx, key, deltas[i], s.n, B));
  sums = aggregate(ctx, updates, [0, 1, 2]);
  expected = new Float64Array(LENGTH);
  for (let i = 0; i < LENGTH; i++) {
    let acc = 0;
    SITES.forEach((s, k) => (acc += s.n * clip(deltas[k][i])));
    expected[i] = acc / TOTAL;
  }
});

test('parameters: digest, plain modulus, limits', () => {
  assert.match(heParamsDigest(DEFAULT_HE_PARAMS), /^[0-9a-f]{64}$/);
  assert.notEqual(heParamsDigest(DEFAULT_HE_PARAMS), heParamsDigest({ ...DEFAULT_HE_PARAMS, precisionBits: 19 }));
  // the pure-TS prime search agrees with SEAL's PlainModulus.Batching
  assert.equal(ctx.plainModulus, largestBatchingPrime(4096, 42));
  assert.ok(isPrime64(ctx.plainModulus));
  assert.equal(ctx.plainModulus % 8192n, 1n);
  assert.equal(ctx.slotCount, 4096);
  const max = maxTotalSamples(DEFAULT_HE_PARAMS);
  assert.ok(BigInt(max) * 2n ** BigInt(P) <= (ctx.plainModulus - 1n) / 2n);
  assert.ok(BigInt(max + 1) * 2n ** BigInt(P) > (ctx.plainModulus - 1n) / 2n);
  assertHeError(() => maxTotalSamples({ ...DEFAULT_HE_PARAMS, coeffModulusBits: [60, 60] }), 'TWF_E_HE_PARAMS'); // 120 > 109 bits
});

test('upload size: one seeded ciphertext per 4096 values, ≈ 8 bytes per parameter', () => {
  for (const u of updates) {
    assert.equal(u.ciphertexts.length, Math.ceil(LENGTH / 4096));
    assert.equal(u.length, LENGTH);
    const perCt = u.ciphertexts[0].length / 4096;
    assert.ok(perCt > 7.5 && perCt < 8.5, `bytes per slot ${perCt}`);
    assert.ok(u.bytes / u.length <= 16);
    for (const c of u.ciphertexts) validateCiphertext(ctx, c);
  }
});

test('decryptAverage(sum) is the weighted FedAvg within the quantisation bound', () => {
  const avg = decryptAverage(ctx, key, sums, LENGTH, TOTAL, B);
  assert.equal(avg.length, LENGTH);
  const bound = 2 ** -(P + 1) * B * SITES.length + 2 ** -24 * B; // rounding per site + float32 output
  let maxErr = 0;
  for (let i = 0; i < LENGTH; i++) maxErr = Math.max(maxErr, Math.abs(avg[i] - expected[i]));
  assert.ok(maxErr <= bound, `max error ${maxErr} > bound ${bound}`);
  assert.ok(maxErr < 1e-6 * B, `max error ${maxErr} >= 1e-6 B`);
});

test('adding is order-independent (bit-identical sums)', () => {
  const other = aggregate(ctx, updates, [2, 0, 1]);
  other.forEach((c, i) => assert.deepEqual(c, sums[i]));
  assert.deepEqual(decryptAverage(ctx, key, other, LENGTH, TOTAL, B), decryptAverage(ctx, key, sums, LENGTH, TOTAL, B));
});

test('a different secret key (what a keyless coordinator could try) reads nothing near the average', () => {
  const wrong = generateSecretKey(ctx);
  assert.notDeepEqual(wrong, key);
  assertHeError(() => decryptAverage(ctx, wrong, sums, LENGTH, TOTAL, B), 'TWF_E_HE_DECRYPT');
  const raw = decryptSlotSums(ctx, wrong, sums, LENGTH);
  const S = 2 ** P / B;
  let near = 0;
  for (let i = 0; i < LENGTH; i++) if (Math.abs(Number(raw[i]) / (S * TOTAL) - expected[i]) < B) near++;
  // uniform values mod t land within ±B of the truth with probability ≈ 2·2^P·TOTAL/t ≈ 4e-4
  assert.ok(near < LENGTH * 0.01, `${near} of ${LENGTH} values near the average`);
  assert.equal(noiseBudgetBits(ctx, wrong, sums[0]), 0);
});

test('corrupted bytes are refused with TWF_E_BAD_CIPHERTEXT', () => {
  const good = updates[0].ciphertexts[1];
  const flip = (pos: number): Uint8Array => {
    const x = good.slice();
    x[pos] ^= 0xff;
    return x;
  };
  for (const pos of [0, 5, 25, ENVELOPE_HEADER_BYTES + 3, ENVELOPE_HEADER_BYTES + 100, good.length >> 1, good.length - 1]) {
    assertHeError(() => validateCiphertext(ctx, flip(pos)), 'TWF_E_BAD_CIPHERTEXT');
  }
  for (const len of [0, 10, ENVELOPE_HEADER_BYTES, ENVELOPE_HEADER_BYTES + 16, good.length >> 1, good.length - 1]) {
    assertHeError(() => validateCiphertext(ctx, good.subarray(0, len)), 'TWF_E_BAD_CIPHERTEXT');
  }
  const padded = new Uint8Array(good.length + 8);
  padded.set(good);
  assertHeError(() => validateCiphertext(ctx, padded), 'TWF_E_BAD_CIPHERTEXT');
  assertHeError(() => validateCiphertext(ctx, new Uint8Array(good.length).fill(7)), 'TWF_E_BAD_CIPHERTEXT');
  assertHeError(() => validateCiphertext(ctx, 'not bytes' as unknown as Uint8Array), 'TWF_E_BAD_CIPHERTEXT');
  // the coordinator's add path validates too
  assertHeError(() => addCiphertexts(ctx, sums[1], flip(good.length >> 1)), 'TWF_E_BAD_CIPHERTEXT');
  assertHeError(() => addCiphertexts(ctx, flip(good.length >> 1), good), 'TWF_E_BAD_CIPHERTEXT');
});

test("SEAL's own checks hold behind a valid envelope (coefficient >= q, bad parms_id, garbage)", () => {
  const body = updates[0].ciphertexts[2].slice(ENVELOPE_HEADER_BYTES);
  // 8 bytes of 0xff cover the top byte of some coefficient: value >= q
  const midCoeff = body.slice();
  for (let i = 0; i < 8; i++) midCoeff[(body.length >> 1) - ((body.length >> 1) % 8) + i] = 0xff;
  const header = body.slice();
  header[16] ^= 0x55; // first byte of the parms_id
  const garbage = body.slice();
  garbage.fill(0x42, 16);
  for (const b of [midCoeff, header, garbage]) {
    assertHeError(() => validateCiphertext(ctx, wrapCiphertext(ctx.paramsDigest, b)), 'TWF_E_BAD_CIPHERTEXT');
  }
});

test('ciphertexts for other parameters are refused', async () => {
  const otherParams: HeParams = { ...DEFAULT_HE_PARAMS, plainModulusBits: 40 };
  const other = await createHeContext(otherParams);
  const otherKey = generateSecretKey(other);
  const u = encryptWeightedUpdate(other, otherKey, deltas[0].subarray(0, 5000), 3, B);
  validateCiphertext(other, u.ciphertexts[0]);
  assertHeError(() => validateCiphertext(ctx, u.ciphertexts[0]), 'TWF_E_BAD_CIPHERTEXT');
  // re-framed with our digest, SEAL's parms_id check still refuses it
  const reframed = wrapCiphertext(ctx.paramsDigest, u.ciphertexts[0].subarray(ENVELOPE_HEADER_BYTES));
  assertHeError(() => validateCiphertext(ctx, reframed), 'TWF_E_BAD_CIPHERTEXT');
  // and keys do not cross parameter sets
  assertHeError(() => encryptWeightedUpdate(ctx, otherKey, deltas[0], 3, B), 'TWF_E_HE_BAD_KEY');
});

test('subtractCiphertext undoes an add exactly', () => {
  const extra = encryptWeightedUpdate(ctx, key, randomDelta(44), 77, B);
  for (let c = 0; c < sums.length; c++) {
    const added = addCiphertexts(ctx, sums[c], extra.ciphertexts[c]);
    assert.notDeepEqual(added, sums[c]);
    assert.deepEqual(subtractCiphertext(ctx, added, extra.ciphertexts[c]), sums[c]);
  }
});

test("CiphertextSum (the coordinator's in-place running sum) equals addCiphertexts bit for bit, and a bad chunk leaves it unchanged", () => {
  for (let c = 0; c < sums.length; c++) {
    const s = CiphertextSum.start(ctx, updates[2].ciphertexts[c]);
    try {
      s.add(updates[0].ciphertexts[c]);
      const bad = updates[1].ciphertexts[c].slice();
      bad[bad.length >> 1] ^= 0xff;
      assertHeError(() => s.add(bad), 'TWF_E_BAD_CIPHERTEXT');
      s.add(updates[1].ciphertexts[c]);
      assert.deepEqual(s.save(), sums[c]);
      const extra = updates[0].ciphertexts[c];
      s.add(extra);
      s.sub(extra);
      assert.deepEqual(s.save(), sums[c]);
    } finally {
      s.delete();
    }
    assert.throws(() => s.save(), /after delete/);
  }
  assertHeError(() => CiphertextSum.start(ctx, new Uint8Array(100)), 'TWF_E_BAD_CIPHERTEXT');
});

test('clipping happens and is counted', () => {
  const d = Float32Array.from([5, -5, 0.3, -0.3, 1, -1, 0]);
  const u = encryptWeightedUpdate(ctx, key, d, 2, 1);
  assert.equal(u.clipped, 2);
  const avg = decryptAverage(ctx, key, [addCiphertexts(ctx, null, u.ciphertexts[0])], d.length, 2, 1);
  const want = [1, -1, 0.3, -0.3, 1, -1, 0];
  want.forEach((w, i) => assert.ok(Math.abs(avg[i] - w) < 1e-6, `avg[${i}] = ${avg[i]}`));
  assert.ok(
    updates.every((x) => x.clipped > 0),
    'the ±1.2B test deltas get clipped',
  );
});

test('sample counts beyond maxTotalSamples, and unusable inputs, throw', () => {
  const max = maxTotalSamples(DEFAULT_HE_PARAMS);
  const d = new Float32Array(10).fill(0.01);
  assertHeError(() => encryptWeightedUpdate(ctx, key, d, max + 1, B), 'TWF_E_HE_OVERFLOW');
  encryptWeightedUpdate(ctx, key, d, max, B); // the limit itself is fine (BigInt64 slots)
  assertHeError(() => decryptAverage(ctx, key, sums, LENGTH, max + 1, B), 'TWF_E_HE_OVERFLOW');
  assertHeError(() => encryptWeightedUpdate(ctx, key, Float32Array.from([0, NaN]), 1, B), 'TWF_E_HE_BAD_UPDATE');
  assertHeError(() => encryptWeightedUpdate(ctx, key, d, 0, B), 'TWF_E_HE_BAD_UPDATE');
  assertHeError(() => encryptWeightedUpdate(ctx, key, d, 1.5, B), 'TWF_E_HE_BAD_UPDATE');
  assertHeError(() => encryptWeightedUpdate(ctx, key, d, 1, 0), 'TWF_E_HE_BAD_UPDATE');
  assertHeError(() => decryptAverage(ctx, key, sums.slice(1), LENGTH, TOTAL, B), 'TWF_E_HE_BAD_UPDATE');
  assertHeError(() => encryptWeightedUpdate(ctx, new Uint8Array(100), d, 1, B), 'TWF_E_HE_BAD_KEY');
});

test('extreme values at the sample limit decode exactly (no wrap at ±t/2)', () => {
  const max = maxTotalSamples(DEFAULT_HE_PARAMS);
  const d = Float32Array.from([B, -B, B / 2]);
  const u1 = encryptWeightedUpdate(ctx, key, d, max - 1000, B);
  const u2 = encryptWeightedUpdate(ctx, key, d, 1000, B);
  const sum = addCiphertexts(ctx, addCiphertexts(ctx, null, u1.ciphertexts[0]), u2.ciphertexts[0]);
  const avg = decryptAverage(ctx, key, [sum], 3, max, B);
  assert.deepEqual(Array.from(avg), Array.from(Float32Array.from([B, -B, B / 2])));
});

test('1000 additions: noise budget stays positive, memory does not grow', async () => {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  // process external memory includes the WebAssembly memory, which never shrinks;
  // V8 frees ArrayBuffer backing stores on background threads, so settle first
  const external = async (): Promise<number> => {
    for (let i = 0; i < 3; i++) {
      gc();
      await sleep(20);
    }
    return process.memoryUsage().external;
  };
  // 1000 fresh ciphertexts (4096 slots each) from 4 sites' long updates
  const big = new Float32Array(250 * 4096);
  const r = rng(5);
  for (let i = 0; i < big.length; i++) big[i] = (r() * 2 - 1) * B;
  const cts: Uint8Array[] = [];
  for (let s = 0; s < 4; s++) cts.push(...encryptWeightedUpdate(ctx, key, big, 1, B).ciphertexts);
  const fresh = noiseBudgetBits(ctx, key, cts[0]);
  let acc: Uint8Array | null = null;
  let at200 = 0;
  for (let i = 0; i < cts.length; i++) {
    acc = addCiphertexts(ctx, acc, cts[i]);
    if (i + 1 === 200) at200 = await external();
  }
  const growth = (await external()) - at200;
  const budget = noiseBudgetBits(ctx, key, acc!);
  // Measured: fresh 13 bits, after 1000 additions 8 bits.
  assert.equal(cts.length, 1000);
  assert.ok(fresh >= 12, `fresh noise budget ${fresh}`);
  assert.ok(budget >= 5, `noise budget after 1000 additions: ${budget} bits`);
  // one leaked ciphertext per add would be 64 KiB x 800 ≈ 50 MB
  assert.ok(growth < 256 * 1024, `native memory grew by ${growth} bytes over 800 additions`);
  process.stderr.write(`# noise budget fresh ${fresh} bits, after 1000 additions ${budget} bits; native memory growth over 800 additions ${growth} bytes\n`);
});

// ---- slot-level helpers for secure aggregation (shared/src/secagg) ----

/** Centred lift (-t/2, t/2], written out here so this file does not depend on secagg. */
function centre(values: Float64Array, t: bigint): Float64Array {
  const tn = Number(t);
  return values.map((v) => (v > tn / 2 ? v - tn : v));
}

test('quantizeToZt is quantizeChunk mapped to Z_t (negative + t), with the same clip count', () => {
  const t = ctx.plainModulus;
  const tn = Number(t);
  for (const [k, s] of SITES.entries()) {
    const z = quantizeToZt(deltas[k], s.n, B, P, t);
    assert.equal(z.values.length, LENGTH);
    let clipped = 0;
    for (let off = 0; off < LENGTH; off += 4096) {
      const c = quantizeChunk(deltas[k], off, 4096, s.n, B, P);
      clipped += c.clipped;
      for (let i = 0; i < Math.min(4096, LENGTH - off); i++) {
        const q = Number(c.values[i]);
        assert.equal(z.values[off + i], q < 0 ? q + tn : q);
      }
    }
    assert.equal(z.clipped, clipped);
    assert.equal(z.clipped, updates[k].clipped);
  }
  // edges (a clip bound exact in float32): ±B map to n·2^p and t - n·2^p; a tiny negative rounds to 0, not -0
  const b = 0.5;
  const e = quantizeToZt(Float32Array.from([b, -b, 0, -1e-12, 2 * b, -2 * b]), 3, b, P, t);
  assert.deepEqual(Array.from(e.values), [3 * 2 ** P, tn - 3 * 2 ** P, 0, 0, 3 * 2 ** P, tn - 3 * 2 ** P]);
  assert.ok(Object.is(e.values[3], 0));
  assert.equal(e.clipped, 2);
});

test('quantizeToZt refuses what encryptWeightedUpdate refuses, and a site range beyond (t-1)/2', () => {
  const t = ctx.plainModulus;
  const d = new Float32Array(4).fill(0.01);
  assertHeError(() => quantizeToZt(Float32Array.from([0, NaN]), 1, B, P, t), 'TWF_E_HE_BAD_UPDATE');
  assertHeError(() => quantizeToZt(Float32Array.from([Infinity]), 1, B, P, t), 'TWF_E_HE_BAD_UPDATE');
  assertHeError(() => quantizeToZt(new Float32Array(0), 1, B, P, t), 'TWF_E_HE_BAD_UPDATE');
  assertHeError(() => quantizeToZt(d, 0, B, P, t), 'TWF_E_HE_BAD_UPDATE');
  assertHeError(() => quantizeToZt(d, 2.5, B, P, t), 'TWF_E_HE_BAD_UPDATE');
  assertHeError(() => quantizeToZt(d, 1, -1, P, t), 'TWF_E_HE_BAD_UPDATE');
  assertHeError(() => quantizeToZt(d, 1, B, 0, t), 'TWF_E_HE_PARAMS');
  assertHeError(() => quantizeToZt(d, 1, B, P, 2n ** 51n), 'TWF_E_HE_PARAMS');
  const max = maxTotalSamples(DEFAULT_HE_PARAMS);
  quantizeToZt(d, max, B, P, t); // n·2^p <= (t-1)/2 exactly at the limit
  assertHeError(() => quantizeToZt(d, max + 1, B, P, t), 'TWF_E_HE_OVERFLOW');
});

test('encryptSlots / decryptSlots round-trip values in [0, t) exactly, edges included', () => {
  const t = ctx.plainModulus;
  const tn = Number(t);
  const r = rng(9);
  const values = Float64Array.from({ length: 5000 }, () => Math.floor(r() * tn) % tn);
  const edges = [0, 1, tn - 1, (tn - 1) / 2, (tn + 1) / 2, 2 ** 32 - 1, 2 ** 32, 2 ** 32 + 1];
  values.set(edges, 0);
  values.set(edges, 4096 - 4); // across the ciphertext boundary
  const enc = encryptSlots(ctx, key, values);
  assert.equal(enc.ciphertexts.length, 2);
  assert.equal(
    enc.bytes,
    enc.ciphertexts.reduce((n, c) => n + c.length, 0),
  );
  assert.ok(enc.encryptMs > 0);
  // same framing and size as encryptWeightedUpdate: masking costs no upload bytes
  assert.equal(enc.ciphertexts[0].length, updates[0].ciphertexts[0].length);
  for (const c of enc.ciphertexts) validateCiphertext(ctx, c);
  const sumsOne = enc.ciphertexts.map((c) => addCiphertexts(ctx, null, c));
  assert.deepEqual(decryptSlots(ctx, key, sumsOne, values.length), values);
  // two copies add mod t
  const twice = sumsOne.map((acc, i) => addCiphertexts(ctx, acc, enc.ciphertexts[i]));
  const got = decryptSlots(ctx, key, twice, values.length);
  for (let i = 0; i < values.length; i++) assert.equal(got[i], (values[i] * 2) % tn, `slot ${i}`);
});

test('encryptSlots refuses values outside [0, t) and non-integers; decryptSlots refuses a wrong key', () => {
  const tn = Number(ctx.plainModulus);
  for (const bad of [-1, tn, tn + 1, 0.5, NaN, Infinity, 2 ** 53]) {
    assertHeError(() => encryptSlots(ctx, key, Float64Array.from([0, bad])), 'TWF_E_HE_BAD_UPDATE');
  }
  assertHeError(() => encryptSlots(ctx, key, new Float64Array(0)), 'TWF_E_HE_BAD_UPDATE');
  assertHeError(() => encryptSlots(ctx, new Uint8Array(100), Float64Array.from([1])), 'TWF_E_HE_BAD_KEY');
  const wrong = generateSecretKey(ctx);
  assertHeError(() => decryptSlots(ctx, wrong, sums, LENGTH), 'TWF_E_HE_DECRYPT');
  assertHeError(() => decryptSlots(ctx, key, sums.slice(1), LENGTH), 'TWF_E_HE_BAD_UPDATE');
});

test('quantizeToZt + encryptSlots + decryptSlots + centre + averageFromCentred = decryptAverage, bit for bit', () => {
  const t = ctx.plainModulus;
  const slotUpdates = SITES.map((s, k) => encryptSlots(ctx, key, quantizeToZt(deltas[k], s.n, B, P, t).values));
  const slotSums = slotUpdates[0].ciphertexts.map((_, c) => {
    let acc: Uint8Array | null = null;
    for (const u of slotUpdates) acc = addCiphertexts(ctx, acc, u.ciphertexts[c]);
    return acc!;
  });
  const avg = averageFromCentred(centre(decryptSlots(ctx, key, slotSums, LENGTH), t), TOTAL, B, P, t);
  assert.deepEqual(avg, decryptAverage(ctx, key, sums, LENGTH, TOTAL, B));
});

test('averageFromCentred: known values, and the overflow checks', () => {
  const S = 2 ** P / B;
  const sumsIn = Float64Array.from([0, 10 * S * B, -10 * S * B, 3 * S * 0.01]);
  assert.deepEqual(Array.from(averageFromCentred(sumsIn, 10, B, P)), Array.from(Float32Array.from([0, B, -B, 0.003])));
  // a slot beyond ±totalSamples·2^p cannot be a correct sum (wrapped, or masks left in)
  assertHeError(() => averageFromCentred(Float64Array.from([10 * 2 ** P + 1]), 10, B, P), 'TWF_E_HE_OVERFLOW');
  assertHeError(() => averageFromCentred(Float64Array.from([NaN]), 10, B, P), 'TWF_E_HE_OVERFLOW');
  const max = maxTotalSamples(DEFAULT_HE_PARAMS);
  averageFromCentred(Float64Array.from([1]), max, B, P, ctx.plainModulus);
  assertHeError(() => averageFromCentred(Float64Array.from([1]), max + 1, B, P, ctx.plainModulus), 'TWF_E_HE_OVERFLOW');
  assertHeError(() => averageFromCentred(Float64Array.from([1]), 0, B, P), 'TWF_E_HE_BAD_UPDATE');
  assertHeError(() => averageFromCentred(Float64Array.from([1]), 1.5, B, P), 'TWF_E_HE_BAD_UPDATE');
  assertHeError(() => averageFromCentred(Float64Array.from([1]), 1, 0, P), 'TWF_E_HE_BAD_UPDATE');
  assertHeError(() => averageFromCentred(Float64Array.from([1]), 2 ** 40, B, P), 'TWF_E_HE_OVERFLOW'); // 2^60 > 2^53
});
