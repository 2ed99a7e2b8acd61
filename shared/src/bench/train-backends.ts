/**
 * `npm run bench:train`: U-Net training throughput of every available tfjs backend
 * against PyTorch on the same machine, in one run, as one table.
 *
 *   node shared/dist/bench/train-backends.js [--steps 10] [--warmup 2] [--cpu-steps 2]
 *       [--only wasm,torch-1,...] [--profile] [--python /usr/bin/python3]
 *
 * Network, batch, input and optimiser are those of shared/src/bench/peers/unet_torch.py
 * (a copy of the lead's reference): 2D U-Net, 2 in-channels, 4 classes, base 8, depth 2
 * (29 420 parameters), 64x64 inputs, batch 16, Adam lr 1e-3, softmax categorical
 * cross-entropy (segmentationLoss with diceWeight 0), fixed random data. A step is
 * forward + backward + Adam update, timed until the loss value is on the CPU; the table
 * reports the median over --steps after --warmup untimed steps.
 *
 * --profile adds, after the table, per-kernel ms/step of the default wasm variant from
 * an extra run (the timer wraps every kernel, so it is not one of the table's runs).
 *
 * Every variant runs in its own child process (tfjs kernels are process-global, and
 * one variant's heap must not slow the next). Ratios are to PyTorch with 1 thread
 * measured in the same run; PyTorch 1 thread is measured first and again last, so the
 * drift of a shared machine's load shows in the table.
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
  slow?: boolean;
}

const TFJS_VARIANTS: TfjsVariant[] = [
  { id: 'tensorflow', label: 'tfjs tensorflow (libtensorflow)', backend: 'tensorflow' },
  {
    id: 'wasm-stock',
    label: 'tfjs wasm, stock kernels (+ dW as dilated conv, which wasm lacks)',
    backend: 'wasm',
    kernels: { backpropFilterMatMul: false, backpropInput: false, maxPoolGrad: false },
  },
  {
    id: 'wasm-v1',
    label: 'tfjs wasm + Twinfed kernels v1 (dilated-conv dW, conv dx)',
    backend: 'wasm',
    kernels: { backpropFilterMatMul: false, backpropInput: true, maxPoolGrad: false },
  },
  { id: 'wasm', label: 'tfjs wasm + Twinfed kernels (v1 + MaxPoolGrad, bias Sum): default', backend: 'wasm', kernels: DEFAULT_WASM_KERNELS },
  {
    id: 'wasm-matmul-dw',
    label: 'tfjs wasm + Twinfed kernels, dW as im2col MatMul (opt-in)',
    backend: 'wasm',
    kernels: { ...DEFAULT_WASM_KERNELS, backpropFilterMatMul: true },
  },
  { id: 'wasm-workers-2', label: 'tfjs wasm + Twinfed default kernels, 2 data-parallel workers', backend: 'wasm', kernels: DEFAULT_WASM_KERNELS, workers: 2 },
  { id: 'cpu', label: "tfjs cpu (pure JS, Twinfed's dW)", backend: 'cpu', slow: true },
];

export interface StepResult {
  id: string;
  label: string;
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
function runTorch(python: string, threads: number[], steps: number, warmup: number, tag = ''): { version?: string; rows: StepResult[] } {
  const label = (t: number) => `PyTorch CPU, ${t} thread${t > 1 ? 's' : ''}${tag}`;
  const probe = spawnSync(python, ['-c', 'import torch'], { encoding: 'utf8' });
  if (probe.error != null || probe.status !== 0) {
    const why = probe.error != null ? `${python} not runnable (${probe.error.message})` : `\`${python} -c 'import torch'\` failed (install Debian's python3-torch: apt-get install python3-torch)`;
    return { rows: threads.map((t) => ({ id: `torch-${t}${tag ? '-again' : ''}`, label: label(t), ok: false, why })) };
  }
  const args = ['--threads', ...threads.map(String), '--steps', String(steps), '--warmup', String(warmup)];
  const script = torchScriptPath();
  const runScript = (cpuClock: boolean) => {
    // The script times steps with time.perf_counter; for CPU time it gets time.process_time
    // (all threads of the process) in its place, the script itself unchanged.
    const code =
      `import runpy, sys, time\n${cpuClock ? 'time.perf_counter = time.process_time\n' : ''}` +
      `sys.argv = [${JSON.stringify(script)}] + ${JSON.stringify(args)}\nrunpy.run_path(${JSON.stringify(script)}, run_name='__main__')\n`;
    const r = spawnSync(python, ['-c', code], { encoding: 'utf8', timeout: 600_000 });
    if (r.status !== 0) throw new Error(`unet_torch.py exited with ${r.status ?? r.signal}: ${(r.stderr ?? '').trim().split('\n').at(-1)}`);
    return r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, number | string | boolean>);
  };
  let lines, cpuLines;
  try {
    lines = runScript(false);
    cpuLines = runScript(true);
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    return { rows: threads.map((t) => ({ id: `torch-${t}${tag ? '-again' : ''}`, label: label(t), ok: false, why })) };
  }
  const version = String(lines[0].torch);
  const rows = lines.slice(1).map((j, k): StepResult => ({
    id: `torch-${j.threads}${tag ? '-again' : ''}`,
    label: label(Number(j.threads)),
    ok: true,
    msPerStepMedian: Number(j.ms_per_step_median),
    msPerStepMin: Number(j.ms_per_step_min),
    msPerStepMax: Number(j.ms_per_step_max),
    cpuMsPerStepMedian: Number(cpuLines[k + 1]?.ms_per_step_median),
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

const fmt = (x: number | undefined, d: number) => (x == null ? '-' : x.toFixed(d));

export interface TableOptions {
  steps: number;
  warmup: number;
  cpuSteps: number;
  only?: string[];
  profile: boolean;
  python: string;
}

/** Runs every variant and prints the table; returns its rows. */
export function runTable(o: TableOptions): StepResult[] {
  const want = (id: string) => o.only == null || o.only.includes(id) || (o.only.includes('torch') && id.startsWith('torch'));
  const cpus = os.cpus();
  const load = () =>
    os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(' ');
  const loadStart = load();
  console.log(
    `U-Net training throughput: ${REFERENCE_NET.size}x${REFERENCE_NET.size}, batch ${REFERENCE_BATCH}, ` +
      `${REFERENCE_NET.inChannels} in-channels, ${REFERENCE_NET.nClasses} classes, base ${REFERENCE_NET.base}, depth ${REFERENCE_NET.depth}, ` +
      `Adam lr ${LEARNING_RATE}, categorical cross-entropy`,
  );
  console.log(`machine: ${cpus[0]?.model ?? 'unknown CPU'}, ${os.availableParallelism()} logical cores; ${os.platform()} ${os.release()}; ` + `node ${process.version}; ${new Date().toISOString()}`);
  console.log(`load average (1/5/15 min) at start: ${loadStart}`);
  console.log(`median of ${o.steps} steps after ${o.warmup} warm-up (cpu: ${o.cpuSteps} after 1)\n`);

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
  }
  for (const v of TFJS_VARIANTS) {
    if (!want(v.id)) continue;
    rows.push(v.slow ? runChild(v, o.cpuSteps, 1, false, notes) : runChild(v, o.steps, o.warmup, false, notes));
  }
  // The per-kernel timer wraps every kernel, so the profile gets its own run, outside the table.
  const wasm = TFJS_VARIANTS.find((v) => v.id === 'wasm');
  if (o.profile && wasm) runChild(wasm, Math.min(o.steps, 5), 1, true, notes);
  if (want('torch-1') && torchVersion != null) rows.push(...runTorch(o.python, [1], o.steps, o.warmup, ' (again, at the end)').rows);

  const ref = rows.find((r) => r.id === 'torch-1' && r.ok);
  const end = rows.find((r) => r.id === 'torch-1-again' && r.ok);
  const ratio = (x: number | undefined, y: number | undefined) => (x != null && y != null && y > 0 ? (x / y).toFixed(2) : '-');
  console.log(`${'variant'.padEnd(68)} | wall ms/step median (min-max) | images/s | CPU ms/step | x PyTorch-1 wall (end run) | x PyTorch-1 CPU`);
  console.log(`${'-'.repeat(68)}-|-------------------------------|----------|-------------|---------------------------|----------------`);
  for (const r of rows) {
    if (!r.ok) {
      console.log(`${r.label.padEnd(68)} | skipped: ${r.why}`);
      continue;
    }
    const ms = r.msPerStepMedian!;
    const range = `${fmt(ms, 0)} (${fmt(r.msPerStepMin, 0)}-${fmt(r.msPerStepMax, 0)})`;
    const wallRatio = `${ratio(ms, ref?.msPerStepMedian)} (${ratio(ms, end?.msPerStepMedian)})`;
    console.log(
      `${r.label.padEnd(68)} | ${range.padStart(29)} | ${fmt((REFERENCE_BATCH * 1000) / ms, 1).padStart(8)} | ` +
        `${fmt(r.cpuMsPerStepMedian, 0).padStart(11)} | ${wallRatio.padStart(25)} | ${ratio(r.cpuMsPerStepMedian, ref?.cpuMsPerStepMedian).padStart(15)}`,
    );
  }
  console.log(`\nload average at end: ${load()}`);
  if (torchVersion) {
    console.log(
      `PyTorch ${torchVersion} via ${o.python}. x PyTorch-1 = ms/step ÷ PyTorch 1-thread ms/step of the first torch run ` +
        '(lower is better); in brackets ÷ the last row, so the spread shows how much the load drifted. CPU ms/step counts all ' +
        'threads of the process (2 workers spend more CPU but less wall time).',
    );
  } else if (ref == null) console.log('no PyTorch reference in this run, so no ratios');
  for (const n of notes) console.log(`\n${n}`);
  return rows;
}

async function main(): Promise<void> {
  const { values: a } = parseArgs({
    options: {
      steps: { type: 'string', default: '10' },
      warmup: { type: 'string', default: '2' },
      'cpu-steps': { type: 'string', default: '2' },
      only: { type: 'string' },
      profile: { type: 'boolean', default: false },
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
  runTable({ steps, warmup, cpuSteps, only, profile: a.profile, python: a.python });
}

if (process.argv[1] != null && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
