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
    const n = 1000,
      r = mulberry32(12);
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
    it(`3 workers, uneven shards: the same loss and gradient as single-thread, along an Adam trajectory (diceWeight ${diceWeight})`, async () => {
      const bs = 5; // shards of 1, 2, 2 slices
      const model = createUNet(cfg, 9);
      const opt = tf.train.adam(3e-3);
      const trainer = await DataParallelTrainer.start(cfg, { workers: 3 });
      let tensors = 0;
      try {
        for (let step = 0; step < 4; step++) {
          const { x, y } = batch(bs, 100 + step);
          const par = await trainer.gradient(getFlatWeights(model), x, y, bs, diceWeight);
          const xt = tf.tensor4d(x, [bs, cfg.size, cfg.size, cfg.inChannels]);
          const yt = tf.tensor4d(y, [bs, cfg.size, cfg.size, cfg.nClasses]);
          const { value, grads } = tf.variableGrads(() => segmentationLoss(unetLogits(model, xt), yt, { diceWeight }), model.params);
          const loss = value.dataSync()[0];
          assert.ok(Math.abs(loss - par.loss) <= 1e-5 * Math.abs(loss), `step ${step}: loss ${par.loss} vs single-thread ${loss}`);
          let o = 0;
          for (const [i, p] of model.params.entries()) {
            const g = grads[p.name].dataSync() as Float32Array;
            const scale = g.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
            const d = maxAbsDiff(g, par.grads.subarray(o, o + g.length));
            assert.ok(d <= 1e-5 * scale + 1e-12, `step ${step}, ${model.specs[i].name}: gradients differ by ${d} (scale ${scale})`);
            o += g.length;
          }
          opt.applyGradients(grads as tf.NamedTensorMap as never);
          tf.dispose([xt, yt, value, ...Object.values(grads)]);
          if (step === 0) tensors = tf.memory().numTensors;
        }
        assert.equal(tf.memory().numTensors, tensors, 'no tensor leak per step');
      } finally {
        await trainer.close();
        opt.dispose();
        disposeUNet(model);
      }
    });
  }

  it('trainLocal({ workers: 2 }) follows single-thread trainLocal', async () => {
    const n = 12,
      size = 16;
    const r = mulberry32(4);
    const images = Float32Array.from({ length: n * size * size }, () => r());
    const masks = Uint8Array.from(images, (v) => (v > 0.7 ? 1 : 0));
    const data: SliceSet = {
      images,
      masks,
      n,
      size,
      spacingMm: [1, 1, 1],
      z: Int32Array.from({ length: n }, (_, i) => i),
      patient: new Int32Array(n),
      maskVoxelsOutside: 0,
    };
    const opts = { epochs: 2, batchSize: 5, learningRate: 0.01, seed: 3 };
    const a = createUNet({ size }, 1),
      b = createUNet({ size }, 1);
    const ra = await trainLocal(a, data, { ...opts, workers: 0 });
    const rb = await trainLocal(b, data, { ...opts, workers: 2 });
    assert.equal(rb.steps, ra.steps);
    assert.ok(Math.abs(ra.loss - rb.loss) <= 1e-3 * ra.loss, `loss ${rb.loss} vs ${ra.loss}`);
    // Each step is the same step up to float summation order (previous tests), but Adam
    // divides by the gradient's running RMS, so a weight whose gradient is ~0 moves by up
    // to ~lr either way on float noise and trajectories drift apart at that level. Most
    // weights must agree to float precision; none may differ by more than Adam's step bound.
    const wa = getFlatWeights(a),
      wb = getFlatWeights(b);
    const d = Array.from(wa, (v, i) => Math.abs(v - wb[i])).sort((p, q) => p - q);
    assert.ok(d[Math.floor(d.length / 2)] < 1e-6, `median weight difference ${d[Math.floor(d.length / 2)]}`);
    assert.ok(d[d.length - 1] <= 2 * opts.learningRate * ra.steps, `largest weight difference ${d[d.length - 1]}`);
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
    await assert.rejects(DataParallelTrainer.start(cfg, { workers: 1, backend: 'no-such-backend' as never }), /training worker/);
  });
});
