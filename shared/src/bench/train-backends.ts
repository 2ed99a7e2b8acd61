/**
 * `npm run bench:train`: U-Net training throughput of every available tfjs backend
 * against PyTorch on the same machine, in one run, as one table.
 *
 *   node shared/dist/bench/train-backends.js [--steps 10] [--warmup 2] [--cpu] [--cpu-steps 2]
 *       [--only wasm,torch-1,...] [--profile] [--json] [--python /usr/bin/python3]
 *
 * Network, batch, input and optimiser are those of shared/src/bench/peers/unet_torch.py
 * (a copy of the lead's reference): 2D U-Net, 2 in-channels, 4 classes, base 8, depth 2
 * (29 420 parameters), 64x64 inputs, batch 16, Adam lr 1e-3, softmax categorical
 * cross-entropy (segmentationLoss with diceWeight 0), fixed random data. A step is
 * forward + backward + Adam update, timed until the loss value is on the CPU; the table
 * reports the median over --steps after --warmup untimed steps, wall time and the CPU time
 * of the whole process (all threads: the data-parallel workers are threads of the same
 * process, so process.cpuUsage() counts them; PyTorch's is time.process_time()).
 *
 * Ratios are to PyTorch with 1 thread and with 2 threads measured in the same run (PyTorch
 * 1 thread is measured first and again last, so a shared machine's load drift shows). The
 * figure of merit of issue 11 is `equalThreadsRatio`: wasm with 2 data-parallel workers over
 * PyTorch with 2 threads, wall ms/step (< 1: Twinfed is faster with the same threads).
 *
 * --cpu adds the pure-JS cpu backend (slow: seconds per step, so opt-in). --profile adds,
 * after the table, per-kernel ms/step of the wasm variants before issue 11 and now (one thread
 * each) from extra runs (the timer wraps every kernel, so they are not the table's runs). --json ends the output
 * with one JSON line: { rows, equalThreadsRatio, torch1ThreadMsPerStep, torch2ThreadsMsPerStep,
 * wasm1ThreadMsPerStep, wasm2WorkersMsPerStep, ... }.
 *
 * Every variant runs in its own child process (tfjs kernels are process-global, and
 * one variant's heap must not slow the next).
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import { countParams, createUNet, disposeUNet, getFlatWeights, segmentationLoss, unetLogits } from '../model/unet.js';
import { FlatAdam } from '../train/adam.js';
import { REFERENCE_BATCH, REFERENCE_LEARNING_RATE, REFERENCE_NET, referenceData } from './reference.js';
import { selectBackend, type BackendName } from '../train/backend.js';
import { DataParallelTrainer } from '../train/parallel.js';
import { DEFAULT_WASM_KERNELS, registerWasmTrainingKernels, type WasmKernelSet } from '../train/wasm-kernels.js';

export { REFERENCE_BATCH, REFERENCE_NET } from './reference.js';
const LEARNING_RATE = REFERENCE_LEARNING_RATE;

interface TfjsVariant {
  id: string;
  label: string;
  backend: BackendName;
  kernels?: WasmKernelSet;
  workers?: number;
  /** Seconds per step: only with --cpu (or --only naming it), and with --cpu-steps. */
  slow?: boolean;
}

/** The Twinfed kernel set before issue 11 (dW as a dilated XNNPACK convolution, copying Identity/Cast, stock ReLU gradient). */
const PREVIOUS_WASM_KERNELS: WasmKernelSet = { backpropFilter: 'dilated-conv', backpropInput: true, maxPoolGrad: true, noCopy: false, simdConv: false };

const TFJS_VARIANTS: TfjsVariant[] = [
  { id: 'tensorflow', label: 'tfjs tensorflow (libtensorflow)', backend: 'tensorflow' },
  {
    id: 'wasm-stock',
    label: 'tfjs wasm, stock kernels (+ dW as dilated conv, which wasm lacks)',
    backend: 'wasm',
    kernels: { backpropFilter: 'dilated-conv', backpropInput: false, maxPoolGrad: false, noCopy: false, simdConv: false },
  },
  {
    id: 'wasm-v1',
    label: 'tfjs wasm + Twinfed kernels v1 (dilated-conv dW, conv dx)',
    backend: 'wasm',
    kernels: { backpropFilter: 'dilated-conv', backpropInput: true, maxPoolGrad: false, noCopy: false, simdConv: false },
  },
  { id: 'wasm-prev', label: 'tfjs wasm + Twinfed kernels before issue 11 (v1 + MaxPoolGrad, Sum)', backend: 'wasm', kernels: PREVIOUS_WASM_KERNELS },
  {
    id: 'wasm-matmul-dw',
    label: 'tfjs wasm + Twinfed kernels, dW as one im2col MatMul',
    backend: 'wasm',
    kernels: { ...DEFAULT_WASM_KERNELS, backpropFilter: 'im2col-matmul' },
  },
  { id: 'wasm', label: 'tfjs wasm + Twinfed kernels (SIMD dW and conv, no copies): default', backend: 'wasm', kernels: DEFAULT_WASM_KERNELS },
  { id: 'wasm-prev-workers-2', label: 'tfjs wasm + kernels before issue 11, 2 workers', backend: 'wasm', kernels: PREVIOUS_WASM_KERNELS, workers: 2 },
  { id: 'wasm-workers-2', label: 'tfjs wasm + Twinfed default kernels, 2 data-parallel workers', backend: 'wasm', kernels: DEFAULT_WASM_KERNELS, workers: 2 },
  { id: 'cpu', label: "tfjs cpu (pure JS, Twinfed's dW)", backend: 'cpu', slow: true },
];

export interface StepResult {
  id: string;
  label: string;
  /** Threads doing the step's arithmetic: PyTorch's intra-op threads, tfjs' data-parallel workers (1 = the calling thread). */
  threads?: number;
  ok: boolean;
  /** Why the variant did not run (ok = false). */
  why?: string;
  msPerStepMedian?: number;
  /**
   * Median CPU time per step of the whole process (all threads), ms. Less disturbed than
   * wall time by other processes on a shared machine, so it shows kernel changes better;
   * wall time is what a site waits.
   */
  cpuMsPerStepMedian?: number;
  msPerStepMin?: number;
  msPerStepMax?: number;
  steps?: number;
  params?: number;
  finalLoss?: number;
  /** Wall ms/step ÷ PyTorch 1 thread's (first run) / 2 threads' of the same bench run. */
  xTorch1?: number;
  xTorch2?: number;
  /** CPU ms/step ÷ PyTorch 1 thread's / 2 threads'. */
  cpuXTorch1?: number;
  cpuXTorch2?: number;
}

const median = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];

/** Per-kernel wall time of the wasm/cpu kernels (they run synchronously), top level only. */
function installKernelTimer(backendName: string): Map<string, { ms: number; calls: number }> {
  const table = new Map<string, { ms: number; calls: number }>();
  let depth = 0;
  for (const k of tf.getKernelsForBackend(backendName)) {
    const f = k.kernelFunc;
    tf.unregisterKernel(k.kernelName, backendName);
    tf.registerKernel({
      ...k,
      kernelFunc: ((args: Parameters<typeof f>[0]) => {
        depth++;
        const t0 = performance.now();
        try {
          return f(args);
        } finally {
          depth--;
          if (depth === 0) {
            const e = table.get(k.kernelName) ?? { ms: 0, calls: 0 };
            e.ms += performance.now() - t0;
            e.calls++;
            table.set(k.kernelName, e);
          }
        }
      }) as typeof f,
    });
  }
  return table;
}

async function runTfjsChild(v: TfjsVariant, steps: number, warmup: number, profile: boolean): Promise<StepResult> {
  const base = { id: v.id, label: v.label };
  if (v.kernels) registerWasmTrainingKernels(v.kernels);
  let choice;
  try {
    choice = await selectBackend(v.backend);
  } catch (err) {
    return { ...base, ok: false, why: err instanceof Error ? err.message : String(err) };
  }
  if (choice.name !== v.backend) {
    const why = choice.tried
      .filter((t) => t.name === v.backend)
      .map((t) => t.why)
      .join('; ');
    return { ...base, ok: false, why: why || `${v.backend} unavailable` };
  }
  const timer = profile && v.backend !== 'tensorflow' && v.workers == null ? installKernelTimer(v.backend) : undefined;
  if (timer) await tf.setBackend(v.backend); // re-run setup functions of the wrapped kernels
  const { size, inChannels, nClasses } = REFERENCE_NET;
  const B = REFERENCE_BATCH;
  const model = createUNet(REFERENCE_NET, 0);
  const data = referenceData();
  const x = tf.tensor4d(data.x, [B, size, size, inChannels]);
  const y = tf.tensor4d(data.y, [B, size, size, nClasses]);
  const opt = tf.train.adam(LEARNING_RATE);
  const parallel = v.workers ? await DataParallelTrainer.start(REFERENCE_NET, { workers: v.workers, kernels: v.kernels }) : undefined;
  const flat = parallel ? getFlatWeights(model) : undefined;
  const flatAdam = flat ? new FlatAdam(flat.length, { learningRate: LEARNING_RATE, epsilon: tf.backend().epsilon() }) : undefined;
  const times: number[] = [];
  const cpuTimes: number[] = [];
  let loss = NaN;
  try {
    for (let i = 0; i < warmup + steps; i++) {
      if (i === warmup) timer?.clear();
      const t0 = performance.now();
      const c0 = process.cpuUsage();
      if (parallel) {
        loss = await parallel.step(flat!, flatAdam!, data.x, data.y, B, 0);
      } else {
        const cost = opt.minimize(() => segmentationLoss(unetLogits(model, x), y, { diceWeight: 0 }), true, model.params)!;
        loss = (await cost.data())[0];
        cost.dispose();
      }
      if (i >= warmup) {
        times.push(performance.now() - t0);
        const c = process.cpuUsage(c0);
        cpuTimes.push((c.user + c.system) / 1000);
      }
    }
  } finally {
    await parallel?.close();
  }
  opt.dispose();
  tf.dispose([x, y]);
  const params = countParams(model);
  disposeUNet(model);
  if (timer) {
    const rows = [...timer].sort((a, b) => b[1].ms - a[1].ms);
    const total = rows.reduce((s, [, e]) => s + e.ms, 0) / steps;
    console.error(`profile of ${v.id}: ms/step per kernel (top level; nested kernel calls count in their caller), median step ${median(times).toFixed(0)} ms`);
    for (const [name, e] of rows.slice(0, 15)) {
      console.error(`  ${name.padEnd(22)} ${(e.ms / steps).toFixed(1).padStart(7)} ms  ${(e.calls / steps).toFixed(0).padStart(4)} calls  ${((100 * e.ms) / steps / total).toFixed(0).padStart(3)}%`);
    }
    console.error(`  ${'all kernels'.padEnd(22)} ${total.toFixed(1).padStart(7)} ms`);
  }
  return {
    ...base,
    threads: v.workers ?? 1,
    ok: true,
    msPerStepMedian: median(times),
    cpuMsPerStepMedian: median(cpuTimes),
    msPerStepMin: Math.min(...times),
    msPerStepMax: Math.max(...times),
    steps,
    params,
    finalLoss: loss,
  };
}

/** The copied reference script, next to the sources (tsc does not copy .py files into dist). */
export function torchScriptPath(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  for (const p of [path.join(here, 'peers/unet_torch.py'), path.join(here, '../../src/bench/peers/unet_torch.py')]) {
    if (existsSync(p)) return p;
  }
  throw new Error(`unet_torch.py not found next to ${here} or in shared/src/bench/peers/`);
}

/** PyTorch runs for the given thread counts; `ok: false` rows say why when torch is missing. */
function runTorch(
  python: string,
  threads: number[],
  steps: number,
  warmup: number,
  tag = '',
  idSuffix = tag ? '-again' : '',
  env: NodeJS.ProcessEnv = process.env,
): { version?: string; rows: StepResult[] } {
  const label = (t: number) => `PyTorch CPU, ${t} thread${t > 1 ? 's' : ''}${tag}`;
  const id = (t: number) => `torch-${t}${idSuffix}`;
  const failed = (why: string) => ({ rows: threads.map((t) => ({ id: id(t), label: label(t), threads: t, ok: false, why })) });
  const probe = spawnSync(python, ['-c', 'import torch'], { encoding: 'utf8' });
  if (probe.error != null || probe.status !== 0) {
    return failed(probe.error != null ? `${python} not runnable (${probe.error.message})` : `\`${python} -c 'import torch'\` failed (install Debian's python3-torch: apt-get install python3-torch)`);
  }
  const args = ['--threads', ...threads.map(String), '--steps', String(steps), '--warmup', String(warmup)];
  const r = spawnSync(python, [torchScriptPath(), ...args], { encoding: 'utf8', timeout: 600_000, env });
  if (r.status !== 0) return failed(`unet_torch.py exited with ${r.status ?? r.signal}: ${(r.stderr ?? '').trim().split('\n').at(-1)}`);
  const lines = r.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, number | string | boolean>);
  const version = String(lines[0].torch);
  const rows = lines.slice(1).map((j): StepResult => ({
    id: id(Number(j.threads)),
    label: label(Number(j.threads)),
    threads: Number(j.threads),
    ok: true,
    msPerStepMedian: Number(j.ms_per_step_median),
    msPerStepMin: Number(j.ms_per_step_min),
    msPerStepMax: Number(j.ms_per_step_max),
    cpuMsPerStepMedian: j.cpu_ms_per_step_median == null ? undefined : Number(j.cpu_ms_per_step_median),
    steps,
    params: Number(j.params),
    finalLoss: Number(j.final_loss),
  }));
  return { version, rows };
}

/** Runs one tfjs variant in a child process; `notes` collects what it wrote to stderr (profiles, warnings). */
function runChild(v: TfjsVariant, steps: number, warmup: number, profile: boolean, notes: string[]): StepResult {
  const args = [fileURLToPath(import.meta.url), '--child', v.id, '--steps', String(steps), '--warmup', String(warmup)];
  if (profile) args.push('--profile');
  const r = spawnSync(process.execPath, args, { encoding: 'utf8', timeout: 900_000, stdio: ['ignore', 'pipe', 'pipe'] });
  // Drop tfjs' "install tfjs-node" banner (the table says whether tensorflow was available).
  const stderr = (r.stderr ?? '').replace(/=+\nHi, looks like you are running TensorFlow\.js in Node\.js[^\n]*\n=+\n?/g, '').trim();
  if (stderr !== '') notes.push(`[${v.id}] ${stderr}`);
  const last = (r.stdout ?? '').trim().split('\n').at(-1) ?? '';
  try {
    return JSON.parse(last) as StepResult;
  } catch {
    const err = (r.stderr ?? '').trim().split('\n').filter(Boolean).at(-1) ?? '';
    return { id: v.id, label: v.label, ok: false, why: `child exited with ${r.status ?? r.signal}: ${err}` };
  }
}

const fmt = (x: number | undefined, d: number) => (x == null || !Number.isFinite(x) ? '-' : x.toFixed(d));

export interface TableOptions {
  steps: number;
  warmup: number;
  cpuSteps: number;
  /** Run the pure-JS cpu backend too (seconds per step). */
  cpu?: boolean;
  only?: string[];
  profile: boolean;
  python: string;
}

/** What `--json` prints as its last line. */
export interface TableSummary {
  rows: StepResult[];
  /** wasm with 2 data-parallel workers ÷ PyTorch with 2 threads, wall ms/step (issue 11's target: ≤ 1). */
  equalThreadsRatio?: number;
  /** The same with CPU ms/step (all threads of each process). */
  equalThreadsCpuRatio?: number;
  torch1ThreadMsPerStep?: number;
  /** The faster of PyTorch 2 threads with the default (active) and the passive OpenMP wait. */
  torch2ThreadsMsPerStep?: number;
  /** Which of the two that was: 'torch-2' or 'torch-2-passive'. */
  torch2ThreadsRow?: string;
  wasm1ThreadMsPerStep?: number;
  wasm2WorkersMsPerStep?: number;
  torchVersion?: string;
  machine: string;
  cores: number;
  loadAverageStart: number[];
  loadAverageEnd: number[];
  steps: number;
  warmup: number;
  wallSeconds: number;
}

const ratioOf = (x: number | undefined, y: number | undefined) => (x != null && y != null && y > 0 ? x / y : undefined);

/** Runs every variant and prints the table; returns its rows and the summary of `--json`. */
export function runTable(o: TableOptions): TableSummary {
  const t0 = performance.now();
  const named = (id: string) => o.only?.includes(id) === true || (o.only?.includes('torch') === true && id.startsWith('torch'));
  const want = (id: string, slow = false) => (o.only == null ? !slow || o.cpu === true : named(id));
  const cpus = os.cpus();
  const load = () => os.loadavg().map((l) => Number(l.toFixed(2)));
  const loadStart = load();
  const machine = `${cpus[0]?.model ?? 'unknown CPU'}, ${os.availableParallelism()} logical cores; ${os.platform()} ${os.release()}; node ${process.version}`;
  console.log(
    `U-Net training throughput: ${REFERENCE_NET.size}x${REFERENCE_NET.size}, batch ${REFERENCE_BATCH}, ` +
      `${REFERENCE_NET.inChannels} in-channels, ${REFERENCE_NET.nClasses} classes, base ${REFERENCE_NET.base}, depth ${REFERENCE_NET.depth}, ` +
      `Adam lr ${LEARNING_RATE}, categorical cross-entropy`,
  );
  console.log(`machine: ${machine}; ${new Date().toISOString()}`);
  console.log(`load average (1/5/15 min) at start: ${loadStart.join(' ')}`);
  console.log(`median of ${o.steps} steps after ${o.warmup} warm-up${want('cpu', true) ? ` (cpu: ${o.cpuSteps} after 1)` : ''}\n`);

  const rows: StepResult[] = [];
  const notes: string[] = [];
  let torchVersion: string | undefined;
  if (want('torch-1') || want('torch-2')) {
    const t = runTorch(
      o.python,
      [1, 2].filter((n) => want(`torch-${n}`)),
      o.steps,
      o.warmup,
    );
    torchVersion = t.version;
    rows.push(...t.rows);
    // OpenMP threads spin while they wait for each other (libgomp's default active wait): on a
    // loaded machine a spinning thread holds a core the other thread needs, and 2-thread steps
    // collapse. The passive-wait run is PyTorch's better configuration there; the equal-threads
    // ratio is taken against the faster of the two.
    if (want('torch-2') && torchVersion != null) {
      rows.push(...runTorch(o.python, [2], o.steps, o.warmup, ', OMP_WAIT_POLICY=PASSIVE', '-passive', { ...process.env, OMP_WAIT_POLICY: 'PASSIVE' }).rows);
    }
  }
  for (const v of TFJS_VARIANTS) {
    if (!want(v.id, v.slow)) continue;
    rows.push(v.slow ? runChild(v, o.cpuSteps, 1, false, notes) : runChild(v, o.steps, o.warmup, false, notes));
  }
  // The per-kernel timer wraps every kernel, so the profiles get their own runs, outside the table:
  // the kernels before issue 11 and the default, one thread each.
  if (o.profile) {
    for (const id of ['wasm-prev', 'wasm']) {
      const v = TFJS_VARIANTS.find((t) => t.id === id)!;
      runChild(v, Math.min(o.steps, 5), 1, true, notes);
    }
  }
  if (want('torch-1') && torchVersion != null) rows.push(...runTorch(o.python, [1], o.steps, o.warmup, ' (again, at the end)').rows);

  const ok = (id: string) => rows.find((r) => r.id === id && r.ok);
  const t2Both = [ok('torch-2'), ok('torch-2-passive')].filter((r): r is StepResult => r != null);
  const t1 = ok('torch-1'),
    // PyTorch with 2 threads in its faster wait policy of this run (the stronger reference).
    t2 = t2Both.sort((a, b) => a.msPerStepMedian! - b.msPerStepMedian!)[0],
    t1End = ok('torch-1-again');
  for (const r of rows) {
    if (!r.ok) continue;
    r.xTorch1 = ratioOf(r.msPerStepMedian, t1?.msPerStepMedian);
    r.xTorch2 = ratioOf(r.msPerStepMedian, t2?.msPerStepMedian);
    r.cpuXTorch1 = ratioOf(r.cpuMsPerStepMedian, t1?.cpuMsPerStepMedian);
    r.cpuXTorch2 = ratioOf(r.cpuMsPerStepMedian, t2?.cpuMsPerStepMedian);
  }
  const W = 66;
  console.log(`${'variant'.padEnd(W)} | thr | wall ms/step median (min-max) | CPU ms/step | x PyTorch-1 wall (end) | x PyTorch-2 wall | x PyTorch-1 CPU | x PyTorch-2 CPU`);
  console.log(`${'-'.repeat(W)}-|-----|-------------------------------|-------------|------------------------|------------------|-----------------|----------------`);
  for (const r of rows) {
    if (!r.ok) {
      console.log(`${r.label.padEnd(W)} | ${String(r.threads ?? '-').padStart(3)} | skipped: ${r.why}`);
      continue;
    }
    const ms = r.msPerStepMedian!;
    const range = `${fmt(ms, 0)} (${fmt(r.msPerStepMin, 0)}-${fmt(r.msPerStepMax, 0)})`;
    const x1 = `${fmt(r.xTorch1, 2)} (${fmt(ratioOf(ms, t1End?.msPerStepMedian), 2)})`;
    console.log(
      `${r.label.padEnd(W)} | ${String(r.threads ?? '-').padStart(3)} | ${range.padStart(29)} | ${fmt(r.cpuMsPerStepMedian, 0).padStart(11)} | ` +
        `${x1.padStart(22)} | ${fmt(r.xTorch2, 2).padStart(16)} | ${fmt(r.cpuXTorch1, 2).padStart(15)} | ${fmt(r.cpuXTorch2, 2).padStart(14)}`,
    );
  }
  const w1 = ok('wasm'),
    w2 = ok('wasm-workers-2');
  const summary: TableSummary = {
    rows,
    equalThreadsRatio: ratioOf(w2?.msPerStepMedian, t2?.msPerStepMedian),
    equalThreadsCpuRatio: ratioOf(w2?.cpuMsPerStepMedian, t2?.cpuMsPerStepMedian),
    torch1ThreadMsPerStep: t1?.msPerStepMedian,
    torch2ThreadsMsPerStep: t2?.msPerStepMedian,
    torch2ThreadsRow: t2?.id,
    wasm1ThreadMsPerStep: w1?.msPerStepMedian,
    wasm2WorkersMsPerStep: w2?.msPerStepMedian,
    torchVersion,
    machine,
    cores: os.availableParallelism(),
    loadAverageStart: loadStart,
    loadAverageEnd: load(),
    steps: o.steps,
    warmup: o.warmup,
    wallSeconds: Number(((performance.now() - t0) / 1000).toFixed(1)),
  };
  console.log(`\nload average at end: ${summary.loadAverageEnd.join(' ')}; the run took ${summary.wallSeconds.toFixed(0)} s`);
  if (summary.equalThreadsRatio != null) {
    console.log(
      `equal threads: wasm + 2 workers ${fmt(summary.wasm2WorkersMsPerStep, 0)} ms/step vs PyTorch 2 threads (${summary.torch2ThreadsRow}) ${fmt(summary.torch2ThreadsMsPerStep, 0)} ms/step = ` +
        `${summary.equalThreadsRatio.toFixed(2)}x wall (${fmt(summary.equalThreadsCpuRatio, 2)}x CPU)`,
    );
  }
  if (torchVersion) {
    console.log(
      `PyTorch ${torchVersion} via ${o.python}. x PyTorch-N = ms/step ÷ PyTorch N-thread ms/step of the same run (lower is better); ` +
        'x PyTorch-2 is against the faster of the two 2-thread rows. In brackets ÷ the last row (PyTorch 1 thread again), so the spread shows how much the load drifted. CPU ms/step counts all ' +
        'threads of the process (workers spend more CPU for less wall time); thr = threads doing the arithmetic.',
    );
  } else if (t1 == null) console.log('no PyTorch reference in this run, so no ratios');
  for (const n of notes) console.log(`\n${n}`);
  return summary;
}

async function main(): Promise<void> {
  const { values: a } = parseArgs({
    options: {
      steps: { type: 'string', default: '10' },
      warmup: { type: 'string', default: '2' },
      'cpu-steps': { type: 'string', default: '2' },
      cpu: { type: 'boolean', default: false },
      only: { type: 'string' },
      profile: { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
      python: { type: 'string', default: '/usr/bin/python3' },
      child: { type: 'string' },
    },
  });
  const steps = Number(a.steps),
    warmup = Number(a.warmup),
    cpuSteps = Number(a['cpu-steps']);
  if (!(steps >= 1 && warmup >= 0 && cpuSteps >= 1)) throw new Error('--steps and --cpu-steps must be ≥ 1, --warmup ≥ 0');
  if (a.child != null) {
    const v = TFJS_VARIANTS.find((t) => t.id === a.child);
    if (v == null) throw new Error(`unknown variant ${a.child}; one of ${TFJS_VARIANTS.map((t) => t.id).join(', ')}`);
    const r = await runTfjsChild(v, steps, warmup, a.profile);
    process.stdout.write(`${JSON.stringify(r)}\n`);
    return;
  }
  const known = [...TFJS_VARIANTS.map((v) => v.id), 'torch', 'torch-1', 'torch-2'];
  const only = a.only
    ?.split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const w of only ?? []) if (!known.includes(w)) throw new Error(`--only: unknown variant '${w}'; known: ${known.join(', ')}`);
  const summary = runTable({ steps, warmup, cpuSteps, cpu: a.cpu, only, profile: a.profile, python: a.python });
  if (a.json) console.log(JSON.stringify(summary));
}

if (process.argv[1] != null && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
