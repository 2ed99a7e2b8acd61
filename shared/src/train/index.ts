export { selectBackend, wasmBinaryDir, type BackendName, type BackendChoice, type BackendAttempt } from './backend.js';
export {
  registerWasmTrainingKernels,
  registerCpuTrainingKernels,
  backpropInputPath,
  backpropFilterPath,
  TWINFED_WASM_KERNELS,
  DEFAULT_WASM_KERNELS,
  setBackpropFilterAlgorithm,
  type BackpropInputPath,
  type BackpropFilterPath,
  type BackpropFilterAlgorithm,
  type WasmKernelSet,
} from './wasm-kernels.js';
export {
  trainLocal,
  dice,
  evaluateDice,
  predictMasks,
  patientSlices,
  patientLossGradient,
  type TrainOptions,
  type TrainResult,
  type TrainProgress,
  type DiceReport,
  type UNetDpSgdOptions,
} from './train.js';
export { addProximalGradient, addProximalGradientF32, type ProximalOptions } from '../strategy/proximal.js';
export { fedAvg } from './fedavg.js';
export {
  DataParallelTrainer,
  workersFromEnv,
  siteTrainingWorkers,
  sharedTrainingPool,
  closeSharedTrainingPool,
  MAX_TRAIN_WORKERS,
  DEFAULT_MAX_SITE_WORKERS,
  type ParallelOptions,
  type ShardGradient,
} from './parallel.js';
export { FlatAdam, type FlatAdamOptions } from './adam.js';
export { probeWebGpu, webGpuStatus, type WebGpuProbe, type WebGpuAdapterInfo } from './webgpu.js';
export { TRAIN_ERRORS, TrainError, type TrainErrorCode } from './errors.js';
