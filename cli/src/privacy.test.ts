import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { epsilonFor } from '@twinfed/shared/dp/accountant';

const BIN = resolve(fileURLToPath(new URL('.', import.meta.url)), 'bin.js');
const twinfed = (...args: string[]) =>
  new Promise<{ code: number | null; out: string; err: string }>((res) => {
    execFile(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 60_000 }, (e, out, err) => res({ code: e ? (typeof e.code === 'number' ? e.code : null) : 0, out, err }));
  });

describe('twinfed privacy', () => {
  it('epsilon --json prints exactly one line {"epsilon","order"}: 5.65 for sigma 1.1, q 0.01, 10,000 steps, delta 1e-5', async () => {
    const r = await twinfed('privacy', 'epsilon', '--noise-multiplier', '1.1', '--rounds', '10000', '--sampling-rate', '0.01', '--delta', '1e-5', '--json');
    assert.equal(r.code, 0, r.err);
    const lines = r.out.trimEnd().split('\n');
    assert.equal(lines.length, 1);
    const j = JSON.parse(lines[0]!) as { epsilon: number; order: number };
    assert.deepEqual(Object.keys(j), ['epsilon', 'order']);
    assert.ok(Math.abs(j.epsilon - 5.65) < 0.005, String(j.epsilon));
    assert.deepEqual(j, epsilonFor({ samplingRate: 0.01, noiseMultiplier: 1.1, steps: 10_000, delta: 1e-5 }));
  });

  it('sigma is the inverse: the noise multiplier it prints meets the budget', async () => {
    const r = await twinfed('privacy', 'sigma', '--epsilon', '8', '--rounds', '5', '--sampling-rate', '1', '--delta', '1e-5', '--json');
    assert.equal(r.code, 0, r.err);
    const j = JSON.parse(r.out.trim()) as { noiseMultiplier: number; epsilon: number };
    assert.ok(j.epsilon <= 8);
    assert.equal(epsilonFor({ samplingRate: 1, noiseMultiplier: j.noiseMultiplier, steps: 5, delta: 1e-5 }).epsilon, j.epsilon);
    const text = await twinfed('privacy', 'epsilon', '--noise-multiplier', String(j.noiseMultiplier), '--rounds', '5');
    assert.match(text.out, /^epsilon \d+\.\d{3} at delta 1e-5/);
  });

  it('an unreachable budget fails with TWF_E_DP_PARAMS; bad numbers are refused', async () => {
    const r = await twinfed('privacy', 'sigma', '--epsilon', '0.001', '--rounds', '100000', '--json');
    assert.equal(r.code, 1);
    assert.match(r.err, /TWF_E_DP_PARAMS/);
    const bad = await twinfed('privacy', 'epsilon', '--noise-multiplier', '1', '--rounds', '10', '--sampling-rate', '1.5');
    assert.notEqual(bad.code, 0);
    assert.match(bad.err, /sampling-rate/);
  });
});
