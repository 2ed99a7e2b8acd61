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
 * Since issue 11 the default dW, the forward convolutions (Conv2D, linear FusedConv2D, and so
 * dx), the bias Sum and the 2x2/2 MaxPoolGrad run in Twinfed's own SIMD kernels
 * (wasm-simd.ts) on the tfjs heap; the XNNPACK formulations above ('dilated-conv', the GEMMs
 * 'tap-matmul' and 'im2col-matmul') stay as fallbacks and for benchmarks. Identity and
 * same-dtype Cast share buffers instead of copying them.
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
import { convSimd, dwKernels, dwSimd, dwSimdApplies, simdKernels, sumRowsSimd, type DwProblem, type WasmMemory } from './wasm-simd.js';

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
export type BackpropFilterPath = 'simd' | 'tap-matmul' | 'im2col-matmul' | 'space-to-depth-matmul' | 'dilated-conv';

/**
 * How the wasm Conv2DBackpropFilter computes dW: 'simd' (default: Twinfed's own SIMD kernel,
 * wasm-simd.ts, any stride and padding, output channels a multiple of 4; other shapes as
 * 'tap-matmul'), 'tap-matmul' (stride 1 as kh·kw XNNPACK GEMMs over heap views, the 2x2/2
 * transposed conv as one space-to-depth GEMM), 'im2col-matmul' (stride 1 as one GEMM over an
 * im2col matrix, same space-to-depth GEMM), 'dilated-conv' (always the XNNPACK dilated
 * convolution; the first Twinfed kernel). Shapes no GEMM covers take the dilated convolution.
 */
export type BackpropFilterAlgorithm = 'simd' | 'tap-matmul' | 'im2col-matmul' | 'dilated-conv';

function backpropFilterPlan(xShape: number[], attrs: ConvAttrs & { filterShape: [number, number, number, number] }, algorithm: BackpropFilterAlgorithm) {
  const info = backend_util.computeConv2DInfo(xShape as [number, number, number, number], attrs.filterShape, attrs.strides, 1, attrs.pad, attrs.dimRoundingMode, false, 'channelsLast');
  const [kh, kw] = attrs.filterShape;
  const [, H, W] = xShape;
  const { top, left } = info.padInfo;
  const { strideHeight: sh, strideWidth: sw, outHeight: oh, outWidth: ow } = info;
  let path: BackpropFilterPath = 'dilated-conv';
  if (algorithm === 'dilated-conv') path = 'dilated-conv';
  else if (algorithm === 'simd' && attrs.filterShape[3] % 4 === 0 && simdAvailable()) path = 'simd';
  else if (sh === sw && kh === sh && kw === sw && sh > 1 && top === 0 && left === 0 && oh * sh === H && ow * sw === W) path = 'space-to-depth-matmul';
  else if (sh === 1 && sw === 1) path = algorithm === 'im2col-matmul' ? 'im2col-matmul' : 'tap-matmul';
  return { path, info };
}

/** The algorithm the Twinfed wasm Conv2DBackpropFilter picks for these shapes (under `algorithm`, default the one in force). */
export function backpropFilterPath(
  xShape: number[],
  filterShape: number[],
  strides: number | [number, number],
  pad: Pad,
  algorithm: BackpropFilterAlgorithm = backpropFilterAlgorithm,
): BackpropFilterPath {
  return backpropFilterPlan(xShape, { strides, pad, dataFormat: 'NHWC', filterShape: filterShape as [number, number, number, number] }, algorithm).path;
}

function conv2DBackpropFilterWasm(args: KernelArgs): TensorInfo {
  const backend = args.backend as BackendWasm;
  const { x, dy } = args.inputs as Record<string, TensorInfo>;
  const attrs = args.attrs as unknown as ConvAttrs & { filterShape: [number, number, number, number] };
  assertChannelsLast(attrs.dataFormat, 'Conv2DBackpropFilter');
  const { path, info } = backpropFilterPlan(x.shape, attrs, backpropFilterAlgorithm);
  if (path === 'dilated-conv') return conv2DBackpropFilter(WASM, args);
  if (path === 'simd') return conv2DBackpropFilterSimd(backend, x, dy, attrs.filterShape, info);
  if (path === 'tap-matmul') return conv2DBackpropFilterTaps(backend, x, dy, attrs.filterShape, info);
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
// XNNPACK GEMM on views of the wasm heap

/** The exports of the tfjs wasm module that the view-GEMM needs (typed loosely: they are not in its .d.ts). */
interface WasmModuleCalls {
  cwrap(name: string, ret: null, args: string[]): (...a: unknown[]) => void;
}

const rawMatMuls = new WeakMap<object, (aId: number, aShape: Uint8Array, aRank: number, bId: number, bShape: Uint8Array, bRank: number, ta: boolean, tb: boolean, outId: number) => void>();

/** The tfjs wasm BatchMatMul export, called with tensor ids directly (no reshape, no output allocation). */
function rawMatMul(backend: BackendWasm) {
  let f = rawMatMuls.get(backend.wasm);
  if (f == null) {
    const cw = (backend.wasm as unknown as WasmModuleCalls).cwrap('BatchMatMul', null, ['number', 'array', 'number', 'number', 'array', 'number', 'number', 'number', 'number']);
    f = cw as typeof f & object;
    rawMatMuls.set(backend.wasm, f);
  }
  return f;
}

const shapeBytes = (s: number[]) => new Uint8Array(new Int32Array(s).buffer);

/**
 * A tensor that is a view `offset` floats into `base`'s memory (no copy). The wasm kernels
 * read and write tensors by id and byte offset, so a registered view is a dense tensor to them.
 * Must be dropped with dropView (never disposeData: that would free() an interior pointer).
 */
function heapView(backend: BackendWasm, base: TensorInfo, offset: number, shape: number[]): TensorInfo {
  const { memoryOffset } = backend.dataIdMap.get(base.dataId);
  return backend.makeOutput(shape, 'float32', memoryOffset + 4 * offset);
}

function dropView(backend: BackendWasm, v: TensorInfo): void {
  const d = backend.dataIdMap.get(v.dataId);
  // Unregisters the id in the C++ tensor registry (and any XNNPACK operator cached on it), frees nothing.
  backend.wasm.tfjs.disposeData(d.id);
  backend.dataIdMap.delete(v.dataId);
}

/**
 * out[M, N] = A[M, K] · B[K, N] by XNNPACK's fully-connected GEMM (the wasm BatchMatMul with
 * batch 1). XNNPACK packs B once per B tensor and caches the packed operator on B's id until B is
 * disposed, so calls that share B (the taps below) pack it once.
 */
function gemm(backend: BackendWasm, a: TensorInfo, b: TensorInfo, out: TensorInfo, M: number, K: number, N: number): void {
  const id = (t: TensorInfo) => backend.dataIdMap.get(t.dataId).id;
  rawMatMul(backend)(id(a), shapeBytes([1, M, K]), 3, id(b), shapeBytes([1, K, N]), 3, false, false, id(out));
}

/** The tfjs wasm module's memory (its exports are not in the .d.ts). */
function wasmMemory(backend: BackendWasm): WasmMemory {
  return (backend.wasm as unknown as { asm: { memory: WasmMemory } }).asm.memory;
}

/** Whether Twinfed's SIMD dW kernels run here (the active wasm backend's engine has SIMD). */
function simdAvailable(): boolean {
  const b = tf.findBackend(WASM) as BackendWasm | null;
  return b != null && dwKernels(wasmMemory(b)) != null;
}

/** dW by Twinfed's SIMD kernel (wasm-simd.ts): x and dy read in place, the output summed into. */
function conv2DBackpropFilterSimd(backend: BackendWasm, x: TensorInfo, dy: TensorInfo, filterShape: [number, number, number, number], info: backend_util.Conv2DInfo): TensorInfo {
  const [kh, kw, ci, co] = filterShape;
  const pr: DwProblem = {
    B: x.shape[0],
    H: x.shape[1],
    W: x.shape[2],
    ci,
    oh: info.outHeight,
    ow: info.outWidth,
    co,
    kh,
    kw,
    sh: info.strideHeight,
    sw: info.strideWidth,
    top: info.padInfo.top,
    left: info.padInfo.left,
  };
  const kernels = dwKernels(wasmMemory(backend));
  if (kernels == null || !dwSimdApplies(pr)) throw new Error('Twinfed SIMD dW called where it does not apply');
  const out = backend.makeOutput([kh, kw, ci, co], 'float32');
  (backend.typedArrayFromHeap(out) as Float32Array).fill(0);
  const addr = (t: TensorInfo) => backend.dataIdMap.get(t.dataId).memoryOffset;
  dwSimd(kernels, pr, addr(x), addr(dy), addr(out));
  return out;
}

/**
 * Working set of one chunk of images in conv2DBackpropFilterTaps (bytes of its x rows plus its
 * dy rows): small enough that a chunk's operands stay in a 512 KiB L2 cache across its kh·kw
 * GEMMs, which otherwise stream them from L3 once per GEMM (and XNNPACK once more per 4 rows
 * of the left operand). 0 = the whole batch in one chunk.
 */
let tapChunkBytes = 320 * 1024;

/** Sets the chunk size of the tap-matmul dW (benchmarks, tests); returns the previous one. */
export function setBackpropFilterChunkBytes(bytes: number): number {
  const prev = tapChunkBytes;
  tapChunkBytes = bytes;
  return prev;
}

/**
 * wasm dW of a stride-1 convolution as kh·kw GEMMs over shifted views, with no im2col matrix.
 * Lay x out zero-padded and channel-major on a grid of (oh+kh-1) x (ow+kw-1) pixels per image,
 * XT[c][n] with n = (b·Hp + r)·Wp + s, and dy on the same grid as D[n][o] (zero outside oh x ow).
 * Then for every tap (i, j)
 *   dW[i, j, c, o] = Σ_n XT[c][n + i·Wp + j] · D[n][o],
 * and XT shifted by i·Wp + j is itself a dense matrix in memory when its rows are K long and
 * stored K apart: row c of the view starts at c·K + i·Wp + j. Where n + shift runs past a row
 * the view reads the next row's start (or the zero tail), but only at grid pixels where D is
 * zero: the last valid output pixel's tap reads the grid's last pixel, and every row ends with
 * a zero margin of at least the largest shift (K = grid pixels + margin, D zero there too).
 * So each tap is one GEMM of a heap view with the same D, written straight into its [ci, co]
 * block of the [kh, kw, ci, co] output; XNNPACK packs D once for all taps.
 *
 * The batch is cut into chunks of whole images (tapChunkBytes) with their own XT and D blocks;
 * the chunks' [kh, kw, ci, co] results are added up in float64 at the end.
 * Compared with the im2col MatMul: x is rearranged once instead of kh·kw times; compared with
 * the dilated XNNPACK convolution: no transposes of x and dy, and the GEMM's reduction is one
 * long contiguous loop instead of an indirection over a huge dy "filter".
 */
function conv2DBackpropFilterTaps(backend: BackendWasm, x: TensorInfo, dy: TensorInfo, filterShape: [number, number, number, number], info: backend_util.Conv2DInfo): TensorInfo {
  const [kh, kw, ci, co] = filterShape;
  const [B, H, W] = x.shape;
  const { top, left } = info.padInfo;
  const { outHeight: oh, outWidth: ow } = info;
  const Hp = oh + kh - 1,
    Wp = ow + kw - 1;
  const img = Hp * Wp;
  const margin = (kh - 1) * Wp + (kw - 1);
  const per = tapChunkBytes > 0 ? Math.max(1, Math.min(B, Math.floor(tapChunkBytes / ((ci + co) * img * 4)))) : B;
  const nChunks = Math.ceil(B / per);
  const K = per * img + margin; // row length of a chunk's XT and rows of its D (the last chunk may use fewer images)
  const xtInfo = backend.makeOutput([nChunks * ci * K + margin], 'float32');
  const dInfo = backend.makeOutput([nChunks * K, co], 'float32');
  const taps = kh * kw * ci * co;
  const part = nChunks > 1 ? backend.makeOutput([nChunks * taps], 'float32') : backend.makeOutput([kh, kw, ci, co], 'float32');
  // Views after every allocation: makeOutput may grow (and detach) the heap.
  const XT = backend.typedArrayFromHeap(xtInfo) as Float32Array;
  const D = backend.typedArrayFromHeap(dInfo) as Float32Array;
  const xv = backend.typedArrayFromHeap(x) as Float32Array;
  const dyv = backend.typedArrayFromHeap(dy) as Float32Array;
  XT.fill(0);
  D.fill(0);
  // Grid rows r hold x rows r - top (where those exist), grid columns s hold x columns s - left.
  const r0 = Math.max(0, top),
    r1 = Math.min(Hp, H + top);
  const s0 = Math.max(0, left),
    s1 = Math.min(Wp, W + left);
  for (let b = 0; b < B; b++) {
    const chunk = Math.floor(b / per);
    const g0 = chunk * ci * K + (b - chunk * per) * img; // this image's grid in channel 0 of its chunk
    for (let r = r0; r < r1; r++) {
      const xRow = (b * H + (r - top)) * W * ci;
      const gRow = g0 + r * Wp;
      // One x row (W·ci floats) stays in L1 while its ci channel rows are written out.
      for (let c = 0; c < ci; c++) {
        const g = gRow + c * K;
        for (let q = s0, k = xRow + (s0 - left) * ci + c; q < s1; q++, k += ci) XT[g + q] = xv[k];
      }
    }
    const d0 = (chunk * K + (b - chunk * per) * img) * co;
    for (let p = 0; p < oh; p++) {
      const src = (b * oh + p) * ow * co;
      D.set(dyv.subarray(src, src + ow * co), d0 + p * Wp * co);
    }
  }
  for (let chunk = 0; chunk < nChunks; chunk++) {
    const dv = heapView(backend, dInfo, chunk * K * co, [K, co]);
    for (let i = 0; i < kh; i++) {
      for (let j = 0; j < kw; j++) {
        const a = heapView(backend, xtInfo, chunk * ci * K + i * Wp + j, [ci, K]);
        const o = heapView(backend, part, chunk * taps + (i * kw + j) * ci * co, [ci, co]);
        gemm(backend, a, dv, o, ci, K, co);
        dropView(backend, a);
        dropView(backend, o);
      }
    }
    dropView(backend, dv);
  }
  free(backend, xtInfo, dInfo);
  if (nChunks === 1) return part;
  const out = backend.makeOutput([kh, kw, ci, co], 'float32');
  const o = backend.typedArrayFromHeap(out) as Float32Array;
  const pv = backend.typedArrayFromHeap(part) as Float32Array;
  const acc = new Float64Array(taps);
  for (let chunk = 0; chunk < nChunks; chunk++) {
    for (let t = 0; t < taps; t++) acc[t] += pv[chunk * taps + t];
  }
  o.set(acc);
  free(backend, part);
  return out;
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
  const simd = fh === 2 && fw === 2 && sh === 2 && sw === 2 && top === 0 && left === 0 && H === 2 * oh && W === 2 * ow && C % 4 === 0 ? simdKernels(wasmMemory(backend)) : null;
  if (simd) {
    // The U-Net's pool in SIMD (wasm-simd.ts): the same rule, four channels at a time.
    const addr = (t: TensorInfo) => backend.dataIdMap.get(t.dataId).memoryOffset;
    simd.maxPoolGrad(addr(input), addr(dy), addr(out), B * oh, ow, C / 4, W * C * 4, C * 4);
    return out;
  }
  if (fh === 2 && fw === 2 && sh === 2 && sw === 2 && top === 0 && left === 0) {
    // The U-Net's 2x2/2 pool: windows do not overlap, so every dx element is written once
    // (no zero fill, no accumulation) and the window's four values are compared in registers.
    if (H !== 2 * oh || W !== 2 * ow) dx.fill(0); // a last odd row/column belongs to no window
    const rowC = W * C;
    for (let b = 0; b < B; b++) {
      for (let p = 0; p < oh; p++) {
        for (let q = 0; q < ow; q++) {
          const base = ((b * H + 2 * p) * W + 2 * q) * C;
          const o = ((b * oh + p) * ow + q) * C;
          for (let c = 0; c < C; c++) {
            const i00 = base + c,
              i01 = i00 + C,
              i10 = i00 + rowC,
              i11 = i10 + C;
            const a = xv[i00],
              b = xv[i01],
              d = xv[i10],
              e = xv[i11];
            const g = dyv[o + c];
            if (a !== a || b !== b || d !== d || e !== e || g - g !== 0) {
              // A NaN in the window or an infinite/NaN dy (never in practice, so this branch is
              // always predicted): the generic rule, first maximum by strict > from -Infinity
              // (NaNs never win), and exact zeros elsewhere.
              let m = Number.NEGATIVE_INFINITY,
                k = -1;
              if (a > m) [m, k] = [a, 0];
              if (b > m) [m, k] = [b, 1];
              if (d > m) [m, k] = [d, 2];
              if (e > m) k = 3;
              dx[i00] = k === 0 ? g : 0;
              dx[i01] = k === 1 ? g : 0;
              dx[i10] = k === 2 ? g : 0;
              dx[i11] = k === 3 ? g : 0;
              continue;
            }
            // First maximum in row-major order, as masks without branches (comparisons on
            // random activations mispredict half the time): an element wins if it is >= every
            // later one and > every earlier one.
            dx[i00] = g * (+(a >= b) & +(a >= d) & +(a >= e));
            dx[i01] = g * (+(b > a) & +(b >= d) & +(b >= e));
            dx[i10] = g * (+(d > a) & +(d > b) & +(d >= e));
            dx[i11] = g * (+(e > a) & +(e > b) & +(e > d));
          }
        }
      }
    }
    return out;
  }
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
  const n = v.length;
  const simd = C % 4 === 0 ? simdKernels(wasmMemory(backend)) : null;
  if (simd) {
    const tmp = backend.makeOutput([32], 'float32');
    const heap = backend.typedArrayFromHeap(tmp) as Float32Array;
    const addr = (t: TensorInfo) => backend.dataIdMap.get(t.dataId).memoryOffset;
    const acc = sumRowsSimd(simd, new Float32Array(heap.buffer), addr(x), n / C, C, addr(tmp));
    free(backend, tmp);
    (backend.typedArrayFromHeap(out) as Float32Array).set(acc);
    return out;
  }
  if (C % 8 === 0) {
    // Eight channels per pass in local (float64) accumulators: V8 keeps them in registers,
    // where a Float64Array accumulator is a load and a store per element. Same order of
    // additions per channel as the generic loop, so the same result.
    for (let c0 = 0; c0 < C; c0 += 8) {
      let a0 = 0,
        a1 = 0,
        a2 = 0,
        a3 = 0,
        a4 = 0,
        a5 = 0,
        a6 = 0,
        a7 = 0;
      for (let i = c0; i < n; i += C) {
        a0 += v[i];
        a1 += v[i + 1];
        a2 += v[i + 2];
        a3 += v[i + 3];
        a4 += v[i + 4];
        a5 += v[i + 5];
        a6 += v[i + 6];
        a7 += v[i + 7];
      }
      o[c0] = a0;
      o[c0 + 1] = a1;
      o[c0 + 2] = a2;
      o[c0 + 3] = a3;
      o[c0 + 4] = a4;
      o[c0 + 5] = a5;
      o[c0 + 6] = a6;
      o[c0 + 7] = a7;
    }
    return out;
  }
  if (C % 4 === 0) {
    for (let c0 = 0; c0 < C; c0 += 4) {
      let a0 = 0,
        a1 = 0,
        a2 = 0,
        a3 = 0;
      for (let i = c0; i < n; i += C) {
        a0 += v[i];
        a1 += v[i + 1];
        a2 += v[i + 2];
        a3 += v[i + 3];
      }
      o[c0] = a0;
      o[c0 + 1] = a1;
      o[c0 + 2] = a2;
      o[c0 + 3] = a3;
    }
    return out;
  }
  const acc = new Float64Array(C);
  for (let i = 0; i < n; i += C) {
    for (let c = 0; c < C; c++) acc[c] += v[i + c];
  }
  o.set(acc);
  return out;
}

// ---------------------------------------------------------------------------
// Conv2D / FusedConv2D by Twinfed's SIMD kernel

let stockConv2D: KernelConfig | undefined;
let stockFusedConv2D: KernelConfig | undefined;

/**
 * The convolution by wasm-simd.ts's register-blocked kernel (4 output pixels x 8 output channels
 * in registers; no packing, no indirection buffer), on a zero-padded copy of x when the
 * convolution pads. Returns null where it does not apply (other data formats, dilation,
 * output channels not a multiple of 4, no SIMD): the caller runs the stock XNNPACK kernel.
 * Used for the forward convolutions and, through conv2DBackpropInput, for dx.
 */
function conv2DSimd(backend: BackendWasm, x: TensorInfo, filter: TensorInfo, bias: TensorInfo | undefined, attrs: ConvAttrs & { dilations?: number | [number, number] }): TensorInfo | null {
  const [kh, kw, ci, co] = filter.shape;
  const dil = attrs.dilations ?? 1;
  if ((Array.isArray(dil) ? dil[0] !== 1 || dil[1] !== 1 : dil !== 1) || co % 4 !== 0) return null;
  if (backend_util.convertConv2DDataFormat(attrs.dataFormat) !== 'channelsLast' || x.dtype !== 'float32' || filter.shape[2] !== x.shape[3]) return null;
  if (bias != null && tf.util.sizeFromShape(bias.shape) !== co) return null;
  const kernels = simdKernels(wasmMemory(backend));
  if (kernels == null) return null;
  const [B, H, W] = x.shape;
  const info = backend_util.computeConv2DInfo(
    x.shape as [number, number, number, number],
    filter.shape as [number, number, number, number],
    attrs.strides,
    1,
    attrs.pad,
    attrs.dimRoundingMode,
    false,
    'channelsLast',
  );
  const { top, left, bottom, right } = info.padInfo;
  const { outHeight: oh, outWidth: ow, strideHeight: sh, strideWidth: sw } = info;
  if (top < 0 || left < 0 || bottom < 0 || right < 0) return null;
  const Hp = H + top + bottom,
    Wp = W + left + right;
  const out = backend.makeOutput([B, oh, ow, co], 'float32');
  const padded = top + bottom + left + right > 0 ? backend.makeOutput([B, Hp, Wp, ci], 'float32') : undefined;
  const zeros = bias == null ? backend.makeOutput([co], 'float32') : undefined;
  // Views after every allocation: makeOutput may grow (and detach) the heap.
  if (zeros) (backend.typedArrayFromHeap(zeros) as Float32Array).fill(0);
  if (padded) {
    const pv = backend.typedArrayFromHeap(padded) as Float32Array;
    const xv = backend.typedArrayFromHeap(x) as Float32Array;
    pv.fill(0);
    const row = W * ci;
    for (let b = 0; b < B; b++) {
      for (let r = 0; r < H; r++) {
        const src = (b * H + r) * row;
        pv.set(xv.subarray(src, src + row), ((b * Hp + r + top) * Wp + left) * ci);
      }
    }
  }
  const addr = (t: TensorInfo) => backend.dataIdMap.get(t.dataId).memoryOffset;
  convSimd(kernels, { B, Hp, Wp, ci, oh, ow, co, kh, kw, sh, sw }, addr(padded ?? x), addr(filter), addr(bias ?? zeros!), addr(out));
  if (padded) free(backend, padded);
  if (zeros) free(backend, zeros);
  return out;
}

function conv2DWasm(args: KernelArgs): TensorInfo {
  const { x, filter } = args.inputs as Record<string, TensorInfo>;
  return conv2DSimd(args.backend as BackendWasm, x, filter, undefined, args.attrs as unknown as ConvAttrs) ?? ((stockConv2D as KernelConfig).kernelFunc(args) as TensorInfo);
}

function fusedConv2DWasm(args: KernelArgs): TensorInfo {
  const { x, filter, bias, preluActivationWeights } = args.inputs as Record<string, TensorInfo | undefined>;
  const attrs = args.attrs as unknown as ConvAttrs & { activation?: string };
  if ((attrs.activation ?? 'linear') === 'linear' && preluActivationWeights == null) {
    const out = conv2DSimd(args.backend as BackendWasm, x!, filter!, bias ?? undefined, attrs);
    if (out) return out;
  }
  return (stockFusedConv2D as KernelConfig).kernelFunc(args) as TensorInfo;
}

// ---------------------------------------------------------------------------
// Identity and same-dtype Cast without a copy

let stockIdentity: KernelConfig | undefined;
let stockCast: KernelConfig | undefined;

/** `x` itself under a new reference (tensors are immutable; the wasm Reshape shares buffers the same way). */
function share(backend: BackendWasm, x: TensorInfo): TensorInfo {
  backend.incRef(x.dataId);
  return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
}

/**
 * tfjs saves every tensor a gradient needs through engine.clone = the Identity kernel
 * (saveTensorsForBackwardMode, customGrad's save), ~80 per U-Net step, and the wasm Identity
 * copies the whole buffer where the cpu backend's shares it. The ReLU gradient's
 * Cast(float32 → float32) is another copy. Both share the buffer here (refcounted; every kernel
 * writes only to its own outputs, so a shared buffer is never modified).
 */
function identityNoCopy(args: KernelArgs): TensorInfo {
  const { x } = args.inputs as Record<string, TensorInfo>;
  if (x.dtype === 'string') return (stockIdentity as KernelConfig).kernelFunc(args) as TensorInfo;
  return share(args.backend as BackendWasm, x);
}

function castNoCopy(args: KernelArgs): TensorInfo {
  const { x } = args.inputs as Record<string, TensorInfo>;
  const { dtype } = args.attrs as unknown as { dtype: string };
  if (x.dtype === dtype && dtype !== 'string') return share(args.backend as BackendWasm, x);
  return (stockCast as KernelConfig).kernelFunc(args) as TensorInfo;
}

// ---------------------------------------------------------------------------

/** Kernels this module adds to or replaces in the wasm backend. */
export const TWINFED_WASM_KERNELS = ['Conv2DBackpropFilter', 'Conv2DBackpropInput', 'MaxPoolGrad', 'Sum', 'Identity', 'Cast', 'Conv2D', 'FusedConv2D'] as const;

/**
 * Which Twinfed kernels to register; for benchmarks that compare against the stock
 * backend. The default (every field true) is what training uses.
 */
export interface WasmKernelSet {
  /**
   * Conv2DBackpropFilter algorithm (see BackpropFilterAlgorithm); switchable at run time with
   * setBackpropFilterAlgorithm. The wasm backend has no Conv2DBackpropFilter at all, so one
   * version is always registered.
   */
  backpropFilter: BackpropFilterAlgorithm;
  /** Replace the stock scalar-loop Conv2DBackpropInput. */
  backpropInput: boolean;
  /** Replace the stock MaxPoolGrad, and Sum over all axes but the last (bias gradients). */
  maxPoolGrad: boolean;
  /** Identity and same-dtype Cast share their input's buffer instead of copying it. */
  noCopy: boolean;
  /**
   * Conv2D and linear FusedConv2D (the forward convolutions, and dx through conv2DBackpropInput)
   * by Twinfed's SIMD kernel where it applies, else the stock XNNPACK kernels.
   */
  simdConv: boolean;
}

/** What selectBackend registers. */
export const DEFAULT_WASM_KERNELS: WasmKernelSet = { backpropFilter: 'simd', backpropInput: true, maxPoolGrad: true, noCopy: true, simdConv: true };

let wasmRegistered: WasmKernelSet | undefined;
let backpropFilterAlgorithm: BackpropFilterAlgorithm = DEFAULT_WASM_KERNELS.backpropFilter;

/** Switches the wasm Conv2DBackpropFilter's algorithm (benchmarks, tests). */
export function setBackpropFilterAlgorithm(algorithm: BackpropFilterAlgorithm): void {
  backpropFilterAlgorithm = algorithm;
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
  backpropFilterAlgorithm = set.backpropFilter;
  if (tf.getKernel('Conv2DBackpropFilter', WASM) == null) {
    tf.registerKernel({
      kernelName: 'Conv2DBackpropFilter',
      backendName: WASM,
      kernelFunc: conv2DBackpropFilterWasm as KernelFunc,
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
  if (set.noCopy) {
    stockIdentity = replaceKernel('Identity', identityNoCopy);
    stockCast = replaceKernel('Cast', castNoCopy);
  }
  if (set.simdConv) {
    stockConv2D = replaceKernel('Conv2D', conv2DWasm);
    stockFusedConv2D = replaceKernel('FusedConv2D', fusedConv2DWasm);
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

/** Swaps a stock wasm kernel for ours (keeping its setup function); returns the stock one. */
function replaceKernel(name: string, kernelFunc: (args: KernelArgs) => TensorInfo): KernelConfig {
  const stock = tf.getKernel(name, WASM);
  if (stock == null) throw new Error(`tfjs-backend-wasm has no ${name} to replace`);
  tf.unregisterKernel(name, WASM);
  tf.registerKernel({ kernelName: name, backendName: WASM, setupFunc: stock.setupFunc, kernelFunc: kernelFunc as KernelFunc });
  const active = tf.findBackend(WASM);
  if (active != null && stock.setupFunc != null) stock.setupFunc(active);
  return stock;
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
