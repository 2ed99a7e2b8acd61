/**
 * U-Net training throughput on tfjs' WebGPU backend (Dawn's dawn.node, the `webgpu` npm
 * package) against Twinfed's wasm path, on the same machine, in one run. Built into one
 * bundle by tools/gpu/build.mjs and run on the accelerator machine by tools/gpu/run-device.sh
 * (docs/gpu.md); the device has no registry, so everything it needs is in the bundle.
 *
 *   node dist/bench-webgpu.mjs [--result gpu-result.json] [--budget-s 270] [--only id,id] [--quick]
 *
 * The problem is bench:train's (bench/reference.ts): REFERENCE_NET (2D U-Net, 2 in-channels,
 * 4 classes, base 8, depth 2, 64x64), Adam lr 1e-3, softmax cross-entropy, fixed random data,
 * the same initial weights on every backend; plus a larger batch and larger nets, where a GPU
 * should pay off. A step is forward + backward + Adam, timed until the loss is on the CPU.
 *
 * Every variant runs in its own child process with a timeout (a GPU driver can hang or crash
 * a process), first the WebGPU probe; a variant that cannot run says why and the others still
 * run. The result file is rewritten after every variant, so a run cut short keeps what it had.
 *
 * Environment: TWINFED_DAWN_NODE (path of dawn.node; default next to the bundle), TWINFED_NODE_CMD
 * (JSON array: how to start Node for the children; default this process's executable),
 * TWINFED_DAWN_OPTIONS (Dawn create() options separated by ';', e.g. backend=vulkan),
 * TWINFED_WEBGPU_COMPAT=1 (ask for a compatibility-mode adapter: Dawn's OpenGL ES backend,
 * e.g. Mesa's llvmpipe for a CPU smoke test).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import { REFERENCE_BATCH, REFERENCE_LEARNING_RATE, REFERENCE_NET, referenceData } from '../../../shared/src/bench/reference.js';
import { countParams, createUNet, disposeUNet, getFlatWeights, segmentationLoss, unetLogits, type UNetConfig } from '../../../shared/src/model/unet.js';
import { FlatAdam } from '../../../shared/src/train/adam.js';
import { selectBackend } from '../../../shared/src/train/backend.js';
import { DataParallelTrainer } from '../../../shared/src/train/parallel.js';
import { DEFAULT_WASM_KERNELS, registerWasmTrainingKernels } from '../../../shared/src/train/wasm-kernels.js';
import { probeWebGpu, type DawnAdapter, type DawnGpu, type DawnModule, type WebGpuProbe } from '../../../shared/src/train/webgpu.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));

interface Variant {
  id: string;
  backend: 'webgpu' | 'wasm';
  /** Which problem (variants with the same size key are compared). */
  size: string;
  net: UNetConfig;
  batch: number;
  /** wasm only: data-parallel worker threads (0 = the calling thread). */
  workers: number;
  warmup: number;
  maxSteps: number;
  /** Stop timing after this many seconds of timed steps (at least 2 steps). */
  maxTimedS: number;
  /** Kill the child after this long. */
  timeoutS: number;
}

export interface VariantResult {
  id: string;
  backend: string;
  size: string;
  ok: boolean;
  why?: string;
  net: UNetConfig;
  batch: number;
  workers: number;
  params?: number;
  /** The first step: WebGPU compiles its shader pipelines here. */
  firstStepMs?: number;
  msPerStepMedian?: number;
  msPerStepMin?: number;
  msPerStepMax?: number;
  stepsPerS?: number;
  imagesPerS?: number;
  timedSteps?: number;
  /** Loss after every step, warm-up included (step 1 = the loss at the initial weights). */
  losses?: number[];
  lossFinite?: boolean;
  lossDecreased?: boolean;
  /** tfjs tensors alive after the run minus before it (a leak shows as > 0). */
  tensorGrowth?: number;
  /** tf.time of one extra step: kernel time the backend measured (WebGPU: timestamp queries, if the adapter has them). */
  kernelMs?: number | string;
  backendInfo?: string;
  childWallS?: number;
  stderrTail?: string;
}

const median = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];
const errMessage = (e: unknown) => (e instanceof Error ? e.message : String(e));

// --- WebGPU through dawn.node --------------------------------------------------------------

function dawnNodePath(): string {
  const nextToBundle = path.join(HERE, 'dawn.node');
  const candidates = [process.env.TWINFED_DAWN_NODE, nextToBundle, path.join(HERE, `../node_modules/webgpu/dist/${process.platform}-${process.arch}/dawn.node`)];
  return candidates.find((p): p is string => p != null && p !== '' && existsSync(p)) ?? nextToBundle;
}

/** dawn.node itself (the `webgpu` package's index.js only adds a buffer-unmapping fix on destroy()). */
async function loadDawn(): Promise<DawnModule> {
  const load = createRequire(import.meta.url);
  return load(dawnNodePath()) as DawnModule;
}

function dawnOptions(): string[] {
  return (process.env.TWINFED_DAWN_OPTIONS ?? '')
    .split(';')
    .map((s) => s.trim())
    .filter(Boolean);
}

const compat = () => process.env.TWINFED_WEBGPU_COMPAT === '1';

function adapterOptions(): Record<string, unknown> {
  return compat() ? { powerPreference: 'high-performance', featureLevel: 'compatibility' } : { powerPreference: 'high-performance' };
}

interface AdapterLike {
  limits: Record<string, number>;
  requestDevice(d?: { requiredLimits?: Record<string, number> }): Promise<unknown>;
}

/**
 * In compatibility mode an adapter starts with fewer storage buffers per shader stage than
 * tfjs' kernels bind; ask for what the adapter has. tfjs asks for the adapter itself.
 */
function compatGpu(gpu: DawnGpu): DawnGpu {
  return {
    requestAdapter: async (o?: Record<string, unknown>) => {
      const a = (await gpu.requestAdapter({ ...o, ...adapterOptions() })) as (AdapterLike & object) | null;
      if (a == null) return null;
      const limits = ['maxStorageBuffersPerShaderStage', 'maxStorageBuffersInFragmentStage', 'maxStorageBuffersInVertexStage'];
      const wrapped: AdapterLike & object = new Proxy(a, {
        get(target, prop) {
          if (prop === 'requestDevice') {
            return (d: { requiredLimits?: Record<string, number> } = {}) => {
              const extra: Record<string, number> = {};
              for (const l of limits) if (typeof target.limits[l] === 'number') extra[l] = target.limits[l];
              return target.requestDevice({ ...d, requiredLimits: { ...d.requiredLimits, ...extra } });
            };
          }
          const v = Reflect.get(target, prop, target) as unknown;
          return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
        },
      });
      return wrapped as DawnAdapter;
    },
  };
}

/** Puts Dawn's GPU on navigator before tfjs-backend-webgpu registers (it looks once, at import). */
async function startWebGpuBackend(): Promise<string> {
  const dawn = await loadDawn();
  Object.assign(globalThis, dawn.globals);
  const raw = dawn.create(dawnOptions());
  const gpu = compat() ? compatGpu(raw) : raw;
  // Node 21+ has a navigator getter; replace it (configurable) rather than assign.
  Object.defineProperty(globalThis, 'navigator', { value: { gpu }, configurable: true, writable: true });
  await import('@tensorflow/tfjs-backend-webgpu');
  if (!(await tf.setBackend('webgpu'))) throw new Error('tfjs webgpu backend did not initialise (its warning is in the stderr tail)');
  const info = (tf.backend() as unknown as { adapterInfo?: { vendor?: string; architecture?: string } }).adapterInfo;
  const a = await raw.requestAdapter(adapterOptions());
  const ai = a?.info;
  return `webgpu: ${ai?.description || ai?.device || '?'} (vendor ${ai?.vendor ?? info?.vendor ?? '?'}, architecture ${ai?.architecture ?? info?.architecture ?? '?'}); Dawn options [${dawnOptions().join('; ')}]${compat() ? ', compatibility mode' : ''}`;
}

// --- one variant, in a child process --------------------------------------------------------

async function runVariant(v: Variant): Promise<VariantResult> {
  const base: VariantResult = { id: v.id, backend: v.backend, size: v.size, ok: false, net: v.net, batch: v.batch, workers: v.workers };
  let backendInfo: string;
  try {
    if (v.backend === 'webgpu') backendInfo = await startWebGpuBackend();
    else {
      registerWasmTrainingKernels(DEFAULT_WASM_KERNELS);
      const choice = await selectBackend('wasm');
      if (choice.name !== 'wasm') throw new Error(choice.reason);
      backendInfo = `${choice.reason}${v.workers > 0 ? `; ${v.workers} data-parallel worker threads` : ''}`;
    }
  } catch (err) {
    return { ...base, why: `backend: ${errMessage(err)}` };
  }
  const { size, inChannels, nClasses } = v.net;
  const B = v.batch;
  const model = createUNet(v.net, 0);
  const data = referenceData(v.net, B);
  const x = tf.tensor4d(data.x, [B, size, size, inChannels]);
  const y = tf.tensor4d(data.y, [B, size, size, nClasses]);
  const opt = tf.train.adam(REFERENCE_LEARNING_RATE);
  const parallel = v.workers > 0 ? await DataParallelTrainer.start(v.net, { workers: v.workers, backend: 'wasm', kernels: DEFAULT_WASM_KERNELS }) : undefined;
  const flat = parallel ? getFlatWeights(model) : undefined;
  const flatAdam = flat ? new FlatAdam(flat.length, { learningRate: REFERENCE_LEARNING_RATE, epsilon: tf.backend().epsilon() }) : undefined;
  const step = async (): Promise<number> => {
    if (parallel) return parallel.step(flat!, flatAdam!, data.x, data.y, B, 0);
    const cost = opt.minimize(() => segmentationLoss(unetLogits(model, x), y, { diceWeight: 0 }), true, model.params)!;
    const l = (await cost.data())[0];
    cost.dispose();
    return l;
  };
  const losses: number[] = [];
  const times: number[] = [];
  let firstStepMs = NaN;
  let tensorsBefore = 0;
  let tensorGrowth = NaN;
  let kernelMs: number | string | undefined;
  try {
    let timedSince = 0;
    for (let i = 0; ; i++) {
      if (i === v.warmup) {
        tensorsBefore = tf.memory().numTensors;
        timedSince = performance.now();
      }
      const t0 = performance.now();
      losses.push(await step());
      const ms = performance.now() - t0;
      if (i === 0) firstStepMs = ms;
      if (i >= v.warmup) times.push(ms);
      const timedS = (performance.now() - timedSince) / 1000;
      if (times.length >= v.maxSteps || (times.length >= 2 && timedS > v.maxTimedS)) break;
    }
    tensorGrowth = tf.memory().numTensors - tensorsBefore;
    if (!parallel) {
      // One more step under tf.time: the kernel time the backend itself measured (WebGPU: only
      // with the adapter's timestamp-query feature, else 0). No dataSync inside: on WebGPU it
      // needs OffscreenCanvas, which Node lacks.
      try {
        let cost: tf.Scalar | null = null as tf.Scalar | null;
        const t = await tf.time(() => {
          cost = opt.minimize(() => segmentationLoss(unetLogits(model, x), y, { diceWeight: 0 }), true, model.params);
        });
        if (cost != null) {
          await cost.data();
          cost.dispose();
        }
        kernelMs = typeof t.kernelMs === 'number' ? t.kernelMs : JSON.stringify(t.kernelMs);
      } catch (err) {
        kernelMs = `tf.time failed: ${errMessage(err)}`;
      }
    }
  } finally {
    await parallel?.close();
  }
  opt.dispose();
  tf.dispose([x, y]);
  const params = countParams(model);
  disposeUNet(model);
  const ms = median(times);
  return {
    ...base,
    ok: true,
    params,
    firstStepMs,
    msPerStepMedian: ms,
    msPerStepMin: Math.min(...times),
    msPerStepMax: Math.max(...times),
    stepsPerS: 1000 / ms,
    imagesPerS: (1000 * B) / ms,
    timedSteps: times.length,
    losses,
    lossFinite: losses.every(Number.isFinite),
    lossDecreased: losses.length >= 2 && losses[losses.length - 1] < losses[0],
    tensorGrowth,
    kernelMs,
    backendInfo,
  };
}

interface ProbeResult extends WebGpuProbe {
  dawnNode: string;
  options: string[];
  features?: string[];
  limits?: Record<string, number>;
}

async function runProbe(): Promise<ProbeResult> {
  const p = await probeWebGpu({ load: loadDawn, dawnOptions: dawnOptions(), adapterOptions: adapterOptions(), timeoutMs: 20_000 });
  const r: ProbeResult = { ...p, dawnNode: dawnNodePath(), options: dawnOptions() };
  if (p.available) {
    // What tfjs will ask for (its device descriptor copies these limits; timestamp-query enables kernel timing).
    const dawn = await loadDawn();
    const a = (await dawn.create(dawnOptions()).requestAdapter(adapterOptions())) as { features?: Iterable<string>; limits?: Record<string, number> } | null;
    if (a != null) {
      r.features = [...(a.features ?? [])].sort();
      const keys = [
        'maxBufferSize',
        'maxStorageBufferBindingSize',
        'maxComputeWorkgroupStorageSize',
        'maxComputeInvocationsPerWorkgroup',
        'maxComputeWorkgroupSizeX',
        'maxStorageBuffersPerShaderStage',
      ];
      r.limits = Object.fromEntries(keys.map((k) => [k, Number(a.limits?.[k])]));
    }
  }
  return r;
}

// --- the orchestrator -------------------------------------------------------------------------

function variants(quick: boolean): Variant[] {
  const cores = os.availableParallelism();
  const W = Math.max(2, Math.min(16, cores));
  const ref = REFERENCE_NET;
  const base16: UNetConfig = { ...ref, base: 16, depth: 3 };
  const big: UNetConfig = { ...ref, base: 32, depth: 3, size: 128 };
  const gpu = (id: string, size: string, net: UNetConfig, batch: number): Variant => ({
    id,
    backend: 'webgpu',
    size,
    net,
    batch,
    workers: 0,
    warmup: quick ? 1 : 3,
    maxSteps: quick ? 2 : 30,
    maxTimedS: quick ? 5 : 15,
    timeoutS: quick ? 300 : 150,
  });
  const wasm = (id: string, size: string, net: UNetConfig, batch: number, workers: number): Variant => ({
    id,
    backend: 'wasm',
    size,
    net,
    batch,
    workers,
    warmup: 1,
    maxSteps: quick ? 2 : 10,
    maxTimedS: quick ? 5 : 12,
    timeoutS: quick ? 300 : 120,
  });
  const list: Variant[] = [
    gpu('webgpu-ref', 'ref', ref, REFERENCE_BATCH),
    wasm('wasm-ref', 'ref', ref, REFERENCE_BATCH, 0),
    gpu('webgpu-ref-b64', 'ref-b64', ref, 64),
    wasm(`wasm-ref-b64-w${W}`, 'ref-b64', ref, 64, W),
    gpu('webgpu-big', 'big', big, 16),
    wasm(`wasm-big-w${W}`, 'big', big, 16, W),
    wasm('wasm-ref-w4', 'ref', ref, REFERENCE_BATCH, 4),
    wasm(`wasm-ref-w${W}`, 'ref', ref, REFERENCE_BATCH, W),
    gpu('webgpu-base16-b64', 'base16-b64', base16, 64),
    wasm(`wasm-base16-b64-w${W}`, 'base16-b64', base16, 64, W),
  ];
  return list.filter((v, i) => list.findIndex((u) => u.id === v.id) === i);
}

const SIZES: Record<string, string> = {
  ref: 'reference: base 8, depth 2, 64x64, batch 16 (bench:train)',
  'ref-b64': 'reference net, batch 64',
  big: 'base 32, depth 3, 128x128, batch 16',
  'base16-b64': 'base 16, depth 3, 64x64, batch 64',
};

interface Child<T> {
  value?: T;
  why?: string;
  stderr: string;
  wallS: number;
}

/**
 * How to start Node for a child: TWINFED_NODE_CMD, a JSON array, when Node itself runs through
 * the bundled glibc's loader (process.execPath is then ld.so, see run-device.sh).
 */
function nodeCommand(): string[] {
  const v = process.env.TWINFED_NODE_CMD;
  if (v == null || v === '') return [process.execPath];
  const cmd = JSON.parse(v) as unknown;
  if (!Array.isArray(cmd) || cmd.length === 0 || !cmd.every((c) => typeof c === 'string')) throw new Error('TWINFED_NODE_CMD must be a JSON array of strings');
  return cmd as string[];
}

function runChild<T>(args: string[], timeoutS: number): Child<T> {
  const t0 = performance.now();
  const [cmd, ...pre] = nodeCommand();
  const r = spawnSync(cmd, [...pre, fileURLToPath(import.meta.url), ...args], {
    encoding: 'utf8',
    timeout: Math.round(timeoutS * 1000),
    killSignal: 'SIGKILL',
    stdio: ['ignore', 'pipe', 'pipe'],
    maxBuffer: 64 * 1024 * 1024,
  });
  const wallS = (performance.now() - t0) / 1000;
  // tfjs' "install tfjs-node" banner says nothing here.
  const stderr = (r.stderr ?? '').replace(/=+\nHi, looks like you are running TensorFlow\.js in Node\.js[^\n]*\n=+\n?/g, '').trim();
  const last = (r.stdout ?? '').trim().split('\n').at(-1) ?? '';
  try {
    return { value: JSON.parse(last) as T, stderr, wallS };
  } catch {
    const how = r.error != null ? `${r.error.message}${r.signal === 'SIGKILL' ? ` (killed after ${timeoutS} s)` : ''}` : `exited with ${r.status ?? r.signal}`;
    const tail = stderr.split('\n').filter(Boolean).slice(-3).join(' | ');
    return { why: `child ${how}${tail ? `: ${tail}` : ''}`, stderr, wallS };
  }
}

const fmt = (x: number | undefined, d: number) => (x == null || !Number.isFinite(x) ? '-' : x.toFixed(d));

/** The fastest wasm variant of a problem, and the single-thread one. */
function wasmRefs(results: VariantResult[], size: string): { one?: VariantResult; best?: VariantResult } {
  const wasm = results.filter((o) => o.ok && o.backend === 'wasm' && o.size === size);
  return { one: wasm.find((o) => o.workers === 0), best: [...wasm].sort((a, b) => a.msPerStepMedian! - b.msPerStepMedian!)[0] };
}

function table(results: VariantResult[]): string[] {
  const lines: string[] = [];
  lines.push(`${'variant'.padEnd(24)} | ${'problem'.padEnd(10)} | ms/step median (min-max) | steps/s | images/s | 1st step ms | loss first -> last | speed vs wasm, same problem`);
  for (const r of results) {
    if (!r.ok) {
      lines.push(`${r.id.padEnd(24)} | ${r.size.padEnd(10)} | skipped: ${r.why}`);
      continue;
    }
    const { one, best } = wasmRefs(results, r.size);
    const vs = [one, best]
      .filter((o, i, all): o is VariantResult => o != null && o !== r && all.indexOf(o) === i)
      .map((o) => `${(o.msPerStepMedian! / r.msPerStepMedian!).toFixed(2)}x ${o.id}`)
      .join(', ');
    const range = `${fmt(r.msPerStepMedian, 1)} (${fmt(r.msPerStepMin, 1)}-${fmt(r.msPerStepMax, 1)})`;
    const l = r.losses ?? [];
    lines.push(
      `${r.id.padEnd(24)} | ${r.size.padEnd(10)} | ${range.padStart(24)} | ${fmt(r.stepsPerS, 2).padStart(7)} | ${fmt(r.imagesPerS, 1).padStart(8)} | ${fmt(r.firstStepMs, 0).padStart(11)} | ` +
        `${fmt(l[0], 4)} -> ${fmt(l.at(-1), 4)}${r.lossFinite && r.lossDecreased ? '' : ' (!)'} | ${vs}`,
    );
  }
  return lines;
}

/** WebGPU against wasm per problem: ms/step and speed-ups (> 1: WebGPU is faster). */
function speedups(results: VariantResult[]): Record<string, Record<string, number | string>> {
  const out: Record<string, Record<string, number | string>> = {};
  for (const g of results.filter((r) => r.ok && r.backend === 'webgpu')) {
    const { one, best } = wasmRefs(results, g.size);
    out[g.size] = { webgpuMs: g.msPerStepMedian!, webgpuStepsPerS: g.stepsPerS! };
    if (one) Object.assign(out[g.size], { wasm1ThreadMs: one.msPerStepMedian!, speedupVsWasm1Thread: one.msPerStepMedian! / g.msPerStepMedian! });
    if (best) Object.assign(out[g.size], { wasmBest: best.id, wasmBestMs: best.msPerStepMedian!, speedupVsWasmBest: best.msPerStepMedian! / g.msPerStepMedian! });
  }
  return out;
}

/** Same initial weights and data: the first loss must agree across backends (float32 summation order aside). */
function agreement(results: VariantResult[]): Record<string, { webgpu: number; wasm: number; relDiff: number }> {
  const out: Record<string, { webgpu: number; wasm: number; relDiff: number }> = {};
  for (const g of results.filter((r) => r.ok && r.backend === 'webgpu')) {
    const w = results.find((r) => r.ok && r.backend === 'wasm' && r.size === g.size);
    if (w?.losses == null || g.losses == null) continue;
    const a = g.losses[0],
      b = w.losses[0];
    out[g.size] = { webgpu: a, wasm: b, relDiff: Math.abs(a - b) / Math.abs(b) };
  }
  return out;
}

async function main(): Promise<void> {
  const { values: a } = parseArgs({
    options: {
      child: { type: 'string' },
      probe: { type: 'boolean', default: false },
      result: { type: 'string', default: path.join(process.env.OUT ?? '.', 'gpu-result.json') },
      'budget-s': { type: 'string', default: '270' },
      only: { type: 'string' },
      quick: { type: 'boolean', default: false },
      list: { type: 'boolean', default: false },
    },
  });
  if (a.probe) {
    process.stdout.write(`${JSON.stringify(await runProbe())}\n`);
    process.exit(0); // a live Dawn instance would keep the process up
  }
  if (a.child != null) {
    const v = JSON.parse(a.child) as Variant;
    let r: VariantResult;
    try {
      r = await runVariant(v);
    } catch (err) {
      r = { id: v.id, backend: v.backend, size: v.size, ok: false, net: v.net, batch: v.batch, workers: v.workers, why: `run: ${errMessage(err)}` };
    }
    process.stdout.write(`${JSON.stringify(r)}\n`);
    process.exit(0);
  }

  const all = variants(a.quick);
  if (a.list) {
    for (const v of all) console.log(`${v.id.padEnd(24)} ${v.backend.padEnd(7)} ${SIZES[v.size]}${v.workers ? `, ${v.workers} workers` : ''}`);
    return;
  }
  const only = a.only
    ?.split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const id of only ?? []) if (!all.some((v) => v.id === id)) throw new Error(`--only: unknown variant ${id}; --list shows them`);
  const chosen = only ? all.filter((v) => only.includes(v.id)) : all;
  const budgetS = Number(a['budget-s']);
  const start = performance.now();
  const elapsed = () => (performance.now() - start) / 1000;

  const meta = {
    when: new Date().toISOString(),
    node: process.version,
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    cpu: `${os.cpus()[0]?.model ?? '?'} x ${os.availableParallelism()}`,
    memGiB: Math.round(os.totalmem() / 2 ** 30),
    loadavg: os.loadavg(),
    bundle: fileURLToPath(import.meta.url),
    env: Object.fromEntries(Object.entries(process.env).filter(([k]) => /^(VK_|NVIDIA_|CUDA_VISIBLE|LD_LIBRARY_PATH|TWINFED_|EGL_|XDG_RUNTIME)/.test(k))),
    budgetS,
    quick: a.quick,
  };
  console.log(`WebGPU bench: node ${meta.node}, ${meta.platform}, ${meta.cpu}, ${meta.memGiB} GiB; budget ${budgetS} s`);
  console.log(`env: ${JSON.stringify(meta.env)}`);

  const out: { meta: typeof meta; probe?: unknown; results: VariantResult[]; agreement?: unknown; speedups?: unknown; table?: string[]; totalS?: number } = { meta, results: [] };
  const save = () => writeFileSync(a.result, `${JSON.stringify(out, null, 2)}\n`);

  const probe = runChild<ProbeResult>(['--probe'], 60);
  out.probe = probe.value ?? { available: false, why: probe.why };
  const gpuOk = probe.value?.available === true;
  // A CPU rasteriser behind Vulkan or OpenGL ES (the smoke test here) is WebGPU, but not a GPU: say so next to its numbers.
  const software = gpuOk && /llvmpipe|lavapipe|swiftshader|softpipe|fallback adapter/i.test(`${probe.value?.why} ${JSON.stringify(probe.value?.adapter)}`);
  out.probe = { ...(out.probe as object), software };
  console.log(`\nWebGPU probe (${probe.wallS.toFixed(1)} s): ${gpuOk ? 'available' : 'NOT available'}: ${probe.value?.why ?? probe.why}${software ? ' -- a SOFTWARE adapter (CPU), not a GPU' : ''}`);
  if (probe.value?.features) console.log(`adapter features: ${probe.value.features.join(' ')}\nadapter limits: ${JSON.stringify(probe.value.limits)}`);
  if (probe.stderr) console.log(`probe stderr:\n${probe.stderr.slice(-3000)}`);
  save();

  for (const v of chosen) {
    const base = { id: v.id, backend: v.backend, size: v.size, ok: false, net: v.net, batch: v.batch, workers: v.workers };
    const left = budgetS - elapsed();
    let r: VariantResult;
    if (v.backend === 'webgpu' && !gpuOk) r = { ...base, why: `no WebGPU adapter: ${probe.value?.why ?? probe.why}` };
    else if (left < 15) r = { ...base, why: `out of time budget (${elapsed().toFixed(0)} of ${budgetS} s used)` };
    else {
      console.log(`\n[${elapsed().toFixed(0)} s] ${v.id}: ${SIZES[v.size]}${v.workers ? `, ${v.workers} workers` : ''} ...`);
      const c = runChild<VariantResult>(['--child', JSON.stringify(v)], Math.min(v.timeoutS, left + 10));
      r = c.value ?? { ...base, why: c.why };
      r.childWallS = Number(c.wallS.toFixed(1));
      if (c.stderr) {
        r.stderrTail = c.stderr.slice(-2000);
        console.log(`  stderr: ${c.stderr.slice(-1500).replace(/\n/g, '\n  ')}`);
      }
      console.log(
        r.ok
          ? `  ${r.backendInfo}\n  ${fmt(r.msPerStepMedian, 1)} ms/step (${fmt(r.stepsPerS, 2)} steps/s, ${fmt(r.imagesPerS, 1)} images/s) over ${r.timedSteps} steps; first step ${fmt(r.firstStepMs, 0)} ms; ` +
              `losses ${(r.losses ?? []).map((l) => l.toFixed(4)).join(' ')}; tensors +${r.tensorGrowth}; kernelMs ${r.kernelMs ?? '-'}`
          : `  failed: ${r.why}`,
      );
    }
    out.results.push(r);
    out.agreement = agreement(out.results);
    out.speedups = speedups(out.results);
    save();
  }
  out.table = table(out.results);
  out.totalS = Number(elapsed().toFixed(1));
  save();
  if (software) out.table.unshift('NOTE: the WebGPU rows ran on a software adapter (CPU rasteriser), not on a GPU');
  console.log(`\n${out.table.join('\n')}`);
  console.log(`\nfirst-step loss, WebGPU vs wasm (same weights and data): ${JSON.stringify(out.agreement)}`);
  console.log(`WebGPU vs wasm: ${JSON.stringify(out.speedups)}`);
  console.log(`total ${out.totalS} s; results in ${a.result}`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
