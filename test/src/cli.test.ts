import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from '@twinfed/shared/db/driver';
import type { Coordinator } from '@twinfed/coordinator';
import { writeModelDir } from '@twinfed/site-node';
import { initialWeights } from '@twinfed/shared/model/index';
import { STS_DIR, enrolNewSite, startCoordinator, tempDir } from './harness.js';

const BIN = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../cli/dist/bin.js');
// Asynchronous: the coordinator under test runs in this process and must keep answering.
const twinfed = (...args: string[]) =>
  new Promise<{ code: number | null; out: string; err: string }>((res) => {
    execFile(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 60_000 }, (e, out, err) => res({ code: e ? (typeof e.code === 'number' ? e.code : null) : 0, out, err }));
  });

describe('twinfed CLI', () => {
  const tmp = tempDir('cli');
  let c: Coordinator;
  let url: string;
  const site = join(tmp.dir, 'site');

  before(async () => {
    ({ c, url } = await startCoordinator(join(tmp.dir, 'coordinator')));
    await enrolNewSite(url, site, 'Hospital CLI');
  });
  after(async () => {
    await c?.close();
    tmp.cleanup();
  });

  it('site enrol stores identity keys readable by the owner only, and refuses a bad token with its code', async () => {
    assert.equal(statSync(join(site, 'identity.json')).mode & 0o777, 0o600);
    const r = await twinfed('site', 'enrol', '--data-dir', join(tmp.dir, 'other'), '--coordinator', url, '--token', 'not-a-valid-token-at-all');
    assert.equal(r.code, 1);
    assert.match(r.err, /TWF_E_ENROL_FAILED.*TWF_E_ENROLMENT_TOKEN/);
    const again = await twinfed('site', 'enrol', '--data-dir', site, '--coordinator', url, '--token', 'whatever-token-123456');
    assert.match(again.err, /TWF_E_ALREADY_ENROLLED/);
  });

  it('site approve refuses a study that was never announced here', async () => {
    const r = await twinfed('site', 'approve', 'study-nope', '--data-dir', site, '--officer', 'Dr P');
    assert.equal(r.code, 1);
    assert.match(r.err, /TWF_E_UNKNOWN_STUDY/);
  });

  it('site doctor says which compute backend runs and why', async () => {
    const r = await twinfed('site', 'doctor', '--data-dir', site, '--json');
    const j = JSON.parse(r.out) as { backend: string; checks: { name: string; ok: boolean; detail: string }[] };
    assert.equal(j.backend, 'wasm');
    const be = j.checks.find((x) => x.name === 'compute backend')!;
    assert.match(be.detail, /tfjs-node-gpu not installed.*setup:gpu/);
    const gpu = j.checks.find((x) => x.name.includes('webgpu'))!;
    assert.match(gpu.detail, /`webgpu` \(Dawn's WebGPU for Node\) not installed.*setup:webgpu/, 'says why there is no WebGPU');
    assert.equal(j.checks.find((x) => x.name === 'local data')!.ok, false, 'nothing imported yet');
    assert.equal(j.checks.find((x) => x.name === 'coordinator')!.ok, true);
    assert.match(j.checks.find((x) => x.name === 'training threads')!.detail, /cores/);
  });

  it('audit verify passes an intact log and reports the first broken link of an edited one', async () => {
    const ok = await twinfed('audit', 'verify', join(site, 'site.db'));
    assert.equal(ok.code, 0, ok.err);
    assert.match(ok.out, /^OK .* chain intact/);
    // Edit a copy: the site's own log stays intact for audit compare below.
    const db = join(tmp.dir, 'site-copy.db');
    const original = new Database(join(site, 'site.db'), { readonly: true });
    await original.backup(db);
    original.close();
    const sqlite = new Database(db);
    sqlite.exec("drop trigger audit_log_no_update; update audit_log set actor = 'someone else' where id = 1");
    sqlite.close();
    const bad = await twinfed('audit', 'verify', db);
    assert.equal(bad.code, 2);
    assert.match(bad.out, /BROKEN .* first broken link at entry 1: entry content does not match its hash/);
  });

  it('seg evaluate scores a model folder on NIfTI patients and prints the JSON summary', async () => {
    const modelDir = join(tmp.dir, 'model');
    const model = { arch: 'unet2d' as const, inChannels: 1, nClasses: 2, base: 4, depth: 1, size: 48, initSeed: 1 };
    writeModelDir(
      modelDir,
      { studyId: 's', title: 't', manifestHash: '-', model, version: 0, meanDiceAtSite: null, decryptedAt: 'test', createdAt: new Date().toISOString() },
      initialWeights(model, 1),
    );
    const r = await twinfed('seg', 'evaluate', '--model', modelDir, '--data', STS_DIR, '--patients', 'STS_001,STS_002', '--json');
    assert.equal(r.code, 0, r.err);
    const j = JSON.parse(r.out.trim().split('\n').pop()!) as { n: number; meanDice: number; medianDice: number; meanHd95Mm: number | null; threshold: { meanDice: number } };
    assert.equal(j.n, 2);
    for (const k of ['meanDice', 'medianDice'] as const) assert.ok(j[k] >= 0 && j[k] <= 1);
    assert.ok(j.threshold.meanDice > 0.3, 'the 40% SUVmax baseline finds these FDG-avid tumours');
    // A corrupted weights file is refused by its digest.
    const { writeFileSync } = await import('node:fs');
    writeFileSync(join(modelDir, 'weights.bin'), Buffer.alloc(16));
    const bad = await twinfed('seg', 'evaluate', '--model', modelDir, '--data', STS_DIR, '--patients', 'STS_001');
    assert.equal(bad.code, 1);
    assert.match(bad.err, /TWF_E_MODEL_DIGEST/);
  });

  it('twin evaluate prints one JSON object with every model, the baselines and interval coverage', async () => {
    const r = await twinfed('twin', 'evaluate', '--csv', resolve(STS_DIR, '../../fixtures/growth-laleh2022/Study1.csv'), '--format', 'laleh', '--holdout-last', '1', '--json');
    assert.equal(r.code, 0, r.err);
    const j = JSON.parse(r.out.trim().split('\n').pop()!) as { models: Record<string, { n: number; mae: number; coverage90: number }>; baselines: { locf: { mae: number }; linear: { mae: number } } };
    assert.deepEqual(Object.keys(j.models).sort(), ['classicBertalanffy', 'exponential', 'generalBertalanffy', 'generalGompertz', 'gompertz', 'logistic']);
    for (const m of Object.values(j.models)) {
      assert.ok(m.n > 0 && m.mae > 0 && m.coverage90 >= 0 && m.coverage90 <= 1);
    }
    assert.ok(j.baselines.locf.mae > 0 && j.baselines.linear.mae > 0);
    const bad = await twinfed('twin', 'evaluate', '--csv', resolve(STS_DIR, '../../fixtures/growth-laleh2022/Study1.csv'), '--format', 'other');
    assert.match(bad.err, /TWF_E_BAD_REQUEST: unknown --format other/);
  });

  it('audit compare cross-checks the site against the coordinator with the keys pinned in the site folder', async () => {
    const coordDb = join(tmp.dir, 'coordinator', 'coordinator.db');
    const r = await twinfed('audit', 'compare', '--site-db', join(site, 'site.db'), '--coordinator-db', coordDb, '--json');
    assert.equal(r.code, 0, r.err);
    const j = JSON.parse(r.out) as { ok: boolean; matched: number; keySources: { coordinator: string; site: string }; coordinatorChain: { ok: boolean } };
    assert.equal(j.ok, true);
    assert.deepEqual(j.keySources, { coordinator: 'site.json', site: 'identity.json' });
    assert.equal(j.coordinatorChain.ok, true);
    // The edited copy of site.db has no site.json beside it: no pinned key, and the message names the flag.
    const nokey = await twinfed('audit', 'compare', '--site-db', join(tmp.dir, 'site-copy.db'), '--coordinator-db', coordDb);
    assert.equal(nokey.code, 1);
    assert.match(nokey.err, /TWF_E_AUDIT: no pinned coordinator key .*pass --coordinator-key/);
  });
});
