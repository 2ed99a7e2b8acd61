/**
 * Local training and Dice evaluation of the U-Net on a site's slices.
 *
 * trainLocal runs inside the site's socket.io client process, so it yields to
 * the event loop after every batch (heartbeats keep flowing) and disposes every
 * tensor it makes (tf.memory() is flat across rounds).
 *
 * Optimiser: Adam (Kingma & Ba, "Adam: A Method for Stochastic Optimization",
 * ICLR 2015), created fresh on every call. A federated round replaces the local
 * weights by the global average, so moment estimates from the previous local
 * trajectory describe a different point; carrying them over also makes a site's
 * update depend on hidden per-site state. Fresh client optimisers per round are
 * what FedAvg (McMahan et al., AISTATS 2017) and FedOpt (Reddi et al., ICLR 2021)
 * assume.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { SliceSet } from '../data/slices.js';
import { deriveSeed, mulberry32, permutation } from '../model/prng.js';
import { getFlatWeights, segmentationLoss, setFlatWeights, unetLogits, type UNet } from '../model/unet.js';
import { FlatAdam } from './adam.js';
import { DataParallelTrainer, workersFromEnv } from './parallel.js';

export interface TrainProgress {
  epoch: number;
  step: number;
  steps: number;
  loss: number;
}

export interface TrainOptions {
  epochs: number;
  batchSize: number;
  learningRate: number;
  /** Seeds shuffling and augmentation; same seed, data and backend → same weights. */
  seed: number;
  /** Weight of the soft-Dice term in the loss (default 1; 0 = cross-entropy only). */
  diceWeight?: number;
  /** Random left-right / up-down flips of each slice (default true). */
  augment?: boolean;
  /** Stop after this many optimiser steps (a compute budget); default no limit. */
  maxSteps?: number;
  /**
   * Start no new batch once this many milliseconds have passed (a wall-clock budget, e.g.
   * for a demo on a shared machine). Makes the step count machine-dependent, so the
   * result is no longer reproducible; prefer epochs/maxSteps where that matters.
   */
  timeBudgetMs?: number;
  onProgress?: (p: TrainProgress) => void;
  /**
   * Data-parallel worker threads (parallel.ts): each batch is split across this many
   * replicas and their gradients summed, the same step as single-thread training up to
   * float summation order. 0 = train on the calling thread. Default: env
   * TWINFED_TRAIN_WORKERS, else 0.
   */
  workers?: number;
}

export interface TrainResult {
  /** Mean training loss over the last epoch run. */
  loss: number;
  /** Training slices available (the FedAvg weight of this site's update). */
  nSamples: number;
  steps: number;
  ms: number;
}

const yieldToEventLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Copies slice `src` of `data` into batch position `dst`, optionally flipped; writes one-hot labels. */
function fillSample(
  data: SliceSet, src: number, dst: number, flipX: boolean, flipY: boolean, nClasses: number,
  xs: Float32Array, ys: Float32Array,
): void {
  const s = data.size;
  const px = s * s;
  for (let y = 0; y < s; y++) {
    const sy = flipY ? s - 1 - y : y;
    for (let x = 0; x < s; x++) {
      const sx = flipX ? s - 1 - x : x;
      const i = src * px + sy * s + sx;
      const o = dst * px + y * s + x;
      xs[o] = data.images[i];
      const c = Math.min(data.masks[i], nClasses - 1);
      ys[o * nClasses + c] = 1;
    }
  }
}

export async function trainLocal(model: UNet, data: SliceSet, opts: TrainOptions): Promise<TrainResult> {
  const t0 = performance.now();
  const { epochs, batchSize, learningRate } = opts;
  const { nClasses, inChannels } = model.config;
  if (inChannels !== 1) throw new Error('trainLocal: SliceSet holds one channel; model expects ' + inChannels);
  if (!(batchSize >= 1 && epochs >= 0 && learningRate > 0)) throw new Error('trainLocal: bad options');
  const s = data.size;
  const diceWeight = opts.diceWeight ?? 1;
  const augment = opts.augment ?? true;
  const shuffleRand = mulberry32(deriveSeed(opts.seed, 'shuffle'));
  const augRand = mulberry32(deriveSeed(opts.seed, 'augment'));
  const stepsPerEpoch = Math.ceil(data.n / batchSize);
  const maxSteps = Math.min(opts.maxSteps ?? Infinity, epochs * stepsPerEpoch);
  const nWorkers = opts.workers ?? workersFromEnv();
  if (!(Number.isInteger(nWorkers) && nWorkers >= 0)) throw new Error(`trainLocal: workers must be a whole number ≥ 0, got ${nWorkers}`);
  const parallel = nWorkers > 0 ? await DataParallelTrainer.start(model.config, { workers: nWorkers }) : undefined;
  // Parallel: the main thread keeps the weights flat and runs Adam in JavaScript (same maths).
  const flat = parallel ? getFlatWeights(model) : undefined;
  const flatAdam = flat ? new FlatAdam(flat.length, { learningRate, epsilon: tf.backend().epsilon() }) : undefined;
  const optimizer = tf.train.adam(learningRate);
  let steps = 0;
  let epochLoss = 0;
  let epochSteps = 0;
  try {
    for (let epoch = 0; epoch < epochs && steps < maxSteps; epoch++) {
      if (opts.timeBudgetMs != null && performance.now() - t0 >= opts.timeBudgetMs) break;
      const order = permutation(data.n, shuffleRand);
      epochLoss = 0;
      epochSteps = 0;
      for (let b0 = 0; b0 < data.n && steps < maxSteps; b0 += batchSize) {
        if (opts.timeBudgetMs != null && performance.now() - t0 >= opts.timeBudgetMs) break;
        const bs = Math.min(batchSize, data.n - b0);
        const xs = new Float32Array(bs * s * s);
        const ys = new Float32Array(bs * s * s * nClasses);
        for (let j = 0; j < bs; j++) {
          const fx = augment && augRand() < 0.5;
          const fy = augment && augRand() < 0.5;
          fillSample(data, order[b0 + j], j, fx, fy, nClasses, xs, ys);
        }
        let loss: number;
        if (parallel) {
          loss = await parallel.step(flat!, flatAdam!, xs, ys, bs, diceWeight);
        } else {
          const x = tf.tensor4d(xs, [bs, s, s, 1]);
          const y = tf.tensor4d(ys, [bs, s, s, nClasses]);
          const cost = optimizer.minimize(() => segmentationLoss(unetLogits(model, x), y, { diceWeight }), true, model.params);
          loss = cost == null ? NaN : (await cost.data())[0];
          tf.dispose([x, y, cost as tf.Scalar]);
        }
        if (!Number.isFinite(loss)) throw new Error(`trainLocal: loss became ${loss} at step ${steps}`);
        steps++;
        epochSteps++;
        epochLoss += loss;
        opts.onProgress?.({ epoch, step: steps, steps: maxSteps, loss });
        await yieldToEventLoop();
      }
    }
  } finally {
    optimizer.dispose();
    await parallel?.close();
  }
  if (flat) setFlatWeights(model, flat);
  return { loss: epochSteps > 0 ? epochLoss / epochSteps : NaN, nSamples: data.n, steps, ms: performance.now() - t0 };
}

/**
 * Dice similarity coefficient of two binary masks, 2|P∩T| / (|P| + |T|)
 * (Dice, Ecology 1945; Sørensen 1948). A voxel is foreground when > 0.
 * Both masks empty counts as perfect agreement (1).
 */
export function dice(pred: ArrayLike<number>, truth: ArrayLike<number>): number {
  if (pred.length !== truth.length) throw new Error(`dice: lengths ${pred.length} and ${truth.length} differ`);
  let inter = 0;
  let p = 0;
  let t = 0;
  for (let i = 0; i < pred.length; i++) {
    const a = pred[i] > 0;
    const b = truth[i] > 0;
    if (a) p++;
    if (b) t++;
    if (a && b) inter++;
  }
  return p + t === 0 ? 1 : (2 * inter) / (p + t);
}

/** Per-pixel argmax class of every slice, n x size x size. Yields between batches. */
export async function predictMasks(model: UNet, data: SliceSet, batchSize = 32): Promise<Uint8Array> {
  const s = data.size;
  const px = s * s;
  const out = new Uint8Array(data.n * px);
  for (let b0 = 0; b0 < data.n; b0 += batchSize) {
    const bs = Math.min(batchSize, data.n - b0);
    const labels = tf.tidy(() => {
      const x = tf.tensor4d(data.images.subarray(b0 * px, (b0 + bs) * px), [bs, s, s, 1]);
      return tf.argMax(unetLogits(model, x), 3);
    });
    out.set(await labels.data(), b0 * px);
    labels.dispose();
    await yieldToEventLoop();
  }
  return out;
}

export interface DiceReport {
  /** Mean over patients of the per-patient 3D Dice. */
  mean: number;
  perPatient: { patient: number; dice: number; slices: number }[];
}

/**
 * 3D Dice per patient: the patient's slices are stacked and scored as one volume
 * (a patient with many slices is not weighted more), then averaged over patients.
 * `patientIndex` (default data.patient) maps each slice to its patient.
 */
export async function evaluateDice(model: UNet, data: SliceSet, patientIndex: ArrayLike<number> = data.patient): Promise<DiceReport> {
  if (patientIndex.length !== data.n) throw new Error('evaluateDice: patientIndex length must equal data.n');
  const pred = await predictMasks(model, data);
  const px = data.size * data.size;
  const ids = [...new Set(Array.from(patientIndex))].sort((a, b) => a - b);
  const perPatient = ids.map((patient) => {
    const slices: number[] = [];
    for (let i = 0; i < data.n; i++) if (patientIndex[i] === patient) slices.push(i);
    const p = new Uint8Array(slices.length * px);
    const t = new Uint8Array(slices.length * px);
    slices.forEach((i, k) => {
      p.set(pred.subarray(i * px, (i + 1) * px), k * px);
      t.set(data.masks.subarray(i * px, (i + 1) * px), k * px);
    });
    return { patient, dice: dice(p, t), slices: slices.length };
  });
  const mean = perPatient.reduce((a, r) => a + r.dice, 0) / Math.max(1, perPatient.length);
  return { mean, perPatient };
}
