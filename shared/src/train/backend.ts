/**
 * Picks the fastest tfjs backend that can train the U-Net on this machine.
 *
 * Order: `tensorflow` (libtensorflow through @tensorflow/tfjs-node-gpu or
 * @tensorflow/tfjs-node, installed only on servers by `npm run setup:gpu`),
 * then `wasm` (XNNPACK SIMD build plus Twinfed's training kernels), then `cpu`
 * (pure JavaScript). TWINFED_BACKEND=tensorflow|wasm|cpu forces a first choice;
 * if it cannot start we fall through the same order and say why.
 *
 * Threads: tfjs-backend-wasm 4.22 reports WASM_HAS_MULTITHREAD_SUPPORT=false in
 * Node on purpose (tensorflow/tfjs#3830). Forcing the flag makes the
 * threaded-SIMD build try to start its pthread pool from a `blob:` URL, which
 * Node's worker_threads reject (ERR_WORKER_PATH), so backend init fails. We use
 * the single-threaded SIMD build: sites share a 2-core box in the demo, so
 * intra-op threads would only compete with the other processes anyway.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import { registerCpuTrainingKernels, registerWasmTrainingKernels } from './wasm-kernels.js';

export type BackendName = 'tensorflow' | 'wasm' | 'cpu';

export interface BackendAttempt {
  name: string;
  ok: boolean;
  why: string;
}

export interface BackendChoice {
  name: BackendName;
  /** One line for `twinfed site doctor`. */
  reason: string;
  tried: BackendAttempt[];
}

const ORDER: BackendName[] = ['tensorflow', 'wasm', 'cpu'];
const NATIVE_PACKAGES = ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node'];

function message(err: unknown): string {
  const m = err instanceof Error ? err.message : String(err);
  return m.split('\n')[0];
}

function isNotInstalled(err: unknown): boolean {
  const code = (err as { code?: string } | null)?.code;
  return code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND';
}

/**
 * Folder holding the .wasm binaries, resolved from the installed package; in a bundle
 * without node_modules (tools/gpu's device bundle), the folder of this code if the
 * binaries were copied next to it.
 */
export function wasmBinaryDir(): string {
  const require = createRequire(import.meta.url);
  try {
    return path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm')) + path.sep;
  } catch (err) {
    const here = path.dirname(fileURLToPath(import.meta.url));
    if (existsSync(path.join(here, 'tfjs-backend-wasm-simd.wasm'))) return here + path.sep;
    throw err;
  }
}

let wasmPathsSet = false;

async function tryTensorflow(tried: BackendAttempt[]): Promise<boolean> {
  for (const pkg of NATIVE_PACKAGES) {
    try {
      // A variable specifier: the packages are optional and TypeScript must not need their types.
      const spec: string = pkg;
      await import(spec);
      if (!(await tf.setBackend('tensorflow'))) throw new Error(`${pkg} loaded but the tensorflow backend did not initialise`);
      tried.push({ name: 'tensorflow', ok: true, why: `${pkg} loaded` });
      return true;
    } catch (err) {
      tried.push({
        name: 'tensorflow',
        ok: false,
        why: isNotInstalled(err) ? `${pkg} not installed` : `${pkg} failed: ${message(err)}`,
      });
    }
  }
  return false;
}

async function tryWasm(tried: BackendAttempt[]): Promise<boolean> {
  try {
    registerWasmTrainingKernels();
    if (!wasmPathsSet && tf.findBackend('wasm') == null) {
      setWasmPaths(wasmBinaryDir());
      wasmPathsSet = true;
    }
    if (!(await tf.setBackend('wasm'))) throw new Error('wasm backend did not initialise (see warning above)');
    const simd = await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT');
    tried.push({ name: 'wasm', ok: true, why: `${simd ? 'SIMD' : 'scalar'} build, 1 thread` });
    return true;
  } catch (err) {
    tried.push({ name: 'wasm', ok: false, why: message(err) });
    return false;
  }
}

async function tryCpu(tried: BackendAttempt[]): Promise<boolean> {
  registerCpuTrainingKernels();
  const ok = await tf.setBackend('cpu');
  tried.push({ name: 'cpu', ok, why: ok ? "pure JavaScript kernels with Twinfed's Conv2DBackpropFilter" : 'cpu backend did not initialise' });
  return ok;
}

function parsePreference(v: string | undefined): BackendName | undefined {
  if (v == null || v === '') return undefined;
  const s = v.trim().toLowerCase();
  if ((ORDER as string[]).includes(s)) return s as BackendName;
  throw new Error(`TWINFED_BACKEND must be one of ${ORDER.join(', ')}; got '${v}'`);
}

function explain(name: BackendName, tried: BackendAttempt[], forced: BackendName | undefined): string {
  const failures = tried.filter((t) => !t.ok).map((t) => t.why);
  const nativeMissing = failures.filter((w) => w.includes('tfjs-node'));
  const why: string[] = [];
  if (forced != null && forced !== name) why.push(`TWINFED_BACKEND/prefer=${forced} unavailable`);
  if (forced != null && forced === name) why.push(`forced by TWINFED_BACKEND/prefer`);
  if (name !== 'tensorflow' && nativeMissing.length > 0 && forced !== name) {
    why.push(`${nativeMissing[0]} (run \`npm run setup:gpu\` on a server with CUDA)`);
  }
  const wasmFail = tried.find((t) => t.name === 'wasm' && !t.ok);
  if (name === 'cpu' && wasmFail) why.push(`wasm failed: ${wasmFail.why}`);
  const using = {
    tensorflow: `using native TensorFlow (${tried.find((t) => t.ok)?.why ?? ''})`,
    wasm: `using WebAssembly (${tried.find((t) => t.name === 'wasm' && t.ok)?.why ?? 'SIMD'}) with Twinfed's training kernels`,
    cpu: 'using the pure-JavaScript cpu backend (slow)',
  }[name];
  return `${name}: ${why.length > 0 ? why.join('; ') + '; ' : ''}${using}`;
}

/**
 * Selects and activates a tfjs backend. `prefer` (or env TWINFED_BACKEND) is tried
 * first; the rest follow in the order tensorflow, wasm, cpu.
 */
export async function selectBackend(prefer?: BackendName): Promise<BackendChoice> {
  const forced = prefer ?? parsePreference(process.env.TWINFED_BACKEND);
  const order = forced != null ? [forced, ...ORDER.filter((n) => n !== forced)] : ORDER;
  const tried: BackendAttempt[] = [];
  const attempt = { tensorflow: tryTensorflow, wasm: tryWasm, cpu: tryCpu };
  for (const name of order) {
    if (await attempt[name](tried)) {
      await tf.ready();
      return { name, reason: explain(name, tried, forced), tried };
    }
  }
  throw new Error(`no tfjs backend could start: ${tried.map((t) => `${t.name}: ${t.why}`).join('; ')}`);
}
