import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import type { SliceSet } from '../data/slices.js';
import { mulberry32 } from '../model/prng.js';
import { createUNet, disposeUNet, getFlatWeights, segmentationLoss, unetLogits } from '../model/unet.js';
import { selectBackend } from './backend.js';
import { FlatAdam } from './adam.js';
import { DataParallelTrainer, closeSharedTrainingPool, sharedTrainingPool, siteTrainingWorkers, workersFromEnv } from './parallel.js';
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

/** 12 one-channel 16x16 slices with a learnable mask (trainLocal's input). */
function slices(): { data: SliceSet; size: number } {
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
  return { data, size };
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
  after(() => closeSharedTrainingPool());

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
    const { data, size } = slices();
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

  it('the shared pool is started once and reused across trainLocal calls, with the same result as fresh workers', async () => {
    const { data, size } = slices();
    const opts = { epochs: 1, batchSize: 5, learningRate: 0.01, workers: 2 };
    const round = async (model: ReturnType<typeof createUNet>, seed: number, fresh: boolean) => {
      if (fresh) await closeSharedTrainingPool();
      return trainLocal(model, data, { ...opts, seed });
    };
    // Two rounds (the second from the first's weights, another seed, FedProx-free) on fresh workers each...
    await closeSharedTrainingPool();
    const a = createUNet({ size }, 1);
    const a1 = await round(a, 1, true);
    const a2 = await round(a, 2, true);
    // ...and on one pool, which must be started by the first call only.
    await closeSharedTrainingPool();
    const b = createUNet({ size }, 1);
    const b1 = await round(b, 1, false);
    const pool = await sharedTrainingPool(2);
    const ids = pool.threadIds;
    const b2 = await round(b, 2, false);
    assert.equal(await sharedTrainingPool(2), pool, 'the same pool object');
    assert.equal(pool.starts, 1, 'workers started once');
    assert.deepEqual(pool.threadIds, ids, 'the same worker threads');
    assert.deepEqual([b1.loss, b2.loss], [a1.loss, a2.loss]);
    assert.deepEqual(getFlatWeights(b), getFlatWeights(a), 'bit-identical weights after two rounds');
    // Another U-Net configuration on the same pool (the replicas are per configuration).
    const c = createUNet({ size, base: 2, depth: 1 }, 5);
    const rc = await trainLocal(c, data, { ...opts, seed: 3 });
    assert.ok(Number.isFinite(rc.loss));
    assert.equal(pool.starts, 1);
    disposeUNet(a);
    disposeUNet(b);
    disposeUNet(c);
  });

  it('closing the shared pool stops its workers; a later call starts a new pool; a closed pool refuses work', async () => {
    const pool = await sharedTrainingPool(2);
    const ids = pool.threadIds;
    assert.equal(ids.length, 2);
    await closeSharedTrainingPool();
    assert.deepEqual(pool.threadIds, [], 'workers terminated');
    await assert.rejects(pool.gradient(new Float32Array(1), new Float32Array(0), new Float32Array(0), 0, 0, cfg), /closed/);
    const next = await sharedTrainingPool(2);
    assert.notEqual(next, pool);
    assert.equal(next.threadIds.length, 2);
    assert.ok(
      next.threadIds.every((id) => !ids.includes(id)),
      'new threads',
    );
    await closeSharedTrainingPool();
    await closeSharedTrainingPool(); // idempotent
  });

  it("a process that trained with workers and never closed the pool exits by itself (idle workers are unref'd)", () => {
    const trainJs = fileURLToPath(new URL('./train.js', import.meta.url));
    const backendJs = fileURLToPath(new URL('./backend.js', import.meta.url));
    const unetJs = fileURLToPath(new URL('../model/unet.js', import.meta.url));
    const code = `
      const { trainLocal } = await import(${JSON.stringify(trainJs)});
      const { selectBackend } = await import(${JSON.stringify(backendJs)});
      const { createUNet } = await import(${JSON.stringify(unetJs)});
      await selectBackend('wasm');
      const n = 4, size = 16;
      const images = Float32Array.from({ length: n * size * size }, (_, i) => (i % 7) / 7);
      const data = { images, masks: Uint8Array.from(images, (v) => (v > 0.6 ? 1 : 0)), n, size, spacingMm: [1, 1, 1], z: new Int32Array(n), patient: new Int32Array(n), maskVoxelsOutside: 0 };
      const r = await trainLocal(createUNet({ size, base: 2, depth: 1 }, 1), data, { epochs: 1, batchSize: 4, learningRate: 0.01, seed: 1, workers: 2 });
      console.log(JSON.stringify({ steps: r.steps }));
    `;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', code], { encoding: 'utf8', timeout: 120_000 });
    assert.equal(r.signal, null, 'exited on its own (not killed by the timeout)');
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout.trim().split('\n').at(-1)!), { steps: 1 });
  });

  it('errors in a worker reject the call instead of hanging it, and the pool carries on', async () => {
    const trainer = await DataParallelTrainer.start(cfg, { workers: 2 });
    try {
      const { x, y } = batch(4, 1);
      // An exception inside a request: that request is rejected, the workers live on.
      await assert.rejects(trainer.gradient(new Float32Array(5), x, y, 4, 0), /training worker: .*/);
      const ok = await trainer.gradient(getFlatWeights(createUNet(cfg, 2)), x, y, 4, 1);
      assert.ok(Number.isFinite(ok.loss));
      assert.equal(trainer.starts, 1);
      // A worker that dies (uncaught exception): the call in flight is rejected...
      const err = await trainer.crashWorkerForTest(1);
      assert.match(String(err?.message), /training worker (failed: crash requested by a test|exited)/);
      // ...and the next call starts the workers afresh.
      const again = await trainer.gradient(getFlatWeights(createUNet(cfg, 2)), x, y, 4, 1);
      assert.equal(again.loss, ok.loss);
      assert.equal(trainer.starts, 2);
    } finally {
      await trainer.close();
    }
  });

  it('site default: TWINFED_TRAIN_WORKERS when set, else one worker per core (capped), none on one core', () => {
    assert.equal(siteTrainingWorkers({}, 2), 2);
    assert.equal(siteTrainingWorkers({}, 8), 8);
    assert.equal(siteTrainingWorkers({}, 128), 16);
    assert.equal(siteTrainingWorkers({}, 1), 0);
    assert.equal(siteTrainingWorkers({ TWINFED_TRAIN_WORKERS: '0' }, 8), 0);
    assert.equal(siteTrainingWorkers({ TWINFED_TRAIN_WORKERS: '3' }, 8), 3);
    assert.equal(siteTrainingWorkers({ TWINFED_TRAIN_WORKERS: '' }, 4), 4);
    assert.throws(() => siteTrainingWorkers({ TWINFED_TRAIN_WORKERS: 'all' }, 4), /whole number of worker threads/);
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
