import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import type { SliceSet } from '../data/slices.js';
import { mulberry32 } from '../model/prng.js';
import { createUNet, disposeUNet, getFlatWeights, segmentationLoss, unetLogits } from '../model/unet.js';
import { selectBackend } from './backend.js';
import { FlatAdam } from './adam.js';
import { DataParallelTrainer, workersFromEnv } from './parallel.js';
import { trainLocal } from './train.js';

const cfg = { inChannels: 2, nClasses: 3, base: 4, depth: 2, size: 16 };

/** Random images and one-hot labels where the classes follow the first channel (so the loss has a signal). */
function batch(bs: number, seed: number): { x: Float32Array; y: Float32Array } {
  const r = mulberry32(seed);
  const px = cfg.size * cfg.size;
  const x = Float32Array.from({ length: bs * px * cfg.inChannels }, () => 2 * r() - 1);
  const y = new Float32Array(bs * px * cfg.nClasses);
  for (let i = 0; i < bs * px; i++) {
    const v = x[i * cfg.inChannels];
    y[i * cfg.nClasses + (v > 0.4 ? 1 : v < -0.6 ? 2 : 0)] = 1;
  }
  return { x, y };
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
  return d;
}

describe('data-parallel training on worker threads', () => {
  before(async () => {
    await selectBackend('wasm');
  });

  it('FlatAdam follows tf.train.adam step by step', async () => {
    await tf.setBackend('cpu');
    const n = 1000, r = mulberry32(12);
    const w0 = Float32Array.from({ length: n }, () => 2 * r() - 1);
    const v = tf.variable(tf.tensor1d(w0));
    const opt = tf.train.adam(1e-2);
    const w = w0.slice();
    const flat = new FlatAdam(n, { learningRate: 1e-2, epsilon: tf.backend().epsilon() });
    for (let t = 0; t < 20; t++) {
      // Gradients over 6 orders of magnitude, some exactly zero (ε matters there).
      const g = Float32Array.from({ length: n }, (_, i) => (i % 10 === 0 ? 0 : (2 * r() - 1) * 10 ** (-3 * r())));
      const gt = tf.tensor1d(g);
      opt.applyGradients([{ name: v.name, tensor: gt }]);
      gt.dispose();
      flat.step(w, g);
    }
    const ref = v.dataSync() as Float32Array;
    assert.ok(maxAbsDiff(w, ref) < 1e-6, `FlatAdam differs from tfjs Adam by ${maxAbsDiff(w, ref)}`);
    assert.ok(maxAbsDiff(w, w0) > 0.1, 'the steps moved the weights');
    assert.equal(flat.steps, 20);
    assert.throws(() => flat.step(w, new Float32Array(3)), /expected 1000/);
    opt.dispose();
    v.dispose();
    await tf.setBackend('wasm');
  });

  for (const diceWeight of [0, 1]) {
    it(`4 Adam steps with 3 workers equal 4 single-thread steps (diceWeight ${diceWeight}, uneven shards)`, async () => {
      const bs = 5; // shards of 1, 2, 2 slices
      const single = createUNet(cfg, 9), par = createUNet(cfg, 9);
      const o1 = tf.train.adam(3e-3);
      const w2 = getFlatWeights(par);
      const o2 = new FlatAdam(w2.length, { learningRate: 3e-3, epsilon: tf.backend().epsilon() });
      const trainer = await DataParallelTrainer.start(cfg, { workers: 3 });
      let tensors = 0;
      try {
        for (let step = 0; step < 4; step++) {
          const { x, y } = batch(bs, 100 + step);
          const xt = tf.tensor4d(x, [bs, cfg.size, cfg.size, cfg.inChannels]);
          const yt = tf.tensor4d(y, [bs, cfg.size, cfg.size, cfg.nClasses]);
          const cost = o1.minimize(() => segmentationLoss(unetLogits(single, xt), yt, { diceWeight }), true, single.params)!;
          const l1 = cost.dataSync()[0];
          tf.dispose([xt, yt, cost]);
          const l2 = await trainer.step(w2, o2, x, y, bs, diceWeight);
          assert.ok(Math.abs(l1 - l2) <= 1e-5 * Math.abs(l1), `step ${step}: loss ${l2} vs single-thread ${l1}`);
          // After the first step the optimisers hold all their state: the count must stay flat.
          if (step === 0) tensors = tf.memory().numTensors;
        }
        assert.equal(tf.memory().numTensors, tensors, 'no tensor leak per step');
        const w1 = getFlatWeights(single);
        // Adam moves every weight by ~lr per step, so 4 steps change weights by ~1e-2;
        // the two runs must agree far more closely than that.
        const initial = createUNet(cfg, 9);
        assert.ok(maxAbsDiff(w1, getFlatWeights(initial)) > 1e-3, 'the steps moved the weights');
        disposeUNet(initial);
        assert.ok(maxAbsDiff(w1, w2) < 2e-5, `weights differ by ${maxAbsDiff(w1, w2)}`);
      } finally {
        await trainer.close();
        o1.dispose();
        disposeUNet(single);
        disposeUNet(par);
      }
    });
  }

  it('trainLocal({ workers: 2 }) gives the same model as single-thread trainLocal', async () => {
    const n = 12, size = 16;
    const r = mulberry32(4);
    const images = Float32Array.from({ length: n * size * size }, () => r());
    const masks = Uint8Array.from(images, (v) => (v > 0.7 ? 1 : 0));
    const data: SliceSet = {
      images, masks, n, size, spacingMm: [1, 1, 1], z: Int32Array.from({ length: n }, (_, i) => i),
      patient: new Int32Array(n), maskVoxelsOutside: 0,
    };
    const opts = { epochs: 2, batchSize: 5, learningRate: 0.01, seed: 3 };
    const a = createUNet({ size }, 1), b = createUNet({ size }, 1);
    const ra = await trainLocal(a, data, { ...opts, workers: 0 });
    const rb = await trainLocal(b, data, { ...opts, workers: 2 });
    assert.equal(rb.steps, ra.steps);
    assert.ok(Math.abs(ra.loss - rb.loss) <= 1e-5 * ra.loss, `loss ${rb.loss} vs ${ra.loss}`);
    assert.ok(maxAbsDiff(getFlatWeights(a), getFlatWeights(b)) < 2e-5);
    disposeUNet(a);
    disposeUNet(b);
  });

  it('TWINFED_TRAIN_WORKERS: unset or empty is off, a count is used, anything else is refused', () => {
    assert.equal(workersFromEnv({}), 0);
    assert.equal(workersFromEnv({ TWINFED_TRAIN_WORKERS: ' ' }), 0);
    assert.equal(workersFromEnv({ TWINFED_TRAIN_WORKERS: '2' }), 2);
    assert.throws(() => workersFromEnv({ TWINFED_TRAIN_WORKERS: 'two' }), /whole number of worker threads/);
    assert.throws(() => workersFromEnv({ TWINFED_TRAIN_WORKERS: '-1' }), /0 = off/);
  });

  it('a worker that cannot start its backend is reported, not hung on', async () => {
    await assert.rejects(
      DataParallelTrainer.start(cfg, { workers: 1, backend: 'no-such-backend' as never }),
      /training worker/,
    );
  });
});
