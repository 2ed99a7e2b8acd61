import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { sha256Hex } from '@twinfed/protocols';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseCoordinatorConfig } from './config.js';
import { openCoordinatorDb } from './db/index.js';
import { FakeSite, Lab, honestRound } from './testing.js';

type Row = { round: number; state: string; aggregate_digest: string | null; aggregate_bytes: number | null; aggregate_pruned_at_ms: number | null; survivors_json: string | null };

async function labWith(n: number, rounds: number, catchUpRounds?: number, db?: Parameters<typeof Lab.create>[1]) {
  const lab = await Lab.create(catchUpRounds === undefined ? {} : { catchUpRounds }, db);
  const sites: FakeSite[] = [];
  for (let i = 0; i < n; i++) sites.push(await lab.site(`H${i + 1}`));
  const studyId = await lab.study(sites, { rounds });
  return { lab, sites, studyId };
}

const roundRows = (lab: Lab, studyId: string) =>
  lab.db.$client.prepare('select round, state, aggregate_digest, aggregate_bytes, aggregate_pruned_at_ms, survivors_json from rounds where study_id = ? order by round').all(studyId) as Row[];
const accRounds = (lab: Lab, studyId: string) =>
  (lab.db.$client.prepare('select distinct round from accumulators where study_id = ? order by round').all(studyId) as { round: number }[]).map((r) => r.round);

/** The catch-up window: aggregates older than catchUpRounds closed rounds lose their ciphertexts, keep their digest. */
describe('coordinator: pruning aggregates outside the catch-up window', () => {
  it('keeps the newest window, prunes the rest with digest, size and contributors kept; a request for a pruned round is refused', async () => {
    const { lab, sites, studyId } = await labWith(3, 5, 2);
    const published = new Map<number, string>();
    for (let i = 1; i <= 5; i++) {
      assert.equal(await honestRound(sites), i);
      const env = sites[0].take('round.aggregate');
      published.set(env.header.round!, env.header.digest);
      // The window never drops below 2: the newest aggregate is always there to re-send.
      assert.deepEqual(accRounds(lab, studyId), i === 1 ? [1] : [i - 1, i]);
    }
    assert.equal(lab.engine.studyStatus(studyId).state, 'completed');
    assert.ok(!lab.logs.some((l) => l.includes('reclaiming')), lab.logs.join('\n'));
    const rows = roundRows(lab, studyId);
    assert.deepEqual(
      rows.map((r) => [r.round, r.state, r.aggregate_pruned_at_ms !== null]),
      [
        [1, 'closed', true],
        [2, 'closed', true],
        [3, 'closed', true],
        [4, 'closed', false],
        [5, 'closed', false],
      ],
    );
    for (const r of rows) {
      // The digest kept is that of the body every site received (and records in aggregate.applied).
      assert.equal(r.aggregate_digest, published.get(r.round), `round ${r.round}`);
      assert.ok((r.aggregate_bytes ?? 0) > 1000);
      assert.equal(JSON.parse(r.survivors_json!).length, 3);
    }
    const closed = lab.engine.audit.entries().filter((e) => e.action === 'round.closed');
    assert.deepEqual(
      closed.map((e) => [e.round, e.digest]),
      rows.map((r) => [r.round, r.aggregate_digest]),
    );

    // A site that has model 2 asks from round 3: pruned, refused with the new code, nothing sent.
    sites[2].inbox.length = 0;
    const refused = await sites[2].send('aggregate.request', studyId, null, { fromRound: 3 });
    assert.equal(refused.ok, false);
    assert.equal(!refused.ok && refused.code, 'TWF_E_AGGREGATE_PRUNED');
    assert.match(!refused.ok ? refused.detail : '', /catch-up window 2 rounds; the oldest kept is round 4/);
    assert.equal(sites[2].has('round.aggregate'), false);
    assert.ok(lab.engine.audit.entries().some((e) => e.action === 'msg.rejected' && e.detail?.startsWith('TWF_E_AGGREGATE_PRUNED')));
    // Within the window: both kept aggregates, byte for byte what was published.
    const ok = await sites[2].send('aggregate.request', studyId, null, { fromRound: 4 });
    assert.ok(ok.ok);
    assert.deepEqual(ok.ok && ok.info?.sent, [4, 5]);
    for (const round of [4, 5]) {
      const env = sites[2].take('round.aggregate');
      assert.equal(env.header.round, round);
      assert.equal(sha256Hex(env.body), published.get(round));
    }
  });

  it('the default window (20) keeps every aggregate of a short study', async () => {
    const { lab, sites, studyId } = await labWith(3, 3);
    for (let i = 0; i < 3; i++) await honestRound(sites);
    assert.deepEqual(accRounds(lab, studyId), [1, 2, 3]);
    assert.ok(roundRows(lab, studyId).every((r) => r.aggregate_pruned_at_ms === null && r.aggregate_digest !== null));
  });

  it('a failure inside the closing transaction (a crash) prunes nothing and closes nothing; the retry does both', async () => {
    const { lab, sites, studyId } = await labWith(3, 4, 2);
    for (let i = 0; i < 2; i++) await honestRound(sites);
    // Round 3 closing would prune round 1: make that delete abort, as a kill -9 mid-transaction would.
    lab.db.$client.exec(`create trigger crash before delete on accumulators when old.round = 1 begin select raise(abort, 'simulated crash'); end`);
    let round = 0;
    for (const s of sites) round = (await s.setup()).round;
    for (const s of sites) await s.upload(round);
    for (const s of sites) await s.sign(round);
    for (const s of sites) await s.reveal(round).catch(() => undefined);
    assert.equal(round, 3);
    const before = roundRows(lab, studyId);
    assert.ok(
      lab.logs.some((l) => l.includes('simulated crash')),
      lab.logs.join('\n'),
    );
    assert.equal(before[2].state, 'open', 'the close rolled back with the prune');
    assert.equal(before[2].aggregate_digest, null);
    assert.ok(before.every((r) => r.aggregate_pruned_at_ms === null));
    assert.deepEqual(accRounds(lab, studyId), [1, 2, 3]);
    assert.equal(lab.engine.audit.entries().filter((e) => e.action === 'round.closed').length, 2);
    // The coordinator "restarts" (same file) once the fault is gone: the next tick closes and prunes in one go.
    lab.db.$client.exec('drop trigger crash');
    lab.restart();
    for (const s of sites) await s.connect();
    await lab.advance(1000);
    const after = roundRows(lab, studyId);
    assert.equal(after[2].state, 'closed');
    assert.deepEqual(accRounds(lab, studyId), [2, 3]);
    assert.ok(after[0].aggregate_pruned_at_ms !== null && after[0].aggregate_digest !== null);
  });

  it('on a SQLite file (auto_vacuum incremental) the pages of pruned aggregates go back: the file stops growing', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'twinfed-prune-'));
    try {
      const db = openCoordinatorDb(join(dir, 'coordinator.db'));
      assert.equal(db.$client.pragma('auto_vacuum', { simple: true }), 2);
      const { lab, sites, studyId } = await labWith(3, 12, 2, db);
      const pages: number[] = [];
      for (let i = 0; i < 12; i++) {
        await honestRound(sites);
        for (const s of sites) while (s.has('round.aggregate')) s.take('round.aggregate');
        pages.push(db.$client.pragma('page_count', { simple: true }) as number);
        assert.equal(db.$client.pragma('freelist_count', { simple: true }), 0, `round ${i + 1}: free pages left in the file`);
      }
      assert.deepEqual(accRounds(lab, studyId), [11, 12]);
      assert.ok(!lab.logs.some((l) => l.includes('reclaiming')), lab.logs.join('\n'));
      // Rounds 7-12 add their round rows, secure-aggregation messages and audit entries (a few
      // pages each), not an aggregate each: under half of what six kept aggregates would take.
      const aggPages = Math.ceil((roundRows(lab, studyId)[0].aggregate_bytes ?? 0) / 4096);
      const acc = db.$client.prepare("select count(*) n from dbstat where name = 'accumulators'").get() as { n: number };
      assert.ok(acc.n <= 2 * aggPages + 2, `accumulators hold ${acc.n} pages; two aggregates are ${2 * aggPages}`);
      assert.ok(pages[11] - pages[5] < 3 * aggPages, `grew ${pages[11] - pages[5]} pages over 6 rounds (one aggregate is ${aggPages})`);
      db.$client.close();
      assert.ok(statSync(join(dir, 'coordinator.db')).size > 0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('catchUpRounds: default 20, at least 2, at most 100000', () => {
    const base = { dataDir: '/tmp/x', adminToken: 'a'.repeat(32) };
    assert.equal(parseCoordinatorConfig(base).catchUpRounds, 20);
    assert.equal(parseCoordinatorConfig({ ...base, catchUpRounds: 2 }).catchUpRounds, 2);
    for (const bad of [0, 1, 1.5, 100_001, -1]) assert.throws(() => parseCoordinatorConfig({ ...base, catchUpRounds: bad }), /TWF_E_CONFIG.*catchUpRounds/);
  });
});
