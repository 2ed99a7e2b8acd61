/**
 * Grad-CAM for the 2D segmentation U-Net.
 *
 * Selvaraju, Cogswell, Das, Vedantam, Parikh & Batra, "Grad-CAM: Visual Explanations from Deep
 * Networks via Gradient-based Localization", ICCV 2017: for a scalar target y and the activations
 * A^k (k = channel) of a chosen layer,
 *   alpha_k = (1/Z) sum_ij dy/dA^k_ij                    (eq. 1, global-average-pooled gradients)
 *   L      = ReLU(sum_k alpha_k A^k)                      (eq. 2)
 * then L is upsampled bilinearly to the input size.
 *
 * Segmentation variant (Vinogradova, Dibrov & Myers, "Towards Interpretable Semantic Segmentation
 * via Gradient-Weighted Class Activation Mapping", AAAI 2020, student abstract): the target is the
 * sum of the class logits over a set of pixels M, y = sum_{(u,v) in M} z^c_uv. We take M = the pixels
 * the model predicts as tumour (argmax = tumour class); when the model predicts no tumour pixel on
 * the slice, M = the whole slice ("what raises tumour evidence anywhere"), and the result says so.
 * Logits, not softmax probabilities, as both papers use: probabilities saturate, so their gradients
 * vanish exactly where the model is confident.
 *
 * Layer choice. Default `bottleneck`: the deepest block, where every position has seen the widest
 * context (receptive field 32 x 32 px at depth 2: 5 px after down0, 16 after the second pool, +2 x 2 x 4 per bottleneck conv) and channels encode
 * "what" rather than "where"; its grid is coarse (size / 2^depth, 12 x 12 for the default model,
 * one cell ≈ 4 px ≈ 16–22 mm on STS PET), which is the usual Grad-CAM trade-off. The last decoder
 * block (`up0`) is full resolution, but it feeds the 1x1 head directly, so its gradients are the
 * head's constant kernel and its CAM is little more than a re-drawing of the tumour logit map —
 * it explains nothing beyond the prediction itself. Any named layer can be chosen
 * (unetLayerNames: down0.., bottleneck, up{depth-1}..up0).
 *
 * Normalisation: the upsampled map is divided by its maximum, so 1 = strongest evidence and 0 = no
 * positive evidence (ReLU floor); an all-zero map stays all zero (`camMax` = 0 reports it).
 */
import * as tf from '@tensorflow/tfjs-core';
import { unetLayerShape, unetLogits, type UNet } from '../model/unet.js';

export const DEFAULT_GRADCAM_LAYER = 'bottleneck';

export interface GradCamOptions {
  /** Layer whose activations are explained (default 'bottleneck'; see unetLayerNames). */
  layer?: string;
  /** Class explained (default 1 = tumour). */
  targetClass?: number;
}

export interface LayerGradient {
  /** Activation A at the layer, [h, w, K] row-major (channel fastest). */
  activation: Float32Array;
  /** dy/dA, same layout. */
  gradient: Float32Array;
  /** [h, w, K] */
  shape: [number, number, number];
  /** The target y = sum of class logits weighted by the target map. */
  target: number;
}

export interface GradCamResult {
  layer: string;
  targetClass: number;
  /** Which pixels the target sums over: the predicted tumour pixels, or the whole slice when none was predicted. */
  targetRegion: 'predicted' | 'wholeSlice';
  targetPixels: number;
  /** y, the summed logit being explained. */
  targetValue: number;
  /** CAM at input resolution (size x size, row-major), normalised to [0, 1]. */
  cam: Float32Array;
  /** Unnormalised ReLU(sum_k alpha_k A^k) at the layer's resolution, h x w. */
  camLayer: Float32Array;
  layerSize: [number, number];
  /** Maximum of the upsampled map before normalisation (0: the layer holds no positive evidence). */
  camMax: number;
  /** alpha_k, one per channel. */
  channelWeights: Float32Array;
  /** Predicted mask (argmax = targetClass), size x size, 0/1. */
  predicted: Uint8Array;
}

function checkImage(model: UNet, image: Float32Array): number {
  const { size, inChannels } = model.config;
  if (inChannels !== 1) throw new Error(`gradCam: one-channel images only; model expects ${inChannels}`);
  if (image.length !== size * size) throw new Error(`gradCam: image has ${image.length} values; the model takes ${size}x${size} = ${size * size}`);
  return size;
}

/**
 * y = sum_uv targetMap_uv * z^c_uv, with `perturbation` (if given) added to the layer's activation.
 * A pure forward evaluation: the finite-difference check of layerGradient uses it.
 */
export function gradCamTarget(model: UNet, image: Float32Array, layer: string, targetMap: Float32Array, targetClass = 1, perturbation?: Float32Array): number {
  const S = checkImage(model, image);
  const shape = unetLayerShape(model.config, layer, 1, S, S);
  return tf.tidy(() => {
    const x = tf.tensor4d(image, [1, S, S, 1]);
    const d = perturbation ? tf.tensor4d(perturbation, shape) : null;
    const logits = unetLogits(model, x, { tap: (name, h) => (name === layer && d ? tf.add(h, d) : h) });
    const z = tf.slice(logits, [0, 0, 0, targetClass], [1, S, S, 1]);
    return tf.sum(tf.mul(z, tf.tensor4d(targetMap, [1, S, S, 1]))).dataSync()[0];
  });
}

/**
 * Activation of `layer` and the gradient of y = sum_uv targetMap_uv z^c_uv with respect to it.
 * The gradient is taken with respect to a zero tensor added to the activation (same value,
 * same gradient), so no model surgery is needed and the parameters are not touched.
 */
export function layerGradient(model: UNet, image: Float32Array, layer: string, targetMap: Float32Array, targetClass = 1): LayerGradient {
  const S = checkImage(model, image);
  if (targetMap.length !== S * S) throw new Error(`gradCam: target map has ${targetMap.length} values, expected ${S * S}`);
  if (!(Number.isInteger(targetClass) && targetClass >= 0 && targetClass < model.config.nClasses)) {
    throw new Error(`gradCam: target class ${targetClass} outside 0..${model.config.nClasses - 1}`);
  }
  const shape = unetLayerShape(model.config, layer, 1, S, S);
  let act: tf.Tensor | null = null;
  const x = tf.tensor4d(image, [1, S, S, 1]);
  const m = tf.tensor4d(targetMap, [1, S, S, 1]);
  const delta = tf.zeros(shape);
  try {
    const f = (d: tf.Tensor) => {
      const logits = unetLogits(model, x, {
        tap: (name, h) => {
          if (name !== layer) return h;
          act = tf.keep(h);
          return tf.add(h, d) as tf.Tensor4D;
        },
      });
      return tf.sum(tf.mul(tf.slice(logits, [0, 0, 0, targetClass], [1, S, S, 1]), m)) as tf.Scalar;
    };
    const { value, grad } = tf.valueAndGrad(f)(delta);
    const out: LayerGradient = {
      activation: Float32Array.from((act as tf.Tensor | null)!.dataSync()),
      gradient: Float32Array.from(grad.dataSync()),
      shape: [shape[1], shape[2], shape[3]],
      target: value.dataSync()[0],
    };
    tf.dispose([value, grad]);
    return out;
  } finally {
    tf.dispose([x, m, delta]);
    if (act) (act as tf.Tensor).dispose();
  }
}

/** alpha_k = spatial mean of the gradient per channel (Selvaraju et al. 2017, eq. 1). */
export function channelWeights(gradient: Float32Array, shape: [number, number, number]): Float32Array {
  const [h, w, K] = shape;
  const a = new Float32Array(K);
  for (let p = 0; p < h * w; p++) for (let k = 0; k < K; k++) a[k] += gradient[p * K + k];
  for (let k = 0; k < K; k++) a[k] /= h * w;
  return a;
}

/** ReLU(sum_k alpha_k A^k) at the layer's resolution (Selvaraju et al. 2017, eq. 2). */
export function weightedActivationMap(activation: Float32Array, alpha: Float32Array, shape: [number, number, number]): Float32Array {
  const [h, w, K] = shape;
  const out = new Float32Array(h * w);
  for (let p = 0; p < h * w; p++) {
    let s = 0;
    for (let k = 0; k < K; k++) s += alpha[k] * activation[p * K + k];
    out[p] = s > 0 ? s : 0;
  }
  return out;
}

/**
 * Bilinear resize of a h x w map to H x W with half-pixel centres (source coordinate
 * (u + 0.5) * h / H - 0.5, clamped at the borders), the convention of OpenCV INTER_LINEAR
 * and tf.image.resizeBilinear(halfPixelCenters = true).
 */
export function resizeBilinear(src: Float32Array, h: number, w: number, H: number, W: number): Float32Array {
  if (src.length !== h * w) throw new Error(`resizeBilinear: ${src.length} values for ${h}x${w}`);
  const out = new Float32Array(H * W);
  const axis = (o: number, n: number, N: number): [number, number, number] => {
    let c = ((o + 0.5) * n) / N - 0.5;
    if (c < 0) c = 0;
    if (c > n - 1) c = n - 1;
    const i0 = Math.floor(c);
    const i1 = Math.min(i0 + 1, n - 1);
    return [i0, i1, c - i0];
  };
  for (let v = 0; v < H; v++) {
    const [y0, y1, fy] = axis(v, h, H);
    for (let u = 0; u < W; u++) {
      const [x0, x1, fx] = axis(u, w, W);
      const top = src[y0 * w + x0] * (1 - fx) + src[y0 * w + x1] * fx;
      const bot = src[y1 * w + x0] * (1 - fx) + src[y1 * w + x1] * fx;
      out[v * W + u] = top * (1 - fy) + bot * fy;
    }
  }
  return out;
}

/** Share of the CAM's mass (sum of values) that lies on the mask's pixels; NaN for an all-zero CAM. */
export function camMassShare(cam: ArrayLike<number>, mask: ArrayLike<number>): number {
  if (cam.length !== mask.length) throw new Error(`camMassShare: ${cam.length} CAM values, ${mask.length} mask values`);
  let inside = 0;
  let total = 0;
  for (let i = 0; i < cam.length; i++) {
    total += cam[i];
    if (mask[i] > 0) inside += cam[i];
  }
  return total > 0 ? inside / total : NaN;
}

/** Tumour-class prediction (argmax = targetClass) for one size x size image, 0/1. */
export function predictSlice(model: UNet, image: Float32Array, targetClass = 1): Uint8Array {
  const S = checkImage(model, image);
  const labels = tf.tidy(() => tf.argMax(unetLogits(model, tf.tensor4d(image, [1, S, S, 1])), 3).dataSync());
  return Uint8Array.from(labels, (c) => (c === targetClass ? 1 : 0));
}

/**
 * Grad-CAM of one model-input slice (size x size, already normalised as for training, e.g. by
 * extractSlices). Runs on whatever tfjs backend is active (wasm with Twinfed's kernels, cpu, native).
 */
export function gradCam(model: UNet, image: Float32Array, opts: GradCamOptions = {}): GradCamResult {
  const layer = opts.layer ?? DEFAULT_GRADCAM_LAYER;
  const targetClass = opts.targetClass ?? 1;
  const S = checkImage(model, image);
  const predicted = predictSlice(model, image, targetClass);
  let n = 0;
  for (const v of predicted) n += v;
  const targetRegion = n > 0 ? 'predicted' : 'wholeSlice';
  const targetMap = n > 0 ? Float32Array.from(predicted) : new Float32Array(S * S).fill(1);
  const g = layerGradient(model, image, layer, targetMap, targetClass);
  const alpha = channelWeights(g.gradient, g.shape);
  const camLayer = weightedActivationMap(g.activation, alpha, g.shape);
  const [h, w] = g.shape;
  const up = resizeBilinear(camLayer, h, w, S, S);
  let max = 0;
  for (const v of up) if (v > max) max = v;
  const cam = max > 0 ? up.map((v) => v / max) : up;
  return {
    layer,
    targetClass,
    targetRegion,
    targetPixels: targetRegion === 'predicted' ? n : S * S,
    targetValue: g.target,
    cam,
    camLayer,
    layerSize: [h, w],
    camMax: max,
    channelWeights: alpha,
    predicted,
  };
}
