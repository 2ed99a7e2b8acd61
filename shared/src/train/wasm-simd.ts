/**
 * A small WebAssembly SIMD module of our own, run on the tfjs wasm backend's memory (it imports
 * that memory, so it reads and writes tensors where they lie). Four kernels:
 *
 * - dw_{cb}x{4nv}: the weight gradient of a convolution as register-blocked outer products,
 *     dW[i, j, c, o] = Σ_{b, p, q} x[b, p·sh + i - top, q·sw + j - left, c] · dy[b, p, q, o].
 *   For one tap (i, j), a block of up to 4 input channels and 8 output channels, the 4 x 8
 *   partial sums stay in eight v128 registers while the kernel walks the tap's valid output
 *   pixels: per pixel two 4-lane loads of dy (o .. o+7, contiguous in NHWC), one splat load of x
 *   per channel, 8 multiplies + 8 adds for 32 multiply-adds. Any stride and padding (a tap's
 *   valid pixels are a rectangle, clipped in JavaScript). Work is cut into chunks of whole
 *   images small enough to stay in L2; each call adds its sums into the output. No packing, no
 *   im2col, no transposes: the XNNPACK GEMM formulations (wasm-kernels.ts, 'tap-matmul') spent
 *   as long rearranging x and packing dy as multiplying at the U-Net's 8-32 channels.
 * - conv_{px}x{4nv}: the forward convolution (and dx, a convolution with the flipped filter)
 *   with 4 output pixels x 8 output channels in registers, the reduction running over the
 *   filter's kh rows of kw·ci contiguous floats of a zero-padded input.
 * - sum_{4nv}: a block of channels of the bias gradient, dy summed over all pixels.
 * - maxpoolgrad: the 2x2/2 max-pool gradient, four channels at a time, without branches.
 *
 * WebAssembly SIMD has no fused multiply-add (relaxed-simd's f32x4.relaxed_madd is not in
 * Node 20's default feature set), so every multiply-add is a mul and an add: at best 2 + 2
 * four-lane instructions per cycle = 8 multiply-adds per cycle per core; the conv and dW kernels
 * run at 20-24 GMAC/s on the ~3 GHz dev box, i.e. at that ceiling.
 *
 * The module (~5 kB) is assembled here from opcodes (WebAssembly core spec 2.0, §5 binary
 * format; SIMD opcodes from the fixed-width SIMD proposal, merged into the spec), so no
 * toolchain is needed to build Twinfed.
 */

/** The parts of the WebAssembly JS API used here (the project's TypeScript libs do not declare them). */
export interface WasmMemory {
  readonly buffer: ArrayBuffer;
}
interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { exports: Record<string, unknown> };
}
const WA = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;

/** Unsigned LEB128. */
function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n !== 0) b |= 0x80;
    out.push(b);
  } while (n !== 0);
  return out;
}

/** Signed LEB128 (i32). */
function sleb(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (b & 0x40) === 0) || (n === -1 && (b & 0x40) !== 0)) {
      out.push(b);
      return out;
    }
    out.push(b | 0x80);
  }
}

const I32 = 0x7f;
const V128 = 0x7b;

/** The few instructions the kernels use. */
const op = {
  get: (i: number) => [0x20, ...uleb(i)],
  set: (i: number) => [0x21, ...uleb(i)],
  i32: (v: number) => [0x41, ...sleb(v)],
  add: [0x6a],
  sub: [0x6b],
  mul: [0x6c],
  eqz: [0x45],
  block: [0x02, 0x40],
  loop: [0x03, 0x40],
  end: [0x0b],
  brIf: (depth: number) => [0x0d, ...uleb(depth)],
  /** v128.load with a static byte offset (alignment hint 2^4). */
  v128Load: (offset: number) => [0xfd, ...uleb(0), 4, ...uleb(offset)],
  v128Store: (offset: number) => [0xfd, ...uleb(11), 4, ...uleb(offset)],
  /** v128.load32_splat: one f32 from memory into all four lanes. */
  load32Splat: (offset: number) => [0xfd, ...uleb(9), 2, ...uleb(offset)],
  f32x4Add: [0xfd, ...uleb(228)],
  f32x4Mul: [0xfd, ...uleb(230)],
  f32x4Eq: [0xfd, ...uleb(65)],
  f32x4Gt: [0xfd, ...uleb(68)],
  f32x4Ge: [0xfd, ...uleb(70)],
  and: [0xfd, ...uleb(78)],
  bitselect: [0xfd, ...uleb(82)],
  /** v128.const of four equal f32 lanes. */
  f32x4Const: (v: number) => [0xfd, ...uleb(12), ...Array.from({ length: 4 }, () => [...new Uint8Array(Float32Array.of(v).buffer)]).flat()],
};

/** A function body: locals (i32 then v128 counts) and code, with its size prefix. */
function fnBody(nI32: number, nV128: number, code: number[]): number[] {
  const body = [...uleb(2), ...uleb(nI32), I32, ...uleb(nV128), V128, ...code, 0x0b];
  return [...uleb(body.length), ...body];
}

/** Emitter: flattens opcodes and opcode arrays into `code`. */
function emitter(code: number[]) {
  return (...xs: (number | number[])[]) => {
    for (const x of xs) {
      if (Array.isArray(x)) code.push(...x);
      else code.push(x);
    }
  };
}

/**
 * sum_{4nv}(x, rows, rowBytes, out): out[0 .. 4nv) = Σ over `rows` rows (rowBytes apart) of
 * x[0 .. 4nv) — a block of channels of the bias gradient (dy summed over batch, height, width).
 */
function sumKernelBody(nv: number): number[] {
  const [x, rows, rowBytes, out] = [0, 1, 2, 3];
  const r = 4;
  const acc = Array.from({ length: nv }, (_, i) => 5 + i);
  const code: number[] = [];
  const emit = emitter(code);
  emit(op.get(rows), op.set(r), op.block, op.get(r), op.eqz, op.brIf(0), op.loop);
  for (let v = 0; v < nv; v++) emit(op.get(acc[v]), op.get(x), op.v128Load(16 * v), op.f32x4Add, op.set(acc[v]));
  emit(op.get(x), op.get(rowBytes), op.add, op.set(x));
  emit(op.get(r), op.i32(1), op.sub, op.set(r), op.get(r), op.brIf(0), op.end, op.end);
  for (let v = 0; v < nv; v++) emit(op.get(out), op.get(acc[v]), op.v128Store(16 * v));
  return fnBody(1, nv, code);
}

/**
 * maxpoolgrad(x, dy, dx, rows, cols, nvc, rowBytes, pixBytes): the 2x2/2 max-pool gradient for
 * `rows` output rows (each 2 input rows) of `cols` output pixels with nvc 4-channel vectors;
 * rowBytes is one input row, pixBytes one input pixel. Per lane the window's first maximum in
 * row-major order gets dy, the others +0; NaN counts as -Infinity and -Infinity never wins
 * (the generic rule: strict > from -Infinity).
 */
function maxPoolGradBody(): number[] {
  const [x, dy, dx, rows, cols, nvc, rowBytes, pixBytes] = [0, 1, 2, 3, 4, 5, 6, 7];
  const [r, q, v, xr, xq, xv, dyq, ow] = [8, 9, 10, 11, 12, 13, 14, 15];
  const [a, b, d, e, g, m] = [16, 17, 18, 19, 20, 21];
  const code: number[] = [];
  const emit = emitter(code);
  const NEG_INF = op.f32x4Const(Number.NEGATIVE_INFINITY);
  // a = NaN ? -Inf : a
  const load = (dst: number, offset: (number | number[])[]) =>
    emit(op.get(xv), ...offset, op.add, op.v128Load(0), op.set(dst), op.get(dst), NEG_INF, op.get(dst), op.get(dst), op.f32x4Eq, op.bitselect, op.set(dst));
  // the byte offsets of the four window elements from xv
  const at = {
    a: [op.i32(0)],
    b: [op.get(pixBytes)],
    d: [op.get(rowBytes)],
    e: [op.get(rowBytes), op.get(pixBytes), op.add],
  };
  // out = dy where mask (all of the listed comparisons and > -Inf)
  const store = (offset: (number | number[])[], self: number, cmps: [number[], number][]) => {
    emit(op.get(self), NEG_INF, op.f32x4Gt, op.set(m));
    for (const [cmp, other] of cmps) emit(op.get(m), op.get(self), op.get(other), cmp, op.and, op.set(m));
    emit(op.get(xv), op.get(x), op.sub, op.get(dx), op.add, ...offset, op.add, op.get(g), op.get(m), op.and, op.v128Store(0));
  };
  emit(op.get(x), op.set(xr), op.get(dy), op.set(dyq), op.get(rows), op.set(r));
  emit(op.block, op.get(r), op.eqz, op.brIf(0), op.loop);
  emit(op.get(xr), op.set(xq), op.get(cols), op.set(q));
  emit(op.block, op.get(q), op.eqz, op.brIf(0), op.loop);
  emit(op.get(xq), op.set(xv), op.get(nvc), op.set(v));
  emit(op.block, op.get(v), op.eqz, op.brIf(0), op.loop);
  load(a, at.a);
  load(b, at.b);
  load(d, at.d);
  load(e, at.e);
  emit(op.get(dyq), op.v128Load(0), op.set(g));
  store(at.a, a, [
    [op.f32x4Ge, b],
    [op.f32x4Ge, d],
    [op.f32x4Ge, e],
  ]);
  store(at.b, b, [
    [op.f32x4Gt, a],
    [op.f32x4Ge, d],
    [op.f32x4Ge, e],
  ]);
  store(at.d, d, [
    [op.f32x4Gt, a],
    [op.f32x4Gt, b],
    [op.f32x4Ge, e],
  ]);
  store(at.e, e, [
    [op.f32x4Gt, a],
    [op.f32x4Gt, b],
    [op.f32x4Gt, d],
  ]);
  emit(op.get(xv), op.i32(16), op.add, op.set(xv), op.get(dyq), op.i32(16), op.add, op.set(dyq));
  emit(op.get(v), op.i32(1), op.sub, op.set(v), op.get(v), op.brIf(0), op.end, op.end);
  // next output pixel: two input pixels on
  emit(op.get(xq), op.get(pixBytes), op.get(pixBytes), op.add, op.add, op.set(xq));
  emit(op.get(q), op.i32(1), op.sub, op.set(q), op.get(q), op.brIf(0), op.end, op.end);
  // next output row: two input rows on
  emit(op.get(xr), op.get(rowBytes), op.get(rowBytes), op.add, op.add, op.set(xr));
  emit(op.get(r), op.i32(1), op.sub, op.set(r), op.get(r), op.brIf(0), op.end, op.end);
  void ow;
  return fnBody(8, 6, code);
}

/** Parameters of every dW kernel (all i32; pointers and strides in bytes). */
const DW_PARAMS = ['x', 'dy', 'out', 'nb', 'np', 'nq', 'xImg', 'xRow', 'xCol', 'dyImg', 'dyRow', 'dyCol', 'outRow'] as const;

/**
 * The body of dw_{cb}x{4·nv}: out[c][o] += Σ over nb images, np rows, nq columns of
 * x[c] · dy[o] for c < cb, o < 4·nv; x/dy advance by their Col/Row/Img strides.
 */
function dwKernelBody(cb: number, nv: number): number[] {
  const P = Object.fromEntries(DW_PARAMS.map((n, i) => [n, i])) as Record<(typeof DW_PARAMS)[number], number>;
  let next = DW_PARAMS.length;
  const b = next++,
    p = next++,
    q = next++,
    xb = next++,
    dyb = next++,
    xp = next++,
    dyp = next++,
    xq = next++,
    dyq = next++,
    oc = next++;
  const nI32 = next - DW_PARAMS.length;
  const acc = Array.from({ length: cb * nv }, () => next++);
  const d = Array.from({ length: nv }, () => next++);
  const s = next++;
  const nV128 = next - DW_PARAMS.length - nI32;
  const code: number[] = [];
  const emit = (...xs: (number | number[])[]) => {
    for (const x of xs) {
      if (Array.isArray(x)) code.push(...x);
      else code.push(x);
    }
  };
  // for (b = nb, xb = x, dyb = dy; b; b--, xb += xImg, dyb += dyImg)
  emit(op.get(P.x), op.set(xb), op.get(P.dy), op.set(dyb), op.get(P.nb), op.set(b));
  emit(op.block, op.get(b), op.eqz, op.brIf(0), op.loop);
  emit(op.get(xb), op.set(xp), op.get(dyb), op.set(dyp), op.get(P.np), op.set(p));
  emit(op.block, op.get(p), op.eqz, op.brIf(0), op.loop);
  emit(op.get(xp), op.set(xq), op.get(dyp), op.set(dyq), op.get(P.nq), op.set(q));
  emit(op.block, op.get(q), op.eqz, op.brIf(0), op.loop);
  // The pixel: d[v] = dy[o + 4v .. +3]; for each channel c: s = splat(x[c]); acc[c][v] += s * d[v].
  for (let v = 0; v < nv; v++) emit(op.get(dyq), op.v128Load(16 * v), op.set(d[v]));
  for (let c = 0; c < cb; c++) {
    emit(op.get(xq), op.load32Splat(4 * c), op.set(s));
    for (let v = 0; v < nv; v++) emit(op.get(acc[c * nv + v]), op.get(s), op.get(d[v]), op.f32x4Mul, op.f32x4Add, op.set(acc[c * nv + v]));
  }
  emit(op.get(xq), op.get(P.xCol), op.add, op.set(xq), op.get(dyq), op.get(P.dyCol), op.add, op.set(dyq));
  emit(op.get(q), op.i32(1), op.sub, op.set(q), op.get(q), op.brIf(0), op.end, op.end);
  emit(op.get(xp), op.get(P.xRow), op.add, op.set(xp), op.get(dyp), op.get(P.dyRow), op.add, op.set(dyp));
  emit(op.get(p), op.i32(1), op.sub, op.set(p), op.get(p), op.brIf(0), op.end, op.end);
  emit(op.get(xb), op.get(P.xImg), op.add, op.set(xb), op.get(dyb), op.get(P.dyImg), op.add, op.set(dyb));
  emit(op.get(b), op.i32(1), op.sub, op.set(b), op.get(b), op.brIf(0), op.end, op.end);
  // out[c][o + 4v .. +3] += acc[c][v]
  for (let c = 0; c < cb; c++) {
    emit(op.get(P.out), op.get(P.outRow), op.i32(c), op.mul, op.add, op.set(oc));
    for (let v = 0; v < nv; v++) emit(op.get(oc), op.get(oc), op.v128Load(16 * v), op.get(acc[c * nv + v]), op.f32x4Add, op.v128Store(16 * v));
  }
  emit(op.end);
  const locals = [...uleb(2), ...uleb(nI32), I32, ...uleb(nV128), V128];
  const body = [...locals, ...code];
  return [...uleb(body.length), ...body];
}

/** Channel blocks (cb) and output vectors (nv) a kernel exists for; exported as dw_{cb}x{4·nv}. */
export const DW_KERNEL_SHAPES: readonly (readonly [number, number])[] = [
  [4, 2],
  [2, 2],
  [1, 2],
  [4, 1],
  [2, 1],
  [1, 1],
];

function section(id: number, payload: number[]): number[] {
  return [id, ...uleb(payload.length), ...payload];
}

function name(s: string): number[] {
  const b = [...Buffer.from(s, 'utf8')];
  return [...uleb(b.length), ...b];
}

/**
 * Parameters of every convolution kernel (all i32; pointers and strides in bytes): the padded
 * input `x` at the block's first pixel, the filter `w` at its first output channel, `bias` (4·nv
 * floats), the output `y`; nb images x np rows x nq blocks of PX pixels; kh filter rows of
 * kwci = kw·ci contiguous input floats each.
 */
const CONV_PARAMS = ['x', 'w', 'bias', 'y', 'nb', 'np', 'nq', 'kh', 'kwci', 'xImg', 'xRowStep', 'xRowTap', 'xPix', 'xBlk', 'wStep', 'yImg', 'yRow', 'yPix', 'yBlk'] as const;

/**
 * The body of conv_{px}x{4·nv}: y[pixel][o] = bias[o] + Σ_{i<kh} Σ_{k<kw·ci} x[pixel + i·row + k] · w[(i·kw·ci + k)][o]
 * for px consecutive output pixels and 4·nv output channels, accumulated in registers.
 */
function convKernelBody(px: number, nv: number): number[] {
  const P = Object.fromEntries(CONV_PARAMS.map((n, i) => [n, i])) as Record<(typeof CONV_PARAMS)[number], number>;
  let next = CONV_PARAMS.length;
  const b = next++,
    p = next++,
    q = next++,
    xb = next++,
    yb = next++,
    xp = next++,
    yp = next++,
    xq = next++,
    yq = next++,
    i = next++,
    k = next++,
    xi = next++,
    wk = next++,
    yo = next++;
  const xs = Array.from({ length: px }, () => next++);
  const nI32 = next - CONV_PARAMS.length;
  const acc = Array.from({ length: px * nv }, () => next++);
  const wv = Array.from({ length: nv }, () => next++);
  const s = next++;
  const nV128 = next - CONV_PARAMS.length - nI32;
  const code: number[] = [];
  const emit = (...xs2: (number | number[])[]) => {
    for (const x of xs2) {
      if (Array.isArray(x)) code.push(...x);
      else code.push(x);
    }
  };
  emit(op.get(P.x), op.set(xb), op.get(P.y), op.set(yb), op.get(P.nb), op.set(b));
  emit(op.block, op.get(b), op.eqz, op.brIf(0), op.loop);
  emit(op.get(xb), op.set(xp), op.get(yb), op.set(yp), op.get(P.np), op.set(p));
  emit(op.block, op.get(p), op.eqz, op.brIf(0), op.loop);
  emit(op.get(xp), op.set(xq), op.get(yp), op.set(yq), op.get(P.nq), op.set(q));
  emit(op.block, op.get(q), op.eqz, op.brIf(0), op.loop);
  // acc = bias
  for (let v = 0; v < nv; v++) {
    emit(op.get(P.bias), op.v128Load(16 * v), op.set(wv[v]));
    for (let x = 0; x < px; x++) emit(op.get(wv[v]), op.set(acc[x * nv + v]));
  }
  emit(op.get(P.w), op.set(wk), op.get(xq), op.set(xi), op.get(P.kh), op.set(i));
  emit(op.loop);
  // the px input pointers of this filter row
  emit(op.get(xi), op.set(xs[0]));
  for (let x = 1; x < px; x++) emit(op.get(xs[x - 1]), op.get(P.xPix), op.add, op.set(xs[x]));
  emit(op.get(P.kwci), op.set(k));
  emit(op.loop);
  for (let v = 0; v < nv; v++) emit(op.get(wk), op.v128Load(16 * v), op.set(wv[v]));
  for (let x = 0; x < px; x++) {
    emit(op.get(xs[x]), op.load32Splat(0), op.set(s));
    for (let v = 0; v < nv; v++) emit(op.get(acc[x * nv + v]), op.get(s), op.get(wv[v]), op.f32x4Mul, op.f32x4Add, op.set(acc[x * nv + v]));
  }
  for (let x = 0; x < px; x++) emit(op.get(xs[x]), op.i32(4), op.add, op.set(xs[x]));
  emit(op.get(wk), op.get(P.wStep), op.add, op.set(wk));
  emit(op.get(k), op.i32(1), op.sub, op.set(k), op.get(k), op.brIf(0), op.end);
  emit(op.get(xi), op.get(P.xRowTap), op.add, op.set(xi));
  emit(op.get(i), op.i32(1), op.sub, op.set(i), op.get(i), op.brIf(0), op.end);
  // y[pixel x][o + 4v ..] = acc
  emit(op.get(yq), op.set(yo));
  for (let x = 0; x < px; x++) {
    if (x > 0) emit(op.get(yo), op.get(P.yPix), op.add, op.set(yo));
    for (let v = 0; v < nv; v++) emit(op.get(yo), op.get(acc[x * nv + v]), op.v128Store(16 * v));
  }
  emit(op.get(xq), op.get(P.xBlk), op.add, op.set(xq), op.get(yq), op.get(P.yBlk), op.add, op.set(yq));
  emit(op.get(q), op.i32(1), op.sub, op.set(q), op.get(q), op.brIf(0), op.end, op.end);
  emit(op.get(xp), op.get(P.xRowStep), op.add, op.set(xp), op.get(yp), op.get(P.yRow), op.add, op.set(yp));
  emit(op.get(p), op.i32(1), op.sub, op.set(p), op.get(p), op.brIf(0), op.end, op.end);
  emit(op.get(xb), op.get(P.xImg), op.add, op.set(xb), op.get(yb), op.get(P.yImg), op.add, op.set(yb));
  emit(op.get(b), op.i32(1), op.sub, op.set(b), op.get(b), op.brIf(0), op.end, op.end);
  emit(op.end);
  const locals = [...uleb(2), ...uleb(nI32), I32, ...uleb(nV128), V128];
  const body = [...locals, ...code];
  return [...uleb(body.length), ...body];
}

/** Output pixels (px) and output vectors (nv) a convolution kernel exists for; exported as conv_{px}x{4·nv}. */
export const CONV_KERNEL_SHAPES: readonly (readonly [number, number])[] = [
  [4, 2],
  [1, 2],
  [4, 1],
  [1, 1],
];

/** Vectors per call of the bias-sum kernel; exported as sum_{4·nv}. */
const SUM_WIDTHS = [8, 4, 2, 1];

/** The module's bytes: imports env.memory, exports dw_{cb}x{4nv}, conv_{px}x{4nv}, sum_{4nv}, maxpoolgrad. */
export function dwModuleBytes(): Uint8Array {
  const fns = [
    ...DW_KERNEL_SHAPES.map(([cb, nv]) => ({ name: `dw_${cb}x${4 * nv}`, type: 0, body: dwKernelBody(cb, nv) })),
    ...CONV_KERNEL_SHAPES.map(([px, nv]) => ({ name: `conv_${px}x${4 * nv}`, type: 1, body: convKernelBody(px, nv) })),
  ];
  fns.push(...SUM_WIDTHS.map((nv) => ({ name: `sum_${4 * nv}`, type: 2, body: sumKernelBody(nv) })));
  fns.push({ name: 'maxpoolgrad', type: 3, body: maxPoolGradBody() });
  const fnType = (n: number) => [0x60, ...uleb(n), ...Array.from({ length: n }, () => I32), 0];
  const bytes = [
    0x00,
    0x61,
    0x73,
    0x6d,
    0x01,
    0x00,
    0x00,
    0x00,
    ...section(1, [...uleb(4), ...fnType(DW_PARAMS.length), ...fnType(CONV_PARAMS.length), ...fnType(4), ...fnType(8)]),
    ...section(2, [...uleb(1), ...name('env'), ...name('memory'), 0x02, 0x00, ...uleb(1)]),
    ...section(3, [...uleb(fns.length), ...fns.map((f) => f.type)]),
    ...section(7, [...uleb(fns.length), ...fns.flatMap((f, i) => [...name(f.name), 0x00, ...uleb(i)])]),
    ...section(10, [...uleb(fns.length), ...fns.flatMap((f) => f.body)]),
  ];
  return Uint8Array.from(bytes);
}

export type DwKernel = (
  x: number,
  dy: number,
  out: number,
  nb: number,
  np: number,
  nq: number,
  xImg: number,
  xRow: number,
  xCol: number,
  dyImg: number,
  dyRow: number,
  dyCol: number,
  outRow: number,
) => void;

export type ConvKernel = (...args: number[]) => void;

/** Twinfed's SIMD kernels bound to one memory: dW by `${cb}x${4nv}`, convolution by `${px}x${4nv}`. */
export interface SimdKernels {
  dw: Map<string, DwKernel>;
  conv: Map<string, ConvKernel>;
  sum: Map<number, (x: number, rows: number, rowBytes: number, out: number) => void>;
  maxPoolGrad: (x: number, dy: number, dx: number, rows: number, cols: number, nvc: number, rowBytes: number, pixBytes: number) => void;
}

const instances = new WeakMap<WasmMemory, SimdKernels | null>();

/**
 * The kernels bound to `memory` (the tfjs wasm heap), instantiated once per memory; null
 * where this WebAssembly engine has no SIMD (the caller then uses another algorithm).
 */
export function simdKernels(memory: WasmMemory): SimdKernels | null {
  let k = instances.get(memory);
  if (k !== undefined) return k;
  try {
    const mod = new WA.Module(dwModuleBytes());
    const inst = new WA.Instance(mod, { env: { memory } });
    k = {
      dw: new Map(DW_KERNEL_SHAPES.map(([cb, nv]) => [`${cb}x${4 * nv}`, inst.exports[`dw_${cb}x${4 * nv}`] as DwKernel])),
      conv: new Map(CONV_KERNEL_SHAPES.map(([px, nv]) => [`${px}x${4 * nv}`, inst.exports[`conv_${px}x${4 * nv}`] as ConvKernel])),
      sum: new Map(SUM_WIDTHS.map((nv) => [4 * nv, inst.exports[`sum_${4 * nv}`] as SimdKernels['sum'] extends Map<number, infer F> ? F : never])),
      maxPoolGrad: inst.exports.maxpoolgrad as SimdKernels['maxPoolGrad'],
    };
  } catch {
    k = null;
  }
  instances.set(memory, k);
  return k;
}

/** The dW kernels of simdKernels(memory). */
export function dwKernels(memory: WasmMemory): Map<string, DwKernel> | null {
  return simdKernels(memory)?.dw ?? null;
}

/** Shapes and strides of one dW problem (NHWC x and dy, [kh, kw, ci, co] output). */
export interface DwProblem {
  B: number;
  H: number;
  W: number;
  ci: number;
  oh: number;
  ow: number;
  co: number;
  kh: number;
  kw: number;
  sh: number;
  sw: number;
  top: number;
  left: number;
}

/** Whether dwSimd handles these shapes (output channels in whole 4-lane vectors). */
export function dwSimdApplies(pr: DwProblem): boolean {
  return pr.co % 4 === 0;
}

/**
 * Working set of one chunk of images (bytes of its x plus its dy): small enough to stay in a
 * 512 KiB L2 across the chunk's calls. 0 = all images in one chunk.
 */
let chunkBytes = 256 * 1024;

/** Sets dwSimd's chunk size (benchmarks, tests); returns the previous one. */
export function setDwSimdChunkBytes(bytes: number): number {
  const prev = chunkBytes;
  chunkBytes = bytes;
  return prev;
}

/**
 * dW into `out` (byte address of kh·kw·ci·co floats, zeroed by the caller) from x and dy at
 * byte addresses `x`, `dy` of the memory the kernels are bound to.
 */
export function dwSimd(kernels: Map<string, DwKernel>, pr: DwProblem, x: number, dy: number, out: number): void {
  const { B, H, W, ci, oh, ow, co, kh, kw, sh, sw, top, left } = pr;
  const xImg = H * W * ci * 4,
    dyImg = oh * ow * co * 4;
  const per = chunkBytes > 0 ? Math.max(1, Math.min(B, Math.floor(chunkBytes / (xImg + dyImg)))) : B;
  // Channel blocks of 4 (then 2, 1) and output blocks of 8 (then 4).
  const cBlocks: [number, number][] = [];
  for (let c0 = 0; c0 < ci;) {
    const cb = ci - c0 >= 4 ? 4 : ci - c0 >= 2 ? 2 : 1;
    cBlocks.push([c0, cb]);
    c0 += cb;
  }
  const oBlocks: [number, number][] = [];
  for (let o0 = 0; o0 < co;) {
    const nv = co - o0 >= 8 ? 2 : 1;
    oBlocks.push([o0, nv]);
    o0 += 4 * nv;
  }
  for (let b0 = 0; b0 < B; b0 += per) {
    const nb = Math.min(per, B - b0);
    for (let i = 0; i < kh; i++) {
      // Output rows p whose input row p·sh + i - top lies in [0, H).
      const pLo = Math.max(0, Math.ceil((top - i) / sh)),
        pHi = Math.min(oh, Math.floor((H - 1 - i + top) / sh) + 1);
      if (pHi <= pLo) continue;
      for (let j = 0; j < kw; j++) {
        const qLo = Math.max(0, Math.ceil((left - j) / sw)),
          qHi = Math.min(ow, Math.floor((W - 1 - j + left) / sw) + 1);
        if (qHi <= qLo) continue;
        const xPix = ((b0 * H + pLo * sh + i - top) * W + qLo * sw + j - left) * ci;
        const dyPix = ((b0 * oh + pLo) * ow + qLo) * co;
        for (const [c0, cb] of cBlocks) {
          for (const [o0, nv] of oBlocks) {
            kernels.get(`${cb}x${4 * nv}`)!(
              x + 4 * (xPix + c0),
              dy + 4 * (dyPix + o0),
              out + 4 * (((i * kw + j) * ci + c0) * co + o0),
              nb,
              pHi - pLo,
              qHi - qLo,
              xImg,
              sh * W * ci * 4,
              sw * ci * 4,
              dyImg,
              ow * co * 4,
              co * 4,
              co * 4,
            );
          }
        }
      }
    }
  }
}

/** Shapes of one convolution on an already padded NHWC input (Hp x Wp) with a [kh, kw, ci, co] filter. */
export interface ConvProblem {
  B: number;
  Hp: number;
  Wp: number;
  ci: number;
  oh: number;
  ow: number;
  co: number;
  kh: number;
  kw: number;
  sh: number;
  sw: number;
}

/**
 * y = conv(xPadded, w) + bias by the SIMD kernels (output channels a multiple of 4): blocks of 4
 * output pixels along a row x 8 (or 4) output channels in registers, the reduction over the
 * filter's kh rows of kw·ci contiguous input floats. All arguments are byte addresses.
 */
export function convSimd(kernels: SimdKernels, pr: ConvProblem, x: number, w: number, bias: number, y: number): void {
  const { B, Hp, Wp, ci, oh, ow, co, kh, kw, sh, sw } = pr;
  const xImg = Hp * Wp * ci * 4,
    xRowTap = Wp * ci * 4,
    xPix = sw * ci * 4;
  const yPix = co * 4;
  const q4 = Math.floor(ow / 4);
  for (let o0 = 0; o0 < co;) {
    const nv = co - o0 >= 8 ? 2 : 1;
    const common = [kh, kw * ci, xImg, sh * xRowTap, xRowTap, xPix];
    if (q4 > 0) {
      kernels.conv.get(`4x${4 * nv}`)!(x, w + 4 * o0, bias + 4 * o0, y + 4 * o0, B, oh, q4, ...common, 4 * xPix, co * 4, oh * ow * yPix, ow * yPix, yPix, 4 * yPix);
    }
    if (ow > 4 * q4) {
      kernels.conv.get(`1x${4 * nv}`)!(x + 4 * q4 * xPix, w + 4 * o0, bias + 4 * o0, y + 4 * (o0 + 4 * q4 * co), B, oh, ow - 4 * q4, ...common, xPix, co * 4, oh * ow * yPix, ow * yPix, yPix, yPix);
    }
    o0 += 4 * nv;
  }
}

/**
 * Bias gradient: out[c] = Σ_rows x[row][c] for a [rows, C] float matrix at byte address x, C a
 * multiple of 4, in SIMD over chunks of 4096 rows whose float32 sums are added up in float64.
 */
export function sumRowsSimd(kernels: SimdKernels, heap: Float32Array, x: number, rows: number, C: number, tmp: number): Float64Array {
  const acc = new Float64Array(C);
  const CHUNK = 4096;
  for (let r0 = 0; r0 < rows; r0 += CHUNK) {
    const nr = Math.min(CHUNK, rows - r0);
    for (let c0 = 0; c0 < C;) {
      const w = [32, 16, 8, 4].find((width) => C - c0 >= width)!;
      kernels.sum.get(w)!(x + 4 * (r0 * C + c0), nr, 4 * C, tmp);
      for (let k = 0; k < w; k++) acc[c0 + k] += heap[tmp / 4 + k];
      c0 += w;
    }
  }
  return acc;
}
