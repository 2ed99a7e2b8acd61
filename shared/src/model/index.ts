export {
  createUNet, unetParamSpecs, initialWeights, countParams, getFlatWeights, setFlatWeights, disposeUNet,
  unetLogits, unetPredict, unetLayerNames, unetLayerShape, segmentationLoss, DEFAULT_UNET_CONFIG,
  type UNet, type UNetConfig, type ParamSpec, type LossOptions, type ForwardOptions,
} from './unet.js';
export { mulberry32, deriveSeed, permutation } from './prng.js';
