import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { WireError } from '@twinfed/protocols';
import { DEFAULT_HE_PARAMS } from '@twinfed/shared/he/index';
import { BENCH_PLAINTEXT_CONSENT, parseCoordinatorConfig } from '../config.js';
import { SumPool } from './pool.js';

/** The plaintext mode exists for the aggregation benchmark only (what does encryption cost?). */
describe('bench-only plaintext aggregation', () => {
  const pools: SumPool[] = [];
  after(async () => {
    for (const p of pools) await p.close();
  });

  it('is refused without TWINFED_BENCH_PLAINTEXT saying that updates are not encrypted', () => {
    const base = { dataDir: '/tmp/x', adminToken: 'a'.repeat(20) };
    const saved = process.env.TWINFED_BENCH_PLAINTEXT;
    try {
      delete process.env.TWINFED_BENCH_PLAINTEXT;
      assert.throws(() => parseCoordinatorConfig({ ...base, benchPlaintext: true }), /TWF_E_CONFIG.*benchPlaintext/);
      process.env.TWINFED_BENCH_PLAINTEXT = 'yes';
      assert.throws(() => parseCoordinatorConfig({ ...base, benchPlaintext: true }), /TWF_E_CONFIG/);
      process.env.TWINFED_BENCH_PLAINTEXT = BENCH_PLAINTEXT_CONSENT;
      assert.equal(parseCoordinatorConfig({ ...base, benchPlaintext: true }).benchPlaintext, true);
      assert.equal(parseCoordinatorConfig(base).benchPlaintext, false, 'off by default');
    } finally {
      if (saved === undefined) delete process.env.TWINFED_BENCH_PLAINTEXT;
      else process.env.TWINFED_BENCH_PLAINTEXT = saved;
    }
  });

  it('sums float32 chunks in float64 on the workers, undoes a refused one, and refuses what is not float32', async () => {
    const pool = new SumPool('plaintext', 2);
    pools.push(pool);
    const key = SumPool.key('s', 1);
    pool.open(key);
    const f = (x: number[]) => new Uint8Array(Float32Array.from(x).buffer);
    await pool.add(key, DEFAULT_HE_PARAMS, 0, f([1, 2, 3]));
    await pool.add(key, DEFAULT_HE_PARAMS, 0, f([0.5, -2, 10]));
    await pool.add(key, DEFAULT_HE_PARAMS, 1, f([7]));
    await pool.add(key, DEFAULT_HE_PARAMS, 1, f([8]));
    await pool.sub(key, DEFAULT_HE_PARAMS, 1, f([8]));
    await assert.rejects(pool.add(key, DEFAULT_HE_PARAMS, 0, new Uint8Array(5)), (e: unknown) => e instanceof WireError && e.code === 'TWF_E_BAD_CIPHERTEXT');
    await assert.rejects(pool.add(key, DEFAULT_HE_PARAMS, 0, f([1, 2])), /the sum holds 3/);
    const sums = await pool.take(key);
    assert.deepEqual([...new Float64Array(sums.get(0)!.slice().buffer)], [1.5, 0, 13]);
    assert.deepEqual([...new Float64Array(sums.get(1)!.slice().buffer)], [7]);
  });
});
