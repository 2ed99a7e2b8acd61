import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { unpackFrames, type StudyManifest } from '@twinfed/protocols';
import { fromB64, openSealed } from '@twinfed/shared/crypto/index';
import { createHeContext, decryptAverage, encryptWeightedUpdate, generateSecretKey, heParamsDigest, type HeParams } from '@twinfed/shared/he/index';
import { SiteNode } from '@twinfed/site-node';
import { ADMIN_TOKEN, RawSite, enrolNewSite, lead, realSite, tempDir, tinySpec, waitFor } from './harness.js';

const BIN = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../cli/dist/bin.js');

async function freePort(): Promise<number> {
  return new Promise((res) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => res(p));
    });
  });
}

/**
 * The coordinator runs as its own process and is killed with SIGKILL in the
 * middle of a round, after it accepted one site's whole update and part of
 * another's. Restarted on the same SQLite file it resumes: nothing accepted is
 * lost, nothing is counted twice, and the decrypted aggregate is exact.
 */
describe('a coordinator killed mid-round resumes without losing or double-counting updates', () => {
  const tmp = tempDir('resume');
  let proc: ChildProcess | null = null;
  let url = '';
  let port = 0;
  const dataDir = join(tmp.dir, 'coordinator');

  async function startProcess(): Promise<void> {
    proc = spawn(process.execPath, [BIN, 'coordinator', 'start', '--data-dir', dataDir, '--port', String(port), '--admin-token', ADMIN_TOKEN, '--log-level', 'error', '--tick-ms', '100'], { stdio: ['ignore', 'ignore', 'inherit'] });
    url = `http://127.0.0.1:${port}`;
    await waitFor(async () => (await fetch(new URL('/healthz', url)).catch(() => null))?.ok, 'coordinator up', 20_000, 100);
  }

  before(async () => {
    port = await freePort();
    await startProcess();
  });
  after(async () => {
    proc?.kill('SIGKILL');
    tmp.cleanup();
  });

  it('resumes the round after SIGKILL', async () => {
    await enrolNewSite(url, join(tmp.dir, 'a'), 'A');
    await enrolNewSite(url, join(tmp.dir, 'b'), 'B');
    const created = await lead<{ studyId: string; manifest: StudyManifest; manifestHash: string }>(url, 'POST', '/api/studies', tinySpec({ rounds: 1, minSites: 2, roundDeadlineS: 600 }));
    const { studyId, manifest, manifestHash } = created.json;
    await lead(url, 'POST', `/api/studies/${studyId}/start`);
    const params = manifest.encryption as HeParams;
    const ctx = await createHeContext(params);

    // Two sites join; A deals the key; both receive round 1.
    const connect = async (d: string) => {
      const s = await RawSite.create(url, join(tmp.dir, d));
      await s.connected();
      await s.hello();
      return s;
    };
    let a = await connect('a');
    let b = await connect('b');
    await a.next('study.announce');
    await b.next('study.announce');
    assert.equal((await a.send('study.join', studyId, null, { manifestHash, trainSlices: 30, valPatients: 2 })).ok, true);
    assert.equal((await b.send('study.join', studyId, null, { manifestHash, trainSlices: 50, valPatients: 2 })).ok, true);
    const sk = generateSecretKey(ctx);
    await waitFor(async () => (await a.dealKeys(studyId, heParamsDigest(params), sk)).includes(b.siteId), 'A seals the key for B', 15_000);
    const bKey = JSON.parse(Buffer.from((await b.next('keys.deliver')).body).toString()) as { sealedKey: string };
    assert.deepEqual(openSealed(fromB64(bKey.sealedKey), b.identity), sk, 'B opened the key A sealed for it');
    await a.next('round.start');
    await b.next('round.start');

    const length = 10_000; // 3 ciphertexts
    const dA = Float32Array.from({ length }, (_, i) => Math.cos(i) * 0.02);
    const dB = Float32Array.from({ length }, (_, i) => Math.sin(i * 0.7) * 0.03);
    const encA = encryptWeightedUpdate(ctx, sk, dA, 30, 1);
    const encB = encryptWeightedUpdate(ctx, sk, dB, 50, 1);
    const meta = (i: number, n: number) => ({ index: i, count: 3, nSamples: n, length, heParamsDigest: heParamsDigest(params) });
    for (let i = 0; i < 3; i++) assert.equal((await a.send('update.chunk', studyId, 1, encA.ciphertexts[i], meta(i, 30))).ok, true);
    assert.equal((await b.send('update.chunk', studyId, 1, encB.ciphertexts[0], meta(0, 50))).ok, true);

    // Kill -9 mid-round, then restart on the same database and port.
    proc!.kill('SIGKILL');
    await new Promise((r) => proc!.once('exit', r));
    a.close();
    b.close();
    await startProcess();

    const status = await lead<{ state: string; currentRound: number; roundSummaries: { state: string; completed: string[] }[] }>(url, 'GET', `/api/studies/${studyId}`);
    assert.equal(status.json.state, 'running');
    assert.equal(status.json.roundSummaries[0].state, 'open');
    assert.deepEqual(status.json.roundSummaries[0].completed, [a.siteId], 'A\'s accepted update survived the crash');

    // Reconnected, B is told which chunks the coordinator already holds and sends the rest.
    a = await RawSite.create(url, join(tmp.dir, 'a'));
    a.seq = 100;
    b = await RawSite.create(url, join(tmp.dir, 'b'));
    b.seq = 100;
    await a.connected();
    await b.connected();
    await a.hello();
    await b.hello();
    await b.send('study.join', studyId, null, { manifestHash, trainSlices: 50, valPatients: 2 });
    const start = JSON.parse(Buffer.from((await b.next('round.start')).body).toString()) as { alreadyReceived: number[] };
    assert.deepEqual(start.alreadyReceived, [0]);
    // Re-sending the chunk it already holds is refused: it is in the sum once.
    const dup = await b.send('update.chunk', studyId, 1, encB.ciphertexts[0], meta(0, 50));
    assert.equal(!dup.ok && dup.code, 'TWF_E_DUPLICATE_CHUNK');
    for (const i of [1, 2]) assert.equal((await b.send('update.chunk', studyId, 1, encB.ciphertexts[i], meta(i, 50))).ok, true);

    const agg = await b.next('round.aggregate');
    assert.equal(agg.header.meta?.totalSamples, 80);
    const avg = decryptAverage(ctx, sk, unpackFrames(agg.body), length, 80, 1);
    let maxErr = 0;
    for (let i = 0; i < length; i++) maxErr = Math.max(maxErr, Math.abs(avg[i] - (30 * dA[i] + 50 * dB[i]) / 80));
    assert.ok(maxErr <= 2 * 2 ** -21 + 1e-7, `max error ${maxErr}: no update lost or double-counted`);
    await waitFor(async () => (await lead<{ state: string }>(url, 'GET', `/api/studies/${studyId}`)).json.state === 'completed', 'completion', 10_000);
    a.close();
    b.close();
  });
});

/**
 * The same with real site nodes (real training, encryption, reconnection):
 * the coordinator is killed while round 1 is open and restarted; the sites
 * reconnect by themselves, resume from the ciphertexts they stored, and the
 * study completes with the same global model at both sites.
 */
describe('real site nodes ride through a coordinator crash', () => {
  const tmp = tempDir('resume-real');
  let proc: ChildProcess | null = null;
  let port = 0;
  let url = '';
  const dataDir = join(tmp.dir, 'coordinator');
  const nodes: SiteNode[] = [];
  const start = async () => {
    proc = spawn(process.execPath, [BIN, 'coordinator', 'start', '--data-dir', dataDir, '--port', String(port), '--admin-token', ADMIN_TOKEN, '--log-level', 'error', '--tick-ms', '100'], { stdio: ['ignore', 'ignore', 'inherit'] });
    url = `http://127.0.0.1:${port}`;
    await waitFor(async () => (await fetch(new URL('/healthz', url)).catch(() => null))?.ok, 'coordinator up', 20_000, 100);
  };
  after(async () => {
    for (const n of nodes) await n.close().catch(() => undefined);
    proc?.kill('SIGKILL');
    tmp.cleanup();
  });

  it('completes the study after a kill -9 in round 1', async () => {
    port = await freePort();
    await start();
    for (const [name, patients, val] of [['A', ['STS_007', 'STS_008', 'STS_009'], ['STS_009']], ['B', ['STS_017', 'STS_018', 'STS_019'], ['STS_019']]] as const) {
      nodes.push((await realSite(url, join(tmp.dir, name), name, [...patients], [...val])).node);
    }
    const created = await lead<{ studyId: string; manifestHash: string }>(url, 'POST', '/api/studies', tinySpec({ rounds: 2, minSites: 2, roundDeadlineS: 120 }));
    const { studyId, manifestHash } = created.json;
    await lead(url, 'POST', `/api/studies/${studyId}/start`);
    for (const n of nodes) n.connect();
    await waitFor(() => nodes.every((n) => SiteNode.listStudies(n.db).length === 1), 'announcements', 20_000);
    for (const n of nodes) SiteNode.approve(n.db, n.audit, studyId, 'officer', manifestHash);
    await waitFor(async () => (await lead<{ currentRound: number }>(url, 'GET', `/api/studies/${studyId}`)).json.currentRound === 1, 'round 1', 60_000, 50);

    proc!.kill('SIGKILL');
    await new Promise((r) => proc!.once('exit', r));
    await new Promise((r) => setTimeout(r, 1500));
    await start();

    await waitFor(async () => (await lead<{ state: string }>(url, 'GET', `/api/studies/${studyId}`)).json.state === 'completed', 'completion after restart', 120_000, 250);
    await waitFor(() => nodes.every((n) => n.latestModel(studyId)?.version === 2), 'both sites at version 2', 30_000);
    assert.equal(nodes[0].latestModel(studyId)!.digest, nodes[1].latestModel(studyId)!.digest);
    const st = await lead<{ roundSummaries: { completed: string[] }[] }>(url, 'GET', `/api/studies/${studyId}`);
    for (const r of st.json.roundSummaries) assert.equal(r.completed.length, 2);
  });
});
