/**
 * Training kernels for the tfjs WebAssembly backend.
 *
 * tfjs-backend-wasm 4.22 is built for inference: it has no Conv2DBackpropFilter
 * (so no convolution can be trained), and its Conv2DBackpropInput is a scalar
 * C++ loop that takes about 70% of a U-Net training step. Both gradients are
 * themselves convolutions, so we express them as the XNNPACK-backed wasm Conv2D
 * (or a MatMul) over rearranged tensors:
 *
 *  - dW = conv(x, dy) with the roles of batch and channels swapped:
 *      dW[i,j,c,o] = sum_{b,p,q} x[b, p*s + i - padTop, q*s + j - padLeft, c] * dy[b,p,q,o]
 *    i.e. a stride-1 convolution of x^T ([C, H, W, B]) with dy^T ([oh, ow, B, O]) as
 *    the filter, with dilation = the forward stride. (Routing through the wasm
 *    Conv3DBackpropFilterV2 instead is wrong for stride > 1.)
 *  - dx for stride 1 = conv(dy, flip(W)^T) with padding k-1-pad ("full" correlation);
 *    Dumoulin & Visin, "A guide to convolution arithmetic for deep learning", 2016, §4.
 *  - dx for stride s with a k = s, unpadded filter (the U-Net's 2x2/2 transposed conv)
 *    has no overlapping taps: dx = depth-to-space(dy · W^T), one MatMul and a Transpose.
 *  - dx for other strides: insert s-1 zeros between rows/columns of dy, then the
 *    stride-1 formula (Dumoulin & Visin §4.5). Wastes s^2 multiply-adds on zeros,
 *    still much faster than the scalar loop.
 *
 * MaxPoolGrad and the bias-gradient Sum are replaced by single passes (the stock
 * MaxPoolGrad took ~17 ms per [16,64,64,8] call, ours ~6 ms). dW can also go through one
 * MatMul (conv2DBackpropFilterMatMul, opt-in: no measurable whole-step gain here).
 *
 * Only NHWC (channelsLast) is supported, as by the wasm Conv2D itself. The dW kernel
 * is backend-generic and also replaces the cpu backend's (see registerCpuTrainingKernels).
 */
import * as tf from '@tensorflow/tfjs-core';
import { backend_util, type KernelConfig, type KernelFunc, type NamedAttrMap, type TensorInfo } from '@tensorflow/tfjs-core';
// Side effects: register the backends and their stock kernels before we amend them.
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';

const WASM = 'wasm';

type KernelArgs = Parameters<KernelFunc>[0];

type Pad = 'valid' | 'same' | number | backend_util.ExplicitPadding;

interface ConvAttrs {
  strides: number | [number, number];
  pad: Pad;
  dataFormat: 'NHWC' | 'NCHW';
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
}

/** A backend as our kernels use it: wasm or cpu (both have disposeData). */
interface KernelBackend {
  disposeData(dataId: object, force?: boolean): boolean;
}

/** Runs another registered kernel of `backendName` directly (no tape, no engine bookkeeping). */
function call(backendName: string, backend: KernelBackend, name: string, inputs: Record<string, TensorInfo>, attrs: object): TensorInfo {
  const k = tf.getKernel(name, backendName);
  if (k == null) throw new Error(`${backendName} kernel ${name} is not registered`);
  return k.kernelFunc({ inputs, backend: backend as never, attrs: attrs as unknown as NamedAttrMap }) as TensorInfo;
}

function free(backend: KernelBackend, ...ts: TensorInfo[]): void {
  for (const t of ts) backend.disposeData(t.dataId);
}

function transpose(bn: string, backend: KernelBackend, x: TensorInfo, perm: number[]): TensorInfo {
  return call(bn, backend, 'Transpose', { x }, { perm });
}

function conv2d(bn: string, backend: KernelBackend, x: TensorInfo, filter: TensorInfo, pad: backend_util.ExplicitPadding, dilations: [number, number]): TensorInfo {
  return call(bn, backend, 'Conv2D', { x, filter }, { strides: [1, 1], pad, dataFormat: 'NHWC', dilations, dimRoundingMode: undefined });
}

function assertChannelsLast(dataFormat: string, kernel: string): void {
  if (backend_util.convertConv2DDataFormat(dataFormat as 'NHWC' | 'NCHW') !== 'channelsLast') {
    throw new Error(`Twinfed ${kernel} supports only NHWC, got ${dataFormat}`);
  }
}

/** Filter W [kh, kw, ci, co] → W' [kh, kw, co, ci] with W'[i,j,o,c] = W[kh-1-i, kw-1-j, c, o]. */
function flipTransposeFilter(backend: BackendWasm, filter: TensorInfo): TensorInfo {
  const [kh, kw, ci, co] = filter.shape;
  const out = backend.makeOutput([kh, kw, co, ci], 'float32');
  // Views are taken after makeOutput: an allocation may grow (and detach) the heap.
  const src = backend.typedArrayFromHeap(filter) as Float32Array;
  const dst = backend.typedArrayFromHeap(out) as Float32Array;
  for (let i = 0; i < kh; i++) {
    for (let j = 0; j < kw; j++) {
      const s0 = ((kh - 1 - i) * kw + (kw - 1 - j)) * ci * co;
      const d0 = (i * kw + j) * co * ci;
      for (let c = 0; c < ci; c++) {
        for (let o = 0; o < co; o++) dst[d0 + o * ci + c] = src[s0 + c * co + o];
      }
    }
  }
  return out;
}

// ---------------------------------------------------------------------------
// Conv2DBackpropFilter (missing from tfjs-backend-wasm)

function conv2DBackpropFilter(bn: string, args: KernelArgs): TensorInfo {
  const backend = args.backend as KernelBackend;
  const { x, dy } = args.inputs as Record<string, TensorInfo>;
  const attrs = args.attrs as unknown as ConvAttrs & { filterShape: [number, number, number, number] };
  assertChannelsLast(attrs.dataFormat, 'Conv2DBackpropFilter');
  const info = backend_util.computeConv2DInfo(x.shape as [number, number, number, number], attrs.filterShape, attrs.strides, 1, attrs.pad, attrs.dimRoundingMode, false, 'channelsLast');
  const [kh, kw, ci, co] = attrs.filterShape;
  const [, H, W] = x.shape;
  const { top, left } = info.padInfo;
  const { strideHeight: sh, strideWidth: sw, outHeight: oh, outWidth: ow } = info;
  // Pad the far side just enough for the correlation to produce >= kh x kw outputs
  // (rows of x beyond the last window are never used, so a negative pad is clipped to 0
  // and the surplus output sliced off).
  const padBottom = Math.max(0, kh + (oh - 1) * sh - H - top);
  const padRight = Math.max(0, kw + (ow - 1) * sw - W - left);
  const xt = transpose(bn, backend, x, [3, 1, 2, 0]); // [ci, H, W, B]
  const dyt = transpose(bn, backend, dy, [1, 2, 0, 3]); // [oh, ow, B, co]
  const r = conv2d(
    bn,
    backend,
    xt,
    dyt,
    [
      [0, 0],
      [top, padBottom],
      [left, padRight],
      [0, 0],
    ],
    [sh, sw],
  ); // [ci, >=kh, >=kw, co]
  free(backend, xt, dyt);
  let rk = r;
  if (r.shape[1] !== kh || r.shape[2] !== kw) {
    rk = call(bn, backend, 'Slice', { x: r }, { begin: [0, 0, 0, 0], size: [ci, kh, kw, co] });
    free(backend, r);
  }
  const out = transpose(bn, backend, rk, [1, 2, 0, 3]); // [kh, kw, ci, co]
  free(backend, rk);
  return out;
}

/**
 * wasm dW as one MatMul (the im2col formulation of the weight gradient, Chellapilla,
 * Puri & Simard, "High Performance Convolutional Neural Networks for Document
 * Processing", IWFHR 2006): dW[(i,j,c), o] = sum_n A[(i,j,c), n] · dy'[n, o].
 *
 * Stride 1: lay x out zero-padded, channel-major, as xp[c][n] with n = (b·Hp + r)·Wp + s
 * over a (oh+kh-1) x (ow+kw-1) grid, and dy on the same grid as dy'[n][o] (zero outside
 * oh x ow). Tap (i, j) then reads xp[c][n + i·Wp + j]: row (i,j,c) of A is row c of xp
 * shifted by a constant, so A is built from kh·kw·ci contiguous copies (no gather), and
 * the MatMul's [kh·kw·ci, co] output already is the [kh, kw, ci, co] filter layout. The
 * valid n never run past the grid (the last valid output reads the grid's last pixel).
 *
 * Stride s with a k = s unpadded filter (the U-Net's 2x2/2 transposed conv): windows do
 * not overlap, so A = space-to-depth(x) transposed ([kh, kw, ci] x [B, oh, ow]), one gather.
 *
 * Returns null for other shapes (the dilated-convolution path above handles them).
 */
export type BackpropFilterPath = 'im2col-matmul' | 'space-to-depth-matmul' | 'dilated-conv';

function backpropFilterPlan(xShape: number[], attrs: ConvAttrs & { filterShape: [number, number, number, number] }) {
  const info = backend_util.computeConv2DInfo(xShape as [number, number, number, number], attrs.filterShape, attrs.strides, 1, attrs.pad, attrs.dimRoundingMode, false, 'channelsLast');
  const [kh, kw] = attrs.filterShape;
  const [, H, W] = xShape;
  const { top, left } = info.padInfo;
  const { strideHeight: sh, strideWidth: sw, outHeight: oh, outWidth: ow } = info;
  let path: BackpropFilterPath = 'dilated-conv';
  if (sh === sw && kh === sh && kw === sw && sh > 1 && top === 0 && left === 0 && oh * sh === H && ow * sw === W) path = 'space-to-depth-matmul';
  else if (sh === 1 && sw === 1) path = 'im2col-matmul';
  return { path, info };
}

/** The algorithm the Twinfed wasm Conv2DBackpropFilter picks for these shapes. */
export function backpropFilterPath(xShape: number[], filterShape: number[], strides: number | [number, number], pad: Pad): BackpropFilterPath {
  return backpropFilterPlan(xShape, { strides, pad, dataFormat: 'NHWC', filterShape: filterShape as [number, number, number, number] }).path;
}

function conv2DBackpropFilterMatMul(args: KernelArgs): TensorInfo | null {
  const backend = args.backend as BackendWasm;
  const { x, dy } = args.inputs as Record<string, TensorInfo>;
  const attrs = args.attrs as unknown as ConvAttrs & { filterShape: [number, number, number, number] };
  assertChannelsLast(attrs.dataFormat, 'Conv2DBackpropFilter');
  const { path, info } = backpropFilterPlan(x.shape, attrs);
  const [kh, kw, ci, co] = attrs.filterShape;
  const [B, H, W] = x.shape;
  const { top, left } = info.padInfo;
  const { outHeight: oh, outWidth: ow } = info;
  const K = kh * kw * ci;

  if (path === 'space-to-depth-matmul') {
    // A[(i,j,c), (b,p,q)] = x[b, p·s+i, q·s+j, c], gathered in JavaScript: the wasm
    // Transpose of this rank-6 view is ~10x slower than the loop.
    const N = B * oh * ow;
    const aInfo = backend.makeOutput([1, K, N], 'float32');
    const A = backend.typedArrayFromHeap(aInfo) as Float32Array;
    const xv = backend.typedArrayFromHeap(x) as Float32Array;
    for (let bb = 0; bb < B; bb++) {
      for (let r = 0; r < H; r++) {
        const p = (r / kh) | 0,
          i = r - p * kh;
        for (let s = 0; s < W; s++) {
          const q = (s / kw) | 0,
            j = s - q * kw;
          const src = ((bb * H + r) * W + s) * ci;
          const dst = (i * kw + j) * ci * N + (bb * oh + p) * ow + q;
          for (let c = 0; c < ci; c++) A[dst + c * N] = xv[src + c];
        }
      }
    }
    const b: TensorInfo = { dataId: dy.dataId, shape: [1, N, co], dtype: 'float32' };
    const m = call(WASM, backend, 'BatchMatMul', { a: aInfo, b }, { transposeA: false, transposeB: false });
    free(backend, aInfo);
    return { dataId: m.dataId, shape: [kh, kw, ci, co], dtype: 'float32' };
  }
  if (path !== 'im2col-matmul') return null;

  const Hp = oh + kh - 1,
    Wp = ow + kw - 1;
  const N = B * Hp * Wp;
  const aInfo = backend.makeOutput([1, K, N], 'float32');
  const dInfo = backend.makeOutput([1, N, co], 'float32');
  // Views after every allocation: makeOutput may grow (and detach) the heap.
  const A = backend.typedArrayFromHeap(aInfo) as Float32Array;
  const D = backend.typedArrayFromHeap(dInfo) as Float32Array;
  const xv = backend.typedArrayFromHeap(x) as Float32Array;
  const dyv = backend.typedArrayFromHeap(dy) as Float32Array;
  // Rows 0..ci-1 of A (tap 0,0) hold xp itself.
  A.fill(0, 0, ci * N);
  const r0 = Math.max(0, top),
    r1 = Math.min(Hp, H + top); // grid rows holding x rows r - top
  const s0 = Math.max(0, left),
    s1 = Math.min(Wp, W + left);
  for (let bb = 0; bb < B; bb++) {
    for (let r = r0; r < r1; r++) {
      const xRow = (bb * H + (r - top)) * W * ci;
      const gRow = (bb * Hp + r) * Wp;
      for (let s = s0; s < s1; s++) {
        const src = xRow + (s - left) * ci;
        const dst = gRow + s;
        for (let c = 0; c < ci; c++) A[c * N + dst] = xv[src + c];
      }
    }
  }
  for (let i = 0; i < kh; i++) {
    for (let j = 0; j < kw; j++) {
      if (i === 0 && j === 0) continue;
      const off = i * Wp + j;
      const base = (i * kw + j) * ci;
      for (let c = 0; c < ci; c++) {
        const row = (base + c) * N;
        A.copyWithin(row, c * N + off, c * N + N);
        A.fill(0, row + N - off, row + N);
      }
    }
  }
  D.fill(0);
  for (let bb = 0; bb < B; bb++) {
    for (let p = 0; p < oh; p++) {
      const src = (bb * oh + p) * ow * co;
      D.set(dyv.subarray(src, src + ow * co), (bb * Hp + p) * Wp * co);
    }
  }
  const m = call(WASM, backend, 'BatchMatMul', { a: aInfo, b: dInfo }, { transposeA: false, transposeB: false });
  free(backend, aInfo, dInfo);
  return { dataId: m.dataId, shape: [kh, kw, ci, co], dtype: 'float32' };
}

// ---------------------------------------------------------------------------
// MaxPoolGrad (stock wasm kernel is a scalar loop over every window per dx pixel)

/**
 * dx of max pooling: dy of each window goes to the window's first maximum in row-major
 * order (strict >, as the tfjs cpu backend's maxPoolPositions), summed where windows
 * overlap. One pass over the windows instead of one pass over the windows per dx pixel.
 */
function maxPoolGrad(args: KernelArgs): TensorInfo {
  const backend = args.backend as BackendWasm;
  const { dy, input } = args.inputs as Record<string, TensorInfo>;
  const attrs = args.attrs as unknown as { filterSize: number | [number, number]; strides: number | [number, number]; pad: Pad; dimRoundingMode?: 'floor' | 'round' | 'ceil' };
  const info = backend_util.computePool2DInfo(input.shape as [number, number, number, number], attrs.filterSize, attrs.strides, 1, attrs.pad as 'valid' | 'same' | number, attrs.dimRoundingMode);
  const { batchSize: B, inHeight: H, inWidth: W, inChannels: C, outHeight: oh, outWidth: ow } = info;
  const { strideHeight: sh, strideWidth: sw, filterHeight: fh, filterWidth: fw } = info;
  const { top, left } = info.padInfo;
  const out = backend.makeOutput(input.shape, 'float32');
  const dx = backend.typedArrayFromHeap(out) as Float32Array;
  const xv = backend.typedArrayFromHeap(input) as Float32Array;
  const dyv = backend.typedArrayFromHeap(dy) as Float32Array;
  dx.fill(0);
  for (let b = 0; b < B; b++) {
    for (let p = 0; p < oh; p++) {
      const rMin = Math.max(0, p * sh - top),
        rMax = Math.min(H, p * sh - top + fh);
      for (let q = 0; q < ow; q++) {
        const cMin = Math.max(0, q * sw - left),
          cMax = Math.min(W, q * sw - left + fw);
        const o = ((b * oh + p) * ow + q) * C;
        for (let c = 0; c < C; c++) {
          let best = Number.NEGATIVE_INFINITY;
          let at = -1;
          for (let r = rMin; r < rMax; r++) {
            for (let s = cMin; s < cMax; s++) {
              const k = ((b * H + r) * W + s) * C + c;
              if (xv[k] > best) {
                best = xv[k];
                at = k;
              }
            }
          }
          if (at >= 0) dx[at] += dyv[o + c];
        }
      }
    }
  }
  return out;
}

// ---------------------------------------------------------------------------
// Conv2DBackpropInput (stock kernel is a scalar loop)

let stockBackpropInput: KernelConfig | undefined;

/** Which algorithm conv2DBackpropInput uses for given shapes; exported for tests and the bench. */
export type BackpropInputPath = 'conv' | 'depth-to-space' | 'zero-insert' | 'stock';

function backpropInputPlan(inputShape: number[], filterShape: number[], attrs: ConvAttrs) {
  const info = backend_util.computeConv2DInfo(
    inputShape as [number, number, number, number],
    filterShape as [number, number, number, number],
    attrs.strides,
    1,
    attrs.pad,
    attrs.dimRoundingMode,
    false,
    'channelsLast',
  );
  const [, H, W] = inputShape;
  const [kh, kw] = filterShape;
  const { top, left } = info.padInfo;
  const { strideHeight: sh, strideWidth: sw, outHeight: oh, outWidth: ow } = info;
  const pads = {
    top: kh - 1 - top,
    bottom: H - (oh - 1) * sh - 1 + top,
    left: kw - 1 - left,
    right: W - (ow - 1) * sw - 1 + left,
  };
  let path: BackpropInputPath;
  if (sh === 1 && sw === 1) path = 'conv';
  else if (sh === sw && kh === sh && kw === sw && top === 0 && left === 0 && oh * sh === H && ow * sw === W) path = 'depth-to-space';
  else path = 'zero-insert';
  if ((path === 'conv' || path === 'zero-insert') && (pads.top < 0 || pads.bottom < 0 || pads.left < 0 || pads.right < 0)) path = 'stock';
  return { path, info, pads };
}

/** The algorithm the Twinfed wasm Conv2DBackpropInput picks for these shapes. */
export function backpropInputPath(inputShape: number[], filterShape: number[], strides: number | [number, number], pad: Pad): BackpropInputPath {
  return backpropInputPlan(inputShape, filterShape, { strides, pad, dataFormat: 'NHWC' }).path;
}

function conv2DBackpropInput(args: KernelArgs): TensorInfo {
  const backend = args.backend as BackendWasm;
  const { dy, filter } = args.inputs as Record<string, TensorInfo>;
  const attrs = args.attrs as unknown as ConvAttrs & { inputShape: [number, number, number, number] };
  assertChannelsLast(attrs.dataFormat, 'Conv2DBackpropInput');
  const { path, info, pads } = backpropInputPlan(attrs.inputShape, filter.shape, attrs);
  const explicit: backend_util.ExplicitPadding = [
    [0, 0],
    [pads.top, pads.bottom],
    [pads.left, pads.right],
    [0, 0],
  ];

  if (path === 'conv') {
    const wf = flipTransposeFilter(backend, filter);
    const out = conv2d(WASM, backend, dy, wf, explicit, [1, 1]);
    free(backend, wf);
    return out;
  }

  if (path === 'depth-to-space') {
    // dx[b, p*s+i, q*s+j, c] = sum_o dy[b,p,q,o] W[i,j,c,o]: one [N, co] x [co, k*k*ci] MatMul,
    // then interleave the k*k taps into space. The wasm DepthToSpace and MatMul with
    // transposeB are ~10x slower than a Transpose, so the filter is transposed up front
    // (it is tiny) and the interleave is a rank-6 Transpose.
    const [kh, kw, ci, co] = filter.shape;
    const [B, oh, ow] = dy.shape;
    const w2: TensorInfo = { dataId: filter.dataId, shape: [kh * kw * ci, co], dtype: 'float32' };
    const wt = transpose(WASM, backend, w2, [1, 0]); // [co, kh*kw*ci]
    // Reshapes share a dataId and are only read, so they need no disposal.
    const a: TensorInfo = { dataId: dy.dataId, shape: [1, B * oh * ow, co], dtype: 'float32' };
    const b: TensorInfo = { dataId: wt.dataId, shape: [1, co, kh * kw * ci], dtype: 'float32' };
    const m = call(WASM, backend, 'BatchMatMul', { a, b }, { transposeA: false, transposeB: false });
    free(backend, wt);
    const m6: TensorInfo = { dataId: m.dataId, shape: [B, oh, ow, kh, kw, ci], dtype: 'float32' };
    const t = transpose(WASM, backend, m6, [0, 1, 3, 2, 4, 5]); // [B, oh, kh, ow, kw, ci]
    free(backend, m);
    return { dataId: t.dataId, shape: [B, oh * kh, ow * kw, ci], dtype: 'float32' };
  }

  if (path === 'zero-insert') {
    const [B, oh, ow, co] = dy.shape;
    const sh = info.strideHeight,
      sw = info.strideWidth;
    const uh = (oh - 1) * sh + 1,
      uw = (ow - 1) * sw + 1;
    const up = backend.makeOutput([B, uh, uw, co], 'float32');
    const upv = backend.typedArrayFromHeap(up) as Float32Array;
    const dyv = backend.typedArrayFromHeap(dy) as Float32Array;
    upv.fill(0);
    for (let b = 0; b < B; b++) {
      for (let p = 0; p < oh; p++) {
        for (let q = 0; q < ow; q++) {
          const s0 = ((b * oh + p) * ow + q) * co;
          upv.set(dyv.subarray(s0, s0 + co), ((b * uh + p * sh) * uw + q * sw) * co);
        }
      }
    }
    const wf = flipTransposeFilter(backend, filter);
    const out = conv2d(WASM, backend, up, wf, explicit, [1, 1]);
    free(backend, up, wf);
    return out;
  }

  return (stockBackpropInput as KernelConfig).kernelFunc(args) as TensorInfo;
}

// ---------------------------------------------------------------------------
// Sum over every axis but the last (bias gradients)

let stockSum: KernelConfig | undefined;

/**
 * The gradient of a per-channel bias is dy summed over batch, rows and columns. The stock
 * wasm Sum first transposes the reduced axes innermost (a full copy of dy); summing rows
 * of C channels in place is one pass. Other reductions go to the stock kernel.
 */
function sumLeadingAxes(args: KernelArgs): TensorInfo {
  const backend = args.backend as BackendWasm;
  const { x } = args.inputs as Record<string, TensorInfo>;
  const { axis, keepDims } = args.attrs as unknown as { axis: number | number[]; keepDims: boolean };
  const r = x.shape.length;
  const axes = [...new Set(tf.util.parseAxisParam(axis, x.shape))].sort((p, q) => p - q);
  const leading = r >= 2 && axes.length === r - 1 && axes.every((a, i) => a === i);
  if (!leading || x.dtype !== 'float32') return (stockSum as KernelConfig).kernelFunc(args) as TensorInfo;
  const C = x.shape[r - 1];
  const outShape = keepDims ? [...x.shape.slice(0, -1).map(() => 1), C] : [C];
  const out = backend.makeOutput(outShape, 'float32');
  const o = backend.typedArrayFromHeap(out) as Float32Array;
  const v = backend.typedArrayFromHeap(x) as Float32Array;
  const acc = new Float64Array(C);
  for (let i = 0; i < v.length; i += C) {
    for (let c = 0; c < C; c++) acc[c] += v[i + c];
  }
  o.set(acc);
  return out;
}

// ---------------------------------------------------------------------------

/** Kernels this module adds to or replaces in the wasm backend. */
export const TWINFED_WASM_KERNELS = ['Conv2DBackpropFilter', 'Conv2DBackpropInput', 'MaxPoolGrad', 'Sum'] as const;

/**
 * Which Twinfed kernels to register; for benchmarks that compare against the stock
 * backend. The default (every field true) is what training uses.
 */
export interface WasmKernelSet {
  /**
   * Conv2DBackpropFilter as one MatMul where the shapes allow (im2col / space-to-depth)
   * instead of the dilated convolution. Off by default: on the 2-core dev box a whole
   * reference step was not measurably faster (best steps ~235-245 ms either way) and the
   * im2col matrix costs kh·kw times the input's memory. Switchable at run time with
   * setBackpropFilterMatMul. The wasm backend has no Conv2DBackpropFilter at all, so one
   * version is always registered.
   */
  backpropFilterMatMul: boolean;
  /** Replace the stock scalar-loop Conv2DBackpropInput. */
  backpropInput: boolean;
  /** Replace the stock MaxPoolGrad, and Sum over all axes but the last (bias gradients). */
  maxPoolGrad: boolean;
}

/** What selectBackend registers. */
export const DEFAULT_WASM_KERNELS: WasmKernelSet = { backpropFilterMatMul: false, backpropInput: true, maxPoolGrad: true };

let wasmRegistered: WasmKernelSet | undefined;
let useBackpropFilterMatMul = false;

/** Switches the wasm Conv2DBackpropFilter between the MatMul and the dilated-conv algorithm. */
export function setBackpropFilterMatMul(on: boolean): void {
  useBackpropFilterMatMul = on;
}

/**
 * Registers Twinfed's training kernels on the wasm backend. Idempotent: the first
 * call's set wins for the life of the process (kernels are process-global). Call before
 * `tf.setBackend('wasm')` (selectBackend does): setBackend runs the kernels' setup
 * functions; if wasm is already active we run the stock one here. Returns the set in force.
 */
export function registerWasmTrainingKernels(set: WasmKernelSet = DEFAULT_WASM_KERNELS): WasmKernelSet {
  if (wasmRegistered) return wasmRegistered;
  wasmRegistered = { ...set };
  useBackpropFilterMatMul = set.backpropFilterMatMul;
  if (tf.getKernel('Conv2DBackpropFilter', WASM) == null) {
    tf.registerKernel({
      kernelName: 'Conv2DBackpropFilter',
      backendName: WASM,
      kernelFunc: ((args) => (useBackpropFilterMatMul ? conv2DBackpropFilterMatMul(args) : null) ?? conv2DBackpropFilter(WASM, args)) as KernelFunc,
    });
  }
  if (set.maxPoolGrad) {
    if (tf.getKernel('MaxPoolGrad', WASM) != null) tf.unregisterKernel('MaxPoolGrad', WASM);
    tf.registerKernel({ kernelName: 'MaxPoolGrad', backendName: WASM, kernelFunc: maxPoolGrad as KernelFunc });
    const sum = tf.getKernel('Sum', WASM);
    if (sum == null) throw new Error('tfjs-backend-wasm has no Sum to fall back to');
    stockSum = sum;
    tf.unregisterKernel('Sum', WASM);
    // The stock kernel binds its wasm export in setupFunc; keep it for the fallback.
    tf.registerKernel({ kernelName: 'Sum', backendName: WASM, setupFunc: sum.setupFunc, kernelFunc: sumLeadingAxes as KernelFunc });
    const active = tf.findBackend(WASM);
    if (active != null && sum.setupFunc != null) sum.setupFunc(active);
  }
  if (!set.backpropInput) return wasmRegistered;
  const stock = tf.getKernel('Conv2DBackpropInput', WASM);
  if (stock == null) throw new Error('tfjs-backend-wasm has no Conv2DBackpropInput to fall back to');
  stockBackpropInput = stock;
  tf.unregisterKernel('Conv2DBackpropInput', WASM);
  tf.registerKernel({
    kernelName: 'Conv2DBackpropInput',
    backendName: WASM,
    // The stock kernel binds its wasm export in setupFunc; keep that for the fallback path.
    setupFunc: stock.setupFunc,
    kernelFunc: conv2DBackpropInput as KernelFunc,
  });
  const active = tf.findBackend(WASM);
  if (active != null && stock.setupFunc != null) stock.setupFunc(active);
  return wasmRegistered;
}

let cpuRegistered = false;

/**
 * Replaces the pure-JS cpu backend's Conv2DBackpropFilter (an element-by-element
 * loop that takes ~100 s of a 110 s reference training step) by the same
 * transposed-convolution formulation over the cpu Conv2D. Idempotent; selectBackend
 * calls it when it falls back to cpu.
 */
export function registerCpuTrainingKernels(): void {
  if (cpuRegistered) return;
  cpuRegistered = true;
  if (tf.getKernel('Conv2DBackpropFilter', 'cpu') != null) tf.unregisterKernel('Conv2DBackpropFilter', 'cpu');
  tf.registerKernel({
    kernelName: 'Conv2DBackpropFilter',
    backendName: 'cpu',
    kernelFunc: ((args) => conv2DBackpropFilter('cpu', args)) as KernelFunc,
  });
}
