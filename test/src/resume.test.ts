import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from '@twinfed/shared/db/driver';
import { SiteNode } from '@twinfed/site-node';
import { ADMIN_TOKEN, RawSite, createAndStart, enrolNewSite, lead, realSite, tempDir, tinySpec, waitFor, connectAndApprove } from './harness.js';
import { RawParticipant } from './raw-protocol.js';

const BIN = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../cli/dist/bin.js');

async function freePort(): Promise<number> {
  return new Promise((res) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => res(p));
    });
  });
}

function coordinatorProcess(dataDir: string, port: number): { proc: ChildProcess; url: string; up: Promise<void> } {
  const proc = spawn(process.execPath, [BIN, 'coordinator', 'start', '--data-dir', dataDir, '--port', String(port), '--admin-token', ADMIN_TOKEN, '--log-level', 'error', '--tick-ms', '100'], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const url = `http://127.0.0.1:${port}`;
  return { proc, url, up: waitFor(async () => (await fetch(new URL('/healthz', url)).catch(() => null))?.ok, 'coordinator up', 20_000, 100).then(() => undefined) };
}

/**
 * The coordinator runs as its own process and is killed with SIGKILL in the middle of a round's
 * upload phase, after it accepted one site's whole masked update and part of another's. Restarted
 * on the same SQLite file it resumes: nothing accepted is lost, nothing is counted twice, and the
 * decrypted, unmasked aggregate is exact.
 */
describe('a coordinator killed mid-round resumes without losing or double-counting updates', () => {
  const tmp = tempDir('resume');
  let coord: ReturnType<typeof coordinatorProcess>;
  let port = 0;
  const dataDir = join(tmp.dir, 'coordinator');

  before(async () => {
    port = await freePort();
    coord = coordinatorProcess(dataDir, port);
    await coord.up;
  });
  after(async () => {
    coord?.proc.kill('SIGKILL');
    tmp.cleanup();
  });

  it('resumes the round after SIGKILL', async () => {
    const url = coord.url;
    for (const d of ['a', 'b', 'c']) await enrolNewSite(url, join(tmp.dir, d), d.toUpperCase());
    const spec = tinySpec({ rounds: 1, minSites: 3, roundDeadlineS: 600 });
    spec.model.base = 8; // ~6.5k parameters: two ciphertexts, so a partial upload exists
    const { studyId, manifest, manifestHash } = await createAndStart(url, spec);
    const connect = async (d: string) => {
      const s = await RawSite.create(url, join(tmp.dir, d));
      await s.connected();
      await s.hello();
      await s.next('study.announce');
      return s;
    };
    const parts = await Promise.all(['a', 'b', 'c'].map(async (d) => new RawParticipant(await connect(d), manifest, manifestHash).init()));
    const [a, b, c] = parts;
    const n = { a: 30, b: 50, c: 40 };
    for (const p of parts) assert.equal((await p.join(100)).ok, true);
    // A is first in the roster, so it deals the study key; B and C check the handout and open theirs.
    const dealt = await a.deal(15_000);
    assert.equal(dealt.ack.ok, true, JSON.stringify(dealt.ack));
    await b.acceptKey();
    await c.acceptKey();
    const starts = await Promise.all(parts.map((p) => p.setup()));
    assert.equal(starts[0].round, 1);

    const length = manifest.updateLength;
    const dA = Float32Array.from({ length }, (_, i) => Math.cos(i) * 0.02);
    const dB = Float32Array.from({ length }, (_, i) => Math.sin(i * 0.7) * 0.03);
    const dC = Float32Array.from({ length }, (_, i) => ((i % 13) - 6) * 0.001);
    for (const ack of await a.upload(1, dA, n.a)) assert.equal(ack.ok, true);
    const pb = await b.prepareUpload(1, dB, n.b);
    assert.ok(pb.ciphertexts.length >= 1);
    assert.equal((await b.raw.send('update.chunk', studyId, 1, pb.ciphertexts[0], b.chunkMeta(1, 0, pb.ciphertexts.length, n.b))).ok, true);
    const pc = await c.prepareUpload(1, dC, n.c);

    // Kill -9 mid-round, then restart on the same database and port.
    coord.proc.kill('SIGKILL');
    await new Promise((r) => coord.proc.once('exit', r));
    for (const p of parts) p.raw.close();
    coord = coordinatorProcess(dataDir, port);
    await coord.up;

    const status = await lead<{ state: string; roundSummaries: { state: string; phase: string }[] }>(url, 'GET', `/api/studies/${studyId}`);
    assert.equal(status.json.state, 'running');
    assert.equal(status.json.roundSummaries[0].phase, 'upload');

    // Reconnected (the challenge gives each site its last accepted sequence number), each is told which chunks the coordinator holds.
    for (const p of parts) {
      p.raw = await RawSite.create(url, p.raw.dataDir);
      await p.raw.connected();
      await p.raw.hello();
    }
    // A's accepted update survived the crash: the coordinator holds it complete and does not ask for it again.
    const db = new Database(join(dataDir, 'coordinator.db'), { readonly: true });
    const ups = db.prepare('select site_id, state, received from updates where round = 1 order by site_id').all() as { site_id: string; state: string; received: number }[];
    db.close();
    assert.deepEqual(
      ups.find((u) => u.site_id === a.siteId),
      { site_id: a.siteId, state: 'complete', received: pb.ciphertexts.length },
    );
    assert.deepEqual(
      ups.find((u) => u.site_id === b.siteId),
      { site_id: b.siteId, state: 'receiving', received: 1 },
    );
    // B sends only the chunks after the one the coordinator already holds; a re-sent chunk 0 would be refused.
    const dup = await b.raw.send('update.chunk', studyId, 1, pb.ciphertexts[0], b.chunkMeta(1, 0, pb.ciphertexts.length, n.b));
    assert.equal(!dup.ok && dup.code, 'TWF_E_DUPLICATE_CHUNK');
    for (const ack of await b.resumeUpload(1, n.b)) assert.equal(ack.ok, true);
    for (let i = 0; i < pc.ciphertexts.length; i++) assert.equal((await c.raw.send('update.chunk', studyId, 1, pc.ciphertexts[i], c.chunkMeta(1, i, pc.ciphertexts.length, n.c))).ok, true);

    for (const p of parts) assert.equal((await p.sign(1)).ack.ok, true);
    for (const p of parts) assert.equal((await p.reveal(1)).ok, true);
    const { avg, info } = await a.aggregate(1);
    assert.equal(info.totalSamples, n.a + n.b + n.c);
    let maxErr = 0;
    for (let i = 0; i < length; i++) maxErr = Math.max(maxErr, Math.abs(avg[i] - (n.a * dA[i] + n.b * dB[i] + n.c * dC[i]) / (n.a + n.b + n.c)));
    assert.ok(maxErr <= 3 * 2 ** -21 + 1e-7, `max error ${maxErr}: no update lost or double-counted`);
    await waitFor(async () => (await lead<{ state: string }>(url, 'GET', `/api/studies/${studyId}`)).json.state === 'completed', 'completion', 10_000);
    for (const p of parts) p.raw.close();
  });
});

/**
 * The running sums live on the coordinator's aggregation workers (coordinator/src/sums) and die
 * with it; the chunk logs and rows are the record. Four sites upload eight ciphertexts each at
 * once; the coordinator is killed with SIGKILL while chunks are in flight (some stored and
 * acknowledged, some stored but not acknowledged, some not stored), restarted, killed again right
 * after the last chunk is acknowledged (while the upload phase ends and the sums are written, or
 * just after), and restarted. Each site re-sends what the coordinator tells it is missing; the
 * published aggregate, decrypted and unmasked, is the exact weighted mean: every chunk counted
 * once, whatever the instant of each kill.
 */
describe('a coordinator killed twice while its aggregation workers hold the sums counts every chunk exactly once', () => {
  const tmp = tempDir('resume-workers');
  let coord: ReturnType<typeof coordinatorProcess>;
  let port = 0;
  const dataDir = join(tmp.dir, 'coordinator');
  before(async () => {
    port = await freePort();
    coord = coordinatorProcess(dataDir, port);
    await coord.up;
  });
  after(async () => {
    coord?.proc.kill('SIGKILL');
    tmp.cleanup();
  });

  it('resumes after a SIGKILL mid-upload and another as the upload phase ends', async () => {
    const url = coord.url;
    const names = ['a', 'b', 'c', 'd'];
    for (const d of names) await enrolNewSite(url, join(tmp.dir, d), d.toUpperCase());
    const spec = tinySpec({ rounds: 1, minSites: 3, roundDeadlineS: 600 });
    spec.model = { ...spec.model, base: 8, depth: 2, size: 48 }; // 29,330 parameters: 8 ciphertexts
    const { studyId, manifest, manifestHash } = await createAndStart(url, spec);
    const connect = async (dir: string) => {
      const s = await RawSite.create(url, dir);
      await s.connected();
      await s.hello();
      return s;
    };
    const parts = await Promise.all(
      names.map(async (d) => {
        const raw = await connect(join(tmp.dir, d));
        await raw.next('study.announce');
        return new RawParticipant(raw, manifest, manifestHash).init();
      }),
    );
    for (const p of parts) assert.equal((await p.join(100)).ok, true);
    assert.equal((await parts[0].deal(15_000)).ack.ok, true);
    for (const p of parts.slice(1)) await p.acceptKey();
    await Promise.all(parts.map((p) => p.setup()));
    const length = manifest.updateLength;
    const n = [30, 50, 40, 20];
    const deltas = parts.map((_, k) => Float32Array.from({ length }, (_, i) => Math.sin(i * (0.3 + k * 0.2)) * 0.02));
    const prepared = await Promise.all(parts.map((p, k) => p.prepareUpload(1, deltas[k], n[k])));
    assert.equal(prepared[0].ciphertexts.length, 8);
    const restart = async () => {
      coord.proc.kill('SIGKILL');
      await new Promise((r) => coord.proc.once('exit', r));
      for (const p of parts) p.raw.close();
      coord = coordinatorProcess(dataDir, port);
      await coord.up;
      for (const p of parts) p.raw = await connect(p.raw.dataDir);
    };

    // Every site streams its chunks; the first kill comes once 12 of the 32 are acknowledged.
    let acked = 0;
    const killed = new Promise<void>((resolve) => {
      void Promise.all(
        parts.map(async (p, k) => {
          for (let i = 0; i < 8; i++) {
            const a = await p.raw.send('update.chunk', studyId, 1, prepared[k].ciphertexts[i], p.chunkMeta(1, i, 8, n[k]));
            if (!a.ok) return;
            if (++acked === 12) resolve();
          }
        }),
      );
    });
    await killed;
    await restart();
    // Each site sends what the coordinator says it lacks (an unacknowledged chunk may or may not have been stored).
    const resent = await Promise.all(parts.map((p, k) => p.resumeUpload(1, n[k])));
    for (const acks of resent) for (const a of acks) assert.equal(a.ok, true, JSON.stringify(a));
    // The second kill right after the last chunk: the upload phase ends and the sums are written around now.
    await restart();
    for (const p of parts) assert.equal((await p.sign(1)).ack.ok, true);
    for (const p of parts) assert.equal((await p.reveal(1)).ok, true);
    const { avg, info } = await parts[0].aggregate(1);
    assert.equal(
      info.totalSamples,
      n.reduce((a, b) => a + b, 0),
    );
    const N = info.totalSamples;
    let maxErr = 0;
    for (let i = 0; i < length; i++) maxErr = Math.max(maxErr, Math.abs(avg[i] - deltas.reduce((s, d, k) => s + n[k] * d[i], 0) / N));
    assert.ok(maxErr <= 4 * 2 ** -21 + 1e-7, `max error ${maxErr}: no chunk lost or counted twice`);
    const db = new Database(join(dataDir, 'coordinator.db'), { readonly: true });
    const summed = db.prepare("select detail from audit_log where action = 'round.summed'").pluck().all() as string[];
    const left = db.prepare('select count(*) from update_chunks').pluck().get() as number;
    db.close();
    assert.equal(summed.length, 1, `the sums were written once: ${summed.join(' | ')}`);
    assert.equal(left, 0, 'no chunk row left');
    assert.deepEqual(readdirSync(join(dataDir, 'chunks')), [], 'no chunk log left');
    for (const p of parts) p.raw.close();
  });
});

/**
 * The same with real site nodes (real training, masking, encryption, reconnection): the
 * coordinator is stopped with SIGTERM while round 1 is open — it closes every connection with a
 * server-side disconnect, after which socket.io clients do not reconnect on their own — and
 * restarted; the sites reconnect by themselves, resume from what they stored, and the study
 * completes with the same global model everywhere.
 */
describe('real site nodes ride through a coordinator restart', () => {
  const tmp = tempDir('resume-real');
  let coord: ReturnType<typeof coordinatorProcess> | null = null;
  let port = 0;
  const dataDir = join(tmp.dir, 'coordinator');
  const nodes: SiteNode[] = [];
  after(async () => {
    for (const n of nodes) await n.close().catch(() => undefined);
    coord?.proc.kill('SIGKILL');
    tmp.cleanup();
  });

  it('completes the study after a restart in round 1, the sites reconnecting by themselves', async () => {
    port = await freePort();
    coord = coordinatorProcess(dataDir, port);
    await coord.up;
    const url = coord.url;
    for (const [name, patients, val] of [
      ['A', ['STS_007', 'STS_008', 'STS_009'], ['STS_009']],
      ['B', ['STS_017', 'STS_018', 'STS_019'], ['STS_019']],
      ['C', ['STS_027', 'STS_028', 'STS_029'], ['STS_029']],
    ] as const) {
      nodes.push((await realSite(url, join(tmp.dir, name), name, [...patients], [...val])).node);
    }
    const { studyId, manifestHash } = await createAndStart(url, tinySpec({ rounds: 2, minSites: 3, roundDeadlineS: 120 }));
    await connectAndApprove(nodes, { studyId, manifestHash }, () => 'officer');
    await waitFor(async () => (await lead<{ currentRound: number }>(url, 'GET', `/api/studies/${studyId}`)).json.currentRound === 1, 'round 1', 60_000, 50);

    coord.proc.kill('SIGTERM');
    await new Promise((r) => coord!.proc.once('exit', r));
    await new Promise((r) => setTimeout(r, 1500));
    coord = coordinatorProcess(dataDir, port);
    await coord.up;

    await waitFor(async () => (await lead<{ state: string }>(url, 'GET', `/api/studies/${studyId}`)).json.state === 'completed', 'completion after restart', 180_000, 250);
    await waitFor(() => nodes.every((n) => n.latestModel(studyId)?.version === 2), 'all sites at version 2', 30_000);
    assert.equal(new Set(nodes.map((n) => n.latestModel(studyId)!.digest)).size, 1);
    const sites = await lead<{ siteId: string; connected: boolean }[]>(url, 'GET', '/api/sites');
    assert.ok(
      sites.json.every((s) => s.connected),
      'the lead API shows every site connected again',
    );
  });
});
