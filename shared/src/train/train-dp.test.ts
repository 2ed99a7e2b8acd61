import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import type { SliceSet } from '../data/slices.js';
import { gaussianFrom } from '../dp/noise.js';
import { mulberry32 } from '../model/prng.js';
import { squares } from './test-slices.js';
import { createUNet, disposeUNet, getFlatWeights, segmentationLoss, unetLogits, type UNet } from '../model/unet.js';
import { selectBackend } from './backend.js';
import { patientLossGradient, patientSlices, trainLocal } from './train.js';

const cfg = { inChannels: 1, nClasses: 2, base: 2, depth: 2, size: 16 };
const dist = (a: Float32Array, b: Float32Array) => Math.sqrt(a.reduce((s, v, i) => s + (v - b[i]) ** 2, 0));
const sortedAbsDiff = (a: Float32Array, b: Float32Array) => Array.from(a, (v, i) => Math.abs(v - b[i])).sort((p, q) => p - q);

/** tfjs gradient (flat, wire order) of (1/P) Σ_p segmentationLoss(patient p's slices). */
function meanPatientLossGradient(model: UNet, data: SliceSet, diceWeight: number): Float32Array {
  const s = data.size,
    px = s * s;
  const patients = patientSlices(data);
  const batches = patients.map((sl) => {
    const xs = new Float32Array(sl.length * px),
      ys = new Float32Array(sl.length * px * 2);
    sl.forEach((i, j) => {
      for (let k = 0; k < px; k++) {
        xs[j * px + k] = data.images[i * px + k];
        ys[(j * px + k) * 2 + data.masks[i * px + k]] = 1;
      }
    });
    return { x: tf.tensor4d(xs, [sl.length, s, s, 1]), y: tf.tensor4d(ys, [sl.length, s, s, 2]) };
  });
  const { value, grads } = tf.variableGrads(() => tf.div(tf.addN(batches.map((b) => segmentationLoss(unetLogits(model, b.x), b.y, { diceWeight }))), patients.length) as tf.Scalar, model.params);
  const out = new Float32Array(getFlatWeights(model).length);
  let o = 0;
  for (const p of model.params) {
    const g = grads[p.name].dataSync();
    out.set(g, o);
    o += g.length;
  }
  tf.dispose([value, ...Object.values(grads), ...batches.flatMap((b) => [b.x, b.y])]);
  return out;
}

describe('trainLocal: FedProx', () => {
  before(async () => {
    await selectBackend('wasm');
  });
  const data = squares(24, 16, 4, (i) => i % 3);
  const opts = { epochs: 3, batchSize: 8, learningRate: 0.01, seed: 7 };

  for (const workers of [0, 2]) {
    it(`mu = 0 is bit-identical to plain training; a large mu keeps the weights near the anchor (workers ${workers})`, async () => {
      const a = createUNet(cfg, 9),
        b = createUNet(cfg, 9),
        c = createUNet(cfg, 9);
      const anchor = getFlatWeights(a);
      const tensors = tf.memory().numTensors;
      const ra = await trainLocal(a, data, { ...opts, workers });
      await trainLocal(b, data, { ...opts, workers, proximal: { mu: 0, anchor } });
      const rc = await trainLocal(c, data, { ...opts, workers, proximal: { mu: 1e3, anchor } });
      assert.equal(tf.memory().numTensors, tensors, 'no tensor leak');
      assert.equal(rc.steps, ra.steps);
      assert.deepEqual(getFlatWeights(b), getFlatWeights(a));
      // Adam moves every weight by about lr per step whatever the gradient's size; with mu·(w − anchor)
      // dominating the gradient the weights oscillate within ~lr of the anchor instead of drifting.
      const moved = dist(getFlatWeights(a), anchor),
        kept = dist(getFlatWeights(c), anchor);
      assert.ok(kept < 0.35 * moved, `proximal run moved ${kept}, plain ${moved}`);
      await assert.rejects(trainLocal(c, data, { ...opts, workers, proximal: { mu: 1, anchor: new Float32Array(3) } }), /anchor/);
      [a, b, c].forEach(disposeUNet);
    });
  }
});

describe('trainLocal: patient-level DP-SGD', () => {
  before(async () => {
    await selectBackend('wasm');
  });

  it('patientSlices groups slices by patient in ascending id order', () => {
    const d = squares(7, 16, 1, (i) => [5, 2, 5, 9, 2, 2, 9][i]);
    assert.deepEqual(patientSlices(d), [
      [1, 4, 5],
      [0, 2],
      [3, 6],
    ]);
  });

  it('a patient done in micro-batches has the gradient of its whole loss (CE + soft Dice)', () => {
    const d = squares(7, 16, 2, () => 0);
    const model = createUNet(cfg, 3);
    const all = [0, 1, 2, 3, 4, 5, 6];
    const whole = patientLossGradient(model, d, all, { diceWeight: 1, microBatchSlices: 32 });
    const tensors = tf.memory().numTensors;
    const split = patientLossGradient(model, d, all, { diceWeight: 1, microBatchSlices: 3 });
    assert.equal(tf.memory().numTensors, tensors, 'no tensor leak');
    assert.ok(Math.abs(split.loss - whole.loss) < 1e-5 * whole.loss, `loss ${split.loss} vs ${whole.loss}`);
    const scale = whole.grad.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    const d1 = sortedAbsDiff(split.grad, whole.grad).at(-1)!;
    assert.ok(d1 < 1e-5 * scale, `gradients differ by ${d1} (scale ${scale})`);
    disposeUNet(model);
  });

  for (const diceWeight of [0, 1]) {
    it(`sigma 0, q 1, C huge: one DP step is the full-batch Adam step on the mean per-patient loss (diceWeight ${diceWeight})`, async () => {
      const data = squares(10, 16, 6, (i) => (i < 2 ? 0 : i < 6 ? 1 : 2)); // patients of 2, 4, 4 slices
      const lr = 0.01;
      const a = createUNet(cfg, 5),
        b = createUNet(cfg, 5);
      const r = await trainLocal(a, data, {
        epochs: 1,
        batchSize: 4,
        learningRate: lr,
        seed: 1,
        augment: false,
        diceWeight,
        dp: { samplingRate: 1, noiseMultiplier: 0, clipNorm: 1e9, steps: 1, microBatchSlices: 3 },
      });
      assert.equal(r.steps, 1);
      assert.equal(r.nPatients, 3);
      const g = meanPatientLossGradient(b, data, diceWeight);
      const opt = tf.train.adam(lr);
      const gt = b.params.map((p, i) => {
        const o = b.params.slice(0, i).reduce((n, q) => n + q.size, 0);
        return { name: p.name, tensor: tf.tensor(g.subarray(o, o + p.size), p.shape) };
      });
      opt.applyGradients(gt);
      tf.dispose(gt.map((t) => t.tensor));
      opt.dispose();
      // Adam's first step is lr·g/(|g| + ε): a weight with |g| near float noise may move either
      // way by up to lr; every other weight must agree to float precision.
      const d = sortedAbsDiff(getFlatWeights(a), getFlatWeights(b));
      assert.ok(d[Math.floor(0.95 * d.length)] < 1e-6, `95th percentile weight difference ${d[Math.floor(0.95 * d.length)]}`);
      assert.ok(d.at(-1)! <= 2 * lr, `largest weight difference ${d.at(-1)}`);
      disposeUNet(a);
      disposeUNet(b);
    });
  }

  it('takes dp.steps noisy steps (maxSteps caps them), yields, leaks no tensors, ignores workers, still learns', async () => {
    const data = squares(24, 16, 8, (i) => i % 6);
    const model = createUNet(cfg, 3);
    const w0 = getFlatWeights(model);
    const tensors = tf.memory().numTensors;
    let ticks = 0,
      ticking = true;
    const tick = () => {
      ticks++;
      if (ticking) setImmediate(tick);
    };
    setImmediate(tick);
    const losses: number[] = [];
    const dp = { samplingRate: 0.5, noiseMultiplier: 0.5, clipNorm: 1, steps: 12 };
    const r = await trainLocal(model, data, { epochs: 1, batchSize: 4, learningRate: 0.01, seed: 1, workers: 2, dp, onProgress: (p) => losses.push(p.loss) });
    ticking = false;
    assert.equal(r.steps, 12);
    assert.equal(r.nPatients, 6);
    assert.equal(r.nSamples, 24);
    assert.ok(ticks >= r.steps, `event loop ran ${ticks} times during ${r.steps} steps`);
    assert.equal(tf.memory().numTensors, tensors, 'tensors leaked');
    assert.ok(dist(getFlatWeights(model), w0) > 0);
    const fin = losses.filter(Number.isFinite);
    const mean = (a: number[]) => a.reduce((x, y) => x + y, 0) / a.length;
    assert.ok(mean(fin.slice(-3)) < mean(fin.slice(0, 3)), `loss ${fin[0]} -> ${fin.at(-1)}`);
    const capped = await trainLocal(model, data, { epochs: 1, batchSize: 4, learningRate: 0.01, seed: 1, maxSteps: 2, dp });
    assert.equal(capped.steps, 2);
    await assert.rejects(trainLocal(model, data, { epochs: 1, batchSize: 4, learningRate: 0.01, seed: 1, dp: { ...dp, clipNorm: 0 } }), /clipNorm/);
    disposeUNet(model);
  });

  it('injected sources make a DP run reproducible; the default CSPRNG does not follow the seed', async () => {
    const data = squares(8, 16, 9, (i) => i % 4);
    const run = async (random?: { sampling: () => number; noise: () => number }) => {
      const m = createUNet(cfg, 3);
      await trainLocal(m, data, { epochs: 1, batchSize: 4, learningRate: 0.01, seed: 1, dp: { samplingRate: 0.5, noiseMultiplier: 1, clipNorm: 1, steps: 2, random } });
      const w = getFlatWeights(m);
      disposeUNet(m);
      return w;
    };
    const src = () => ({ sampling: mulberry32(1), noise: gaussianFrom(mulberry32(2)) });
    assert.deepEqual(await run(src()), await run(src()));
    assert.notDeepEqual(await run(), await run());
  });
});
