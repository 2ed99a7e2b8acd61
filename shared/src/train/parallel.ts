/**
 * Data-parallel U-Net training on worker_threads (synchronous data parallelism:
 * Dean et al., "Large Scale Distributed Deep Networks", NIPS 2012; here with exact
 * gradient summation, no staleness). Each worker holds a replica on its own tfjs
 * backend (the wasm build runs one thread per instance, so this is how a second core
 * gets used); a batch is split into contiguous shards, every worker returns the
 * gradient of its share of the batch loss, the main thread adds them up and applies
 * Adam (adam.ts, the tfjs formulation in one JavaScript loop). The sum of the shard
 * gradients is the batch gradient (parallel-shard.ts shows why that holds for the
 * soft-Dice term too), so a step is the single-thread step up to float summation order.
 *
 * The main thread only adds gradients and runs Adam, so its event loop stays free
 * (heartbeats flow) while the workers compute.
 *
 * Workers are a pool that lives as long as the process (sharedTrainingPool): starting one
 * loads its own wasm module (~0.5 s for 2 workers on the 2-core dev box), which trainLocal
 * used to pay on every call, i.e. every federated round. The pool is sized once; the U-Net
 * configuration and the weights travel with every request, so one pool serves every study
 * and round. Idle workers are unref'd (a process whose only remaining work is an idle pool
 * exits), busy ones keep the process alive until they answer. A worker that throws answers
 * with an error; one that dies (exit, crash, out of memory) rejects what it was asked, and
 * the pool starts afresh on the next request.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs-core';
import { countParams, type UNetConfig } from '../model/unet.js';
import type { FlatAdam } from './adam.js';
import type { BackendName } from './backend.js';
import { addDiceSums, diceCoefficients, type DiceCoefficients, type DiceSums } from './parallel-shard.js';
import type { WorkerInit, WorkerReply, WorkerRequest } from './parallel-worker.js';
import type { WasmKernelSet } from './wasm-kernels.js';
import { TrainError } from './errors.js';

export interface ParallelOptions {
  /** Number of worker threads (≥ 1). */
  workers: number;
  /** Backend of every worker (default: the main thread's active backend). */
  backend?: BackendName;
  /** Wasm kernel set for the workers (benchmarks only). */
  kernels?: WasmKernelSet;
}

/** Most worker threads TWINFED_TRAIN_WORKERS may ask for. */
export const MAX_TRAIN_WORKERS = 64;

/**
 * Largest default pool (siteTrainingWorkers on a big server): a batch is split into at most
 * batchSize shards, so workers beyond the batch size idle, and each holds its own wasm heap.
 */
export const DEFAULT_MAX_SITE_WORKERS = 16;

/**
 * TWINFED_TRAIN_WORKERS as a worker count; 0 = single-thread training. Unset or empty: 0
 * (trainLocal's default); siteTrainingWorkers reads it with another default.
 */
export function workersFromEnv(env: NodeJS.ProcessEnv = process.env): number {
  return workersFromEnvOr(env, 0);
}

function workersFromEnvOr(env: NodeJS.ProcessEnv, unset: number): number {
  const v = env.TWINFED_TRAIN_WORKERS;
  if (v == null || v.trim() === '') return unset;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > MAX_TRAIN_WORKERS) {
    throw new TrainError('TWF_E_TRAIN_WORKERS', `TWINFED_TRAIN_WORKERS must be a whole number of worker threads from 0 to ${MAX_TRAIN_WORKERS} (0 = off); got '${v}'`);
  }
  return n;
}

/**
 * Training threads of a site node that runs alone on its machine: TWINFED_TRAIN_WORKERS when
 * set (0 = train on the calling thread), else one data-parallel worker per core
 * (os.availableParallelism(), at most DEFAULT_MAX_SITE_WORKERS), and 0 on a single core where a
 * worker would only add copying. Processes that share the machine with other sites (the demo
 * runs three on one box) set TWINFED_TRAIN_WORKERS=0 or pass `workers` explicitly.
 */
export function siteTrainingWorkers(env: NodeJS.ProcessEnv = process.env, cores: number = availableParallelism()): number {
  const auto = cores >= 2 ? Math.min(cores, DEFAULT_MAX_SITE_WORKERS) : 0;
  return workersFromEnvOr(env, auto);
}

interface Pending {
  resolve: (r: WorkerReply) => void;
  reject: (e: Error) => void;
}

class Replica {
  private pending: Pending | undefined;
  /** Set once the worker has died; every later request is refused with it. */
  failed: Error | undefined;
  constructor(readonly worker: Worker) {
    worker.on('message', (m: WorkerReply) => {
      const p = this.pending;
      this.pending = undefined;
      if (m.kind === 'error') p?.reject(new TrainError('TWF_E_TRAIN_WORKER', `training worker: ${m.message}`));
      else p?.resolve(m);
    });
    worker.on('error', (e) => this.fail(new TrainError('TWF_E_TRAIN_WORKER', `training worker failed: ${e.message}`, { cause: e })));
    worker.on('exit', (code) => this.fail(new TrainError('TWF_E_TRAIN_WORKER', `training worker exited with code ${code}`)));
  }
  private fail(e: Error): void {
    this.failed ??= e;
    const p = this.pending;
    this.pending = undefined;
    p?.reject(this.failed);
  }
  /** Next reply of the worker (the 'ready' one right after start). */
  reply(): Promise<WorkerReply> {
    if (this.failed) return Promise.reject(this.failed);
    if (this.pending) return Promise.reject(new TrainError('TWF_E_TRAIN_WORKER', 'training worker: a request is already in flight'));
    return new Promise((resolve, reject) => {
      this.pending = { resolve, reject };
    });
  }
  request(req: WorkerRequest, transfer: ArrayBuffer[] = []): Promise<WorkerReply> {
    const r = this.reply();
    if (!this.failed) this.worker.postMessage(req, transfer);
    return r;
  }
}

export interface ShardGradient {
  /** The batch loss (same value as segmentationLoss over the whole batch). */
  loss: number;
  /** ∂loss/∂θ in wire order (getFlatWeights order). */
  grads: Float32Array;
}

/** Waits for every promise, then throws the first rejection (so no reply is left in flight). */
async function allOrFirstError<T>(ps: Promise<T>[]): Promise<T[]> {
  const settled = await Promise.allSettled(ps);
  const bad = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (bad) throw bad.reason instanceof Error ? bad.reason : new Error(String(bad.reason));
  return settled.map((s) => (s as PromiseFulfilledResult<T>).value);
}

/**
 * A pool of training workers. One request at a time (gradient() holds the pool for its
 * stats + grad round trips, so calls from concurrent trainLocal runs interleave step by
 * step, each with its own weights). `start` gives a pool of one's own (benchmarks, tests);
 * trainLocal uses the process-wide sharedTrainingPool.
 */
export class DataParallelTrainer {
  private replicas: Replica[] = [];
  private starting: Promise<void> | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  private closed = false;
  /** How many times the workers were (re)started; 1 for a pool that never lost a worker. */
  starts = 0;

  private constructor(
    /** The configuration `gradient` and `step` use when a call names none (start's config). */
    readonly config: UNetConfig | undefined,
    readonly size: number,
    readonly backend: BackendName,
    readonly kernels: WasmKernelSet | undefined,
  ) {}

  get workers(): number {
    return this.size;
  }

  /** Starts `workers` replicas and waits until each has its backend. */
  static async start(config: UNetConfig | undefined, opts: ParallelOptions): Promise<DataParallelTrainer> {
    if (!(Number.isInteger(opts.workers) && opts.workers >= 1 && opts.workers <= MAX_TRAIN_WORKERS)) {
      throw new TrainError('TWF_E_TRAIN_WORKERS', `DataParallelTrainer: workers must be a whole number from 1 to ${MAX_TRAIN_WORKERS}, got ${opts.workers}`);
    }
    const trainer = new DataParallelTrainer(config, opts.workers, opts.backend ?? (tf.getBackend() as BackendName), opts.kernels);
    await trainer.ensureStarted();
    return trainer;
  }

  private ensureStarted(): Promise<void> {
    if (this.closed) return Promise.reject(new TrainError('TWF_E_TRAIN_POOL_CLOSED', 'DataParallelTrainer: the pool is closed'));
    if (this.replicas.length > 0 && this.replicas.every((r) => r.failed == null)) return Promise.resolve();
    this.starting ??= this.startWorkers().finally(() => {
      this.starting = undefined;
    });
    return this.starting;
  }

  private async startWorkers(): Promise<void> {
    await this.terminate();
    const init: WorkerInit = { backend: this.backend, kernels: this.kernels };
    this.starts++;
    // Workers inherit the process's Node flags, except --input-type: a worker loads a file, and
    // Node refuses that flag for anything but --eval/stdin input (a process started with -e).
    // Only then is execArgv passed: Node 24 under its test runner lists option defaults in
    // process.execArgv (--node-snapshot, --secure-heap=0, …) that a Worker refuses (ERR_WORKER_INVALID_EXEC_ARGV).
    const dropped = process.execArgv.filter((a) => !a.startsWith('--input-type'));
    const options = dropped.length === process.execArgv.length ? { workerData: init } : { workerData: init, execArgv: dropped };
    const url = new URL('./parallel-worker.js', import.meta.url);
    const replicas = Array.from({ length: this.size }, () => new Replica(new Worker(url, options)));
    this.replicas = replicas;
    try {
      await allOrFirstError(replicas.map((r) => r.reply()));
    } catch (err) {
      await this.terminate();
      throw err;
    } finally {
      for (const r of replicas) r.worker.unref();
    }
  }

  private async terminate(): Promise<void> {
    const rs = this.replicas;
    this.replicas = [];
    await Promise.all(rs.map((r) => r.worker.terminate()));
  }

  /** Runs `f` when the pool is free, with the workers ref'd (the process waits for them). */
  private exclusive<T>(f: () => Promise<T>): Promise<T> {
    const run = async () => {
      await this.ensureStarted();
      const rs = this.replicas;
      for (const r of rs) r.worker.ref();
      try {
        return await f();
      } finally {
        for (const r of rs) r.worker.unref();
      }
    };
    const p = this.queue.then(run, run);
    this.queue = p.catch(() => undefined);
    return p;
  }

  /**
   * Loss and gradient of segmentationLoss(unetLogits(weights, x), y, { diceWeight }) over a
   * batch of `bs` slices (x: [bs, size, size, inChannels], y one-hot: [bs, size, size, nClasses])
   * for a U-Net of configuration `config` (default: the pool's).
   */
  gradient(weights: Float32Array, x: Float32Array, y: Float32Array, bs: number, diceWeight: number, config: UNetConfig | undefined = this.config): Promise<ShardGradient> {
    if (config == null) return Promise.reject(new Error('DataParallelTrainer.gradient: this pool has no U-Net configuration of its own; pass one'));
    return this.exclusive(() => this.gradientNow(config, weights, x, y, bs, diceWeight));
  }

  private async gradientNow(config: UNetConfig, weights: Float32Array, x: Float32Array, y: Float32Array, bs: number, diceWeight: number): Promise<ShardGradient> {
    const { size, inChannels, nClasses } = config;
    const px = size * size;
    if (x.length !== bs * px * inChannels || y.length !== bs * px * nClasses) throw new Error(`DataParallelTrainer: a batch of ${bs} does not match x/y of ${x.length}/${y.length} values`);
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
      const stats = await allOrFirstError(shards.map((s, i) => this.replicas[i].request({ kind: 'stats', config, weights, x: s.x, y: s.y, bs: s.bs })));
      let sums: DiceSums | undefined;
      for (const s of stats) if (s.kind === 'stats') sums = addDiceSums(sums, s);
      coef = diceCoefficients(sums!, diceWeight);
      sendWeights = false;
    }
    const replies = await allOrFirstError(
      shards.map((s, i) =>
        this.replicas[i].request({ kind: 'grad', config, weights: sendWeights ? weights : undefined, x: s.x, y: s.y, bs: s.bs, nPixelsTotal: bs * px, coef }, [
          s.x.buffer as ArrayBuffer,
          s.y.buffer as ArrayBuffer,
        ]),
      ),
    );
    const grads = new Float32Array(weights.length);
    let ce = 0;
    for (const r of replies) {
      if (r.kind !== 'grad') throw new TrainError('TWF_E_TRAIN_WORKER', `training worker sent ${r.kind}, expected grad`);
      if (r.grads.length !== grads.length) throw new TrainError('TWF_E_TRAIN_WORKER', `training worker sent ${r.grads.length} gradients for ${grads.length} weights`);
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
  async step(w: Float32Array, adam: FlatAdam, x: Float32Array, y: Float32Array, bs: number, diceWeight: number, config: UNetConfig | undefined = this.config): Promise<number> {
    if (config == null) throw new Error('DataParallelTrainer.step: this pool has no U-Net configuration of its own; pass one');
    if (w.length !== countParams(config)) throw new Error("DataParallelTrainer.step: weights do not match the U-Net configuration's parameter count");
    const { loss, grads } = await this.gradient(w, x, y, bs, diceWeight, config);
    adam.step(w, grads);
    return loss;
  }

  /** Thread ids of the live workers (tests: the same ids across calls = the same workers). */
  get threadIds(): number[] {
    return this.replicas.map((r) => r.worker.threadId);
  }

  /**
   * Tests only: worker `i` throws outside any request handler, as a crash inside tfjs would
   * (an uncaught exception ends the worker). Resolves with the rejection the caller saw.
   */
  crashWorkerForTest(i: number): Promise<Error | undefined> {
    return this.exclusive(async () => {
      try {
        await this.replicas[i].request({ kind: 'crash' });
        return undefined;
      } catch (e) {
        return e as Error;
      }
    });
  }

  /** Stops the workers after the request in flight, if any; later requests are refused. */
  async close(): Promise<void> {
    this.closed = true;
    await this.queue;
    await this.starting?.catch(() => undefined);
    await this.terminate();
  }
}

/** The process-wide pool: its size and backend, and the pool once started. */
let shared: { workers: number; backend: BackendName; pool: Promise<DataParallelTrainer> } | undefined;

/**
 * The process's training pool with `workers` workers on `backend` (default: the active one),
 * started on first use and kept for later calls. Asking for another size or backend replaces
 * it (after its request in flight). The first trainLocal of a process pays the start, the
 * rounds after it do not. A pool that failed to start is forgotten, so the next call retries.
 */
export function sharedTrainingPool(workers: number, backend?: BackendName): Promise<DataParallelTrainer> {
  const want = backend ?? (tf.getBackend() as BackendName);
  if (!(Number.isInteger(workers) && workers >= 1 && workers <= MAX_TRAIN_WORKERS)) {
    return Promise.reject(new TrainError('TWF_E_TRAIN_WORKERS', `sharedTrainingPool: workers must be a whole number from 1 to ${MAX_TRAIN_WORKERS}, got ${workers}`));
  }
  if (shared && shared.workers === workers && shared.backend === want) return shared.pool;
  const previous = shared?.pool;
  const pool = (async () => {
    if (previous) await (await previous.catch(() => undefined))?.close();
    return DataParallelTrainer.start(undefined, { workers, backend: want });
  })();
  const entry = { workers, backend: want, pool };
  shared = entry;
  pool.catch(() => {
    if (shared === entry) shared = undefined;
  });
  return pool;
}

/** Stops the process-wide pool (site shutdown, tests); a later sharedTrainingPool starts a new one. */
export async function closeSharedTrainingPool(): Promise<void> {
  const cur = shared?.pool;
  shared = undefined;
  await (await cur?.catch(() => undefined))?.close();
}
