import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { WireError, chunkBody, chunkCount, packFrames } from '@twinfed/protocols';
import { DEFAULT_HE_PARAMS, addCiphertexts, createHeContext, decryptSlots, encryptSlots, generateSecretKey, subtractCiphertext, type HeContext } from '@twinfed/shared/he/index';
import { SumPool } from './pool.js';

/** Deterministic shuffle (xorshift), so a failure reproduces. */
function shuffled<T>(xs: T[], seed: number): T[] {
  const a = [...xs];
  let s = seed >>> 0 || 1;
  for (let i = a.length - 1; i > 0; i--) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    const j = (s >>> 0) % (i + 1);
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}

const same = (a: Uint8Array, b: Uint8Array) => a.length === b.length && Buffer.compare(Buffer.from(a), Buffer.from(b)) === 0;

describe('aggregation pool: sums on worker threads', () => {
  const SITES = 5;
  const COUNT = 7; // ciphertexts per update: spread over the workers unevenly (7 mod 2, mod 3)
  let he: HeContext;
  let sk: Uint8Array;
  /** uploads[site][index] */
  let uploads: Uint8Array[][];
  let values: Float64Array[];
  let serial: Uint8Array[];
  const pools: SumPool[] = [];

  before(async () => {
    he = await createHeContext(DEFAULT_HE_PARAMS);
    sk = generateSecretKey(he);
    const t = Number(he.plainModulus);
    values = Array.from({ length: SITES }, (_, s) => Float64Array.from({ length: COUNT * he.slotCount - 5 }, (_, k) => (s * 7919 + k * 104729) % t));
    uploads = values.map((v) => encryptSlots(he, sk, v).ciphertexts);
    // The reference: the serial sum, site after site, as the coordinator added them before.
    serial = Array.from({ length: COUNT }, (_, i) => uploads.reduce<Uint8Array | null>((acc, u) => addCiphertexts(he, acc, u[i]), null)!);
  });
  after(async () => {
    for (const p of pools) await p.close();
  });

  for (const workers of [0, 1, 2, 3]) {
    it(`${workers || 'no'} worker(s), chunks in a shuffled concurrent order: bit for bit the serial sum, and it decrypts to the plaintext sum`, async () => {
      const pool = new SumPool('he', workers);
      pools.push(pool);
      const key = SumPool.key('s', 1);
      pool.open(key);
      const jobs = shuffled(
        uploads.flatMap((u, s) => u.map((ct, i) => ({ s, i, ct }))),
        workers + 11,
      );
      await Promise.all(
        jobs.map(async (j) => {
          pool.begin(key);
          try {
            await pool.add(key, DEFAULT_HE_PARAMS, j.i, j.ct);
          } finally {
            pool.end(key);
          }
        }),
      );
      assert.equal(pool.isComplete(key), true);
      pool.seal(key);
      await pool.settled(key);
      const sums = await pool.take(key);
      assert.equal(sums.size, COUNT);
      for (let i = 0; i < COUNT; i++) assert.ok(same(sums.get(i)!, serial[i]), `index ${i}: the pool's sum differs from the serial sum`);
      const t = Number(he.plainModulus);
      const dec = decryptSlots(
        he,
        sk,
        Array.from({ length: COUNT }, (_, i) => sums.get(i)!),
        values[0].length,
      );
      for (let k = 0; k < values[0].length; k += 997) assert.equal(dec[k], values.reduce((a, v) => a + v[k], 0) % t);
    });
  }

  it('a chunk refused after its addition is subtracted: the sum is bit for bit the sum without it', async () => {
    const pool = new SumPool('he', 2);
    pools.push(pool);
    const key = SumPool.key('s', 2);
    pool.open(key);
    for (const u of uploads) for (let i = 0; i < COUNT; i++) await pool.add(key, DEFAULT_HE_PARAMS, i, u[i]);
    // Site 2's chunk 3 is refused where it is stored; an abandoned site 4 leaves entirely.
    await pool.sub(key, DEFAULT_HE_PARAMS, 3, uploads[2][3]);
    for (let i = 0; i < COUNT; i++) await pool.sub(key, DEFAULT_HE_PARAMS, i, uploads[4][i]);
    const sums = await pool.take(key);
    for (let i = 0; i < COUNT; i++) {
      let expected = uploads.slice(0, 4).reduce<Uint8Array | null>((acc, u) => addCiphertexts(he, acc, u[i]), null)!;
      if (i === 3) expected = subtractCiphertext(he, expected, uploads[2][3]);
      assert.ok(same(sums.get(i)!, expected), `index ${i}`);
    }
  });

  it("a sum's only chunk subtracted leaves no sum (not a zero ciphertext SEAL refuses); the next chunk starts it again", async () => {
    const pool = new SumPool('he', 1);
    pools.push(pool);
    const key = SumPool.key('s', 7);
    pool.open(key);
    await pool.add(key, DEFAULT_HE_PARAMS, 0, uploads[0][0]);
    await pool.sub(key, DEFAULT_HE_PARAMS, 0, uploads[0][0]);
    await pool.add(key, DEFAULT_HE_PARAMS, 0, uploads[1][0]);
    await pool.add(key, DEFAULT_HE_PARAMS, 0, uploads[2][0]);
    assert.equal(pool.isComplete(key), true, 'every operation succeeded');
    const sums = await pool.take(key);
    assert.ok(same(sums.get(0)!, addCiphertexts(he, addCiphertexts(he, null, uploads[1][0]), uploads[2][0])));
  });

  it('an invalid ciphertext is refused with TWF_E_BAD_CIPHERTEXT and leaves the sum unchanged', async () => {
    const pool = new SumPool('he', 1);
    pools.push(pool);
    const key = SumPool.key('s', 3);
    await pool.add(key, DEFAULT_HE_PARAMS, 0, uploads[0][0]);
    const bad = new Uint8Array(uploads[1][0]);
    bad[bad.length >> 1] ^= 0xff;
    await assert.rejects(pool.add(key, DEFAULT_HE_PARAMS, 0, bad), (e: unknown) => e instanceof WireError && e.code === 'TWF_E_BAD_CIPHERTEXT');
    const sums = await pool.take(key);
    assert.ok(same(sums.get(0)!, addCiphertexts(he, null, uploads[0][0])));
  });

  it('chunks of 3 ciphertexts (ciphertextsPerChunk): per-ciphertext sums bit for bit the serial ones; a chunk with a bad third ciphertext changes nothing; a subtracted chunk leaves entirely', async () => {
    const K = 3;
    const chunks = chunkCount(COUNT, K); // 7 ciphertexts: chunks of 3, 3, 1
    const chunkOf = (u: Uint8Array[], i: number) => chunkBody(u, i, K);
    for (const workers of [0, 2]) {
      const pool = new SumPool('he', workers);
      pools.push(pool);
      const key = SumPool.key('k', workers);
      pool.open(key);
      for (const j of shuffled(
        uploads.flatMap((u, s) => Array.from({ length: chunks }, (_, i) => ({ s, i, body: chunkOf(u, i) }))),
        workers + 3,
      ))
        await pool.add(key, DEFAULT_HE_PARAMS, j.i, j.body, false, K);
      const bad = uploads[0][2].slice();
      bad[bad.length >> 1] ^= 0xff;
      await assert.rejects(pool.add(key, DEFAULT_HE_PARAMS, 0, packFrames([uploads[1][0], uploads[1][1], bad]), false, K), (e: unknown) => e instanceof WireError && e.code === 'TWF_E_BAD_CIPHERTEXT');
      await assert.rejects(pool.add(key, DEFAULT_HE_PARAMS, 0, new Uint8Array([1, 0, 0, 0, 9]), false, K), (e: unknown) => e instanceof WireError && e.code === 'TWF_E_BAD_CIPHERTEXT');
      // An extra site's chunk 1 added, then refused where it is stored: subtracted again.
      await pool.add(key, DEFAULT_HE_PARAMS, 1, chunkOf(uploads[0], 1), false, K);
      await pool.sub(key, DEFAULT_HE_PARAMS, 1, chunkOf(uploads[0], 1), K);
      const sums = await pool.take(key);
      assert.equal(sums.size, COUNT, 'sums by ciphertext index, not by chunk');
      for (let i = 0; i < COUNT; i++) assert.ok(same(sums.get(i)!, serial[i]), `${workers} workers, ciphertext ${i}`);
    }
  });

  it('a round first seen through a chunk is not complete (it would be rebuilt); a sealed round refuses new chunks', async () => {
    const pool = new SumPool('he', 0);
    pools.push(pool);
    const key = SumPool.key('s', 4);
    pool.begin(key);
    pool.end(key);
    assert.equal(pool.isComplete(key), false, 'chunks stored before this process are not in its sum');
    pool.seal(key);
    assert.throws(
      () => pool.begin(key),
      (e: unknown) => e instanceof WireError && e.code === 'TWF_E_ROUND_CLOSED',
    );
    const opened = SumPool.key('s', 5);
    pool.open(opened);
    assert.equal(pool.isComplete(opened), true);
    pool.drop(opened);
    assert.equal(pool.isComplete(opened), false);
    assert.throws(() => pool.begin(opened), /upload phase is over/);
  });

  it('settled() waits for the chunks in flight', async () => {
    const pool = new SumPool('he', 1);
    pools.push(pool);
    const key = SumPool.key('s', 6);
    pool.open(key);
    pool.begin(key);
    let done = false;
    const waiting = pool.settled(key).then(() => (done = true));
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(done, false);
    pool.end(key);
    await waiting;
    assert.equal(done, true);
  });
});
