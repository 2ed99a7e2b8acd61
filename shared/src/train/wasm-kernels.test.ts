import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import { mulberry32 } from '../model/prng.js';
import { createUNet, segmentationLoss, setFlatWeights, getFlatWeights, unetLogits } from '../model/unet.js';
import { selectBackend } from './backend.js';
import { backpropFilterPath, backpropInputPath, registerCpuTrainingKernels, setBackpropFilterAlgorithm, setBackpropFilterChunkBytes, type BackpropFilterAlgorithm } from './wasm-kernels.js';
import { setDwSimdChunkBytes } from './wasm-simd.js';

const DW_ALGORITHMS: BackpropFilterAlgorithm[] = ['dilated-conv', 'im2col-matmul', 'tap-matmul', 'simd'];

type Pad = 'same' | 'valid' | number;

function randn(n: number, seed: number): Float32Array {
  const r = mulberry32(seed);
  return Float32Array.from({ length: n }, () => 2 * r() - 1);
}

const size = (s: number[]) => s.reduce((a, b) => a * b, 1);

/** Runs one kernel on a backend with fresh inputs; returns output values and shape. */
async function runOn(backend: string, kernel: string, inputs: Record<string, { shape: number[]; data: Float32Array }>, attrs: object): Promise<{ data: Float32Array; shape: number[] }> {
  await tf.setBackend(backend);
  const ts = Object.fromEntries(Object.entries(inputs).map(([k, v]) => [k, tf.tensor(v.data, v.shape)]));
  const out = tf.engine().runKernel(kernel, ts, attrs as tf.NamedAttrMap) as tf.Tensor;
  const res = { data: (await out.data()) as Float32Array, shape: out.shape };
  tf.dispose([out, ...Object.values(ts)]);
  return res;
}

function assertClose(actual: Float32Array, expected: Float32Array, what: string, rtol = 1e-4): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  let scale = 1e-6;
  for (const v of expected) scale = Math.max(scale, Math.abs(v));
  for (let i = 0; i < actual.length; i++) {
    if (!(Math.abs(actual[i] - expected[i]) <= rtol * scale)) {
      assert.fail(`${what}: element ${i} is ${actual[i]}, expected ${expected[i]} (scale ${scale})`);
    }
  }
}

/** Direct definition of dW for NHWC convolution, independent of every backend. */
function naiveBackpropFilter(x: Float32Array, xs: number[], dy: Float32Array, dys: number[], fs: number[], sh: number, sw: number, top: number, left: number): Float32Array {
  const [B, H, W, C] = xs;
  const [, oh, ow, O] = dys;
  const [kh, kw] = fs;
  const out = new Float32Array(size(fs));
  for (let i = 0; i < kh; i++)
    for (let j = 0; j < kw; j++)
      for (let c = 0; c < C; c++)
        for (let o = 0; o < O; o++) {
          let acc = 0;
          for (let b = 0; b < B; b++)
            for (let p = 0; p < oh; p++)
              for (let q = 0; q < ow; q++) {
                const h = p * sh + i - top,
                  w = q * sw + j - left;
                if (h < 0 || h >= H || w < 0 || w >= W) continue;
                acc += x[((b * H + h) * W + w) * C + c] * dy[((b * oh + p) * ow + q) * O + o];
              }
          out[((i * kw + j) * C + c) * O + o] = acc;
        }
  return out;
}

interface Case {
  x: number[];
  f: number[];
  strides: [number, number];
  pad: Pad;
}

const CASES: Case[] = [
  { x: [2, 7, 7, 3], f: [3, 3, 3, 4], strides: [1, 1], pad: 'same' },
  { x: [2, 7, 7, 3], f: [3, 3, 3, 4], strides: [1, 1], pad: 'valid' },
  { x: [2, 9, 8, 3], f: [3, 3, 3, 2], strides: [2, 2], pad: 'same' },
  { x: [2, 9, 8, 3], f: [3, 3, 3, 2], strides: [2, 2], pad: 'valid' },
  { x: [1, 8, 6, 4], f: [2, 2, 4, 3], strides: [2, 2], pad: 'valid' }, // U-Net transposed conv
  { x: [3, 5, 6, 2], f: [1, 1, 2, 5], strides: [1, 1], pad: 'valid' }, // 1x1 head
  { x: [2, 10, 11, 2], f: [5, 4, 2, 3], strides: [3, 2], pad: 'same' },
  { x: [1, 6, 7, 2], f: [3, 3, 2, 2], strides: [1, 1], pad: 1 },
  { x: [1, 6, 6, 2], f: [3, 3, 2, 2], strides: [1, 1], pad: 3 }, // padding > k-1: stock fallback for dx
  { x: [2, 5, 6, 3], f: [2, 2, 3, 2], strides: [1, 1], pad: 'same' }, // even kernel: padding only bottom/right
  { x: [2, 6, 4, 3], f: [3, 3, 3, 2], strides: [2, 2], pad: 'valid' }, // stride 2, rows/cols left unused
  { x: [3, 9, 7, 1], f: [3, 3, 1, 9], strides: [1, 1], pad: 'same' }, // odd sizes, one input channel
  { x: [1, 5, 13, 17], f: [3, 3, 17, 6], strides: [1, 1], pad: 'same' }, // channels not a multiple of the SIMD width
  { x: [2, 11, 5, 5], f: [2, 2, 5, 7], strides: [2, 2], pad: 'valid' }, // stride 2, odd sizes (a row and a column unused)
  { x: [3, 6, 10, 6], f: [2, 2, 6, 5], strides: [2, 2], pad: 'valid' }, // transposed-conv shape, odd channels
  { x: [2, 4, 4, 8], f: [3, 3, 8, 8], strides: [1, 1], pad: 'valid' }, // output smaller than the filter
  { x: [3, 8, 8, 5], f: [2, 2, 5, 12], strides: [2, 2], pad: 'valid' }, // transposed-conv shape; SIMD blocks 4+1 channels, 8+4 outputs
  { x: [2, 9, 7, 7], f: [3, 3, 7, 8], strides: [2, 2], pad: 'same' }, // stride 2 with padding, odd sizes; blocks 4+2+1
  { x: [2, 6, 5, 4], f: [5, 3, 4, 16], strides: [1, 1], pad: 'same' }, // 5x3 kernel, 16 outputs (two blocks of 8)
  { x: [1, 5, 6, 2], f: [3, 3, 2, 4], strides: [1, 1], pad: 2 }, // padding wider than the kernel's reach on some taps
];

/** Direct definition of 2D max pooling's input gradient: dy goes to each window's first maximum. */
function naiveMaxPoolGrad(x: Float32Array, xs: number[], dy: Float32Array, k: number, s: number, top: number, left: number, ys: readonly number[]): Float32Array {
  const [B, H, W, C] = xs;
  const [, oh, ow] = ys;
  const dx = new Float32Array(x.length);
  for (let b = 0; b < B; b++)
    for (let p = 0; p < oh; p++)
      for (let q = 0; q < ow; q++)
        for (let c = 0; c < C; c++) {
          let best = -Infinity,
            at = -1;
          for (let i = 0; i < k; i++)
            for (let j = 0; j < k; j++) {
              const h = p * s + i - top,
                w = q * s + j - left;
              if (h < 0 || h >= H || w < 0 || w >= W) continue;
              const v = x[((b * H + h) * W + w) * C + c];
              if (v > best) {
                best = v;
                at = ((b * H + h) * W + w) * C + c;
              }
            }
          if (at >= 0) dx[at] += dy[((b * oh + p) * ow + q) * C + c];
        }
  return dx;
}

function outShape(c: Case): number[] {
  const info = tf.backend_util.computeConv2DInfo(c.x as [number, number, number, number], c.f as [number, number, number, number], c.strides, 1, c.pad);
  return info.outShape;
}

describe('Twinfed wasm training kernels match the cpu backend', () => {
  before(async () => {
    const choice = await selectBackend('wasm');
    assert.equal(choice.name, 'wasm');
  });

  for (const [k, c] of CASES.entries()) {
    const label = `x ${c.x} filter ${c.f} strides ${c.strides} pad ${c.pad}`;

    for (const algorithm of DW_ALGORITHMS) {
      it(`Conv2DBackpropFilter (${algorithm}: ${backpropFilterPath(c.x, c.f, c.strides, c.pad, algorithm)}): ${label}`, async () => {
        const ys = outShape(c);
        const x = randn(size(c.x), 100 + k),
          dy = randn(size(ys), 200 + k);
        const attrs = { strides: c.strides, pad: c.pad, dataFormat: 'NHWC', dimRoundingMode: undefined, filterShape: c.f };
        const inputs = { x: { shape: c.x, data: x }, dy: { shape: ys, data: dy } };
        setBackpropFilterAlgorithm(algorithm);
        const w = await runOn('wasm', 'Conv2DBackpropFilter', inputs, attrs);
        // The tap GEMMs once more with one image per chunk (the chunk sums; default chunks hold these small batches whole).
        const prevChunk = setBackpropFilterChunkBytes(1);
        const prevSimdChunk = setDwSimdChunkBytes(1);
        const wChunked = await runOn('wasm', 'Conv2DBackpropFilter', inputs, attrs);
        setBackpropFilterChunkBytes(prevChunk);
        setDwSimdChunkBytes(prevSimdChunk);
        setBackpropFilterAlgorithm('simd');
        const cpu = await runOn('cpu', 'Conv2DBackpropFilter', inputs, attrs);
        assert.deepEqual(w.shape, c.f);
        assertClose(w.data, cpu.data, 'wasm vs cpu');
        assert.deepEqual(wChunked.shape, c.f);
        assertClose(wChunked.data, cpu.data, 'wasm, one image per chunk, vs cpu');
        const info = tf.backend_util.computeConv2DInfo(c.x as [number, number, number, number], c.f as [number, number, number, number], c.strides, 1, c.pad);
        const naive = naiveBackpropFilter(x, c.x, dy, ys, c.f, c.strides[0], c.strides[1], info.padInfo.top, info.padInfo.left);
        assertClose(cpu.data, naive, 'stock cpu vs definition');
      });
    }

    it(`Conv2DBackpropInput: ${label}`, async () => {
      const ys = outShape(c);
      const attrs = { strides: c.strides, pad: c.pad, dataFormat: 'NHWC', dimRoundingMode: undefined, inputShape: c.x };
      const inputs = { dy: { shape: ys, data: randn(size(ys), 300 + k) }, filter: { shape: c.f, data: randn(size(c.f), 400 + k) } };
      const w = await runOn('wasm', 'Conv2DBackpropInput', inputs, attrs);
      const cpu = await runOn('cpu', 'Conv2DBackpropInput', inputs, attrs);
      assert.deepEqual(w.shape, c.x);
      assertClose(w.data, cpu.data, `wasm (${backpropInputPath(c.x, c.f, c.strides, c.pad)}) vs cpu`);
    });
  }

  for (const [k, c] of [
    ...CASES,
    { x: [2, 9, 11, 3], f: [3, 3, 3, 8], strides: [1, 1] as [number, number], pad: 'same' as Pad }, // a last block of 1-3 pixels per row
    { x: [1, 4, 3, 2], f: [1, 1, 2, 12], strides: [1, 1] as [number, number], pad: 'valid' as Pad }, // 1x1, outputs 8 + 4, rows shorter than a block
  ].entries()) {
    for (const fused of [false, true]) {
      const label = `x ${c.x} filter ${c.f} strides ${c.strides} pad ${c.pad}`;
      it(`${fused ? 'FusedConv2D (bias)' : 'Conv2D'}${c.f[3] % 4 === 0 ? ' (SIMD)' : ' (stock)'}: ${label}`, async () => {
        const inputs: Record<string, { shape: number[]; data: Float32Array }> = {
          x: { shape: c.x, data: randn(size(c.x), 1000 + k) },
          filter: { shape: c.f, data: randn(size(c.f), 1100 + k) },
        };
        if (fused) inputs.bias = { shape: [c.f[3]], data: randn(c.f[3], 1200 + k) };
        const attrs = { strides: c.strides, pad: c.pad, dataFormat: 'NHWC', dilations: [1, 1], dimRoundingMode: undefined, activation: 'linear' };
        const kernel = fused ? 'FusedConv2D' : 'Conv2D';
        const w = await runOn('wasm', kernel, inputs, attrs);
        const cpu = await runOn('cpu', kernel, inputs, attrs);
        assert.deepEqual(w.shape, cpu.shape);
        assertClose(w.data, cpu.data, 'wasm vs cpu');
      });
    }
  }

  it('FusedConv2D with a ReLU or a dilated Conv2D take the stock kernels, and agree with cpu', async () => {
    const inputs = { x: { shape: [1, 7, 7, 4], data: randn(196, 31) }, filter: { shape: [3, 3, 4, 8], data: randn(288, 32) }, bias: { shape: [8], data: randn(8, 33) } };
    const relu = { strides: 1, pad: 'same', dataFormat: 'NHWC', dilations: 1, activation: 'relu' };
    assertClose((await runOn('wasm', 'FusedConv2D', inputs, relu)).data, (await runOn('cpu', 'FusedConv2D', inputs, relu)).data, 'fused relu');
    const dilated = { strides: 1, pad: 'same', dataFormat: 'NHWC', dilations: 2 };
    const xf = { x: inputs.x, filter: inputs.filter };
    assertClose((await runOn('wasm', 'Conv2D', xf, dilated)).data, (await runOn('cpu', 'Conv2D', xf, dilated)).data, 'dilated');
  });

  it('covers every Conv2DBackpropFilter algorithm', () => {
    const paths = new Set(CASES.flatMap((c) => DW_ALGORITHMS.map((a) => backpropFilterPath(c.x, c.f, c.strides, c.pad, a))));
    assert.deepEqual([...paths].sort(), ['dilated-conv', 'im2col-matmul', 'simd', 'space-to-depth-matmul', 'tap-matmul']);
    assert.equal(backpropFilterPath([16, 64, 64, 8], [3, 3, 8, 8], 1, 'same'), 'simd', 'the default for the U-Net convolutions');
    assert.equal(backpropFilterPath([16, 32, 32, 16], [2, 2, 16, 32], 2, 'valid'), 'simd', 'and for its transposed convolutions');
    assert.equal(backpropFilterPath([2, 7, 7, 3], [3, 3, 3, 5], 1, 'same'), 'tap-matmul', 'output channels not a multiple of 4');
  });

  for (const [k, p] of [
    { x: [2, 8, 6, 3], k: 2, s: 2, pad: 'valid' }, // the U-Net's pool
    { x: [1, 7, 9, 2], k: 3, s: 2, pad: 'same' }, // overlapping windows, padding, odd sizes
    { x: [2, 5, 5, 2], k: 2, s: 1, pad: 'valid' }, // stride 1: a pixel is in up to 4 windows
    { x: [2, 7, 5, 3], k: 2, s: 2, pad: 'valid' }, // 2x2/2 with an odd row and column in no window
    { x: [1, 6, 8, 9], k: 2, s: 2, pad: 'same' }, // 2x2/2 'same' on even sizes (no padding either)
    { x: [2, 8, 6, 4], k: 2, s: 2, pad: 'valid' }, // 2x2/2, channels a multiple of 4: the SIMD kernel
    { x: [1, 4, 10, 12], k: 2, s: 2, pad: 'valid' }, // SIMD, 3 vectors of channels
  ].entries()) {
    it(`MaxPoolGrad: x ${p.x} window ${p.k} stride ${p.s} pad ${p.pad}, with ties`, async () => {
      // Values quantised to a few levels so windows hold equal maxima (first one wins).
      const x = randn(size(p.x), 700 + k).map((v) => Math.round(v * 2) / 2);
      const info = tf.backend_util.computePool2DInfo(p.x as [number, number, number, number], p.k, p.s, 1, p.pad as 'same' | 'valid');
      const ys = info.outShape;
      const dy = randn(size(ys), 800 + k);
      await tf.setBackend('cpu');
      const out = tf.tidy(() => tf.maxPool(tf.tensor4d(x, p.x as [number, number, number, number]), p.k, p.s, p.pad as 'same' | 'valid').dataSync() as Float32Array);
      const attrs = { filterSize: p.k, strides: p.s, pad: p.pad, dimRoundingMode: undefined };
      const inputs = { dy: { shape: ys, data: dy }, input: { shape: p.x, data: x }, output: { shape: ys, data: out } };
      const w = await runOn('wasm', 'MaxPoolGrad', inputs, attrs);
      const cpu = await runOn('cpu', 'MaxPoolGrad', inputs, attrs);
      assert.deepEqual(w.shape, p.x);
      assertClose(w.data, cpu.data, 'wasm vs cpu', 1e-6);
      assertClose(w.data, naiveMaxPoolGrad(x, p.x, dy, p.k, p.s, info.padInfo.top, info.padInfo.left, ys), 'wasm vs definition', 1e-6);
    });
  }

  it('MaxPoolGrad 2x2/2 in SIMD: NaNs never win, -Infinity never wins, an infinite dy reaches only the maximum', async () => {
    const N = Number.NaN,
      I = Number.NEGATIVE_INFINITY;
    // 1 image 2x2, 4 channels (one vector): per channel the window [c0, c1; c2, c3] below.
    const win = [
      [1, N, 3, 2], // NaN skipped: 3 wins
      [N, N, N, N], // all NaN: nobody
      [I, I, I, I], // all -Infinity: nobody
      [5, 5, 5, 5], // ties: the first
    ];
    const x = new Float32Array(16);
    for (let c = 0; c < 4; c++) for (let k = 0; k < 4; k++) x[k * 4 + c] = win[c][k];
    const dy = Float32Array.from([Number.POSITIVE_INFINITY, 2, 3, -4]);
    const attrs = { filterSize: 2, strides: 2, pad: 'valid', dimRoundingMode: undefined };
    const inputs = { dy: { shape: [1, 1, 1, 4], data: dy }, input: { shape: [1, 2, 2, 4], data: x }, output: { shape: [1, 1, 1, 4], data: new Float32Array(4) } };
    const w = await runOn('wasm', 'MaxPoolGrad', inputs, attrs);
    const ref = naiveMaxPoolGrad(x, [1, 2, 2, 4], dy, 2, 2, 0, 0, [1, 1, 1, 4]);
    assert.deepEqual(Array.from(w.data), Array.from(ref));
  });

  it('MaxPoolGrad 2x2/2: NaNs in a window never win, an infinite dy reaches only the maximum (as the generic rule)', async () => {
    const N = Number.NaN;
    // One image, 2x4, one channel: windows [1, N; 3, 2] and [N, N; N, N]; then 2 channels with ties.
    const x = Float32Array.from([1, N, N, N, 3, 2, N, N]);
    const dy = Float32Array.from([Number.POSITIVE_INFINITY, 5]);
    const attrs = { filterSize: 2, strides: 2, pad: 'valid', dimRoundingMode: undefined };
    const inputs = { dy: { shape: [1, 1, 2, 1], data: dy }, input: { shape: [1, 2, 4, 1], data: x }, output: { shape: [1, 1, 2, 1], data: new Float32Array(2) } };
    const w = await runOn('wasm', 'MaxPoolGrad', inputs, attrs);
    assert.deepEqual(Array.from(w.data), Array.from(naiveMaxPoolGrad(x, [1, 2, 4, 1], dy, 2, 2, 0, 0, [1, 1, 2, 1])));
    assert.deepEqual(Array.from(w.data), [0, 0, 0, 0, Number.POSITIVE_INFINITY, 0, 0, 0]);
  });

  for (const [k, c] of [
    { shape: [4, 5, 6, 3], axis: [0, 1, 2], keepDims: false }, // bias gradient
    { shape: [4, 5, 6, 3], axis: [2, 0, 1], keepDims: true }, // same axes, any order, kept dims
    { shape: [7, 5], axis: 0, keepDims: false }, // rank 2
    { shape: [3, 5, 7, 8], axis: [0, 1, 2], keepDims: false }, // 8 channels per pass
    { shape: [2, 3, 5, 24], axis: [0, 1, 2], keepDims: true }, // several passes of 8
    { shape: [9, 12], axis: 0, keepDims: false }, // 4 channels per pass
    { shape: [4, 5, 6, 3], axis: [1, 2], keepDims: false }, // not all leading axes: stock kernel
    { shape: [4, 5, 6, 3], axis: [-1], keepDims: true }, // last axis: stock kernel
  ].entries()) {
    it(`Sum: shape ${c.shape} axis ${c.axis} keepDims ${c.keepDims}`, async () => {
      const x = randn(size(c.shape), 900 + k);
      const attrs = { axis: c.axis, keepDims: c.keepDims };
      const w = await runOn('wasm', 'Sum', { x: { shape: c.shape, data: x } }, attrs);
      const cpu = await runOn('cpu', 'Sum', { x: { shape: c.shape, data: x } }, attrs);
      assert.deepEqual(w.shape, cpu.shape);
      assertClose(w.data, cpu.data, 'wasm vs cpu', 1e-5);
    });
  }

  it('Identity and same-dtype Cast share the buffer; a clone outlives its source; other casts convert', async () => {
    await tf.setBackend('wasm');
    const before = tf.backend().numDataIds();
    const a = tf.tensor2d([1.5, -2, 3, 4], [2, 2]);
    const b = tf.clone(a);
    const c = tf.cast(a, 'float32');
    assert.equal(tf.backend().numDataIds(), before + 1, 'one buffer for the three tensors');
    a.dispose();
    assert.deepEqual(Array.from(await b.data()), [1.5, -2, 3, 4]);
    b.dispose();
    assert.deepEqual(Array.from(await c.data()), [1.5, -2, 3, 4]);
    const i = tf.cast(c, 'int32');
    assert.equal(i.dtype, 'int32');
    assert.deepEqual(Array.from(await i.data()), [1, -2, 3, 4]);
    tf.dispose([c, i]);
    assert.equal(tf.backend().numDataIds(), before, 'the buffer is freed with its last tensor');
  });

  it('covers every Conv2DBackpropInput algorithm', () => {
    const paths = new Set(CASES.map((c) => backpropInputPath(c.x, c.f, c.strides, c.pad)));
    assert.deepEqual([...paths].sort(), ['conv', 'depth-to-space', 'stock', 'zero-insert']);
  });

  it('frees every intermediate buffer', async () => {
    await tf.setBackend('wasm');
    const c = CASES[2];
    const ys = outShape(c);
    const x = tf.tensor(randn(size(c.x), 1), c.x),
      dy = tf.tensor(randn(size(ys), 2), ys),
      f = tf.tensor(randn(size(c.f), 3), c.f);
    const before = tf.backend().numDataIds();
    for (let i = 0; i < 3; i++) {
      tf.dispose(tf.engine().runKernel('Conv2DBackpropFilter', { x, dy }, { strides: c.strides, pad: c.pad, dataFormat: 'NHWC', filterShape: c.f } as unknown as tf.NamedAttrMap));
      for (const [algorithm, chunkBytes] of [...DW_ALGORITHMS.map((a) => [a, 320 * 1024] as const), ['tap-matmul', 1] as const]) {
        setBackpropFilterAlgorithm(algorithm);
        const prevChunk = setBackpropFilterChunkBytes(chunkBytes);
        for (const cc of [CASES[0], CASES[4]]) {
          // every dW path: tap views, im2col and space-to-depth MatMuls, dilated conv
          const x2 = tf.tensor(randn(size(cc.x), 6), cc.x),
            y2 = tf.tensor(randn(size(outShape(cc)), 7), outShape(cc));
          tf.dispose([
            x2,
            y2,
            tf.engine().runKernel('Conv2DBackpropFilter', { x: x2, dy: y2 }, { strides: cc.strides, pad: cc.pad, dataFormat: 'NHWC', filterShape: cc.f } as unknown as tf.NamedAttrMap),
          ]);
        }
        setBackpropFilterChunkBytes(prevChunk);
      }
      setBackpropFilterAlgorithm('simd');
      for (const cc of [c, CASES[0], CASES[4]]) {
        const y2 = tf.tensor(randn(size(outShape(cc)), 4), outShape(cc));
        const f2 = tf.tensor(randn(size(cc.f), 5), cc.f);
        tf.dispose([
          y2,
          f2,
          tf.engine().runKernel('Conv2DBackpropInput', { dy: y2, filter: f2 }, { strides: cc.strides, pad: cc.pad, dataFormat: 'NHWC', inputShape: cc.x } as unknown as tf.NamedAttrMap),
        ]);
      }
    }
    assert.equal(tf.backend().numDataIds(), before);
    tf.dispose([x, dy, f]);
  });

  it('has every kernel a U-Net training step uses, and its gradients match cpu', async () => {
    const cfg = { inChannels: 2, nClasses: 3, base: 4, depth: 2, size: 12 };
    const B = 2,
      S = cfg.size;
    const xs = randn(B * S * S * cfg.inChannels, 7);
    const labels = Float32Array.from({ length: B * S * S }, (_, i) => (xs[i * 2] > 0.3 ? 1 : xs[i * 2] < -0.5 ? 2 : 0));
    const results: Record<string, { loss: number; grads: Float32Array[]; kernels: string[] }> = {};
    for (const backend of ['cpu', 'wasm']) {
      await tf.setBackend(backend);
      const model = createUNet(cfg, 3);
      const x = tf.tensor4d(xs, [B, S, S, cfg.inChannels]);
      const y = tf.tidy(() => tf.reshape(tf.cast(tf.oneHot(tf.tensor1d(labels, 'int32'), cfg.nClasses), 'float32'), [B, S, S, cfg.nClasses])) as tf.Tensor4D;
      let loss = 0;
      let grads: Float32Array[] = [];
      const prof = await tf.profile(() => {
        const { value, grads: g } = tf.variableGrads(() => segmentationLoss(unetLogits(model, x), y, { diceWeight: 1 }), model.params);
        loss = value.dataSync()[0];
        grads = model.params.map((p) => g[p.name].dataSync() as Float32Array);
        // One Adam step too, so its kernels are exercised.
        const opt = tf.train.adam(1e-3);
        opt.applyGradients(g as tf.NamedTensorMap as never);
        opt.dispose();
        tf.dispose([value, ...Object.values(g)]);
      });
      results[backend] = { loss, grads, kernels: prof.kernelNames };
      tf.dispose([x, y, ...model.params]);
    }
    const wasmKernels = new Set(tf.getKernelsForBackend('wasm').map((k) => k.kernelName));
    const missing = results.cpu.kernels.filter((k) => !wasmKernels.has(k) && !k.endsWith('__op'));
    assert.deepEqual(missing, [], `kernels missing on wasm: ${missing}`);
    assert.ok(Math.abs(results.wasm.loss - results.cpu.loss) < 1e-4 * Math.max(1, Math.abs(results.cpu.loss)));
    results.cpu.grads.forEach((g, i) => assertClose(results.wasm.grads[i], g, `gradient of parameter ${i}`, 1e-3));
  });

  it('identical initial weights on wasm and cpu', async () => {
    await tf.setBackend('wasm');
    const a = createUNet({ size: 16 }, 11);
    const wa = getFlatWeights(a);
    await tf.setBackend('cpu');
    const b = createUNet({ size: 16 }, 11);
    assert.deepEqual(getFlatWeights(b), wa);
    setFlatWeights(b, wa);
    tf.dispose([...a.params, ...b.params]);
  });
});

describe('cpu Conv2DBackpropFilter replacement', () => {
  it('matches the definition', async () => {
    registerCpuTrainingKernels();
    for (const [k, c] of CASES.entries()) {
      const ys = outShape(c);
      const x = randn(size(c.x), 500 + k),
        dy = randn(size(ys), 600 + k);
      const r = await runOn('cpu', 'Conv2DBackpropFilter', { x: { shape: c.x, data: x }, dy: { shape: ys, data: dy } }, { strides: c.strides, pad: c.pad, dataFormat: 'NHWC', filterShape: c.f });
      const info = tf.backend_util.computeConv2DInfo(c.x as [number, number, number, number], c.f as [number, number, number, number], c.strides, 1, c.pad);
      assertClose(r.data, naiveBackpropFilter(x, c.x, dy, ys, c.f, c.strides[0], c.strides[1], info.padInfo.top, info.padInfo.left), `case ${k}`);
    }
  });
});
