/**
 * One data-parallel training replica (a worker_threads worker of parallel.ts's pool). Keeps
 * a U-Net per configuration it has been asked about on its own tfjs backend instance; per
 * request it loads the weights it is sent, and returns either the soft-Dice sums of its
 * shard or the gradient of its share of the loss (see parallel-shard.ts). It never updates
 * weights itself: the main thread owns the optimiser, so the step is the single-thread step
 * with the batch split.
 */
import { parentPort, workerData } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs-core';
import { createUNet, disposeUNet, setFlatWeights, type UNet, type UNetConfig } from '../model/unet.js';
import { selectBackend, type BackendName } from './backend.js';
import { diceStats, shardLossForGradient, type DiceCoefficients } from './parallel-shard.js';
import { registerWasmTrainingKernels, type WasmKernelSet } from './wasm-kernels.js';

export interface WorkerInit {
  backend: BackendName;
  kernels?: WasmKernelSet;
}

export type WorkerRequest =
  | { kind: 'stats'; config: UNetConfig; weights?: Float32Array; x: Float32Array; y: Float32Array; bs: number }
  | { kind: 'grad'; config: UNetConfig; weights?: Float32Array; x: Float32Array; y: Float32Array; bs: number; nPixelsTotal: number; coef?: DiceCoefficients }
  /** Tests only (DataParallelTrainer.crashWorkerForTest): an uncaught exception outside the handler. */
  | { kind: 'crash' };

export type WorkerReply =
  | { kind: 'ready'; backend: string }
  | { kind: 'stats'; inter: Float64Array; pSum: Float64Array; ySum: Float64Array }
  | { kind: 'grad'; grads: Float32Array; ce: number }
  | { kind: 'error'; message: string };

const port = parentPort;
if (port == null) throw new Error('parallel-worker.js must be started as a worker_threads Worker');
const init = workerData as WorkerInit;

/** Replicas by configuration; a pool serves one study at a time, so a few suffice. */
const MAX_MODELS = 4;
const models = new Map<string, UNet>();

function modelFor(config: UNetConfig): UNet {
  const key = JSON.stringify([config.inChannels, config.nClasses, config.base, config.depth, config.size]);
  let m = models.get(key);
  if (m == null) {
    if (models.size >= MAX_MODELS) {
      const [oldest, old] = models.entries().next().value as [string, UNet];
      models.delete(oldest);
      disposeUNet(old);
    }
    // The weights come with the first request; the seed only fills the replica until then.
    m = createUNet(config, 0);
    models.set(key, m);
  }
  return m;
}

function handle(req: WorkerRequest): void {
  if (req.kind === 'crash') {
    setImmediate(() => {
      throw new Error('crash requested by a test');
    });
    return;
  }
  const model = modelFor(req.config);
  const { size, inChannels, nClasses } = model.config;
  if (req.weights) setFlatWeights(model, req.weights);
  const x = tf.tensor4d(req.x, [req.bs, size, size, inChannels]);
  const y = tf.tensor4d(req.y, [req.bs, size, size, nClasses]);
  if (req.kind === 'stats') {
    const s = diceStats(model, x, y);
    tf.dispose([x, y]);
    port!.postMessage({ kind: 'stats', ...s } satisfies WorkerReply);
    return;
  }
  let ce = 0;
  const { value, grads } = tf.variableGrads(() => {
    const r = shardLossForGradient(model, x, y, req.nPixelsTotal, req.coef);
    ce = r.ce.dataSync()[0];
    r.ce.dispose();
    return r.surrogate;
  }, model.params);
  const flat = new Float32Array(model.params.reduce((n, p) => n + p.size, 0));
  let o = 0;
  for (const p of model.params) {
    flat.set(grads[p.name].dataSync() as Float32Array, o);
    o += p.size;
  }
  tf.dispose([x, y, value, ...Object.values(grads)]);
  port!.postMessage({ kind: 'grad', grads: flat, ce } satisfies WorkerReply, [flat.buffer]);
}

async function main(): Promise<void> {
  if (init.kernels) registerWasmTrainingKernels(init.kernels);
  const choice = await selectBackend(init.backend);
  if (choice.name !== init.backend) throw new Error(`worker wanted backend ${init.backend}, got ${choice.name}`);
  port!.on('message', (req: WorkerRequest) => {
    try {
      handle(req);
    } catch (err) {
      port!.postMessage({ kind: 'error', message: err instanceof Error ? err.message : String(err) } satisfies WorkerReply);
    }
  });
  port!.postMessage({ kind: 'ready', backend: choice.name } satisfies WorkerReply);
}

main().catch((err) => {
  port.postMessage({ kind: 'error', message: err instanceof Error ? err.message : String(err) } satisfies WorkerReply);
});
