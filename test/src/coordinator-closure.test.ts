import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

// `twinfed coordinator start` must load the protocol and the core (HE, crypto, audit, db) only:
// no TensorFlow.js, no imaging readers, no trainers or site-node code. The child runs with
// load-probe.js, which records every module the ESM loader resolves plus the CommonJS cache at exit.
const HERE = fileURLToPath(new URL('.', import.meta.url));
const BIN = resolve(HERE, '../../cli/dist/bin.js');
const PROBE = join(HERE, 'load-probe.js');
const FORBIDDEN: [string, RegExp][] = [
  ['TensorFlow.js', /\/node_modules\/@tensorflow\//],
  ['an imaging reader', /\/node_modules\/(nifti-reader-js|dicom-parser|nrrd-js|pngjs)\//],
  // (the CLI reads the import limits' defaults, plain numbers in imaging/limits.js, for its --help text)
  ['shared ML or imaging code', /\/shared\/dist\/(train|seg|data|radiomics|bench)\/|\/shared\/dist\/imaging\/(?!limits\.js|errors\.js)|\/shared\/dist\/model\/(unet|index)\.js/],
  ['the site node', /\/site-node\/dist\//],
];

function startChild(args: string[], out: string): ChildProcess {
  return spawn(process.execPath, ['--import', PROBE, BIN, ...args], { env: { ...process.env, TWINFED_LOAD_PROBE_OUT: out }, stdio: ['ignore', 'pipe', 'pipe'] });
}
const exited = (p: ChildProcess) => new Promise<number | null>((res) => (p.exitCode !== null ? res(p.exitCode) : p.once('exit', (code) => res(code))));
function loaded(out: string): string[] {
  return [...new Set(readFileSync(out, 'utf8').split('\n').filter(Boolean))];
}
function assertClean(mods: string[]) {
  for (const [what, re] of FORBIDDEN) {
    const hits = mods.filter((m) => re.test(m));
    assert.deepEqual(hits, [], `${what} was loaded`);
  }
}

describe('the coordinator dependency closure', () => {
  const dir = mkdtempSync(join(tmpdir(), 'twinfed-closure-'));
  const coordOut = join(dir, 'coordinator-modules.txt');
  let child: ChildProcess;
  let url = '';
  before(async () => {
    child = startChild(['coordinator', 'start', '--data-dir', join(dir, 'coordinator'), '--port', '0', '--admin-token', 'closure-test-token-0123456789', '--log-level', 'warn'], coordOut);
    let stdout = '';
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    url = await new Promise<string>((res, rej) => {
      const timer = setTimeout(() => rej(new Error(`coordinator did not start: ${stderr}`)), 30_000);
      child.stdout!.on('data', (d: Buffer) => {
        stdout += d.toString();
        const m = /listening on (\S+)/.exec(stdout);
        if (m) {
          clearTimeout(timer);
          res(m[1]);
        }
      });
      child.once('exit', (code) => rej(new Error(`coordinator exited (${code}): ${stderr}`)));
    });
  });
  after(async () => {
    if (child && child.exitCode === null) {
      child.kill('SIGKILL');
      await exited(child);
    }
    rmSync(dir, { recursive: true, force: true });
  });

  it('twinfed coordinator start serves without loading tfjs, imaging readers, trainers or site-node code', async () => {
    const health = await fetch(`${url}/healthz`);
    assert.equal(health.ok, true);
    child.kill('SIGTERM'); // the CLI closes the coordinator and exits 0; the probe appends the CommonJS cache then
    assert.equal(await exited(child), 0);
    const mods = loaded(coordOut);
    // The probe saw the server's own modules (so an empty record cannot pass) ...
    assert.ok(
      mods.some((m) => m.includes('/coordinator/dist/server.js')),
      'the probe recorded the coordinator',
    );
    assert.ok(
      mods.some((m) => m.startsWith('cjs ') && m.includes('/node_modules/fastify/')),
      'the probe recorded the CommonJS cache',
    );
    // ... and none of the ML or imaging stack.
    assertClean(mods);
  });

  it('twinfed --help and a lead command load none of it either', async () => {
    const out = join(dir, 'help-modules.txt');
    const help = startChild(['--help'], out);
    assert.equal(await exited(help), 0);
    const mods = loaded(out);
    assertClean(mods);
    assert.ok(!mods.some((m) => m.includes('/coordinator/dist/')), '--help does not load the coordinator');
    const leadOut = join(dir, 'lead-modules.txt');
    // A lead command against a closed port: it fails (exit 1) after loading its client.
    const lead = startChild(['lead', 'sites', '--url', 'http://127.0.0.1:9', '--admin-token', 'closure-test-token-0123456789'], leadOut);
    assert.equal(await exited(lead), 1);
    const leadMods = loaded(leadOut);
    assert.ok(
      leadMods.some((m) => m.includes('/cli/dist/http.js')),
      'the lead client was loaded',
    );
    assertClean(leadMods.filter((m) => !m.includes('/site-node/dist/net.js') && !m.includes('/site-node/dist/errors.js')));
  });
});
