/**
 * A small 2D U-Net for tumour segmentation, written against tfjs-core ops.
 *
 * Ronneberger, Fischer & Brox, "U-Net: Convolutional Networks for Biomedical
 * Image Segmentation", MICCAI 2015. Layout as /work/shared/peers/unet_torch.py
 * (base 8, depth 2): per level two 3x3 conv + ReLU ("same" padding, so the
 * output is the input size), 2x2 max-pool down, 2x2 stride-2 transposed conv
 * up, skip concatenation [skip, up], 1x1 conv head producing class logits.
 *
 * The parameters live in an ordered list of tf.Variables; that order is the
 * wire format of a federated update (getFlatWeights / setFlatWeights), so it
 * must never depend on the backend or on Map/Object iteration quirks.
 */
import * as tf from '@tensorflow/tfjs-core';
// Side effect: tfjs-core alone registers no gradient functions; the tfjs-layers bundle
// registers all of them (into tfjs' global registry, shared with our tfjs-core).
import '@tensorflow/tfjs-layers';
import { mulberry32 } from './prng.js';

import { DEFAULT_UNET_CONFIG, unetParamSpecs, type ParamSpec, type UNetConfig } from './specs.js';

export { DEFAULT_UNET_CONFIG, unetParamSpecs, type ParamSpec, type UNetConfig } from './specs.js';

export interface UNet {
  readonly config: UNetConfig;
  readonly specs: readonly ParamSpec[];
  /** Trainable variables, in `specs` order. */
  readonly params: tf.Variable[];
}

/** Number of scalar parameters of a model or configuration. */
export function countParams(modelOrConfig: UNet | UNetConfig): number {
  const specs = 'specs' in modelOrConfig ? modelOrConfig.specs : unetParamSpecs(modelOrConfig);
  return specs.reduce((n, s) => n + s.shape.reduce((a, b) => a * b, 1), 0);
}

/**
 * Deterministic initial weights: He-uniform kernels, U(-sqrt(6/fanIn), sqrt(6/fanIn))
 * (He et al., "Delving Deep into Rectifiers", ICCV 2015), zero biases, drawn from one
 * mulberry32 stream in wire order. Every site and backend gets the same bits.
 */
export function initialWeights(config: UNetConfig, seed: number): Float32Array {
  const specs = unetParamSpecs(config);
  const w = new Float32Array(countParams(config));
  const rand = mulberry32(seed);
  let o = 0;
  for (const s of specs) {
    const n = s.shape.reduce((a, b) => a * b, 1);
    if (s.fanIn > 0) {
      const limit = Math.sqrt(6 / s.fanIn);
      for (let i = 0; i < n; i++) w[o + i] = (2 * rand() - 1) * limit;
    }
    o += n;
  }
  return w;
}

/** Builds a U-Net with deterministic weights from `seed` on the active tfjs backend. */
export function createUNet(config: Partial<UNetConfig> = {}, seed = 0): UNet {
  const cfg: UNetConfig = { ...DEFAULT_UNET_CONFIG, ...config };
  if (cfg.size % 2 ** cfg.depth !== 0) throw new Error(`size ${cfg.size} must be divisible by 2^depth = ${2 ** cfg.depth}`);
  const specs = unetParamSpecs(cfg);
  const w = initialWeights(cfg, seed);
  const params: tf.Variable[] = [];
  let o = 0;
  for (const s of specs) {
    const n = s.shape.reduce((a, b) => a * b, 1);
    // Unnamed variables: tfjs names must be process-unique and a process may hold several models.
    params.push(tf.tidy(() => tf.variable(tf.tensor(w.subarray(o, o + n), s.shape, 'float32'), true)));
    o += n;
  }
  return { config: cfg, specs, params };
}

/** All weights concatenated in wire order (a copy). */
export function getFlatWeights(model: UNet): Float32Array {
  const out = new Float32Array(countParams(model));
  let o = 0;
  for (const p of model.params) {
    const v = p.dataSync() as Float32Array;
    out.set(v, o);
    o += v.length;
  }
  return out;
}

/** Replaces all weights from a flat vector in wire order; throws on a length mismatch. */
export function setFlatWeights(model: UNet, w: Float32Array): void {
  const n = countParams(model);
  if (!(w instanceof Float32Array) || w.length !== n) {
    throw new Error(`setFlatWeights: expected Float32Array of ${n} weights, got ${w?.length ?? 'nothing'}`);
  }
  let o = 0;
  model.params.forEach((p, i) => {
    const size = p.size;
    for (let j = o; j < o + size; j++) {
      if (!Number.isFinite(w[j])) throw new Error(`setFlatWeights: non-finite weight at ${j} (${model.specs[i].name})`);
    }
    tf.tidy(() => p.assign(tf.tensor(w.subarray(o, o + size), p.shape, 'float32')));
    o += size;
  });
}

export function disposeUNet(model: UNet): void {
  for (const p of model.params) p.dispose();
}

/**
 * Named intermediate activations of the forward pass (each after its block's last ReLU):
 * `down0`..`down{depth-1}` (encoder blocks, before pooling; also the skip tensors),
 * `bottleneck`, then `up{depth-1}`..`up0` (decoder blocks; `up0` feeds the 1x1 head).
 */
export function unetLayerNames(config: Pick<UNetConfig, 'depth'>): string[] {
  const names: string[] = [];
  for (let d = 0; d < config.depth; d++) names.push(`down${d}`);
  names.push('bottleneck');
  for (let d = config.depth - 1; d >= 0; d--) names.push(`up${d}`);
  return names;
}

/** Shape [B, h, w, channels] of a named activation for a B x H x W input. */
export function unetLayerShape(config: UNetConfig, layer: string, B: number, H: number, W: number): [number, number, number, number] {
  const { depth, base } = config;
  let level: number;
  if (layer === 'bottleneck') level = depth;
  else {
    const m = /^(down|up)(\d+)$/.exec(layer);
    level = m ? Number(m[2]) : NaN;
    if (!(level >= 0 && level < depth)) {
      throw new Error(`unknown U-Net layer '${layer}'; this model (depth ${depth}) has ${unetLayerNames(config).join(', ')}`);
    }
  }
  const f = 2 ** level;
  return [B, H / f, W / f, base * f];
}

export interface ForwardOptions {
  /**
   * Called with every named activation (see unetLayerNames) in forward order; the tensor it
   * returns replaces the activation downstream (skip connection included). Used to read
   * activations or inject a zero perturbation whose gradient equals the activation's gradient
   * (Grad-CAM). Parameter order and the wire format are untouched.
   */
  tap?: (layer: string, h: tf.Tensor4D) => tf.Tensor4D;
}

/** Logits [B, H, W, nClasses] for images [B, H, W, inChannels]. Call inside tf.tidy. */
export function unetLogits(model: UNet, x: tf.Tensor4D, opts: ForwardOptions = {}): tf.Tensor4D {
  const { depth } = model.config;
  const [, H, W] = x.shape;
  if (H % 2 ** depth !== 0 || W % 2 ** depth !== 0) throw new Error(`input ${H}x${W} not divisible by 2^${depth}`);
  const tap = opts.tap ?? ((_: string, h: tf.Tensor4D) => h);
  let i = 0;
  const next = () => model.params[i++];
  const convRelu = (h: tf.Tensor4D) => {
    const k = next() as tf.Tensor4D;
    const b = next() as tf.Tensor1D;
    if (h === x) {
      // The input layer: a plain conv + bias. The fused conv's gradient computes dx, dW and the
      // bias gradient together, so it would also compute a gradient for the images, which no
      // caller needs (tfjs prunes a plain conv's unused dx): a whole dx convolution per step.
      return tf.relu(tf.add(tf.conv2d(h, k, 1, 'same'), b) as tf.Tensor4D);
    }
    // Bias fused, ReLU separate: tfjs un-fuses a fused ReLU whenever gradients are being
    // recorded, but keeps a linear fused conv (bias added inside XNNPACK on wasm).
    return tf.relu(tf.fused.conv2d({ x: h, filter: k, strides: 1, pad: 'same', bias: b }));
  };
  const block = (h: tf.Tensor4D) => convRelu(convRelu(h));
  let h = x;
  const skips: tf.Tensor4D[] = [];
  for (let d = 0; d < depth; d++) {
    h = tap(`down${d}`, block(h));
    skips.push(h);
    h = tf.maxPool(h, 2, 2, 'valid');
  }
  h = tap('bottleneck', block(h));
  for (let d = depth - 1; d >= 0; d--) {
    const k = next() as tf.Tensor4D;
    const b = next() as tf.Tensor1D;
    const skip = skips[d];
    const [B, sh, sw] = skip.shape;
    const up = tf.add(tf.conv2dTranspose(h, k, [B, sh, sw, k.shape[2]], 2, 'valid'), b) as tf.Tensor4D;
    // conv(concat([skip, up]), W) == conv(skip, W[:, :, :c]) + conv(up, W[:, :, c:]). Slicing the
    // small filter instead of concatenating activations avoids the wasm Concat and, in the
    // backward pass, SplitV over the largest tensors (both are slow JavaScript loops there).
    const k1 = next() as tf.Tensor4D;
    const b1 = next() as tf.Tensor1D;
    const c = skip.shape[3];
    const [kh, kw, , cout] = k1.shape;
    const pre = tf.add(
      tf.fused.conv2d({ x: skip, filter: tf.slice(k1, [0, 0, 0, 0], [kh, kw, c, cout]), strides: 1, pad: 'same', bias: b1 }),
      tf.conv2d(up, tf.slice(k1, [0, 0, c, 0], [kh, kw, k1.shape[2] - c, cout]), 1, 'same'),
    );
    h = tap(`up${d}`, convRelu(tf.relu(pre) as tf.Tensor4D));
  }
  const k = next() as tf.Tensor4D;
  const b = next() as tf.Tensor1D;
  return tf.fused.conv2d({ x: h, filter: k, strides: 1, pad: 'valid', bias: b });
}

/** Class probabilities [B, H, W, nClasses] (softmax of the logits). */
export function unetPredict(model: UNet, x: tf.Tensor4D): tf.Tensor4D {
  return tf.tidy(() => tf.softmax(unetLogits(model, x)));
}

export interface LossOptions {
  /** Weight of the soft-Dice term added to cross-entropy; 0 disables it. */
  diceWeight: number;
}

/**
 * Mean categorical cross-entropy of softmax(logits) against one-hot targets, plus
 * `diceWeight` x (1 - soft Dice) averaged over the foreground classes, computed
 * over the whole batch (Milletari, Navab & Ahmadi, "V-Net", 3DV 2016). The Dice
 * term keeps a small tumour from being drowned by background pixels in the CE mean.
 */
export function segmentationLoss(logits: tf.Tensor4D, oneHot: tf.Tensor4D, opts: LossOptions = { diceWeight: 1 }): tf.Scalar {
  return tf.tidy(() => {
    const logp = tf.logSoftmax(logits);
    const ce = tf.neg(tf.mean(tf.sum(tf.mul(oneHot, logp), 3)));
    if (!(opts.diceWeight > 0)) return ce as tf.Scalar;
    const C = logits.shape[3];
    const p = tf.slice(tf.exp(logp), [0, 0, 0, 1], [-1, -1, -1, C - 1]);
    const y = tf.slice(oneHot, [0, 0, 0, 1], [-1, -1, -1, C - 1]);
    const eps = 1;
    const inter = tf.sum(tf.mul(p, y), [0, 1, 2]);
    const denom = tf.add(tf.sum(p, [0, 1, 2]), tf.sum(y, [0, 1, 2]));
    const softDice = tf.mean(tf.div(tf.add(tf.mul(inter, 2), eps), tf.add(denom, eps)));
    return tf.add(ce, tf.mul(opts.diceWeight, tf.sub(1, softDice))) as tf.Scalar;
  });
}
