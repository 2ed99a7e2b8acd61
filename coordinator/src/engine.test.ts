import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { PROTOCOL_VERSION, WireError } from '@twinfed/protocols';
import { sealEnvelope, toB64, generateIdentity } from '@twinfed/shared/crypto/index';
import { FakeSite, Lab, honestRound } from './testing.js';

const body = <T>(s: FakeSite, type: Parameters<FakeSite['take']>[0]) => JSON.parse(Buffer.from(s.take(type).body).toString('utf8')) as T;

async function labWith(n: number, over: Record<string, unknown> = {}) {
  const lab = await Lab.create();
  const sites: FakeSite[] = [];
  for (let i = 0; i < n; i++) sites.push(await lab.site(`H${i + 1}`));
  const studyId = await lab.study(sites, over);
  return { lab, sites, studyId, e: lab.engine };
}

/** The engine on an in-memory database, a fake transport and a fake clock; sites speak the raw protocol. */
describe('coordinator engine (in memory)', () => {
  it('runs two honest rounds to completion and tells the sites', async () => {
    const { lab, sites, studyId } = await labWith(3);
    assert.equal(await honestRound(sites), 1);
    for (const s of sites) assert.ok(s.has('round.aggregate'));
    assert.equal(await honestRound(sites), 2);
    assert.equal(lab.engine.studyStatus(studyId).state, 'completed');
    for (const s of sites) assert.ok(s.has('study.completed'));
  });

  it('a site that missed an aggregate catches up with aggregate.request', async () => {
    const { sites, studyId } = await labWith(3);
    await honestRound(sites);
    sites[2].inbox.length = 0; // the aggregate was lost
    const ack = await sites[2].send('aggregate.request', studyId, null, { fromRound: 1 });
    assert.ok(ack.ok);
    assert.deepEqual(ack.ok && ack.info?.sent, [1]);
    assert.equal(sites[2].take('round.aggregate').header.round, 1);
  });

  it('a deadline without quorum fails the round after the grace, and the next round opens', async () => {
    const { lab, sites, studyId } = await labWith(3);
    await sites[0].setup();
    await sites[1].setup();
    await lab.advance(30_000);
    assert.equal(lab.engine.roundStatus(studyId, 1).state, 'open', 'within the grace period');
    await lab.advance(5_000);
    const r = lab.engine.roundStatus(studyId, 1);
    assert.equal(r.state, 'failed');
    assert.match(r.failReason!, /mask keys: 2 of 3 answered/);
    for (const s of sites) assert.ok(s.has('round.failed'));
    await lab.advance(1);
    assert.equal(lab.engine.studyStatus(studyId).currentRound, 2);
  });

  it('a late joiner gets the key and takes part in the next round', async () => {
    const lab = await Lab.create();
    const sites = [await lab.site('A'), await lab.site('B'), await lab.site('C'), await lab.site('D')];
    const { studyId } = await lab.engine.createStudy({ ...SPEC_OVERRIDE });
    lab.engine.startStudy(studyId, { sites: sites.map((s) => s.siteId) });
    for (const s of sites) await s.connect();
    for (const s of sites.slice(0, 3)) await s.approveAndJoin(studyId);
    await sites[0].deal();
    for (const s of sites.slice(1, 3)) s.acceptKey();
    await lab.engine.idle();
    assert.deepEqual(
      lab.engine.roundStatus(studyId, 1).participants,
      sites.slice(0, 3).map((s) => s.siteId),
    );
    await sites[3].approveAndJoin(studyId);
    assert.equal(sites[3].acceptKey(), 1, 'the key was sealed for the whole roster');
    await honestRound(sites.slice(0, 3));
    assert.deepEqual(
      lab.engine.roundStatus(studyId, 2).participants,
      sites.map((s) => s.siteId),
    );
  });

  it('a changed manifest needs re-approval: old hash refused, new hash joins, new key epoch', async () => {
    const lab = await Lab.create();
    const sites = [await lab.site('A'), await lab.site('B'), await lab.site('C'), await lab.site('D')];
    const studyId = await lab.study(sites.slice(0, 3));
    const old = sites[0].manifestHash;
    lab.engine.changeRoster(studyId, { add: [sites[3].siteId] });
    await lab.engine.idle();
    assert.equal(lab.engine.roundStatus(studyId, 1).state, 'failed');
    const refused = await sites[1].send('study.join', studyId, null, { manifestHash: old, trainSamples: 100, valPatients: 3 });
    assert.equal(!refused.ok && refused.code, 'TWF_E_MANIFEST_MISMATCH');
    await sites[3].connect();
    for (const s of sites) assert.ok((await s.approveAndJoin(studyId)).ok);
    assert.notEqual(sites[0].manifestHash, old);
    assert.equal(lab.engine.studyStatus(studyId).joined.length, 4);
  });

  it('stop and restart: a new engine on the same database recovers the open round and finishes it', async () => {
    const { lab, sites, studyId } = await labWith(3);
    for (const s of sites) await s.setup();
    const chunks = sites.map((s) => s.prepare(1));
    await sites[0].send('update.chunk', studyId, 1, chunks[0][0].body, chunks[0][0].meta);
    lab.restart();
    for (const s of sites) {
      s.inbox.length = 0;
      await s.connect();
    }
    assert.equal(lab.engine.roundStatus(studyId, 1).phase, 'upload');
    assert.ok(!sites[0].has('mask.peers'), 'its one-chunk update stored before the restart is complete: nothing to resend');
    for (const s of sites.slice(1)) assert.deepEqual((JSON.parse(Buffer.from(s.take('mask.peers').body).toString('utf8')) as { alreadyReceived: number[] }).alreadyReceived, []);
    for (let i = 1; i < 3; i++) assert.ok((await sites[i].send('update.chunk', studyId, 1, chunks[i][0].body, chunks[i][0].meta)).ok);
    for (const s of sites) await s.sign(1);
    for (const s of sites) await s.reveal(1);
    assert.equal(lab.engine.roundStatus(studyId, 1).state, 'closed');
  });

  it('stopStudy stops with a reason; startStudy resumes it', async () => {
    const { lab, sites, studyId } = await labWith(3);
    lab.engine.stopStudy(studyId);
    assert.equal(lab.engine.studyStatus(studyId).state, 'stopped');
    assert.equal(lab.engine.studyStatus(studyId).stopReason, 'the lead stopped the study');
    assert.ok(sites[0].has('study.state'));
    lab.engine.startStudy(studyId);
    await lab.engine.idle();
    assert.equal(lab.engine.studyStatus(studyId).state, 'running');
    assert.equal(lab.engine.studyStatus(studyId).stopReason, null);
  });

  it('a site declines a round in its setup phase: the round goes on with the others', async () => {
    const { lab, sites, studyId } = await labWith(4);
    for (const s of sites.slice(0, 3)) await s.setup();
    const ack = await sites[3].send('round.decline', studyId, 1, { code: 'TWF_E_NO_DATA', detail: 'no new data this week' });
    assert.ok(ack.ok, JSON.stringify(ack));
    const r = lab.engine.roundStatus(studyId, 1);
    assert.equal(r.phase, 'upload', 'nobody else to wait for');
    assert.deepEqual(
      r.keySet,
      sites.slice(0, 3).map((s) => s.siteId),
    );
    assert.deepEqual(r.declined, [{ siteId: sites[3].siteId, code: 'TWF_E_NO_DATA', detail: 'no new data this week' }]);
    for (const s of sites.slice(0, 3)) await s.upload(1);
    for (const s of sites.slice(0, 3)) await s.sign(1);
    for (const s of sites.slice(0, 3)) await s.reveal(1);
    assert.equal(lab.engine.roundStatus(studyId, 1).state, 'closed');
    assert.equal(lab.engine.studyStatus(studyId).participants[3].dpExhausted, false);
  });

  it('a decline after its mask set-up forgets the set-up; a second set-up is refused', async () => {
    const { lab, sites, studyId } = await labWith(4);
    await sites[3].setup();
    assert.ok((await sites[3].send('round.decline', studyId, 1, { code: 'TWF_E_NO_DATA', detail: '' })).ok);
    for (const s of sites.slice(0, 3)) await s.setup();
    assert.deepEqual(
      lab.engine.roundStatus(studyId, 1).keySet,
      sites.slice(0, 3).map((s) => s.siteId),
    );
    const again = await sites[3].send('round.decline', studyId, 1, { code: 'TWF_E_NO_DATA', detail: '' });
    assert.equal(!again.ok && again.code, 'TWF_E_NOT_PARTICIPANT');
  });

  it('a decline that leaves fewer than the quorum fails the round cleanly', async () => {
    const { lab, sites, studyId } = await labWith(3);
    assert.ok((await sites[2].send('round.decline', studyId, 1, { code: 'TWF_E_NO_DATA', detail: '' })).ok);
    const r = lab.engine.roundStatus(studyId, 1);
    assert.equal(r.state, 'failed');
    assert.match(r.failReason!, /only 2 sites could answer, 3 needed/);
    assert.ok(sites[0].has('round.failed'));
  });

  it('a decline in the upload phase counts as a dropout: its masks are removed, the round closes', async () => {
    const { lab, sites, studyId } = await labWith(4);
    for (const s of sites) await s.setup();
    for (const s of sites.slice(0, 3)) await s.upload(1);
    sites[3].take('mask.peers');
    assert.ok((await sites[3].send('round.decline', studyId, 1, { code: 'TWF_E_NO_DATA', detail: 'training failed' })).ok);
    assert.equal(lab.engine.roundStatus(studyId, 1).phase, 'consistency');
    for (const s of sites.slice(0, 3)) await s.sign(1);
    for (const s of sites.slice(0, 3)) await s.reveal(1);
    const r = lab.engine.roundStatus(studyId, 1);
    assert.equal(r.state, 'closed');
    assert.deepEqual(
      r.survivors,
      sites.slice(0, 3).map((s) => s.siteId),
    );
  });

  it('TWF_E_DP_BUDGET marks the site exhausted: not asked again; too few left stops the study naming them', async () => {
    const { lab, sites, studyId } = await labWith(4);
    assert.ok((await sites[3].send('round.decline', studyId, 1, { code: 'TWF_E_DP_BUDGET', detail: 'epsilon 8 spent' })).ok);
    await honestRound(sites.slice(0, 3));
    assert.equal(lab.engine.studyStatus(studyId).participants[3].dpExhausted, true);
    assert.ok(!sites[3].has('round.start') || lab.engine.roundStatus(studyId, 2).participants.length === 3);
    assert.deepEqual(
      lab.engine.roundStatus(studyId, 2).participants,
      sites.slice(0, 3).map((s) => s.siteId),
    );
    assert.ok((await sites[2].send('round.decline', studyId, 2, { code: 'TWF_E_DP_BUDGET', detail: 'spent' })).ok);
    const st = lab.engine.studyStatus(studyId);
    assert.equal(lab.engine.roundStatus(studyId, 2).state, 'failed');
    assert.equal(st.state, 'stopped');
    assert.match(st.stopReason!, new RegExp(`${sites[2].siteId}`));
    assert.match(st.stopReason!, new RegExp(`${sites[3].siteId}`));
    const state = body<{ state: string }>(sites[0], 'study.state');
    assert.equal(state.state, 'stopped');
  });

  it('round.decline needs a TWF_E_ code and the open round', async () => {
    const { sites, studyId } = await labWith(3);
    const bad = await sites[0].send('round.decline', studyId, 1, { code: 'no budget', detail: '' });
    assert.equal(!bad.ok && bad.code, 'TWF_E_MALFORMED');
    const wrong = await sites[0].send('round.decline', studyId, 7, { code: 'TWF_E_NO_DATA', detail: '' });
    assert.equal(!wrong.ok && wrong.code, 'TWF_E_WRONG_ROUND');
    const long = await sites[0].send('round.decline', studyId, 1, { code: 'TWF_E_NO_DATA', detail: 'x'.repeat(501) });
    assert.equal(!long.ok && long.code, 'TWF_E_MALFORMED');
  });

  it('chunk race: a site evicted while its chunk awaits the HE context is refused inside the transaction', async () => {
    const { lab, sites, studyId } = await labWith(4);
    for (const s of sites) await s.setup();
    const c = sites[3].prepare(1)[0];
    const env = sealEnvelope(
      { id: sites[3].siteId, ed25519SecretKey: sites[3].identity.ed25519SecretKey, nextSeq: () => 100 },
      { to: lab.engine.coordinatorId, type: 'update.chunk', studyId, round: 1, body: c.body, meta: c.meta, nowMs: lab.clock.nowMs },
    );
    const pending = lab.engine.handle(sites[3].siteId, env);
    lab.engine.evictSite(studyId, sites[3].siteId, 'race');
    const ack = await pending;
    assert.equal(!ack.ok && ack.code, 'TWF_E_EVICTED');
    assert.equal((lab.db.$client.prepare('select count(*) n from update_chunks').get() as { n: number }).n, 0);
  });

  it('chunk race: a round aborted while a chunk is in flight keeps nothing of it', async () => {
    const { lab, sites, studyId } = await labWith(3);
    for (const s of sites) await s.setup();
    const c = sites[0].prepare(1)[0];
    const env = sealEnvelope(
      { id: sites[0].siteId, ed25519SecretKey: sites[0].identity.ed25519SecretKey, nextSeq: () => 100 },
      { to: lab.engine.coordinatorId, type: 'update.chunk', studyId, round: 1, body: c.body, meta: c.meta, nowMs: lab.clock.nowMs },
    );
    const pending = lab.engine.handle(sites[0].siteId, env);
    lab.engine.abortRound(studyId, 'race');
    const ack = await pending;
    assert.equal(!ack.ok && ack.code, 'TWF_E_ROUND_CLOSED');
    assert.equal((lab.db.$client.prepare('select count(*) n from accumulators').get() as { n: number }).n, 0);
  });

  it('declared samples above the joined count are refused (checked inside the chunk transaction)', async () => {
    const { sites, studyId } = await labWith(3);
    for (const s of sites) await s.setup();
    const c = sites[0].prepare(1, 101)[0];
    const ack = await sites[0].send('update.chunk', studyId, 1, c.body, c.meta);
    assert.equal(!ack.ok && ack.code, 'TWF_E_SAMPLES_BOUND');
  });

  it('stores task metrics by name and shows them in the round status', async () => {
    const { lab, sites, studyId } = await labWith(3);
    await honestRound(sites);
    const ack = await sites[0].send('metrics.report', studyId, 1, {
      evaluatedRound: 1,
      metrics: [
        { name: 'meanDice', value: 0.71 },
        { name: 'hd95Mm', value: null },
      ],
      valPatients: 3,
      trainLoss: 0.2,
      trainMs: 10,
      encryptMs: 5,
      uploadBytes: 1000,
    });
    assert.ok(ack.ok);
    const m = lab.engine.roundStatus(studyId, 1).metrics;
    assert.deepEqual(m[0].metrics, [
      { name: 'hd95Mm', value: null },
      { name: 'meanDice', value: 0.71 },
    ]);
    const dup = await sites[0].send('metrics.report', studyId, 1, {
      evaluatedRound: 1,
      metrics: [
        { name: 'a', value: 1 },
        { name: 'a', value: 2 },
      ],
      valPatients: 3,
      trainLoss: null,
      trainMs: null,
      encryptMs: null,
      uploadBytes: null,
    });
    assert.equal(!dup.ok && dup.code, 'TWF_E_MALFORMED');
  });

  it('a withdrawn site is excluded and a new key epoch is requested without it', async () => {
    const { lab, sites, studyId } = await labWith(4);
    assert.ok((await sites[3].send('study.withdraw', studyId, null, { manifestHash: sites[3].manifestHash, officer: 'DPO', reason: 'ethics' })).ok);
    const st = lab.engine.studyStatus(studyId);
    assert.equal(st.participants[3].excluded, 'withdrawn');
    assert.equal(st.keyEpoch, 2);
  });

  it('an old-version peer gets TWF_E_PROTOCOL_VERSION at enrolment', async () => {
    const lab = await Lab.create();
    const { token } = lab.engine.issueEnrolmentToken('old', 60);
    const id = generateIdentity();
    assert.throws(
      () => lab.engine.enrol({ token, protocolVersion: '2.1', ed25519PublicKey: toB64(id.ed25519PublicKey), x25519PublicKey: toB64(id.x25519PublicKey) }),
      (e: WireError) => e.code === 'TWF_E_PROTOCOL_VERSION' && e.detail.includes(PROTOCOL_VERSION),
    );
  });

  it('createStudy rejects encryption parameters the HE layer would reject later (422, naming encryption)', async () => {
    const lab = await Lab.create();
    const encryption = { scheme: 'bfv-sym-seeded', polyModulusDegree: 8192, coeffModulusBits: Array(8).fill(20), plainModulusBits: 48, precisionBits: 20 };
    await assert.rejects(lab.engine.createStudy({ ...SPEC_OVERRIDE, encryption }), (e: WireError) => e.code === 'TWF_E_HE_PARAMS' && e.status === 422 && /encryption: .*primes/.test(e.detail));
    await assert.rejects(
      lab.engine.createStudy({ ...SPEC_OVERRIDE, encryption: { ...encryption, polyModulusDegree: 4096, coeffModulusBits: [60], plainModulusBits: 51 } }),
      (e: WireError) => e.code === 'TWF_E_HE_PARAMS' && /plainModulusBits/.test(e.detail),
    );
    assert.ok((await lab.engine.createStudy({ ...SPEC_OVERRIDE, encryption: { ...encryption, polyModulusDegree: 4096, coeffModulusBits: [60], plainModulusBits: 42 } })).studyId);
  });
});

const SPEC_OVERRIDE = (await import('./testing.js')).SPEC;
