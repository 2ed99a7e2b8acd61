/**
 * Is there a WebGPU adapter on this machine, and if not, why not? For `twinfed site doctor`.
 *
 * WebGPU in Node comes from the optional `webgpu` npm package (Dawn's dawn.node, a 21 MB
 * native binary per platform; on Linux it dlopens libvulkan.so.1, which needs a Vulkan driver
 * (ICD): on an NVIDIA server the driver's nvidia_icd.json). It is never a dependency of the
 * product: `npm run setup:webgpu` installs it without saving, and this module imports it
 * dynamically, so nothing here is required to train.
 *
 * Twinfed does not train on WebGPU (tfjs-backend-webgpu): the site trains on the backend
 * selectBackend() picks. This probe only reports what a WebGPU run would get, so the doctor
 * can say "a GPU adapter is there, not used" or why there is none; the measurements of
 * training on it live in tools/gpu (docs/gpu.md).
 */
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';

/** What Dawn's `webgpu` package exports (the part used here). */
export interface DawnModule {
  create(options: string[]): DawnGpu;
  globals: Record<string, unknown>;
}

export interface DawnGpu {
  requestAdapter(options?: Record<string, unknown>): Promise<DawnAdapter | null>;
}

export interface DawnAdapter {
  info?: { vendor?: string; architecture?: string; device?: string; description?: string; isFallbackAdapter?: boolean };
}

export interface WebGpuAdapterInfo {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
}

export interface WebGpuProbe {
  /** A WebGPU adapter exists (Twinfed still does not train on it). */
  available: boolean;
  /** One line for `twinfed site doctor`. */
  why: string;
  adapter?: WebGpuAdapterInfo;
}

export interface ProbeOptions {
  /** Module to import (default `webgpu`); a path or file: URL also works. */
  specifier?: string;
  /** Loads the module instead of `import(specifier)` (a bundle that ships dawn.node next to itself). */
  load?: () => Promise<DawnModule>;
  /** Options for Dawn's create(), e.g. `backend=vulkan`. */
  dawnOptions?: string[];
  /** Options for requestAdapter (default high-performance). */
  adapterOptions?: Record<string, unknown>;
  /** Give up on requestAdapter after this long (default 10 s). */
  timeoutMs?: number;
}

const PACKAGE = 'webgpu';

function firstLine(err: unknown): string {
  const m = err instanceof Error ? err.message : String(err);
  return m.split('\n')[0];
}

/** True when `err` says the module itself is missing, not something it loads (dawn.node, a library). */
export function isMissingModule(err: unknown, specifier: string): boolean {
  const code = (err as { code?: string } | null)?.code;
  if (code !== 'ERR_MODULE_NOT_FOUND' && code !== 'MODULE_NOT_FOUND') return false;
  const m = err instanceof Error ? err.message : String(err);
  return m.includes(`'${specifier}'`) || m.includes(`package '${specifier}'`);
}

/** Vulkan loader and drivers (ICDs) Dawn could use on Linux, for the "no adapter" explanation. */
export function vulkanHint(env: NodeJS.ProcessEnv = process.env): string {
  if (process.platform !== 'linux') return `Dawn uses the platform's own GPU API on ${process.platform}`;
  const libDirs = ['/usr/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu', '/usr/lib64', '/usr/lib', '/usr/local/lib', '/lib/x86_64-linux-gnu', '/lib64'];
  for (const d of (env.LD_LIBRARY_PATH ?? '').split(':')) if (d !== '') libDirs.unshift(d);
  const loader = libDirs.map((d) => path.join(d, 'libvulkan.so.1')).find((p) => existsSync(p));
  const icdEnv = env.VK_DRIVER_FILES ?? env.VK_ICD_FILENAMES;
  const icds: string[] = [];
  if (icdEnv != null && icdEnv !== '') icds.push(...icdEnv.split(':').map((f) => path.basename(f)));
  else {
    for (const d of ['/etc/vulkan/icd.d', '/usr/share/vulkan/icd.d', '/usr/local/share/vulkan/icd.d']) {
      try {
        icds.push(...readdirSync(d).filter((f) => f.endsWith('.json')));
      } catch {
        /* no such folder */
      }
    }
  }
  const parts: string[] = [];
  parts.push(loader ? `Vulkan loader ${loader}` : 'no Vulkan loader (libvulkan.so.1 not found; Debian/Ubuntu: apt-get install libvulkan1)');
  if (icds.length === 0)
    parts.push(
      'no Vulkan driver (no ICD .json in /etc/vulkan/icd.d or /usr/share/vulkan/icd.d; NVIDIA: the driver ships nvidia_icd.json, containers need NVIDIA_DRIVER_CAPABILITIES to include graphics)',
    );
  else parts.push(`Vulkan drivers ${icds.join(', ')}${icds.some((f) => /nvidia/i.test(f)) ? '' : ' (none from NVIDIA)'}`);
  return parts.join('; ');
}

async function importDawn(specifier: string): Promise<DawnModule> {
  // A variable specifier: the package is optional and TypeScript must not need its types.
  const spec: string = specifier;
  const m = (await import(spec)) as Partial<DawnModule>;
  if (typeof m.create !== 'function') throw new Error(`${specifier} has no create() export: not Dawn's webgpu package`);
  return m as DawnModule;
}

function describe(info: DawnAdapter['info']): WebGpuAdapterInfo {
  return { vendor: info?.vendor ?? '', architecture: info?.architecture ?? '', device: info?.device ?? '', description: info?.description ?? '' };
}

/**
 * Probes for a WebGPU adapter through Dawn. Never throws; `why` says what was found or
 * what is missing. The Dawn instance is dropped before returning (a live one keeps Node
 * from exiting).
 */
export async function probeWebGpu(opts: ProbeOptions = {}): Promise<WebGpuProbe> {
  const specifier = opts.specifier ?? PACKAGE;
  let dawn: DawnModule;
  try {
    dawn = await (opts.load ?? (() => importDawn(specifier)))();
  } catch (err) {
    if (isMissingModule(err, specifier)) {
      return { available: false, why: `\`${specifier}\` (Dawn's WebGPU for Node) not installed (\`npm run setup:webgpu\` installs it to probe; see docs/gpu.md)` };
    }
    return { available: false, why: `\`${specifier}\` failed to load: ${firstLine(err)}` };
  }
  let timer: NodeJS.Timeout | undefined;
  try {
    const gpu = dawn.create(opts.dawnOptions ?? []);
    const timeoutMs = opts.timeoutMs ?? 10_000;
    const timeout = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), timeoutMs);
    });
    const adapter = await Promise.race([gpu.requestAdapter(opts.adapterOptions ?? { powerPreference: 'high-performance' }), timeout]);
    if (adapter === 'timeout') return { available: false, why: `Dawn did not answer requestAdapter within ${timeoutMs} ms` };
    if (adapter == null) {
      const options = opts.dawnOptions?.length ? ` (Dawn options ${opts.dawnOptions.join(' ')})` : '';
      return { available: false, why: `Dawn found no WebGPU adapter${options}: ${vulkanHint()}` };
    }
    const info = describe(adapter.info);
    const name = [info.description || info.device, info.vendor && `vendor ${info.vendor}`, info.architecture && `architecture ${info.architecture}`].filter(Boolean).join(', ');
    const fallback = adapter.info?.isFallbackAdapter ? ' (a software fallback adapter)' : '';
    return { available: true, why: `adapter ${name || 'unnamed'}${fallback}`, adapter: info };
  } catch (err) {
    return { available: false, why: `Dawn failed: ${firstLine(err)}` };
  } finally {
    if (timer) clearTimeout(timer);
  }
}

let cached: Promise<WebGpuProbe> | undefined;

/** probeWebGpu() once per process (the site console's IT page asks on every visit). */
export function webGpuStatus(): Promise<WebGpuProbe> {
  cached ??= probeWebGpu();
  return cached;
}
