import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import { squares } from './test-slices.js';
import { createUNet, disposeUNet, getFlatWeights } from '../model/unet.js';
import { selectBackend } from './backend.js';
import { fedAvg } from './fedavg.js';
import { dice, evaluateDice, trainLocal } from './train.js';

describe('dice', () => {
  it('follows the definition', () => {
    assert.equal(dice([1, 1, 0, 0], [1, 0, 1, 0]), 0.5);
    assert.equal(dice([0, 0], [0, 0]), 1);
    assert.equal(dice([0, 0], [0, 1]), 0);
    assert.equal(dice(new Uint8Array([2, 1]), new Uint8Array([1, 1])), 1);
    assert.throws(() => dice([1], [1, 0]), /differ/);
  });
});

describe('fedAvg', () => {
  it('weights by sample count', () => {
    const w = fedAvg([
      { weights: Float32Array.from([0, 2]), nSamples: 1 },
      { weights: Float32Array.from([3, 5]), nSamples: 2 },
    ]);
    assert.deepEqual([...w], [2, 4]);
    assert.throws(() => fedAvg([]), /no updates/);
  });
});

describe('trainLocal / evaluateDice', () => {
  before(async () => {
    await selectBackend('wasm');
  });

  const opts = { epochs: 8, batchSize: 8, learningRate: 0.01, seed: 7 };

  it('learns squares, yields to the event loop, and leaks no tensors', async () => {
    const train = squares(32, 16, 1),
      val = squares(12, 16, 2);
    const model = createUNet({ size: 16 }, 3);
    const before = await evaluateDice(model, val);
    const tensors = tf.memory().numTensors;
    let ticks = 0;
    let ticking = true;
    const tick = () => {
      ticks++;
      if (ticking) setImmediate(tick);
    };
    setImmediate(tick);
    const losses: number[] = [];
    const res = await trainLocal(model, train, { ...opts, onProgress: (p) => losses.push(p.loss) });
    ticking = false;
    assert.equal(res.steps, 8 * 4);
    assert.equal(res.nSamples, 32);
    assert.ok(ticks >= res.steps, `event loop ran ${ticks} times during ${res.steps} steps`);
    assert.equal(tf.memory().numTensors, tensors, 'tensors leaked by trainLocal');
    const mean = (a: number[]) => a.reduce((x, y) => x + y, 0) / a.length;
    assert.ok(mean(losses.slice(-4)) < 0.6 * mean(losses.slice(0, 4)), `loss ${losses[0]} -> ${losses.at(-1)}`);
    const after = await evaluateDice(model, val);
    assert.equal(tf.memory().numTensors, tensors, 'tensors leaked by evaluateDice');
    assert.equal(after.perPatient.length, 2);
    assert.ok(after.mean > before.mean + 0.2 && after.mean > 0.5, `Dice ${before.mean} -> ${after.mean}`);
    disposeUNet(model);
  });

  it('is deterministic for a seed and honours maxSteps', async () => {
    const train = squares(20, 16, 4);
    const a = createUNet({ size: 16 }, 9),
      b = createUNet({ size: 16 }, 9);
    await trainLocal(a, train, { ...opts, epochs: 2 });
    await trainLocal(b, train, { ...opts, epochs: 2 });
    assert.deepEqual(getFlatWeights(a), getFlatWeights(b));
    const r = await trainLocal(a, train, { ...opts, epochs: 5, maxSteps: 3 });
    assert.equal(r.steps, 3);
    const t = await trainLocal(a, train, { ...opts, epochs: 5, timeBudgetMs: 0 });
    assert.equal(t.steps, 0);
    disposeUNet(a);
    disposeUNet(b);
  });

  it('evaluateDice scores each patient as one volume', async () => {
    const model = createUNet({ size: 16 }, 1);
    const val = squares(6, 16, 5);
    const r = await evaluateDice(model, val, [5, 5, 5, 9, 9, 9]);
    assert.deepEqual(
      r.perPatient.map((p) => [p.patient, p.slices]),
      [
        [5, 3],
        [9, 3],
      ],
    );
    assert.ok(Math.abs(r.mean - (r.perPatient[0].dice + r.perPatient[1].dice) / 2) < 1e-12);
    await assert.rejects(evaluateDice(model, val, [0]), /length/);
    disposeUNet(model);
  });
});
