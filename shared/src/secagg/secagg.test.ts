/**
 * Secure aggregation core: real libsodium, real shamir-secret-sharing, and, for
 * the end-to-end round, real SEAL at the default parameters. No mocks.
 */
import assert from 'node:assert/strict';
import { createCipheriv } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { before, test } from 'node:test';
import { combine } from 'shamir-secret-sharing';
import { generateIdentity, type Identity } from '../crypto/identity.js';
import { fromB64, initSodium, sodium, toB64 } from '../crypto/sodium.js';
import { signStatement, verifyStatement } from '../crypto/statement.js';
import { DEFAULT_HE_PARAMS, addCiphertexts, averageFromCentred, createHeContext, decryptSlots, encryptSlots, generateSecretKey, quantizeToZt, type HeContext } from '../he/index.js';
import { mulberry32 } from '../model/prng.js';
import {
  MASK_BLOCK_SLOTS,
  SECAGG_ERRORS,
  SECAGG_KEYS_KIND,
  SECAGG_SURVIVORS_KIND,
  SecaggError,
  centreZt,
  expandMask,
  expandMaskBlock,
  generateRoundSecrets,
  isKeyPair,
  keysStatementFields,
  maskInput,
  openShares,
  pairwiseSeed,
  reconstructChecked,
  sealShares,
  secaggThreshold,
  selfMaskCommitment,
  selfMaskSeed,
  splitSecret,
  survivorsStatementFields,
  toZt,
  unmaskSum,
  type RoundContext,
  type RoundSecrets,
} from './index.js';

/** The default BFV plain modulus (largest 42-bit prime ≡ 1 mod 8192); checked against SEAL below. */
const T = 4398046486529n;
const TN = Number(T);
const CTX: RoundContext = { studyId: 'study-1', manifestHash: 'a'.repeat(64), round: 7 };

function assertSecagg(fn: () => unknown, code: string): void {
  assert.throws(fn, (e: unknown) => e instanceof SecaggError && e.code === code, `expected SecaggError ${code}`);
}

async function assertSecaggAsync(fn: () => Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(fn, (e: unknown) => e instanceof SecaggError && e.code === code, `expected SecaggError ${code}`);
}

/** Seeded test data (the project's one PRNG for tests and seeded inits). */
const rng = mulberry32;

const seedOf = (byte: number): Uint8Array => new Uint8Array(32).fill(byte);

function meanVar(v: ArrayLike<number>): { mean: number; variance: number } {
  let m = 0;
  for (let i = 0; i < v.length; i++) m += v[i];
  m /= v.length;
  let s = 0;
  for (let i = 0; i < v.length; i++) s += (v[i] - m) ** 2;
  return { mean: m, variance: s / (v.length - 1) };
}

/** Pearson's chi-square statistic of values in [0, t) over `bins` equal-width bins. */
function chiSquare(v: ArrayLike<number>, t: number, bins: number): number {
  const counts = new Float64Array(bins);
  for (let i = 0; i < v.length; i++) counts[Math.floor((v[i] / t) * bins)]++;
  const expected = v.length / bins;
  return counts.reduce((s, c) => s + (c - expected) ** 2 / expected, 0);
}

function correlation(a: ArrayLike<number>, b: ArrayLike<number>): number {
  const ma = meanVar(a).mean;
  const mb = meanVar(b).mean;
  let sab = 0;
  let saa = 0;
  let sbb = 0;
  for (let i = 0; i < a.length; i++) {
    sab += (a[i] - ma) * (b[i] - mb);
    saa += (a[i] - ma) ** 2;
    sbb += (b[i] - mb) ** 2;
  }
  return sab / Math.sqrt(saa * sbb);
}

before(async () => {
  await initSodium();
});

// ---------------------------------------------------------------- threshold

test('secaggThreshold: max(3, floor(n/2) + 1), refusals outside 3..255', () => {
  const table: [number, number][] = [
    [3, 3],
    [4, 3],
    [5, 3],
    [6, 4],
    [7, 4],
    [8, 5],
    [9, 5],
    [10, 6],
    [100, 51],
    [255, 128],
  ];
  for (const [n, t] of table) assert.equal(secaggThreshold(n), t, `n = ${n}`);
  for (const n of [-1, 0, 1, 2, 256, 1000, 3.5, NaN, Infinity]) assertSecagg(() => secaggThreshold(n), 'TWF_E_SECAGG_PARAMS');
});

// ---------------------------------------------------------------- PRG

test('randombytes_buf_deterministic is ChaCha20 (RFC 8439) under the seed, nonce "LibsodiumDRG", counter 0', () => {
  // anchor Node's cipher to RFC 8439 appendix A.1, test vector #1 (key 0, nonce 0, counter 0)
  const a1 = createCipheriv('chacha20', Buffer.alloc(32), Buffer.alloc(16)).update(Buffer.alloc(32));
  assert.equal(a1.toString('hex'), '76b8e0ada0f13d90405d6ae55386bd28bdd219b8a08ded1aa836efcc8b770dc7');
  const iv = Buffer.concat([Buffer.alloc(4), Buffer.from('LibsodiumDRG', 'ascii')]); // u32le counter 0 || 12-byte nonce
  assert.equal(iv.length, 16);
  const s = sodium();
  for (const [seed, len] of [
    [seedOf(0), 64],
    [seedOf(0x5a), 1000],
    [s.randombytes_buf(32), 6 * MASK_BLOCK_SLOTS + 6 * 64],
    [s.crypto_generichash(32, new Uint8Array([1, 2, 3])), 1 << 16],
  ] as [Uint8Array, number][]) {
    const ours = s.randombytes_buf_deterministic(len, seed);
    const node = createCipheriv('chacha20', Buffer.from(seed), iv).update(Buffer.alloc(len));
    assert.ok(Buffer.from(ours).equals(node), `keystream of ${len} bytes`);
  }
  // a longer request extends the same keystream (expandMask relies on it when it rejects)
  const k = seedOf(9);
  assert.deepEqual(s.randombytes_buf_deterministic(100, k), s.randombytes_buf_deterministic(200, k).subarray(0, 100));
});

test('expandMask follows its documented construction (block key, 6-byte draws, mask, reject)', () => {
  const s = sodium();
  const seed = seedOf(3);
  const block = 1;
  const key = s.crypto_generichash(32, new Uint8Array([...seed, ...Buffer.from('twinfed.secagg.prg-block.v1'), block, 0, 0, 0]));
  const stream = s.randombytes_buf_deterministic(6 * 50, key);
  const want: number[] = [];
  for (let p = 0; p + 6 <= stream.length && want.length < 40; p += 6) {
    let v = 0n;
    for (let j = 5; j >= 0; j--) v = (v << 8n) | BigInt(stream[p + j]);
    v &= (1n << 42n) - 1n; // bitLength(T) = 42
    if (v < T) want.push(Number(v));
  }
  assert.deepEqual(Array.from(expandMask(seed, MASK_BLOCK_SLOTS + 40, T).subarray(MASK_BLOCK_SLOTS)), want);
  assert.deepEqual(Array.from(expandMaskBlock(seed, 1, 40, T)), want);
});

test('expandMask: deterministic, block-independent, prefix-stable, in [0, t), different seeds differ', () => {
  const seed = seedOf(1);
  const L = 3 * MASK_BLOCK_SLOTS + 100;
  const a = expandMask(seed, L, T);
  assert.equal(a.length, L);
  assert.deepEqual(expandMask(seed, L, T), a);
  // block 2 alone equals the slice of the full expansion
  assert.deepEqual(expandMaskBlock(seed, 2, MASK_BLOCK_SLOTS, T), a.subarray(2 * MASK_BLOCK_SLOTS, 3 * MASK_BLOCK_SLOTS));
  assert.deepEqual(expandMaskBlock(seed, 3, 100, T), a.subarray(3 * MASK_BLOCK_SLOTS));
  // a shorter mask is a prefix of a longer one (the partial last block too)
  assert.deepEqual(expandMask(seed, 5000, T), a.subarray(0, 5000));
  assert.equal(expandMask(seed, 0, T).length, 0);
  for (const v of a) assert.ok(Number.isInteger(v) && v >= 0 && v < TN);
  const b = expandMask(seedOf(2), L, T);
  let equal = 0;
  for (let i = 0; i < L; i++) if (a[i] === b[i]) equal++;
  assert.equal(equal, 0);
});

test('expandMask is uniform on Z_t: mean, variance and chi-square over 10^5 values (fixed seed)', () => {
  const n = 100_000;
  const v = expandMask(seedOf(42), n, T);
  const { mean, variance } = meanVar(v);
  // uniform on [0, t): mean (t-1)/2, variance (t^2-1)/12; standard error of the mean t/sqrt(12 n)
  assert.ok(Math.abs(mean - (TN - 1) / 2) < 5 * (TN / Math.sqrt(12 * n)), `mean ${mean / TN} t`);
  assert.ok(Math.abs(variance / ((TN * TN) / 12) - 1) < 0.02, `variance ${variance / ((TN * TN) / 12)} of t^2/12`);
  // 100 bins, 99 degrees of freedom: P(chi2 > 160) ≈ 1e-4
  const chi = chiSquare(v, TN, 100);
  assert.ok(chi < 160, `chi-square ${chi}`);
  // low bits too: the 16 residues mod 16 (t is odd, so nearly equal)
  const low = v.map((x) => x % 16);
  assert.ok(chiSquare(low, 16, 16) < 50, 'low bits');
});

test('expandMask rejection path: t = 2^32 + 15 rejects about half the draws and stays uniform and block-independent', () => {
  const t = 2n ** 32n + 15n; // bitLength 33: draws in [0, 2^33), rejection ≈ 1/2
  const tn = Number(t);
  const v = expandMask(seedOf(7), 2 * MASK_BLOCK_SLOTS + 10, t);
  for (const x of v) assert.ok(Number.isInteger(x) && x >= 0 && x < tn);
  assert.deepEqual(expandMaskBlock(seedOf(7), 1, MASK_BLOCK_SLOTS, t), v.subarray(MASK_BLOCK_SLOTS, 2 * MASK_BLOCK_SLOTS));
  assert.ok(chiSquare(v, tn, 50) < 100, 'uniform with heavy rejection');
  // tiny moduli: every residue appears about equally
  for (const small of [3n, 5n, 257n]) {
    const w = expandMask(seedOf(8), 30_000, small);
    const k = Number(small);
    assert.ok(chiSquare(w, k, k) < k + 6 * Math.sqrt(2 * k), `t = ${small}`);
  }
});

test('expandMask refusals: bad seed, length, or plain modulus', () => {
  assertSecagg(() => expandMask(new Uint8Array(31), 10, T), 'TWF_E_SECAGG_KEY');
  assertSecagg(() => expandMask(seedOf(1), -1, T), 'TWF_E_SECAGG_PARAMS');
  assertSecagg(() => expandMask(seedOf(1), 1.5, T), 'TWF_E_SECAGG_PARAMS');
  for (const t of [2n, 0n, -5n, 2n ** 48n, 2n ** 51n]) assertSecagg(() => expandMask(seedOf(1), 10, t), 'TWF_E_SECAGG_PARAMS');
  assertSecagg(() => expandMask(seedOf(1), 10, 5 as unknown as bigint), 'TWF_E_SECAGG_PARAMS');
  expandMask(seedOf(1), 10, 2n ** 48n - 59n); // largest 48-bit prime: accepted
  assertSecagg(() => expandMaskBlock(seedOf(1), 0, MASK_BLOCK_SLOTS + 1, T), 'TWF_E_SECAGG_PARAMS');
});

// ---------------------------------------------------------------- seeds and keys

test('pairwiseSeed: both ends agree; round, study, manifest and pair all change it', () => {
  const a = generateRoundSecrets();
  const b = generateRoundSecrets();
  const c = generateRoundSecrets();
  const ab = pairwiseSeed(CTX, 'site-a', a.sSk, 'site-b', b.sPk);
  assert.equal(ab.length, 32);
  assert.deepEqual(pairwiseSeed(CTX, 'site-b', b.sSk, 'site-a', a.sPk), ab);
  const others = [
    pairwiseSeed({ ...CTX, round: 8 }, 'site-a', a.sSk, 'site-b', b.sPk),
    pairwiseSeed({ ...CTX, studyId: 'study-2' }, 'site-a', a.sSk, 'site-b', b.sPk),
    pairwiseSeed({ ...CTX, manifestHash: 'b'.repeat(64) }, 'site-a', a.sSk, 'site-b', b.sPk),
    pairwiseSeed(CTX, 'site-a', a.sSk, 'site-c', c.sPk),
    pairwiseSeed(CTX, 'site-a', a.sSk, 'site-x', b.sPk), // same keys, other names
    selfMaskSeed(CTX, 'site-a', a.b),
  ];
  for (const o of others) assert.notDeepEqual(o, ab);
  assertSecagg(() => pairwiseSeed(CTX, 'site-a', a.sSk, 'site-a', b.sPk), 'TWF_E_SECAGG_PEERS');
  assertSecagg(() => pairwiseSeed(CTX, 'site-a', a.sSk, 'site-b', new Uint8Array(32)), 'TWF_E_SECAGG_KEY'); // low-order point
  assertSecagg(() => pairwiseSeed(CTX, 'site-a', a.sSk, 'site-b', b.sPk.subarray(1)), 'TWF_E_SECAGG_KEY');
  assertSecagg(() => pairwiseSeed({ ...CTX, round: -1 }, 'site-a', a.sSk, 'site-b', b.sPk), 'TWF_E_SECAGG_PARAMS');
  assertSecagg(() => pairwiseSeed({ ...CTX, studyId: '' }, 'site-a', a.sSk, 'site-b', b.sPk), 'TWF_E_SECAGG_PARAMS');
  assertSecagg(() => pairwiseSeed(CTX, '', a.sSk, 'site-b', b.sPk), 'TWF_E_SECAGG_PARAMS');
});

test('round secrets, self-mask commitment, isKeyPair', () => {
  const a = generateRoundSecrets();
  const b = generateRoundSecrets();
  assert.equal(a.sPk.length, 32);
  assert.equal(a.sSk.length, 32);
  assert.equal(a.b.length, 32);
  assert.notDeepEqual(a.b, b.b);
  assert.ok(isKeyPair(a.sSk, a.sPk));
  assert.ok(!isKeyPair(a.sSk, b.sPk));
  assert.ok(!isKeyPair(a.sSk.subarray(1), a.sPk));
  assert.ok(!isKeyPair('x' as unknown as Uint8Array, a.sPk));
  const c = selfMaskCommitment(CTX, 'site-a', a.b);
  assert.match(c, /^[0-9a-f]{64}$/);
  assert.equal(selfMaskCommitment(CTX, 'site-a', Uint8Array.from(a.b)), c);
  assert.notEqual(selfMaskCommitment(CTX, 'site-b', a.b), c);
  assert.notEqual(selfMaskCommitment({ ...CTX, round: 8 }, 'site-a', a.b), c);
  assert.notEqual(selfMaskCommitment(CTX, 'site-a', b.b), c);
  assertSecagg(() => selfMaskCommitment(CTX, 'site-a', new Uint8Array(16)), 'TWF_E_SECAGG_KEY');
});

// ---------------------------------------------------------------- Shamir

function subsets(n: number, k: number): number[][] {
  if (k === 0) return [[]];
  if (n < k) return [];
  return [...subsets(n - 1, k), ...subsets(n - 1, k - 1).map((s) => [...s, n - 1])];
}

test('Shamir: split/combine round-trip for n = 3..20 (every t-subset for n <= 8); t-1 shares give nothing', async () => {
  const s = sodium();
  for (let n = 3; n <= 20; n++) {
    const t = secaggThreshold(n);
    const secret = s.randombytes_buf(32);
    const shares = await splitSecret(secret, n, t);
    assert.equal(shares.length, n);
    for (const sh of shares) assert.equal(sh.length, 33);
    assert.equal(new Set(shares.map((sh) => sh[32])).size, n, 'distinct x coordinates');
    const picks = n <= 8 ? subsets(n, t) : [Array.from({ length: t }, (_, i) => i), Array.from({ length: t }, (_, i) => n - 1 - i)];
    for (const pick of picks) assert.deepEqual(await combine(pick.map((i) => shares[i])), secret, `n ${n}, subset ${pick}`);
    assert.deepEqual(await combine(shares), secret, 'all n shares');
    // t - 1 shares interpolate a different polynomial: the secret does not come out
    assert.notDeepEqual(await combine(shares.slice(0, t - 1)), secret);
  }
  await assertSecaggAsync(() => splitSecret(new Uint8Array(32), 3, 4), 'TWF_E_SECAGG_PARAMS');
  await assertSecaggAsync(() => splitSecret(new Uint8Array(32), 256, 3), 'TWF_E_SECAGG_PARAMS');
  await assertSecaggAsync(() => splitSecret(new Uint8Array(32), 5, 1), 'TWF_E_SECAGG_PARAMS');
  await assertSecaggAsync(() => splitSecret(new Uint8Array(0), 5, 3), 'TWF_E_SECAGG_PARAMS');
  // a Node Buffer is accepted (the package itself refuses anything but a plain Uint8Array)
  const fromBuffer = await splitSecret(Buffer.from(seedOf(4)), 3, 3);
  assert.deepEqual(await combine(fromBuffer), seedOf(4));
});

test('reconstructChecked: finds the secret past one corrupted share among t+1, null with too few good shares', async () => {
  const s = sodium();
  const keys = generateRoundSecrets();
  const n = 10;
  const t = secaggThreshold(n); // 6
  const shares = await splitSecret(keys.sSk, n, t);
  const check = (x: Uint8Array): boolean => isKeyPair(x, keys.sPk);
  assert.deepEqual(await reconstructChecked(shares.slice(0, t), t, check), keys.sSk);
  for (let bad = 0; bad <= t; bad++) {
    const some = shares.slice(0, t + 1).map((x) => Uint8Array.from(x));
    some[bad][5] ^= 0x42; // a rogue site changes a y byte
    let tries = 0;
    const got = await reconstructChecked(some, t, (x) => (tries++, check(x)));
    assert.deepEqual(got, keys.sSk, `bad share at ${bad}`);
    assert.ok(tries <= t + 1, `${tries} tries`);
  }
  // a rogue share that reuses another's x coordinate (combine throws) is skipped too
  const dupX = shares.slice(0, t + 1).map((x) => Uint8Array.from(x));
  dupX[0][32] = dupX[1][32];
  assert.deepEqual(await reconstructChecked(dupX, t, check), keys.sSk);
  // wrong length, and base64 round trip (Buffer-backed input)
  const mixed: Uint8Array[] = [new Uint8Array(5), ...shares.slice(0, t).map((x) => fromB64(toB64(x)))];
  assert.deepEqual(await reconstructChecked(mixed, t, check), keys.sSk);
  // two bad among t+1: only t-1 good shares, no subset passes
  const twoBad = shares.slice(0, t + 1).map((x) => Uint8Array.from(x));
  twoBad[1][0] ^= 1;
  twoBad[4][9] ^= 1;
  assert.equal(await reconstructChecked(twoBad, t, check), null);
  // maxTries bounds the search: with share 0 bad, the good subset {1..t} is the (t+1)-th in colex order
  const first = shares.slice(0, t + 1).map((x) => Uint8Array.from(x));
  first[0][0] ^= 1;
  assert.equal(await reconstructChecked(first, t, check, t), null);
  assert.deepEqual(await reconstructChecked(first, t, check, t + 1), keys.sSk);
  // fewer than t shares is a caller error
  await assertSecaggAsync(() => reconstructChecked(shares.slice(0, t - 1), t, check), 'TWF_E_SECAGG_SHARES');
  await assertSecaggAsync(() => reconstructChecked(shares, 1, check), 'TWF_E_SECAGG_PARAMS');
  await assertSecaggAsync(() => reconstructChecked(shares, t, check, 0), 'TWF_E_SECAGG_PARAMS');
  // the commitment check for b
  const b = s.randombytes_buf(32);
  const commit = selfMaskCommitment(CTX, 'site-a', b);
  const bShares = await splitSecret(b, 5, 3);
  bShares[0][3] ^= 0x80;
  assert.deepEqual(await reconstructChecked(bShares.slice(0, 4), 3, (x) => selfMaskCommitment(CTX, 'site-a', x) === commit), b);
});

// ---------------------------------------------------------------- boxes

test('share boxes open for the right pair and round, and for nothing else', async () => {
  const alice = generateIdentity();
  const bob = generateIdentity();
  const carol = generateIdentity();
  const bundle = { bShare: sodium().randombytes_buf(33), sShare: sodium().randombytes_buf(33) };
  const box = sealShares(CTX, 'alice', 'bob', bundle, alice.x25519SecretKey, bob.x25519PublicKey);
  assert.equal(typeof box, 'string');
  assert.equal(fromB64(box).length, 24 + 16 + 32 + 2 + 33 + 33);
  assert.notEqual(sealShares(CTX, 'alice', 'bob', bundle, alice.x25519SecretKey, bob.x25519PublicKey), box, 'random nonce');
  assert.deepEqual(openShares(CTX, 'alice', 'bob', box, bob.x25519SecretKey, alice.x25519PublicKey), bundle);

  const refused = (f: () => unknown, why: string): void => assert.throws(f, (e: unknown) => e instanceof SecaggError && e.code === 'TWF_E_SECAGG_BOX', why);
  refused(() => openShares(CTX, 'alice', 'bob', box, carol.x25519SecretKey, alice.x25519PublicKey), 'another recipient key');
  refused(() => openShares(CTX, 'alice', 'bob', box, bob.x25519SecretKey, carol.x25519PublicKey), 'another sender key');
  refused(() => openShares({ ...CTX, round: 8 }, 'alice', 'bob', box, bob.x25519SecretKey, alice.x25519PublicKey), 'another round');
  refused(() => openShares({ ...CTX, studyId: 'other' }, 'alice', 'bob', box, bob.x25519SecretKey, alice.x25519PublicKey), 'another study');
  refused(() => openShares({ ...CTX, manifestHash: 'c'.repeat(64) }, 'alice', 'bob', box, bob.x25519SecretKey, alice.x25519PublicKey), 'another manifest');
  // the box key is symmetric: swapped roles open the box, the binding refuses it
  refused(() => openShares(CTX, 'bob', 'alice', box, alice.x25519SecretKey, bob.x25519PublicKey), 'swapped from/to');
  refused(() => openShares(CTX, 'alice', 'carol', box, bob.x25519SecretKey, alice.x25519PublicKey), 'other recipient name');
  const raw = fromB64(box);
  for (const pos of [0, 23, 24, 39, 40, 60, raw.length - 1]) {
    const x = raw.slice();
    x[pos] ^= 1;
    refused(() => openShares(CTX, 'alice', 'bob', toB64(x), bob.x25519SecretKey, alice.x25519PublicKey), `tampered byte ${pos}`);
  }
  refused(() => openShares(CTX, 'alice', 'bob', toB64(raw.subarray(0, raw.length - 1)), bob.x25519SecretKey, alice.x25519PublicKey), 'truncated');
  refused(() => openShares(CTX, 'alice', 'bob', '', bob.x25519SecretKey, alice.x25519PublicKey), 'empty');
  refused(() => openShares(CTX, 'alice', 'bob', 'not base64 at all!', bob.x25519SecretKey, alice.x25519PublicKey), 'garbage');
  refused(() => openShares(CTX, 'alice', 'bob', 42 as unknown as string, bob.x25519SecretKey, alice.x25519PublicKey), 'not a string');
  assertSecagg(() => sealShares(CTX, 'alice', 'alice', bundle, alice.x25519SecretKey, alice.x25519PublicKey), 'TWF_E_SECAGG_PEERS');
  assertSecagg(() => sealShares(CTX, 'alice', 'bob', bundle, alice.x25519SecretKey, new Uint8Array(31)), 'TWF_E_SECAGG_KEY');
  assertSecagg(() => sealShares(CTX, 'alice', 'bob', { bShare: new Uint8Array(1), sShare: bundle.sShare }, alice.x25519SecretKey, bob.x25519PublicKey), 'TWF_E_SECAGG_SHARES');
});

// ---------------------------------------------------------------- masking, no HE

interface Site {
  id: string;
  secrets: RoundSecrets;
  identity: Identity;
}

function makeSites(ids: string[]): Site[] {
  return ids.map((id) => ({ id, secrets: generateRoundSecrets(), identity: generateIdentity() }));
}

const peersOf = (sites: Site[], self: Site): { siteId: string; sPk: Uint8Array }[] => sites.filter((s) => s !== self).map((s) => ({ siteId: s.id, sPk: s.secrets.sPk }));

function addZt(a: Float64Array, b: Float64Array, t: number): Float64Array {
  return a.map((x, i) => (x + b[i]) % t);
}

test('masks cancel: Σ y = Σ q + Σ PRG(b); unmaskSum with and without dropped sites gives Σ q', () => {
  const sites = makeSites(['d', 'a', 'c', 'b', 'e']); // unsorted on purpose: signs follow string order
  const r = rng(3);
  const L = 5000;
  const q = sites.map(() => Float64Array.from({ length: L }, () => Math.floor(r() * TN)));
  const y = sites.map((s, k) => maskInput(CTX, T, s.id, s.secrets, q[k], peersOf(sites, s)));
  assert.notDeepEqual(y[0], q[0]);
  // all five survive
  let sum = y.reduce((acc, v) => addZt(acc, v, TN), new Float64Array(L));
  const sumQ = q.reduce((acc, v) => addZt(acc, v, TN), new Float64Array(L));
  unmaskSum(
    CTX,
    T,
    sum,
    sites.map((s) => ({ siteId: s.id, b: s.secrets.b })),
    [],
    new Map(),
  );
  assert.deepEqual(sum, sumQ);
  // 'a' and 'e' drop after the key set-up: their masked inputs are never added
  const alive = [0, 2, 3];
  sum = alive.reduce((acc, k) => addZt(acc, y[k], TN), new Float64Array(L));
  const pks = new Map(alive.map((k) => [sites[k].id, sites[k].secrets.sPk]));
  unmaskSum(
    CTX,
    T,
    sum,
    alive.map((k) => ({ siteId: sites[k].id, b: sites[k].secrets.b })),
    [1, 4].map((k) => ({ siteId: sites[k].id, sSk: sites[k].secrets.sSk })),
    pks,
  );
  assert.deepEqual(
    sum,
    alive.reduce((acc, k) => addZt(acc, q[k], TN), new Float64Array(L)),
  );
  // forgetting a dropped site leaves its masks in: the result is not the sum
  const wrong = alive.reduce((acc, k) => addZt(acc, y[k], TN), new Float64Array(L));
  unmaskSum(
    CTX,
    T,
    wrong,
    alive.map((k) => ({ siteId: sites[k].id, b: sites[k].secrets.b })),
    [{ siteId: 'a', sSk: sites[1].secrets.sSk }],
    pks,
  );
  assert.notDeepEqual(wrong, sum);
});

test('maskInput and unmaskSum refuse inconsistent site lists and out-of-range inputs', () => {
  const sites = makeSites(['a', 'b', 'c']);
  const [a] = sites;
  const q = new Float64Array(10);
  const peers = peersOf(sites, a);
  assertSecagg(() => maskInput(CTX, T, 'a', a.secrets, q, [...peers, { siteId: 'a', sPk: a.secrets.sPk }]), 'TWF_E_SECAGG_PEERS');
  assertSecagg(() => maskInput(CTX, T, 'a', a.secrets, q, [peers[0], peers[0], peers[1]]), 'TWF_E_SECAGG_PEERS');
  assertSecagg(() => maskInput(CTX, T, 'a', a.secrets, q, [peers[0]]), 'TWF_E_SECAGG_PARAMS'); // a round of 2
  assertSecagg(() => maskInput(CTX, T, 'a', a.secrets, Float64Array.from([TN]), peers), 'TWF_E_SECAGG_PARAMS');
  assertSecagg(() => maskInput(CTX, T, 'a', a.secrets, Float64Array.from([-1]), peers), 'TWF_E_SECAGG_PARAMS');
  assertSecagg(() => maskInput(CTX, T, 'a', a.secrets, Float64Array.from([0.5]), peers), 'TWF_E_SECAGG_PARAMS');
  assertSecagg(() => maskInput(CTX, T, 'a', a.secrets, Float64Array.from([NaN]), peers), 'TWF_E_SECAGG_PARAMS');
  assertSecagg(() => maskInput(CTX, 2n ** 48n, 'a', a.secrets, q, peers), 'TWF_E_SECAGG_PARAMS');
  assertSecagg(() => maskInput(CTX, T, 'a', a.secrets, q, [peers[0], { siteId: 'c', sPk: new Uint8Array(8) }]), 'TWF_E_SECAGG_KEY');
  const surv = [{ siteId: 'a', b: a.secrets.b }];
  assertSecagg(() => unmaskSum(CTX, T, new Float64Array(10), surv, [{ siteId: 'a', sSk: a.secrets.sSk }], new Map([['a', a.secrets.sPk]])), 'TWF_E_SECAGG_PEERS');
  assertSecagg(() => unmaskSum(CTX, T, new Float64Array(10), surv, [{ siteId: 'b', sSk: sites[1].secrets.sSk }], new Map()), 'TWF_E_SECAGG_PEERS');
  assertSecagg(() => unmaskSum(CTX, T, new Float64Array(10), [], [], new Map()), 'TWF_E_SECAGG_PEERS');
  assertSecagg(() => unmaskSum(CTX, T, Float64Array.from([TN]), surv, [], new Map()), 'TWF_E_SECAGG_PARAMS');
});

// ---------------------------------------------------------------- Z_t helpers

test('toZt and centreZt at the edges', () => {
  const h = (TN - 1) / 2;
  assert.deepEqual(Array.from(toZt(Float64Array.from([0, 1, TN - 1, TN, TN + 1, -1, -TN, -TN - 1, h, -h, 2 ** 52, -(2 ** 52)]), T)), [
    0,
    1,
    TN - 1,
    0,
    1,
    TN - 1,
    0,
    TN - 1,
    h,
    h + 1,
    2 ** 52 % TN,
    TN - (2 ** 52 % TN),
  ]);
  assert.deepEqual(Array.from(toZt(Int32Array.from([-2147483648, 2147483647, -5, 0]), T)), [TN - 2147483648, 2147483647, TN - 5, 0]);
  assert.ok(Object.is(toZt(Float64Array.from([-0]), T)[0], 0));
  assert.ok(Object.is(toZt(Float64Array.from([-TN]), T)[0], 0));
  assert.deepEqual(Array.from(toZt(Int32Array.from([-1, 3, 7]), 5n)), [4, 3, 2]);
  assertSecagg(() => toZt(Float64Array.from([0.5]), T), 'TWF_E_SECAGG_PARAMS');
  assertSecagg(() => toZt(Float64Array.from([NaN]), T), 'TWF_E_SECAGG_PARAMS');
  assertSecagg(() => toZt(Float64Array.from([Infinity]), T), 'TWF_E_SECAGG_PARAMS');

  assert.deepEqual(Array.from(centreZt(Float64Array.from([0, 1, h, h + 1, TN - 1]), T)), [0, 1, h, -h, -1]);
  assert.deepEqual(Array.from(centreZt(Float64Array.from([0, 2, 3, 4]), 5n)), [0, 2, -2, -1]);
  assert.deepEqual(Array.from(centreZt(Float64Array.from([2, 3]), 4n)), [2, -1]); // even t: t/2 stays (−t/2, t/2]
  for (const bad of [-1, TN, 0.5, NaN]) assertSecagg(() => centreZt(Float64Array.from([bad]), T), 'TWF_E_SECAGG_PARAMS');
  // round trip
  const r = rng(4);
  const x = Float64Array.from({ length: 1000 }, () => Math.round((r() - 0.5) * (TN - 1)));
  assert.deepEqual(centreZt(toZt(x, T), T), x);
});

// ---------------------------------------------------------------- statements

test('statement fields: sorted lists, sign and verify with the statement kinds', () => {
  const id = generateIdentity();
  const k = generateRoundSecrets();
  const commit = selfMaskCommitment(CTX, 'site-a', k.b);
  const fields = keysStatementFields(CTX, 'site-a', toB64(k.sPk), commit);
  assert.deepEqual(fields, { studyId: 'study-1', manifestHash: 'a'.repeat(64), round: 7, siteId: 'site-a', sPk: toB64(k.sPk), bCommit: commit });
  const sig = signStatement(SECAGG_KEYS_KIND, fields, id.ed25519SecretKey);
  assert.ok(verifyStatement(SECAGG_KEYS_KIND, fields, sig, id.ed25519PublicKey));
  assert.ok(!verifyStatement(SECAGG_SURVIVORS_KIND, fields, sig, id.ed25519PublicKey), 'kinds are domain-separated');
  assert.ok(!verifyStatement(SECAGG_KEYS_KIND, keysStatementFields({ ...CTX, round: 8 }, 'site-a', toB64(k.sPk), commit), sig, id.ed25519PublicKey));
  assertSecagg(() => keysStatementFields(CTX, 'site-a', toB64(k.sPk.subarray(1)), commit), 'TWF_E_SECAGG_KEY');
  assertSecagg(() => keysStatementFields(CTX, 'site-a', toB64(k.sPk), 'nothex'), 'TWF_E_SECAGG_KEY');

  const s1 = survivorsStatementFields(CTX, ['c', 'a', 'b', 'd'], ['d', 'a', 'c']);
  assert.deepEqual(s1, { studyId: 'study-1', manifestHash: 'a'.repeat(64), round: 7, keySet: ['a', 'b', 'c', 'd'], survivors: ['a', 'c', 'd'] });
  assert.deepEqual(survivorsStatementFields(CTX, ['d', 'b', 'c', 'a'], ['c', 'd', 'a']), s1, 'order of the input lists does not matter');
  const sig2 = signStatement(SECAGG_SURVIVORS_KIND, s1, id.ed25519SecretKey);
  assert.ok(verifyStatement(SECAGG_SURVIVORS_KIND, survivorsStatementFields(CTX, ['a', 'b', 'c', 'd'], ['a', 'c', 'd']), sig2, id.ed25519PublicKey));
  assert.ok(!verifyStatement(SECAGG_SURVIVORS_KIND, survivorsStatementFields(CTX, ['a', 'b', 'c', 'd'], ['a', 'b', 'c', 'd']), sig2, id.ed25519PublicKey));
  assertSecagg(() => survivorsStatementFields(CTX, ['a', 'b'], ['a', 'x']), 'TWF_E_SECAGG_PEERS');
  assertSecagg(() => survivorsStatementFields(CTX, ['a', 'a', 'b'], ['a']), 'TWF_E_SECAGG_PEERS');
  assertSecagg(() => survivorsStatementFields(CTX, ['a', 'b'], ['b', 'b']), 'TWF_E_SECAGG_PEERS');
});

// ---------------------------------------------------------------- catalogue

test('every TWF_E_SECAGG_ code used in the source is catalogued, used, and documented in README.md', () => {
  const here = dirname(fileURLToPath(import.meta.url)); // shared/dist/secagg
  const src = join(here, '..', '..', 'src', 'secagg');
  const used = new Set<string>();
  for (const f of readdirSync(src)) {
    if (!f.endsWith('.ts') || f.endsWith('.test.ts') || f === 'errors.ts') continue;
    for (const m of readFileSync(join(src, f), 'utf8').matchAll(/TWF_E_[A-Z_]+/g)) used.add(m[0]);
  }
  const catalogued = Object.keys(SECAGG_ERRORS);
  for (const c of used) assert.ok(catalogued.includes(c), `${c} is used but not catalogued`);
  for (const c of catalogued) assert.ok(used.has(c), `${c} is catalogued but never raised`);
  const readme = readFileSync(join(src, 'README.md'), 'utf8');
  for (const c of catalogued) assert.ok(readme.includes(c), `${c} is not documented in README.md`);
  const e = new SecaggError('TWF_E_SECAGG_BOX', 'detail');
  assert.equal(e.code, 'TWF_E_SECAGG_BOX');
  assert.ok(e.message.startsWith('TWF_E_SECAGG_BOX: detail. '));
  assert.ok(e.message.includes(SECAGG_ERRORS.TWF_E_SECAGG_BOX.message));
});

// ---------------------------------------------------------------- end to end with SEAL

test('end to end: 5 sites, real SEAL, one dropped after key set-up, one rogue share; a single ciphertext reads as noise', async () => {
  const he: HeContext = await createHeContext(DEFAULT_HE_PARAMS);
  const t = he.plainModulus;
  assert.equal(t, T);
  const studyKey = generateSecretKey(he); // every site holds it
  const B = 0.05;
  const P = DEFAULT_HE_PARAMS.precisionBits;
  const L = 10_000; // 3 ciphertexts, the last partly padded
  const ids = ['hosp-e', 'hosp-a', 'hosp-d', 'hosp-b', 'hosp-c'];
  const nSamples = [120, 45, 301, 77, 9];
  const sites = makeSites(ids);
  const N = sites.length;
  const thr = secaggThreshold(N);
  assert.equal(thr, 3);

  // --- round 0/1: keys and signed statements, shares sealed to every peer
  const commits = new Map(sites.map((s) => [s.id, selfMaskCommitment(CTX, s.id, s.secrets.b)]));
  const keyStatements = sites.map((s) => {
    const fields = keysStatementFields(CTX, s.id, toB64(s.secrets.sPk), commits.get(s.id)!);
    return { fields, sig: signStatement(SECAGG_KEYS_KIND, fields, s.identity.ed25519SecretKey) };
  });
  keyStatements.forEach((k, i) => assert.ok(verifyStatement(SECAGG_KEYS_KIND, k.fields, k.sig, sites[i].identity.ed25519PublicKey)));
  /** boxes[from][to] */
  const boxes = new Map<string, Map<string, string>>();
  const ownShares = new Map<string, { bShare: Uint8Array; sShare: Uint8Array }>();
  for (const s of sites) {
    const bShares = await splitSecret(s.secrets.b, N, thr);
    const sShares = await splitSecret(s.secrets.sSk, N, thr);
    const row = new Map<string, string>();
    sites.forEach((v, j) => {
      if (v === s) ownShares.set(s.id, { bShare: bShares[j], sShare: sShares[j] });
      else row.set(v.id, sealShares(CTX, s.id, v.id, { bShare: bShares[j], sShare: sShares[j] }, s.identity.x25519SecretKey, v.identity.x25519PublicKey));
    });
    boxes.set(s.id, row);
  }

  // --- round 2: 'hosp-d' drops after the key set-up; the others quantise, mask with all 4 peers, encrypt
  const r = rng(77);
  const deltas = sites.map(() => Float32Array.from({ length: L }, () => (r() * 2 - 1) * 1.2 * B));
  const droppedIdx = 2;
  const survivorsIdx = [0, 1, 3, 4];
  const q = sites.map((s, k) => quantizeToZt(deltas[k], nSamples[k], B, P, t).values);
  const uploads = new Map<number, Uint8Array[]>();
  for (const k of survivorsIdx) {
    const y = maskInput(CTX, t, sites[k].id, sites[k].secrets, q[k], peersOf(sites, sites[k]));
    const enc = encryptSlots(he, studyKey, y);
    assert.equal(enc.ciphertexts.length, 3);
    uploads.set(k, enc.ciphertexts);
  }

  // --- coordinator: adds ciphertexts, no key
  const sums = [0, 1, 2].map((c) => {
    let acc: Uint8Array | null = null;
    for (const k of survivorsIdx) acc = addCiphertexts(he, acc, uploads.get(k)![c]);
    return acc!;
  });
  const survivorsFields = survivorsStatementFields(
    CTX,
    ids,
    survivorsIdx.map((k) => ids[k]),
  );
  assert.deepEqual(survivorsFields.survivors, ['hosp-a', 'hosp-b', 'hosp-c', 'hosp-e']);

  // --- round 4: each survivor opens the boxes sent to it and reveals b-shares of survivors, s-shares of the dropped site
  const bSharesOf = new Map<string, Uint8Array[]>();
  const sSharesOfDropped: Uint8Array[] = [];
  for (const k of survivorsIdx) {
    const me = sites[k];
    for (const from of sites) {
      const bundle = from === me ? ownShares.get(me.id)! : openShares(CTX, from.id, me.id, boxes.get(from.id)!.get(me.id)!, me.identity.x25519SecretKey, from.identity.x25519PublicKey);
      if (survivorsIdx.includes(sites.indexOf(from))) {
        if (!bSharesOf.has(from.id)) bSharesOf.set(from.id, []);
        bSharesOf.get(from.id)!.push(bundle.bShare);
      } else {
        sSharesOfDropped.push(bundle.sShare);
      }
    }
  }
  // a rogue survivor (the first to answer) sends a wrong share of the dropped site's sSk
  sSharesOfDropped[0] = Uint8Array.from(sSharesOfDropped[0]);
  sSharesOfDropped[0][7] ^= 0xff;
  const dropped = sites[droppedIdx];
  const droppedSk = await reconstructChecked(sSharesOfDropped, thr, (x) => isKeyPair(x, dropped.secrets.sPk));
  assert.deepEqual(droppedSk, dropped.secrets.sSk);
  const survivorBs = await Promise.all(
    survivorsIdx.map(async (k) => {
      const id = ids[k];
      const b = await reconstructChecked(bSharesOf.get(id)!, thr, (x) => selfMaskCommitment(CTX, id, x) === commits.get(id));
      assert.ok(b, `b of ${id} reconstructed`);
      return { siteId: id, b: b! };
    }),
  );

  // --- a site decrypts the sum, removes the masks, averages
  const slots = decryptSlots(he, studyKey, sums, L);
  unmaskSum(CTX, t, slots, survivorBs, [{ siteId: dropped.id, sSk: droppedSk! }], new Map(survivorsIdx.map((k) => [ids[k], sites[k].secrets.sPk])));
  const total = survivorsIdx.reduce((s, k) => s + nSamples[k], 0);
  const avg = averageFromCentred(centreZt(slots, t), total, B, P, t);
  const clip = (x: number): number => Math.max(-B, Math.min(B, x));
  const bound = (survivorsIdx.length / total) * 2 ** -(P + 1) * B + 2 ** -24 * B; // rounding per site + float32 output
  let maxErr = 0;
  for (let i = 0; i < L; i++) {
    let exact = 0;
    for (const k of survivorsIdx) exact += nSamples[k] * clip(deltas[k][i]);
    maxErr = Math.max(maxErr, Math.abs(avg[i] - exact / total));
  }
  assert.ok(maxErr <= bound, `max error ${maxErr} > bound ${bound}`);

  // --- the privacy claim: one site's own ciphertext, decrypted with the study key, is uniform noise mod t
  const k0 = 1; // hosp-a, 45 samples
  const single = decryptSlots(
    he,
    studyKey,
    uploads.get(k0)!.map((c) => addCiphertexts(he, null, c)),
    L,
  );
  const { mean } = meanVar(single);
  assert.ok(Math.abs(mean / TN - 0.5) < 5 / Math.sqrt(12 * L), `mean ${mean / TN} t`);
  assert.ok(chiSquare(single, TN, 50) < 49 + 6 * Math.sqrt(98), 'chi-square, 50 bins');
  const qCentred = centreZt(q[k0], t);
  const rho = correlation(centreZt(single, t), qCentred);
  assert.ok(Math.abs(rho) < 5 / Math.sqrt(L), `correlation with q: ${rho}`);
  // an unmasked q lies within ±n·2^p of 0; the masked values land there with probability 2·n·2^p/t ≈ 2e-5
  const range = nSamples[k0] * 2 ** P;
  const inRange = centreZt(single, t).filter((v) => Math.abs(v) <= range).length;
  assert.ok(inRange <= 2, `${inRange} of ${L} masked slots inside ±n·2^p`);
  for (let i = 0; i < L; i++) assert.ok(Math.abs(qCentred[i]) <= range);
  process.stderr.write(
    `# e2e: ${survivorsIdx.length}/${N} survivors, t = ${thr}, max error ${maxErr.toExponential(2)} (bound ${bound.toExponential(2)}); single ciphertext: mean ${(mean / TN).toFixed(4)} t, corr(q) ${rho.toFixed(4)}, ${inRange} slots in ±n·2^p\n`,
  );
});

test('round keys are clamped (RFC 7748 sec. 5) and isKeyPair accepts only that canonical form', () => {
  for (let i = 0; i < 20; i++) {
    const k = generateRoundSecrets();
    assert.equal(k.sSk[0] & 7, 0);
    assert.equal(k.sSk[31] & 0xc0, 0x40);
    assert.equal(isKeyPair(k.sSk, k.sPk), true);
    // Same X25519 key after clamping, but not the secret that was shared: refused.
    for (const [byte, bit] of [
      [0, 1],
      [0, 4],
      [31, 128],
      [31, 64],
    ] as const) {
      const other = Uint8Array.from(k.sSk);
      other[byte] ^= bit;
      assert.equal(isKeyPair(other, k.sPk), false, `byte ${byte} bit ${bit}`);
    }
  }
});
