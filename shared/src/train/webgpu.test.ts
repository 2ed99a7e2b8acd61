import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { isMissingModule, probeWebGpu, vulkanHint } from './webgpu.js';

describe('probeWebGpu says why there is no WebGPU', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'twf-webgpu-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('without the webgpu package: not installed, and how to get it', async (t) => {
    const r = await probeWebGpu();
    if (r.available || !/not installed/.test(r.why)) return t.skip(`webgpu is installed here: ${r.why}`);
    assert.equal(r.available, false);
    assert.equal(r.adapter, undefined);
    assert.match(r.why, /^`webgpu` \(Dawn's WebGPU for Node\) not installed \(`npm run setup:webgpu`/);
  });

  it('a package that is there but whose dawn.node is missing is a load failure, not "not installed"', async () => {
    // The layout of the real package (index.js requires dist/<platform>-<arch>/dawn.node), without the binary.
    const pkg = join(dir, 'partial');
    mkdirSync(pkg);
    writeFileSync(join(pkg, 'package.json'), JSON.stringify({ name: 'webgpu', type: 'module', main: 'index.js' }));
    writeFileSync(
      join(pkg, 'index.js'),
      "import { createRequire } from 'node:module';\nconst require = createRequire(import.meta.url);\nexport const { create, globals } = require('./dist/linux-x64/dawn.node');\n",
    );
    const spec = pathToFileURL(join(pkg, 'index.js')).href;
    const r = await probeWebGpu({ specifier: spec });
    assert.equal(r.available, false);
    assert.match(r.why, /failed to load: Cannot find module '.*dawn\.node'/);
    assert.doesNotMatch(r.why, /not installed/);
  });

  it('a dawn.node that is not a loadable library: the dlopen error', async () => {
    const pkg = join(dir, 'corrupt');
    mkdirSync(join(pkg, 'dist'), { recursive: true });
    writeFileSync(join(pkg, 'dist', 'dawn.node'), 'not an ELF file, e.g. a truncated download');
    writeFileSync(join(pkg, 'index.mjs'), "import { createRequire } from 'node:module';\nexport const { create, globals } = createRequire(import.meta.url)('./dist/dawn.node');\n");
    const r = await probeWebGpu({ specifier: pathToFileURL(join(pkg, 'index.mjs')).href });
    assert.equal(r.available, false);
    assert.match(r.why, /failed to load: .*(invalid ELF header|not a valid|file too short|slice is not valid mach-o)/i);
  });

  it('a module that is not Dawn', async () => {
    const r = await probeWebGpu({ specifier: 'node:path' });
    assert.equal(r.available, false);
    assert.match(r.why, /no create\(\) export: not Dawn's webgpu package/);
  });

  it('Dawn without an adapter: names the Vulkan loader and drivers it could (not) find', async () => {
    // Dawn itself is not here; a GPU object that finds no adapter, as dawn.node's does without Vulkan.
    const r = await probeWebGpu({ load: async () => ({ create: () => ({ requestAdapter: async () => null }), globals: {} }) });
    assert.equal(r.available, false);
    assert.match(r.why, /^Dawn found no WebGPU adapter: /);
    if (process.platform === 'linux') assert.match(r.why, /Vulkan loader|libvulkan\.so\.1 not found/);
  });

  it('Dawn that never answers times out instead of hanging the doctor', async () => {
    const r = await probeWebGpu({ timeoutMs: 50, load: async () => ({ create: () => ({ requestAdapter: () => new Promise(() => {}) }), globals: {} }) });
    assert.equal(r.available, false);
    assert.match(r.why, /did not answer requestAdapter within 50 ms/);
  });

  it('an adapter: available, named', async () => {
    const info = { vendor: 'nvidia', architecture: 'hopper', device: '', description: 'NVIDIA H100 80GB HBM3' };
    const r = await probeWebGpu({ load: async () => ({ create: () => ({ requestAdapter: async () => ({ info }) }), globals: {} }) });
    assert.equal(r.available, true);
    assert.deepEqual(r.adapter, info);
    assert.equal(r.why, 'adapter NVIDIA H100 80GB HBM3, vendor nvidia, architecture hopper');
  });

  it('isMissingModule tells the package missing from something it loads missing', async () => {
    const missing = await import('twinfed-no-such-package-' + 'x').catch((e: unknown) => e);
    assert.equal(isMissingModule(missing, 'twinfed-no-such-package-x'), true);
    assert.equal(isMissingModule(missing, 'webgpu'), false);
    assert.equal(isMissingModule(new Error('dlopen failed'), 'webgpu'), false);
  });

  it('vulkanHint reads the ICD list from VK_DRIVER_FILES and flags a missing NVIDIA driver', { skip: process.platform !== 'linux' }, () => {
    assert.match(vulkanHint({ VK_DRIVER_FILES: '/usr/share/vulkan/icd.d/lvp_icd.x86_64.json' }), /Vulkan drivers lvp_icd\.x86_64\.json \(none from NVIDIA\)/);
    assert.doesNotMatch(vulkanHint({ VK_ICD_FILENAMES: '/etc/vulkan/icd.d/nvidia_icd.json' }), /none from NVIDIA/);
  });
});
