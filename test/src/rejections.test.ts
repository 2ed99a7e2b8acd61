import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { unpackFrames, type StudyManifest } from '@twinfed/protocols';
import { generateIdentity, openSealed, sealTo, toB64, fromB64, loadIdentity } from '@twinfed/shared/crypto/index';
import { verifyAuditChain } from '@twinfed/shared/audit/index';
import {
  HeError, createHeContext, decryptAverage, encryptWeightedUpdate, generateSecretKey, heParamsDigest, type HeContext, type HeParams,
} from '@twinfed/shared/he/index';
import type { Coordinator } from '@twinfed/coordinator';
import { RawSite, enrolNewSite, lead, startCoordinator, tempDir, tinySpec, waitFor } from './harness.js';

/**
 * Every way a message can be wrong is refused with its own code and written
 * to the coordinator's audit log; none of them reaches the aggregate.
 * Real coordinator (SQLite file, socket on loopback), real signatures, real SEAL.
 */
describe('coordinator refuses bad messages, each with its code, and audits it', () => {
  const tmp = tempDir('reject');
  let c: Coordinator;
  let url: string;
  let a: RawSite;
  let studyId: string;
  let manifest: StudyManifest;
  let ctx: HeContext;
  let sk: Uint8Array;
  const length = 5000;
  const delta = Float32Array.from({ length }, (_, i) => Math.sin(i) * 0.01);

  const chunkMeta = (index: number, count: number, nSamples = 10) => ({ index, count, nSamples, length, heParamsDigest: heParamsDigest(manifest.encryption as HeParams) });
  const rejectedCodes = () => c.engine.audit.entries().filter((e) => e.action === 'msg.rejected' || e.action === 'connect.refused').map((e) => e.detail ?? '');

  before(async () => {
    ({ c, url } = await startCoordinator(join(tmp.dir, 'coordinator')));
    await enrolNewSite(url, join(tmp.dir, 'a'), 'Hospital A');
    const created = await lead<{ studyId: string; manifest: StudyManifest; manifestHash: string }>(url, 'POST', '/api/studies', tinySpec({ rounds: 1, minSites: 1 }));
    assert.equal(created.status, 201);
    ({ studyId, manifest } = created.json);
    assert.equal((await lead(url, 'POST', `/api/studies/${studyId}/start`)).status, 200);

    a = await RawSite.create(url, join(tmp.dir, 'a'));
    await a.connected();
    assert.deepEqual(await a.hello(), { ok: true, info: { authenticated: true } });
    await a.next('study.announce');
    assert.equal((await a.send('study.join', studyId, null, { manifestHash: created.json.manifestHash, trainSlices: 10, valPatients: 2 })).ok, true);
    // A is the first joined site, so it deals the study key: created here, sealed to each recipient.
    const req = await a.next('keys.request');
    ctx = await createHeContext(manifest.encryption as HeParams);
    sk = generateSecretKey(ctx);
    const recipients = (JSON.parse(Buffer.from(req.body).toString()) as { recipients: { siteId: string; x25519PublicKey: string }[] }).recipients;
    assert.deepEqual(recipients.map((r) => r.siteId), [a.siteId]);
    const ack = await a.send('keys.sealed', studyId, null, { heParamsDigest: heParamsDigest(manifest.encryption as HeParams), recipients: recipients.map((r) => ({ siteId: r.siteId, sealedKey: toB64(sealTo(fromB64(r.x25519PublicKey), sk)) })) });
    assert.equal(ack.ok, true);
    await a.next('keys.deliver');
    const start = await a.next('round.start');
    assert.equal(start.header.round, 1);
  });

  after(async () => {
    a?.close();
    await c?.close();
    tmp.cleanup();
  });

  it('refuses a site speaking another protocol major version at connect', async () => {
    const s = await RawSite.create(url, join(tmp.dir, 'a'), { protocolVersion: '2.0' });
    const r = await s.refused();
    s.close();
    assert.equal(r.code, 'TWF_E_PROTOCOL_VERSION');
    assert.ok(rejectedCodes().some((d) => d.startsWith('TWF_E_PROTOCOL_VERSION')));
  });

  it('refuses an unknown site at connect', async () => {
    const s = await RawSite.create(url, join(tmp.dir, 'a'), { siteId: 'site-nobody' });
    const r = await s.refused();
    s.close();
    assert.equal(r.code, 'TWF_E_UNKNOWN_SITE');
    assert.ok(rejectedCodes().some((d) => d.startsWith('TWF_E_UNKNOWN_SITE')));
  });

  it('refuses a forged signature', async () => {
    const mallory = generateIdentity();
    const env = a.envelope('metrics.report', studyId, 1, { evaluatedRound: 0, meanDice: 0.9, valPatients: 3, trainLoss: null, trainMs: null, encryptMs: null, uploadBytes: null }, undefined, { secretKey: mallory.ed25519SecretKey });
    const ack = await a.emit(env);
    assert.equal(ack.ok, false);
    assert.equal(!ack.ok && ack.code, 'TWF_E_BAD_SIGNATURE');
    assert.ok(rejectedCodes().some((d) => d.startsWith('TWF_E_BAD_SIGNATURE')));
  });

  it('refuses a replayed message', async () => {
    const env = a.envelope('metrics.report', studyId, 0, { evaluatedRound: 0, meanDice: 0.1, valPatients: 3, trainLoss: null, trainMs: null, encryptMs: null, uploadBytes: null });
    assert.equal((await a.emit(env)).ok, true);
    const again = await a.emit(env);
    assert.equal(!again.ok && again.code, 'TWF_E_REPLAY');
    assert.ok(rejectedCodes().some((d) => d.startsWith('TWF_E_REPLAY')));
  });

  it('refuses a malformed payload and a malformed envelope', async () => {
    const bad = await a.send('metrics.report', studyId, 0, { evaluatedRound: 'zero', meanDice: 7 });
    assert.equal(!bad.ok && bad.code, 'TWF_E_MALFORMED');
    assert.match(!bad.ok ? bad.detail : '', /evaluatedRound|meanDice/);
    const junk = await a.emit({ header: { type: 'hello' }, body: 'x' });
    assert.equal(!junk.ok && junk.code, 'TWF_E_MALFORMED');
  });

  it('refuses a payload altered after signing', async () => {
    const env = a.envelope('metrics.report', studyId, 0, { evaluatedRound: 0, meanDice: 0.2, valPatients: 3, trainLoss: null, trainMs: null, encryptMs: null, uploadBytes: null });
    const tampered = { ...env, body: new Uint8Array(Buffer.from(Buffer.from(env.body).toString().replace('0.2', '0.9'))) };
    const ack = await a.emit(tampered);
    assert.equal(!ack.ok && ack.code, 'TWF_E_DIGEST_MISMATCH');
  });

  it('refuses a message whose timestamp is outside the clock window', async () => {
    const env = a.envelope('metrics.report', studyId, 0, { evaluatedRound: 0, meanDice: 0.2, valPatients: 3, trainLoss: null, trainMs: null, encryptMs: null, uploadBytes: null }, undefined, { nowMs: Date.now() - 3_600_000 });
    const ack = await a.emit(env);
    assert.equal(!ack.ok && ack.code, 'TWF_E_STALE_MESSAGE');
  });

  it('refuses an update for the wrong round', async () => {
    const enc = encryptWeightedUpdate(ctx, sk, delta, 10, 1);
    const ack = await a.send('update.chunk', studyId, 7, enc.ciphertexts[0], chunkMeta(0, enc.ciphertexts.length));
    assert.equal(!ack.ok && ack.code, 'TWF_E_WRONG_ROUND');
    assert.ok(rejectedCodes().some((d) => d.startsWith('TWF_E_WRONG_ROUND')));
  });

  it('refuses a corrupted ciphertext chunk before it touches the sum', async () => {
    const enc = encryptWeightedUpdate(ctx, sk, delta, 10, 1);
    const bad = new Uint8Array(enc.ciphertexts[0]);
    bad[Math.floor(bad.length / 2)] ^= 0xff;
    const ack = await a.send('update.chunk', studyId, 1, bad, chunkMeta(0, enc.ciphertexts.length));
    assert.equal(!ack.ok && ack.code, 'TWF_E_BAD_CIPHERTEXT');
    assert.ok(rejectedCodes().some((d) => d.startsWith('TWF_E_BAD_CIPHERTEXT')));
    const rows = c.db.$client.prepare('select count(*) n from accumulators').get() as { n: number };
    assert.equal(rows.n, 0, 'nothing was added to the running sum');
  });

  it('refuses an update from a site that has not joined (its officer has not approved) and a join with another manifest hash', async () => {
    await enrolNewSite(url, join(tmp.dir, 'b'), 'Hospital B');
    const b = await RawSite.create(url, join(tmp.dir, 'b'));
    await b.connected();
    const early = await b.send('metrics.report', studyId, 0, { evaluatedRound: 0, meanDice: 0.5, valPatients: 3, trainLoss: null, trainMs: null, encryptMs: null, uploadBytes: null });
    assert.equal(!early.ok && early.code, 'TWF_E_HELLO_FIRST');
    await b.hello();
    const enc = encryptWeightedUpdate(ctx, sk, delta, 10, 1);
    const up = await b.send('update.chunk', studyId, 1, enc.ciphertexts[0], chunkMeta(0, enc.ciphertexts.length));
    assert.equal(!up.ok && up.code, 'TWF_E_NOT_PARTICIPANT');
    const join2 = await b.send('study.join', studyId, null, { manifestHash: 'f'.repeat(64), trainSlices: 5, valPatients: 1 });
    assert.equal(!join2.ok && join2.code, 'TWF_E_MANIFEST_MISMATCH');
    b.close();
  });

  it('still aggregates a correct update exactly, and the coordinator cannot decrypt what it stores', async () => {
    const enc = encryptWeightedUpdate(ctx, sk, delta, 10, 1);
    for (let i = 0; i < enc.ciphertexts.length; i++) {
      const ack = await a.send('update.chunk', studyId, 1, enc.ciphertexts[i], chunkMeta(i, enc.ciphertexts.length));
      assert.equal(ack.ok, true, JSON.stringify(ack));
      if (i === 0) {
        // The same chunk again (new sequence number, so not a replay): counted once only.
        const dup = await a.send('update.chunk', studyId, 1, enc.ciphertexts[0], chunkMeta(0, enc.ciphertexts.length));
        assert.equal(!dup.ok && dup.code, 'TWF_E_DUPLICATE_CHUNK');
      }
    }
    const agg = await a.next('round.aggregate');
    assert.equal(agg.header.meta?.totalSamples, 10);
    const avg = decryptAverage(ctx, sk, unpackFrames(agg.body), length, 10, 1);
    let maxErr = 0;
    for (let i = 0; i < length; i++) maxErr = Math.max(maxErr, Math.abs(avg[i] - delta[i]));
    assert.ok(maxErr <= 2 ** -21 + 1e-7, `max error ${maxErr}`);
    // A late update for the closed round is refused, not mixed into anything.
    const late = await a.send('update.chunk', studyId, 1, enc.ciphertexts[1], chunkMeta(1, enc.ciphertexts.length));
    assert.equal(!late.ok && late.code, 'TWF_E_ROUND_CLOSED');

    // Everything the coordinator holds: its database and its identity file.
    const stored = c.db.$client.prepare('select ct from accumulators order by idx').all() as { ct: Buffer }[];
    assert.equal(stored.length, enc.ciphertexts.length);
    const sums = stored.map((r) => new Uint8Array(r.ct));
    const coordId = loadIdentity(join(tmp.dir, 'coordinator', 'coordinator-identity.json'));
    // (1) no SEAL key in its files: any key it could make is a fresh one, and decrypting fails;
    assert.throws(() => decryptAverage(ctx, generateSecretKey(ctx), sums, length, 10, 1), (e: unknown) => e instanceof HeError && e.code === 'TWF_E_HE_DECRYPT');
    // (2) its own identity key material is not a SEAL key;
    for (const k of [coordId.ed25519SecretKey, coordId.x25519SecretKey]) assert.throws(() => decryptAverage(ctx, k, sums, length, 10, 1), HeError);
    // (3) the sealed study keys it relays do not open with its X25519 key.
    const sealed = c.db.$client.prepare('select sealed_key from study_sites').all() as { sealed_key: string }[];
    assert.ok(sealed.length > 0);
    for (const s of sealed) assert.throws(() => openSealed(fromB64(s.sealed_key), coordId));
    assert.deepEqual(readdirSync(join(tmp.dir, 'coordinator')).filter((f) => !/^coordinator(\.db(-wal|-shm)?|-identity\.json)$/.test(f)), []);
    assert.ok(!readFileSync(join(tmp.dir, 'coordinator', 'coordinator-identity.json'), 'utf8').includes(toB64(sk).slice(0, 40)));
  });

  it('keeps an intact, signed audit chain through all of it', async () => {
    await waitFor(() => c.engine.studyStatus(studyId).state === 'completed', 'study completion', 10_000);
    const entries = c.engine.audit.entries();
    const v = verifyAuditChain(entries, c.engine.identity.ed25519PublicKey);
    assert.equal(v.ok, true, JSON.stringify(v.firstBroken));
    const codes = new Set(rejectedCodes().map((d) => d.split(':')[0]));
    for (const code of ['TWF_E_PROTOCOL_VERSION', 'TWF_E_UNKNOWN_SITE', 'TWF_E_BAD_SIGNATURE', 'TWF_E_REPLAY', 'TWF_E_MALFORMED', 'TWF_E_DIGEST_MISMATCH', 'TWF_E_STALE_MESSAGE', 'TWF_E_WRONG_ROUND', 'TWF_E_BAD_CIPHERTEXT', 'TWF_E_NOT_PARTICIPANT', 'TWF_E_MANIFEST_MISMATCH', 'TWF_E_HELLO_FIRST', 'TWF_E_DUPLICATE_CHUNK', 'TWF_E_ROUND_CLOSED']) {
      assert.ok(codes.has(code), `${code} audited`);
    }
    const metrics = await (await fetch(new URL('/metrics', url))).text();
    assert.match(metrics, /twinfed_messages_rejected_total\{code="TWF_E_BAD_SIGNATURE"\} 1/);
    assert.match(metrics, /twinfed_updates_accepted_total 1/);
  });
});
