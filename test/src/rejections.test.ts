import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { StudyManifest } from '@twinfed/protocols';
import { generateIdentity, loadIdentity, openSealed, fromB64, toB64 } from '@twinfed/shared/crypto/index';
import { verifyAuditChain } from '@twinfed/shared/audit/index';
import { HeError, decryptAverage, decryptSlots, generateSecretKey } from '@twinfed/shared/he/index';
import type { Coordinator } from '@twinfed/coordinator';
import { RawSite, createAndStart, enrolNewSite, startCoordinator, tempDir, tinySpec, waitFor } from './harness.js';
import { RawParticipant } from './raw-protocol.js';

/**
 * Every way a message can be wrong is refused with its own code; refusals of messages whose
 * signature verified are written to the coordinator's audit log, the rest are counted. None of
 * them reaches the aggregate. Real coordinator (SQLite file, socket on loopback), real
 * signatures, real SEAL, the whole secure-aggregation round played by hand-driven sites.
 */
describe('coordinator refuses bad messages, each with its code', () => {
  const tmp = tempDir('reject');
  let c: Coordinator;
  let url: string;
  let parts: RawParticipant[];
  let a: RawParticipant;
  let studyId: string;
  let manifest: StudyManifest;
  const deltas = [0, 1, 2].map((k) => Float32Array.from({ length: 6434 }, (_, i) => Math.sin(i + k) * 0.01));
  const N = [10, 20, 30];
  let prepared: { ciphertexts: Uint8Array[] }[];

  const audited = () =>
    c.engine.audit
      .entries()
      .filter((e) => e.action === 'msg.rejected')
      .map((e) => e.detail ?? '');
  const metricsText = async () => (await fetch(new URL('/metrics', url))).text();
  const metricsBody = { evaluatedRound: 0, metrics: [{ name: 'meanDice', value: 0.5 }], valPatients: 3, trainLoss: null, trainMs: null, encryptMs: null, uploadBytes: null };

  before(async () => {
    ({ c, url } = await startCoordinator(join(tmp.dir, 'coordinator'), { phaseTimeoutS: 600 }));
    for (const d of ['a', 'b', 'c']) await enrolNewSite(url, join(tmp.dir, d), `Hospital ${d}`);
    const spec = tinySpec({ rounds: 1, minSites: 3 });
    spec.model.base = 8; // 6,434 parameters: two ciphertexts
    const s = await createAndStart(url, spec);
    ({ studyId, manifest } = s);
    assert.equal(manifest.updateLength, deltas[0].length);
    parts = await Promise.all(
      ['a', 'b', 'c'].map(async (d) => {
        const raw = await RawSite.create(url, join(tmp.dir, d));
        await raw.connected();
        assert.deepEqual((await raw.hello()).ok, true);
        await raw.next('study.announce');
        return new RawParticipant(raw, manifest, s.manifestHash).init();
      }),
    );
    a = parts[0];
    for (const p of parts) assert.equal((await p.join(100)).ok, true);
    assert.equal((await a.deal()).ack.ok, true);
    for (const p of parts.slice(1)) await p.acceptKey();
    for (const p of parts) assert.equal((await p.setup()).ack.ok, true);
    prepared = await Promise.all(parts.map((p, i) => p.prepareUpload(1, deltas[i], N[i])));
  });

  after(async () => {
    for (const p of parts ?? []) p.raw.close();
    await c?.close();
    tmp.cleanup();
  });

  it('refuses at connect: another protocol major, an unknown site, a 1.x handshake, a bad signature — counted, not audited', async () => {
    const rows = c.engine.audit.entries().length;
    const cases = [
      ['a', { protocolVersion: '1.0' }, 'TWF_E_PROTOCOL_VERSION'],
      ['a', { siteId: 'site-nobody' }, 'TWF_E_UNKNOWN_SITE'],
      ['b', { bareAuth: true }, 'TWF_E_HANDSHAKE'],
      ['b', { signWith: generateIdentity().ed25519SecretKey }, 'TWF_E_HANDSHAKE'],
      ['b', { nonce: 'made-up-nonce-0123456789abcdef' }, 'TWF_E_HANDSHAKE'],
    ] as const;
    for (const [dir, opts, code] of cases) {
      const s = await RawSite.create(url, join(tmp.dir, dir), opts);
      const r = await s.refused();
      s.close();
      assert.equal(r.code, code);
    }
    assert.equal(c.engine.audit.entries().length, rows, 'no audit row per refused handshake');
    assert.match(await metricsText(), /twinfed_connections_refused_total\{code="TWF_E_HANDSHAKE"\} 3/);
    // B's real connection was not replaced by the attempts with its id.
    assert.equal(parts[1].raw.socket.connected, true);
    assert.equal(c.engine.listSites().find((x) => x.siteId === parts[1].siteId)!.connected, true);
  });

  it('refuses a forged signature (counted) and a replay (audited)', async () => {
    const forged = await a.raw.emit(a.raw.envelope('metrics.report', studyId, 1, metricsBody, undefined, { secretKey: generateIdentity().ed25519SecretKey }));
    assert.equal(!forged.ok && forged.code, 'TWF_E_BAD_SIGNATURE');
    const env = a.raw.envelope('metrics.report', studyId, 0, metricsBody);
    assert.equal((await a.raw.emit(env)).ok, true);
    const again = await a.raw.emit(env);
    assert.equal(!again.ok && again.code, 'TWF_E_REPLAY');
    assert.ok(audited().some((d) => d.startsWith('TWF_E_REPLAY')));
    assert.ok(!audited().some((d) => d.startsWith('TWF_E_BAD_SIGNATURE')), 'an unverifiable message is not attributable to the site');
  });

  it('refuses a malformed payload, a malformed envelope, an altered payload, a stale timestamp, another recipient', async () => {
    const bad = await a.raw.send('metrics.report', studyId, 0, { evaluatedRound: 'zero', metrics: 7 });
    assert.equal(!bad.ok && bad.code, 'TWF_E_MALFORMED');
    assert.match(!bad.ok ? bad.detail : '', /evaluatedRound|metrics/);
    const junk = await a.raw.emit({ header: { type: 'hello' }, body: 'x' });
    assert.equal(!junk.ok && junk.code, 'TWF_E_MALFORMED');
    const env = a.raw.envelope('metrics.report', studyId, 0, { ...metricsBody, metrics: [{ name: 'meanDice', value: 0.2 }] });
    const tampered = await a.raw.emit({ ...env, body: new Uint8Array(Buffer.from(Buffer.from(env.body).toString().replace('0.2', '0.9'))) });
    assert.equal(!tampered.ok && tampered.code, 'TWF_E_DIGEST_MISMATCH');
    const stale = await a.raw.emit(a.raw.envelope('metrics.report', studyId, 0, metricsBody, undefined, { nowMs: Date.now() - 3_600_000 }));
    assert.equal(!stale.ok && stale.code, 'TWF_E_STALE_MESSAGE');
    const other = await a.raw.emit(a.raw.envelope('metrics.report', studyId, 0, metricsBody, undefined, { to: 'coordinator-0000000000000000' }));
    assert.equal(!other.ok && other.code, 'TWF_E_WRONG_RECIPIENT');
  });

  it('refuses chunks for the wrong round, corrupted ciphertexts, a 1-parameter update, and sample counts above the caps', async () => {
    const ct = prepared[0].ciphertexts;
    const meta = (over: Record<string, number> = {}) => a.chunkMeta(1, 0, ct.length, N[0], over);
    const wrongRound = await a.raw.send('update.chunk', studyId, 7, ct[0], meta());
    assert.equal(!wrongRound.ok && wrongRound.code, 'TWF_E_WRONG_ROUND');
    const corrupted = new Uint8Array(ct[0]);
    corrupted[Math.floor(corrupted.length / 2)] ^= 0xff;
    const badCt = await a.raw.send('update.chunk', studyId, 1, corrupted, meta());
    assert.equal(!badCt.ok && badCt.code, 'TWF_E_BAD_CIPHERTEXT');
    // The update length comes from the manifest: a 1-parameter upload cannot fix another length for the round.
    const tiny = await a.raw.send('update.chunk', studyId, 1, ct[0], meta({ length: 1, count: 1 }));
    assert.equal(!tiny.ok && tiny.code, 'TWF_E_UPDATE_SHAPE');
    assert.match(!tiny.ok ? tiny.detail : '', /manifest fixes 6434/);
    const overCap = await a.raw.send('update.chunk', studyId, 1, ct[0], meta({ nSamples: manifest.training.maxSamplesPerSite + 1 }));
    assert.equal(!overCap.ok && overCap.code, 'TWF_E_SAMPLES_BOUND');
    const overJoin = await a.raw.send('update.chunk', studyId, 1, ct[0], meta({ nSamples: 101 }));
    assert.equal(!overJoin.ok && overJoin.code, 'TWF_E_SAMPLES_BOUND', 'a joined with 100 training samples');
    const rows = c.db.$client.prepare('select count(*) n from accumulators').get() as { n: number };
    assert.equal(rows.n, 0, 'nothing was added to the running sum');
  });

  it('refuses a site outside the approved roster: it can neither join nor upload', async () => {
    await enrolNewSite(url, join(tmp.dir, 'e'), 'Hospital E (enrolled after start)');
    const e = await RawSite.create(url, join(tmp.dir, 'e'));
    await e.connected();
    const early = await e.send('metrics.report', studyId, 0, metricsBody);
    assert.equal(!early.ok && early.code, 'TWF_E_HELLO_FIRST');
    await e.hello();
    const join2 = await e.send('study.join', studyId, null, { manifestHash: manifestHashOf(), trainSamples: 5, valPatients: 1 });
    assert.equal(!join2.ok && join2.code, 'TWF_E_NOT_PARTICIPANT');
    const up = await e.send('update.chunk', studyId, 1, prepared[0].ciphertexts[0], a.chunkMeta(1, 0, 2, 10));
    assert.equal(!up.ok && up.code, 'TWF_E_NOT_PARTICIPANT');
    assert.equal(e.inbox.filter((m) => m.header.type === 'study.announce' || m.header.type === 'keys.deliver').length, 0, 'never shown the study, never given a key');
    e.close();
  });
  const manifestHashOf = () => c.engine.studyStatus(studyId).manifestHash;

  it('aggregates the honest uploads exactly; the coordinator cannot decrypt what it stores, and a single upload decrypts to noise even with the study key', async () => {
    for (let k = 0; k < 3; k++) {
      const cts = prepared[k].ciphertexts;
      for (let i = 0; i < cts.length; i++) {
        const ack = await parts[k].raw.send('update.chunk', studyId, 1, cts[i], parts[k].chunkMeta(1, i, cts.length, N[k]));
        assert.equal(ack.ok, true, JSON.stringify(ack));
        if (k === 0 && i === 0) {
          const dup = await a.raw.send('update.chunk', studyId, 1, cts[0], a.chunkMeta(1, 0, cts.length, N[0]));
          assert.equal(!dup.ok && dup.code, 'TWF_E_DUPLICATE_CHUNK');
        }
      }
    }
    for (const p of parts) assert.equal((await p.sign(1)).ack.ok, true);
    for (const p of parts) assert.equal((await p.reveal(1)).ok, true);
    const { avg, info } = await a.aggregate(1);
    assert.equal(info.totalSamples, 60);
    let maxErr = 0;
    for (let i = 0; i < avg.length; i++) maxErr = Math.max(maxErr, Math.abs(avg[i] - (N[0] * deltas[0][i] + N[1] * deltas[1][i] + N[2] * deltas[2][i]) / 60));
    assert.ok(maxErr <= 3 * 2 ** -21 + 1e-7, `max error ${maxErr}`);
    const late = await a.raw.send('update.chunk', studyId, 1, prepared[0].ciphertexts[1], a.chunkMeta(1, 1, 2, N[0]));
    assert.equal(!late.ok && late.code, 'TWF_E_ROUND_CLOSED');

    // Everything the coordinator holds: its database and its identity file.
    const stored = (c.db.$client.prepare('select ct from accumulators order by idx').all() as { ct: Buffer }[]).map((r) => new Uint8Array(r.ct));
    assert.equal(stored.length, 2);
    const coordId = loadIdentity(join(tmp.dir, 'coordinator', 'coordinator-identity.json'));
    assert.throws(
      () => decryptAverage(a.he, generateSecretKey(a.he), stored, avg.length, 60, 1),
      (e: unknown) => e instanceof HeError && e.code === 'TWF_E_HE_DECRYPT',
    );
    for (const k of [coordId.ed25519SecretKey, coordId.x25519SecretKey]) assert.throws(() => decryptAverage(a.he, k, stored, avg.length, 60, 1), HeError);
    const sealed = c.db.$client.prepare('select sealed_key from sealed_keys').all() as { sealed_key: string }[];
    assert.equal(sealed.length, 3);
    for (const s of sealed) assert.throws(() => openSealed(fromB64(s.sealed_key), coordId));
    assert.deepEqual(
      readdirSync(join(tmp.dir, 'coordinator')).filter((f) => !/^(coordinator(\.db(-wal|-shm)?|-identity\.json)|chunks)$/.test(f)),
      [],
    );
    // The chunk logs (ciphertexts as uploaded, the round's durable record until its sums are written) are gone with the round.
    assert.deepEqual(readdirSync(join(tmp.dir, 'coordinator', 'chunks')), []);
    assert.ok(!readFileSync(join(tmp.dir, 'coordinator', 'coordinator-identity.json'), 'utf8').includes(toB64(a.keys.get(1)!).slice(0, 40)));
    // Collusion of the coordinator with a site (which holds the study key): B's upload alone is masked.
    const single = decryptSlots(a.he, a.keys.get(1)!, prepared[1].ciphertexts, avg.length);
    const t = Number(a.he.plainModulus);
    const mean = single.reduce((x, y) => x + y, 0) / single.length / t;
    const inQRange = single.filter((v) => v <= N[1] * 2 ** 20 || v >= t - N[1] * 2 ** 20).length;
    assert.ok(Math.abs(mean - 0.5) < 0.03, `slots look uniform mod t (mean ${mean.toFixed(3)} t)`);
    assert.ok(inQRange < 5, `${inQRange} of ${single.length} slots fall where an unmasked value would`);
  });

  it('keeps an intact, signed audit chain through all of it, with every attributable refusal audited', async () => {
    await waitFor(() => c.engine.studyStatus(studyId).state === 'completed', 'study completion', 10_000);
    const v = verifyAuditChain(c.engine.audit.entries(), c.engine.identity.ed25519PublicKey);
    assert.equal(v.ok, true, JSON.stringify(v.firstBroken));
    const codes = new Set(audited().map((d) => d.split(':')[0]));
    for (const code of [
      'TWF_E_REPLAY',
      'TWF_E_MALFORMED',
      'TWF_E_STALE_MESSAGE',
      'TWF_E_WRONG_RECIPIENT',
      'TWF_E_WRONG_ROUND',
      'TWF_E_BAD_CIPHERTEXT',
      'TWF_E_UPDATE_SHAPE',
      'TWF_E_SAMPLES_BOUND',
      'TWF_E_NOT_PARTICIPANT',
      'TWF_E_HELLO_FIRST',
      'TWF_E_DUPLICATE_CHUNK',
      'TWF_E_ROUND_CLOSED',
    ]) {
      assert.ok(codes.has(code), `${code} audited`);
    }
    const m = await metricsText();
    assert.match(m, /twinfed_messages_rejected_total\{code="TWF_E_BAD_SIGNATURE"\} 1/);
    assert.match(m, /twinfed_updates_accepted_total 3/);
  });
});
