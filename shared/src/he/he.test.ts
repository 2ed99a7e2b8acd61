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
  DEFAULT_HE_PARAMS,
  HeError,
  addCiphertexts,
  createHeContext,
  decryptAverage,
  encryptWeightedUpdate,
  generateSecretKey,
  heParamsDigest,
  maxTotalSamples,
  noiseBudgetBits,
  subtractCiphertext,
  validateCiphertext,
  type EncryptedUpdate,
  type HeContext,
  type HeParams,
} from './index.js';
import { decryptSlotSums } from './decrypt.js';
import { wrapCiphertext, ENVELOPE_HEADER_BYTES } from './envelope.js';
import { isPrime64, largestBatchingPrime } from './primes.js';

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

test('clipping happens and is counted', () => {
  const d = Float32Array.from([5, -5, 0.3, -0.3, 1, -1, 0]);
  const u = encryptWeightedUpdate(ctx, key, d, 2, 1);
  assert.equal(u.clipped, 2);
  const avg = decryptAverage(ctx, key, [addCiphertexts(ctx, null, u.ciphertexts[0])], d.length, 2, 1);
  const want = [1, -1, 0.3, -0.3, 1, -1, 0];
  want.forEach((w, i) => assert.ok(Math.abs(avg[i] - w) < 1e-6, `avg[${i}] = ${avg[i]}`));
  assert.ok(updates.every((x) => x.clipped > 0), 'the ±1.2B test deltas get clipped');
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
