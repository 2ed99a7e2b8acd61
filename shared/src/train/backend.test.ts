import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import { selectBackend } from './backend.js';

describe('selectBackend', () => {
  const saved = process.env.TWINFED_BACKEND;
  before(() => {
    delete process.env.TWINFED_BACKEND;
  });
  afterEach(() => {
    delete process.env.TWINFED_BACKEND;
  });

  it('without tfjs-node picks wasm and says how to get the GPU build', async (t) => {
    const r = await selectBackend();
    if (r.name === 'tensorflow') return t.skip('tfjs-node is installed here');
    assert.equal(r.name, 'wasm');
    assert.equal(tf.getBackend(), 'wasm');
    assert.deepEqual(
      r.tried.map((a) => [a.name, a.ok]),
      [
        ['tensorflow', false],
        ['tensorflow', false],
        ['wasm', true],
      ],
    );
    assert.match(r.reason, /^wasm: @tensorflow\/tfjs-node-gpu not installed \(run `npm run setup:gpu` on a server with CUDA\)/);
    assert.match(r.reason, /Twinfed's training kernels/);
    // Selecting again is cheap and stable.
    assert.equal((await selectBackend()).name, 'wasm');
  });

  it('honours prefer and TWINFED_BACKEND', async () => {
    const r = await selectBackend('cpu');
    assert.equal(r.name, 'cpu');
    assert.equal(tf.getBackend(), 'cpu');
    assert.match(r.reason, /^cpu: forced/);
    process.env.TWINFED_BACKEND = 'wasm';
    assert.equal((await selectBackend()).name, 'wasm');
    process.env.TWINFED_BACKEND = 'gpu-please';
    await assert.rejects(selectBackend(), /TWINFED_BACKEND must be one of/);
  });

  it('falls through when the forced backend is unavailable', async (t) => {
    const r = await selectBackend('tensorflow');
    if (r.name === 'tensorflow') return t.skip('tfjs-node is installed here');
    assert.equal(r.name, 'wasm');
    assert.match(r.reason, /unavailable/);
  });

  after(() => {
    if (saved != null) process.env.TWINFED_BACKEND = saved;
  });
});
