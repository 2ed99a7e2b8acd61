// Builds tools/gpu/dist: the WebGPU training bench as one ESM bundle plus everything it needs
// on a machine with no registry and maybe no Node (docs/gpu.md). Run from tools/gpu after
// `npm ci` there: `npm run build` (or `node build.mjs`).
//
//   bench-webgpu.mjs        src/bench-webgpu.ts with tfjs-core, the wasm and webgpu backends, Twinfed's U-Net
//   parallel-worker.js      the data-parallel wasm worker (DataParallelTrainer loads it next to the bundle)
//   package.json            {"type":"module"} so the worker loads as ESM wherever the folder is copied
//   tfjs-backend-wasm*.wasm the wasm binaries (backend.ts finds them next to the bundle)
//   dawn.node.xz            Dawn for linux-x64 from the `webgpu` package (needs glibc >= 2.34, libvulkan.so.1 at run time)
//   node.xz                 this machine's Node (stripped), for a device without one; --no-node leaves it out
//   vklib/libvulkan.so.1.gz the Vulkan loader (Debian's libvulkan1), used only where the device has none
//   glibc/*.gz              glibc 2.36 + libstdc++ of this machine, used only where the device's glibc is older than dawn.node needs
//   BUILD.json              versions, sizes, sha256
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, realpathSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import * as esbuild from 'esbuild';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../..');
const dist = path.join(here, 'dist');
const withNode = !process.argv.includes('--no-node');
const LIMIT = 64 * 2 ** 20;

rmSync(dist, { recursive: true, force: true });
mkdirSync(dist, { recursive: true });

// One tfjs-core for the whole bundle: the webgpu backend (installed here) must register into the
// same engine as the U-Net code (root node_modules), or tf.setBackend('webgpu') finds nothing.
const rootRequire = createRequire(path.join(root, 'package.json'));
const tfjsCore = rootRequire.resolve('@tensorflow/tfjs-core');
const oneTfjsCore = {
  name: 'one-tfjs-core',
  setup(build) {
    build.onResolve({ filter: /^@tensorflow\/tfjs-core$/ }, () => ({ path: tfjsCore }));
  },
};

const banner = [
  "import { createRequire as __twfCreateRequire } from 'node:module';",
  "import { fileURLToPath as __twfFileURLToPath } from 'node:url';",
  "import { dirname as __twfDirname } from 'node:path';",
  'const require = __twfCreateRequire(import.meta.url);',
  'const __filename = __twfFileURLToPath(import.meta.url);',
  'const __dirname = __twfDirname(__filename);',
].join('\n');

const common = {
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  banner: { js: banner },
  plugins: [oneTfjsCore],
  legalComments: 'none',
  // tfjs-backend-cpu's package.json marks its Node build side-effect free, but importing it is what registers the cpu backend.
  ignoreAnnotations: true,
  logLevel: 'warning',
  // The CommonJS tfjs bundles probe for optional modules (node-fetch, worker_threads in a browser build) at run time.
  logOverride: { 'require-resolve-not-external': 'silent', 'unsupported-require-call': 'silent' },
  absWorkingDir: root,
};
await esbuild.build({ ...common, entryPoints: { 'bench-webgpu': path.join(here, 'src/bench-webgpu.ts') }, outExtension: { '.js': '.mjs' }, outdir: dist });
await esbuild.build({ ...common, entryPoints: { 'parallel-worker': path.join(root, 'shared/src/train/parallel-worker.ts') }, outdir: dist });
writeFileSync(path.join(dist, 'package.json'), '{ "type": "module", "private": true }\n');

const wasmDir = path.dirname(rootRequire.resolve('@tensorflow/tfjs-backend-wasm'));
for (const f of ['tfjs-backend-wasm-simd.wasm', 'tfjs-backend-wasm.wasm']) copyFileSync(path.join(wasmDir, f), path.join(dist, f));

const gz = (src, dst) => writeFileSync(dst, gzipSync(readFileSync(src), { level: 9 }));
// The two large files as xz (node 33 -> 22 MB, dawn.node 7.3 -> 4.9 MB), so the bundle plus the repository fit the
// device tool's 64 MiB; run-device.sh unpacks them with xz or python3's lzma.
const xz = (src, dst) => writeFileSync(dst, execFileSync('xz', ['-9e', '-T2', '-c', src], { maxBuffer: 1 << 30 }));
const localRequire = createRequire(path.join(here, 'package.json'));
const webgpuDir = path.dirname(localRequire.resolve('webgpu/package.json'));
xz(path.join(webgpuDir, 'dist/linux-x64/dawn.node'), path.join(dist, 'dawn.node.xz'));

const sh = (cmd, args) => execFileSync(cmd, args, { encoding: 'utf8' }).trim();
let nodeVersion = null;
if (withNode) {
  if (process.platform !== 'linux' || process.arch !== 'x64') throw new Error('the Node binary in the bundle must be linux-x64: build on linux-x64 or pass --no-node');
  const stripped = path.join(dist, 'node.tmp');
  try {
    sh('strip', ['-o', stripped, process.execPath]);
  } catch {
    copyFileSync(process.execPath, stripped);
  }
  xz(stripped, path.join(dist, 'node.xz'));
  rmSync(stripped);
  nodeVersion = process.version;
}

// Shared libraries from this machine (Debian 12), each only a fallback the run script uses when the device lacks it.
function libPath(name) {
  const out = sh('ldconfig', ['-p']);
  const line = out.split('\n').find((l) => l.includes(`${name} (`) && l.includes('x86-64'));
  return line ? realpathSync(line.split('=>')[1].trim()) : null;
}
const missing = [];
const vk = libPath('libvulkan.so.1');
if (vk) {
  mkdirSync(path.join(dist, 'vklib'));
  gz(vk, path.join(dist, 'vklib/libvulkan.so.1.gz'));
} else missing.push('libvulkan.so.1 (apt-get install libvulkan1 before building)');
mkdirSync(path.join(dist, 'glibc'));
for (const name of ['libc.so.6', 'libm.so.6', 'libstdc++.so.6', 'libgcc_s.so.1', 'libdl.so.2', 'libpthread.so.0', 'librt.so.1', 'ld-linux-x86-64.so.2']) {
  const p = libPath(name);
  if (p) gz(p, path.join(dist, 'glibc', `${name}.gz`));
  else missing.push(name);
}

const files = [];
const walk = (d) => {
  for (const e of readdirSync(d)) {
    const p = path.join(d, e);
    if (statSync(p).isDirectory()) walk(p);
    else files.push({ file: path.relative(dist, p), bytes: statSync(p).size, sha256: createHash('sha256').update(readFileSync(p)).digest('hex') });
  }
};
walk(dist);
const total = files.reduce((s, f) => s + f.bytes, 0);
const pkg = (p) => JSON.parse(readFileSync(p, 'utf8')).version;
const info = {
  built: new Date().toISOString(),
  webgpu: pkg(path.join(webgpuDir, 'package.json')),
  tfjsBackendWebgpu: pkg(localRequire.resolve('@tensorflow/tfjs-backend-webgpu/package.json')),
  tfjsCore: pkg(rootRequire.resolve('@tensorflow/tfjs-core/package.json')),
  node: nodeVersion,
  glibc: sh('ldd', ['--version']).split('\n')[0],
  git: (() => {
    try {
      return sh('git', ['-C', root, 'rev-parse', '--short', 'HEAD']);
    } catch {
      return null;
    }
  })(),
  totalBytes: total,
  files,
};
writeFileSync(path.join(dist, 'BUILD.json'), `${JSON.stringify(info, null, 2)}\n`);
for (const f of files) console.log(`${(f.bytes / 2 ** 20).toFixed(2).padStart(7)} MiB  ${f.file}`);
console.log(`${(total / 2 ** 20).toFixed(2).padStart(7)} MiB  total in ${path.relative(root, dist)} (the device tool carries at most 64 MiB)`);
if (missing.length) console.log(`not in the bundle: ${missing.join(', ')}`);
if (total > LIMIT) {
  console.error('over 64 MiB: rebuild with --no-node if the device has Node');
  process.exit(1);
}
if (!existsSync(path.join(dist, 'bench-webgpu.mjs'))) process.exit(1);
