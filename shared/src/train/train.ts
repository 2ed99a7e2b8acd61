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
 *
 * FedProx (option `proximal`; Li et al., MLSys 2020): the local objective gets
 * (mu/2)·||w − w_global||², i.e. mu·(w − w_global) is added to every step's gradient before
 * Adam, on the tfjs path (variableGrads + applyGradients) and on the data-parallel path (the
 * flat gradient). mu = 0 or no option: the plain step, bit for bit.
 *
 * Patient-level DP-SGD (option `dp`; Abadi et al., CCS 2016; ../dp/dpsgd.ts): see trainLocalDp.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { SliceSet } from '../data/slices.js';
import { addClipped, checkDpSgdOptions, poissonSample, privatiseClippedSum, type DpSgdOptions } from '../dp/dpsgd.js';
import { cryptoGaussian, cryptoUniform01 } from '../dp/noise.js';
import { deriveSeed, mulberry32, permutation } from '../model/prng.js';
import { getFlatWeights, segmentationLoss, setFlatWeights, unetLogits, type UNet } from '../model/unet.js';
import { FlatAdam } from './adam.js';
import { TrainError } from './errors.js';
import { sharedTrainingPool, workersFromEnv } from './parallel.js';
import { addDiceSums, diceCoefficients, diceStats, shardLossForGradient, type DiceSums } from './parallel-shard.js';
import { addProximalGradientF32, checkProximal, type ProximalOptions } from '../strategy/proximal.js';

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
   * TWINFED_TRAIN_WORKERS, else 0 (a site node passes siteTrainingWorkers()). The workers are
   * the process-wide pool (sharedTrainingPool), started by the first call that asks for them and
   * kept for later calls; closeSharedTrainingPool stops it. DP-SGD always runs on the calling
   * thread.
   */
  workers?: number;
  /** FedProx proximal term (anchor = the round's global weights); absent or mu = 0 = plain. */
  proximal?: ProximalOptions;
  /**
   * Patient-level DP-SGD. `epochs` and `batchSize` are then unused: `dp.steps` noisy steps are
   * taken (fewer if maxSteps or timeBudgetMs stop earlier; TrainResult.steps says how many).
   */
  dp?: UNetDpSgdOptions;
}

export interface UNetDpSgdOptions extends DpSgdOptions {
  /**
   * Most slices in one forward/backward pass when computing one patient's gradient (default
   * 32). A patient with more slices is done in micro-batches whose gradients add up to exactly
   * the gradient of the patient's whole loss (the soft-Dice term via parallel-shard.ts).
   */
  microBatchSlices?: number;
}

export interface TrainResult {
  /** Mean training loss over the last epoch run. */
  loss: number;
  /** Training slices available (the FedAvg weight of this site's update without patient-level DP). */
  nSamples: number;
  /** Distinct training patients (data.patient values): DP-SGD's P, and the FedAvg weight under it. */
  nPatients: number;
  /** Optimiser steps taken (under DP: the noisy steps the accountant must compose). */
  steps: number;
  ms: number;
}

const yieldToEventLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Copies slice `src` of `data` into batch position `dst`, optionally flipped; writes one-hot labels. */
function fillSample(data: SliceSet, src: number, dst: number, flipX: boolean, flipY: boolean, nClasses: number, xs: Float32Array, ys: Float32Array): void {
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
  const prox = opts.proximal != null && opts.proximal.mu > 0 ? opts.proximal : undefined;
  if (opts.proximal)
    checkProximal(
      opts.proximal,
      model.params.reduce((n, p) => n + p.size, 0),
      'trainLocal',
    );
  const nWorkersAsked = opts.workers ?? workersFromEnv();
  if (opts.dp) {
    if (nWorkersAsked > 0) console.error(`trainLocal: patient-level DP-SGD runs on the calling thread; ignoring workers=${nWorkersAsked}`);
    return trainLocalDp(model, data, opts, opts.dp, prox, t0);
  }
  const s = data.size;
  const diceWeight = opts.diceWeight ?? 1;
  const augment = opts.augment ?? true;
  const shuffleRand = mulberry32(deriveSeed(opts.seed, 'shuffle'));
  const augRand = mulberry32(deriveSeed(opts.seed, 'augment'));
  const stepsPerEpoch = Math.ceil(data.n / batchSize);
  const maxSteps = Math.min(opts.maxSteps ?? Infinity, epochs * stepsPerEpoch);
  const nWorkers = nWorkersAsked;
  if (!(Number.isInteger(nWorkers) && nWorkers >= 0)) throw new TrainError('TWF_E_TRAIN_WORKERS', `trainLocal: workers must be a whole number ≥ 0, got ${nWorkers}`);
  // The process-wide pool: started by the first call, reused by every later one (rounds). It is
  // looked up again for every step (a lookup, no start) so a pool closed meanwhile (another site
  // node in this process shutting down) is replaced instead of failing this run.
  const parallel = nWorkers > 0 ? { pool: () => sharedTrainingPool(nWorkers) } : undefined;
  if (parallel) await parallel.pool();
  // Parallel: the main thread keeps the weights flat and runs Adam in JavaScript (same maths).
  const flat = parallel ? getFlatWeights(model) : undefined;
  const flatAdam = flat ? new FlatAdam(flat.length, { learningRate, epsilon: tf.backend().epsilon() }) : undefined;
  const optimizer = tf.train.adam(learningRate);
  // FedProx on the tfjs path: the anchor as tensors in params order, made once per call.
  const anchorTensors = prox && !parallel ? splitFlat(model, prox.anchor) : undefined;
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
        if (parallel && prox) {
          const g = await (await parallel.pool()).gradient(flat!, xs, ys, bs, diceWeight, model.config);
          addProximalGradientF32(g.grads, flat!, prox);
          flatAdam!.step(flat!, g.grads);
          loss = g.loss;
        } else if (parallel) {
          loss = await (await parallel.pool()).step(flat!, flatAdam!, xs, ys, bs, diceWeight, model.config);
        } else if (prox) {
          const x = tf.tensor4d(xs, [bs, s, s, 1]);
          const y = tf.tensor4d(ys, [bs, s, s, nClasses]);
          const { value, grads } = optimizer.computeGradients(() => segmentationLoss(unetLogits(model, x), y, { diceWeight }), model.params);
          const mu = prox.mu;
          const withProx = model.params.map((p, i) => ({
            name: p.name,
            tensor: tf.tidy(() => tf.add(grads[p.name], tf.mul(tf.scalar(mu), tf.sub(p, anchorTensors![i])))),
          }));
          optimizer.applyGradients(withProx);
          loss = (await value.data())[0];
          tf.dispose([x, y, value, ...Object.values(grads), ...withProx.map((g) => g.tensor)]);
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
    if (anchorTensors) tf.dispose(anchorTensors);
  }
  if (flat) setFlatWeights(model, flat);
  return { loss: epochSteps > 0 ? epochLoss / epochSteps : NaN, nSamples: data.n, nPatients: patientSlices(data).length, steps, ms: performance.now() - t0 };
}

/** A flat weight vector (wire order) as one tensor per model parameter. */
function splitFlat(model: UNet, w: Float32Array): tf.Tensor[] {
  let o = 0;
  return model.params.map((p) => {
    const t = tf.tensor(w.subarray(o, o + p.size), p.shape, 'float32');
    o += p.size;
    return t;
  });
}

/** The slice indices of each training patient, patients in ascending data.patient order. */
export function patientSlices(data: SliceSet): number[][] {
  const byPatient = new Map<number, number[]>();
  for (let i = 0; i < data.n; i++) {
    const p = data.patient[i];
    const list = byPatient.get(p);
    if (list) list.push(i);
    else byPatient.set(p, [i]);
  }
  return [...byPatient.entries()].sort(([a], [b]) => a - b).map(([, v]) => v);
}

/**
 * Loss and flat gradient (wire order) of ONE patient's loss: segmentationLoss over all of the
 * patient's slices together (mean cross-entropy over their pixels + soft Dice over the patient's
 * volume), so the patient, not the slice, is the unit whose gradient DP-SGD clips. A patient with
 * more than `microBatchSlices` slices is done in micro-batches: one forward pass per micro-batch
 * adds up the Dice sums, then each micro-batch's backward pass gives its exact share of the
 * gradient (the chain-rule split of parallel-shard.ts), so memory stays bounded and the result is
 * the whole-patient gradient up to float summation order.
 */
export function patientLossGradient(
  model: UNet,
  data: SliceSet,
  slices: readonly number[],
  o: { diceWeight: number; microBatchSlices: number; flips?: readonly (readonly [boolean, boolean])[] },
): { loss: number; grad: Float32Array } {
  const s = data.size,
    px = s * s;
  const { nClasses } = model.config;
  const nWeights = model.params.reduce((n, p) => n + p.size, 0);
  const grad = new Float32Array(nWeights);
  const fill = (from: number, to: number) => {
    const bs = to - from;
    const xs = new Float32Array(bs * px);
    const ys = new Float32Array(bs * px * nClasses);
    for (let j = 0; j < bs; j++) {
      const [fx, fy] = o.flips?.[from + j] ?? [false, false];
      fillSample(data, slices[from + j], j, fx, fy, nClasses, xs, ys);
    }
    return { x: tf.tensor4d(xs, [bs, s, s, 1]), y: tf.tensor4d(ys, [bs, s, s, nClasses]) };
  };
  const addGrads = (grads: tf.NamedTensorMap) => {
    let at = 0;
    for (const p of model.params) {
      const g = grads[p.name].dataSync() as Float32Array;
      for (let i = 0; i < g.length; i++) grad[at + i] += g[i];
      at += g.length;
    }
  };
  const mb = Math.max(1, Math.floor(o.microBatchSlices));
  if (slices.length <= mb) {
    const { x, y } = fill(0, slices.length);
    const { value, grads } = tf.variableGrads(() => segmentationLoss(unetLogits(model, x), y, { diceWeight: o.diceWeight }), model.params);
    addGrads(grads);
    const loss = value.dataSync()[0];
    tf.dispose([x, y, value, ...Object.values(grads)]);
    return { loss, grad };
  }
  const chunks: [number, number][] = [];
  for (let a = 0; a < slices.length; a += mb) chunks.push([a, Math.min(slices.length, a + mb)]);
  let coef: ReturnType<typeof diceCoefficients> | undefined;
  if (o.diceWeight > 0) {
    let sums: DiceSums | undefined;
    for (const [a, b] of chunks) {
      const { x, y } = fill(a, b);
      sums = addDiceSums(sums, diceStats(model, x, y));
      tf.dispose([x, y]);
    }
    coef = diceCoefficients(sums!, o.diceWeight);
  }
  let ce = 0;
  for (const [a, b] of chunks) {
    const { x, y } = fill(a, b);
    let ceShare: tf.Scalar | undefined;
    const { value, grads } = tf.variableGrads(() => {
      const r = shardLossForGradient(model, x, y, slices.length * px, coef);
      ceShare = tf.keep(r.ce);
      return r.surrogate;
    }, model.params);
    addGrads(grads);
    ce += ceShare!.dataSync()[0];
    tf.dispose([x, y, value, ceShare!, ...Object.values(grads)]);
  }
  return { loss: ce + (coef?.diceLoss ?? 0), grad };
}

/**
 * Patient-level DP-SGD for the U-Net (Abadi et al., CCS 2016, Algorithm 1, the unit being the
 * patient; dp/dpsgd.ts has the formulas). Each of `dp.steps` steps:
 *   1. Poisson-samples patients with rate q from the CSPRNG (the accountant assumes it);
 *   2. per sampled patient, the gradient of that patient's whole loss over all of its training
 *      slices (patientLossGradient; augmentation flips from the seeded data PRNG), flattened and
 *      clipped to L2 norm C, summed in float64;
 *   3. adds N(0, (σC)²) per coordinate from the CSPRNG and divides by the EXPECTED batch size
 *      q·P (P = training patients), so the noise scale is data-independent;
 *   4. (post-processing) adds the FedProx term, then one Adam step on the flat weights (FlatAdam,
 *      the same maths as tf.train.adam).
 * The data-parallel workers are not used: each patient's gradient is one small batch, and the
 * per-patient clipping needs the per-patient gradients on one thread anyway.
 */
async function trainLocalDp(model: UNet, data: SliceSet, opts: TrainOptions, dp: UNetDpSgdOptions, prox: ProximalOptions | undefined, t0: number): Promise<TrainResult> {
  checkDpSgdOptions(dp, 'trainLocal');
  const patients = patientSlices(data);
  const nPatients = patients.length;
  if (nPatients === 0) throw new Error('trainLocal: DP-SGD needs at least one training patient');
  const diceWeight = opts.diceWeight ?? 1;
  const augment = opts.augment ?? true;
  const microBatchSlices = dp.microBatchSlices ?? 32;
  const augRand = mulberry32(deriveSeed(opts.seed, 'augment'));
  const sampling = dp.random?.sampling ?? cryptoUniform01();
  const noise = dp.random?.noise ?? cryptoGaussian();
  const expectedBatchSize = dp.samplingRate * nPatients;
  const maxSteps = Math.min(opts.maxSteps ?? Infinity, dp.steps);
  const flat = getFlatWeights(model);
  const adam = new FlatAdam(flat.length, { learningRate: opts.learningRate, epsilon: tf.backend().epsilon() });
  let steps = 0;
  let lossSum = 0;
  let lossCount = 0;
  while (steps < maxSteps) {
    if (opts.timeBudgetMs != null && performance.now() - t0 >= opts.timeBudgetMs) break;
    const clippedSum = new Float64Array(flat.length);
    let stepLoss = 0;
    const sampled = poissonSample(nPatients, dp.samplingRate, sampling);
    for (const p of sampled) {
      const slices = patients[p];
      const flips = slices.map(() => [augment && augRand() < 0.5, augment && augRand() < 0.5] as const);
      const { loss, grad } = patientLossGradient(model, data, slices, { diceWeight, microBatchSlices, flips });
      if (!Number.isFinite(loss)) throw new Error(`trainLocal: loss became ${loss} at step ${steps}`);
      addClipped(clippedSum, grad, dp.clipNorm);
      stepLoss += loss;
      await yieldToEventLoop();
    }
    const g64 = privatiseClippedSum(clippedSum, { clipNorm: dp.clipNorm, noiseMultiplier: dp.noiseMultiplier, expectedBatchSize }, noise);
    const g = Float32Array.from(g64);
    if (prox) addProximalGradientF32(g, flat, prox);
    adam.step(flat, g);
    setFlatWeights(model, flat);
    steps++;
    lossSum += stepLoss;
    lossCount += sampled.length;
    opts.onProgress?.({ epoch: 0, step: steps, steps: maxSteps, loss: sampled.length ? stepLoss / sampled.length : NaN });
    await yieldToEventLoop();
  }
  return { loss: lossCount > 0 ? lossSum / lossCount : NaN, nSamples: data.n, nPatients, steps, ms: performance.now() - t0 };
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
