export { selectBackend, wasmBinaryDir, type BackendName, type BackendChoice, type BackendAttempt } from './backend.js';
export { registerWasmTrainingKernels, registerCpuTrainingKernels, backpropInputPath, TWINFED_WASM_KERNELS, type BackpropInputPath } from './wasm-kernels.js';
export {
  trainLocal, dice, evaluateDice, predictMasks,
  type TrainOptions, type TrainResult, type TrainProgress, type DiceReport,
} from './train.js';
export { fedAvg } from './fedavg.js';
