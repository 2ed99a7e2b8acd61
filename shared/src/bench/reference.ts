/**
 * The reference training problem of the U-Net benchmarks (`npm run bench:train`,
 * tools/gpu's WebGPU bench): the network, batch, optimiser and fixed random data of
 * shared/src/bench/peers/unet_torch.py. A module of its own so that a bench can use it
 * without importing train-backends.ts (which runs its table when it is the entry point,
 * and in a bundle every module shares the entry point's URL).
 */
import { mulberry32 } from '../model/prng.js';
import type { UNetConfig } from '../model/unet.js';

export const REFERENCE_NET: UNetConfig = { inChannels: 2, nClasses: 4, base: 8, depth: 2, size: 64 };
export const REFERENCE_BATCH = 16;
export const REFERENCE_LEARNING_RATE = 1e-3;

/**
 * Deterministic inputs in [-1, 1) and one-hot labels for `batch` images of `net`. With the
 * defaults, the data every tfjs variant of train-backends.ts trains on.
 */
export function referenceData(net: UNetConfig = REFERENCE_NET, batch = REFERENCE_BATCH): { x: Float32Array; y: Float32Array } {
  const { size, inChannels, nClasses } = net;
  const n = batch * size * size;
  const r = mulberry32(20261126);
  const x = Float32Array.from({ length: n * inChannels }, () => 2 * r() - 1);
  const y = new Float32Array(n * nClasses);
  for (let i = 0; i < n; i++) y[i * nClasses + Math.floor(r() * nClasses)] = 1;
  return { x, y };
}
