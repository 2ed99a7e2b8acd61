/**
 * Data-parallel U-Net training on worker_threads (synchronous data parallelism:
 * Dean et al., "Large Scale Distributed Deep Networks", NIPS 2012; here with exact
 * gradient summation, no staleness). Each worker holds a replica on its own tfjs
 * backend (the wasm build runs one thread per instance, so this is how a second core
 * gets used); a batch is split into contiguous shards, every worker returns the
 * gradient of its share of the batch loss, the main thread adds them up and applies
 * Adam (adam.ts, the tfjs formulation in one JavaScript loop). The sum of the shard gradients is the batch gradient (parallel-shard.ts
 * shows why that holds for the soft-Dice term too), so a step is the single-thread step
 * up to float summation order.
 *
 * The main thread only adds gradients and runs Adam, so its event loop stays free
 * (heartbeats flow) while the workers compute. Workers start in ~0.5 s (each loads
 * its own wasm module), so trainLocal starts them once per call, not per step.
 */
import { Worker } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs-core';
import { countParams, type UNetConfig } from '../model/unet.js';
import type { FlatAdam } from './adam.js';
import type { BackendName } from './backend.js';
import { addDiceSums, diceCoefficients, type DiceCoefficients, type DiceSums } from './parallel-shard.js';
import type { WorkerInit, WorkerReply, WorkerRequest } from './parallel-worker.js';
import type { WasmKernelSet } from './wasm-kernels.js';

export interface ParallelOptions {
  /** Number of worker threads (≥ 1). */
  workers: number;
  /** Backend of every worker (default: the main thread's active backend). */
  backend?: BackendName;
  /** Wasm kernel set for the workers (benchmarks only). */
  kernels?: WasmKernelSet;
}

/** TWINFED_TRAIN_WORKERS as a worker count; 0 or unset = single-thread training. */
export function workersFromEnv(env: NodeJS.ProcessEnv = process.env): number {
  const v = env.TWINFED_TRAIN_WORKERS;
  if (v == null || v.trim() === '') return 0;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 64) {
    throw new Error(`TWINFED_TRAIN_WORKERS must be a whole number of worker threads from 0 to 64 (0 = off); got '${v}'`);
  }
  return n;
}

interface Pending {
  resolve: (r: WorkerReply) => void;
  reject: (e: Error) => void;
}

class Replica {
  private pending: Pending | undefined;
  private failed: Error | undefined;
  constructor(readonly worker: Worker) {
    worker.on('message', (m: WorkerReply) => {
      const p = this.pending;
      this.pending = undefined;
      if (m.kind === 'error') p?.reject(new Error(`training worker: ${m.message}`));
      else p?.resolve(m);
    });
    worker.on('error', (e) => this.fail(e));
    worker.on('exit', (code) => this.fail(new Error(`training worker exited with code ${code}`)));
  }
  private fail(e: Error): void {
    this.failed ??= e;
    const p = this.pending;
    this.pending = undefined;
    p?.reject(e);
  }
  /** Next reply of the worker (the 'ready' one right after start). */
  reply(): Promise<WorkerReply> {
    if (this.failed) return Promise.reject(this.failed);
    return new Promise((resolve, reject) => {
      this.pending = { resolve, reject };
    });
  }
  request(req: WorkerRequest, transfer: ArrayBuffer[] = []): Promise<WorkerReply> {
    const r = this.reply();
    this.worker.postMessage(req, transfer);
    return r;
  }
}

export interface ShardGradient {
  /** The batch loss (same value as segmentationLoss over the whole batch). */
  loss: number;
  /** ∂loss/∂θ in wire order (getFlatWeights order). */
  grads: Float32Array;
}

export class DataParallelTrainer {
  private constructor(
    readonly config: UNetConfig,
    private readonly replicas: Replica[],
  ) {}

  get workers(): number {
    return this.replicas.length;
  }

  /** Starts `workers` replicas and waits until each has its backend and model. */
  static async start(config: UNetConfig, opts: ParallelOptions): Promise<DataParallelTrainer> {
    if (!(Number.isInteger(opts.workers) && opts.workers >= 1)) throw new Error(`DataParallelTrainer: workers must be ≥ 1, got ${opts.workers}`);
    const backend = opts.backend ?? (tf.getBackend() as BackendName);
    const init: WorkerInit = { config, backend, kernels: opts.kernels };
    const replicas = Array.from({ length: opts.workers }, () => new Replica(new Worker(new URL('./parallel-worker.js', import.meta.url), { workerData: init })));
    const trainer = new DataParallelTrainer(config, replicas);
    try {
      await Promise.all(replicas.map((r) => r.reply()));
    } catch (err) {
      await trainer.close();
      throw err;
    }
    return trainer;
  }

  /**
   * Loss and gradient of segmentationLoss(unetLogits(weights, x), y, { diceWeight }) over a
   * batch of `bs` slices (x: [bs, size, size, inChannels], y one-hot: [bs, size, size, nClasses]).
   */
  async gradient(weights: Float32Array, x: Float32Array, y: Float32Array, bs: number, diceWeight: number): Promise<ShardGradient> {
    const { size, inChannels, nClasses } = this.config;
    const px = size * size;
    const k = Math.min(this.replicas.length, bs);
    const shards = Array.from({ length: k }, (_, i) => {
      const b0 = Math.floor((i * bs) / k),
        b1 = Math.floor(((i + 1) * bs) / k);
      return {
        bs: b1 - b0,
        x: x.slice(b0 * px * inChannels, b1 * px * inChannels),
        y: y.slice(b0 * px * nClasses, b1 * px * nClasses),
      };
    });
    let coef: DiceCoefficients | undefined;
    let sendWeights = true;
    if (diceWeight > 0) {
      const stats = await Promise.all(shards.map((s, i) => this.replicas[i].request({ kind: 'stats', weights: weights, x: s.x, y: s.y, bs: s.bs })));
      let sums: DiceSums | undefined;
      for (const s of stats) if (s.kind === 'stats') sums = addDiceSums(sums, s);
      coef = diceCoefficients(sums!, diceWeight);
      sendWeights = false;
    }
    const replies = await Promise.all(
      shards.map((s, i) =>
        this.replicas[i].request({ kind: 'grad', weights: sendWeights ? weights : undefined, x: s.x, y: s.y, bs: s.bs, nPixelsTotal: bs * px, coef }, [
          s.x.buffer as ArrayBuffer,
          s.y.buffer as ArrayBuffer,
        ]),
      ),
    );
    const grads = new Float32Array(weights.length);
    let ce = 0;
    for (const r of replies) {
      if (r.kind !== 'grad') throw new Error(`training worker sent ${r.kind}, expected grad`);
      for (let j = 0; j < grads.length; j++) grads[j] += r.grads[j];
      ce += r.ce;
    }
    return { loss: ce + (coef?.diceLoss ?? 0), grads };
  }

  /**
   * One Adam step on the batch: updates the flat weights `w` (wire order) in place and
   * returns the batch loss before the step. The caller owns `w` and `adam`, and copies
   * `w` into its model when done (setFlatWeights), not every step.
   */
  async step(w: Float32Array, adam: FlatAdam, x: Float32Array, y: Float32Array, bs: number, diceWeight: number): Promise<number> {
    if (w.length !== countParams(this.config)) throw new Error("DataParallelTrainer.step: weights do not match the workers' U-Net configuration");
    const { loss, grads } = await this.gradient(w, x, y, bs, diceWeight);
    adam.step(w, grads);
    return loss;
  }

  async close(): Promise<void> {
    await Promise.all(this.replicas.map((r) => r.worker.terminate()));
  }
}
