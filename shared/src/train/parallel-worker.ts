/**
 * One data-parallel training replica (a worker_threads worker). Holds a U-Net on its own
 * tfjs backend instance; per request it loads the weights it is sent, and returns either
 * the soft-Dice sums of its shard or the gradient of its share of the loss (see
 * parallel-shard.ts). It never updates weights itself: the main thread owns the
 * optimiser, so the step is the single-thread step with the batch split.
 */
import { parentPort, workerData } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs-core';
import { createUNet, setFlatWeights, type UNetConfig } from '../model/unet.js';
import { selectBackend, type BackendName } from './backend.js';
import { diceStats, shardLossForGradient, type DiceCoefficients } from './parallel-shard.js';
import { registerWasmTrainingKernels, type WasmKernelSet } from './wasm-kernels.js';

export interface WorkerInit {
  config: UNetConfig;
  backend: BackendName;
  kernels?: WasmKernelSet;
}

export type WorkerRequest =
  | { kind: 'stats'; weights?: Float32Array; x: Float32Array; y: Float32Array; bs: number }
  | { kind: 'grad'; weights?: Float32Array; x: Float32Array; y: Float32Array; bs: number; nPixelsTotal: number; coef?: DiceCoefficients };

export type WorkerReply =
  | { kind: 'ready'; backend: string }
  | { kind: 'stats'; inter: Float64Array; pSum: Float64Array; ySum: Float64Array }
  | { kind: 'grad'; grads: Float32Array; ce: number }
  | { kind: 'error'; message: string };

const port = parentPort;
if (port == null) throw new Error('parallel-worker.js must be started as a worker_threads Worker');
const init = workerData as WorkerInit;

async function main(): Promise<void> {
  if (init.kernels) registerWasmTrainingKernels(init.kernels);
  const choice = await selectBackend(init.backend);
  if (choice.name !== init.backend) throw new Error(`worker wanted backend ${init.backend}, got ${choice.name}`);
  const model = createUNet(init.config, 0);
  const { size, inChannels, nClasses } = init.config;
  const nParams = model.params.reduce((n, p) => n + p.size, 0);
  port!.on('message', (req: WorkerRequest) => {
    try {
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
      const flat = new Float32Array(nParams);
      let o = 0;
      for (const p of model.params) {
        flat.set(grads[p.name].dataSync() as Float32Array, o);
        o += p.size;
      }
      tf.dispose([x, y, value, ...Object.values(grads)]);
      port!.postMessage({ kind: 'grad', grads: flat, ce } satisfies WorkerReply, [flat.buffer]);
    } catch (err) {
      port!.postMessage({ kind: 'error', message: err instanceof Error ? err.message : String(err) } satisfies WorkerReply);
    }
  });
  port!.postMessage({ kind: 'ready', backend: choice.name } satisfies WorkerReply);
}

main().catch((err) => {
  port.postMessage({ kind: 'error', message: err instanceof Error ? err.message : String(err) } satisfies WorkerReply);
});
