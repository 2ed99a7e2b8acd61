/**
 * What every CoordinatorStore must do, as node:test cases, run against each backend: SQLite
 * (sqlite.test.ts, in memory) and PostgreSQL (test/src/store-postgres.test.ts, a real server).
 * A behaviour the engine relies on belongs here, so both backends are held to it.
 */
import { afterEach, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { AuditLog, verifyAuditChain, type AuditBackend } from '@twinfed/shared/audit/index';
import { generateIdentity, initSodium } from '@twinfed/shared/crypto/index';
import type { CoordinatorStore } from './index.js';

export interface StoreUnderTest {
  store: CoordinatorStore;
  /** The audit log's rows in the same database and connection. */
  audit: AuditBackend;
  /** Runs raw SQL on the same connection (to check what the database itself refuses). */
  exec(sql: string): void;
  close(): void | Promise<void>;
}

/** A time past 2^31 ms and a byte count past 2^32: columns must hold 64-bit integers. */
const NOW_MS = 1_790_000_000_123;
const BIG_BYTES = 6_000_000_000;

export function storeConformance(name: string, open: () => StoreUnderTest | Promise<StoreUnderTest>): void {
  describe(`CoordinatorStore conformance: ${name}`, () => {
    let t: StoreUnderTest;
    let s: CoordinatorStore;
    beforeEach(async () => {
      t = await open();
      s = t.store;
    });
    afterEach(async () => {
      await t.close();
    });

    const study = (studyId: string, state: 'draft' | 'running' = 'running', createdAtMs = NOW_MS) =>
      s.insertStudy({ studyId, manifestJson: '{"title":"t"}', manifestHash: state === 'draft' ? '' : 'h1', state, createdAtMs });
    const round = (studyId: string, r: number, state: 'open' | 'closed' = 'open') =>
      s.insertRound({ studyId, round: r, state, openedAtMs: NOW_MS, deadlineAtMs: NOW_MS + 60_000, participantsJson: '["a","b","c"]' });

    it('nextSeq counts from 1, one more each call', () => {
      assert.deepEqual([s.nextSeq(), s.nextSeq(), s.nextSeq()], [1, 2, 3]);
    });

    it('enrolment tokens and sites: insert, read, use, order of enrolment, sequence, revocation', () => {
      s.insertToken({ tokenHash: 'th', siteName: 'A', expiresAtMs: NOW_MS });
      assert.deepEqual(s.token('th'), { tokenHash: 'th', siteName: 'A', expiresAtMs: NOW_MS, usedAtMs: null, siteId: null });
      s.useToken('th', 'site-a', NOW_MS + 1);
      assert.equal(s.token('th')?.siteId, 'site-a');
      assert.equal(s.token('nope'), undefined);
      s.insertSite({ siteId: 'site-b', siteName: 'B', ed25519PublicKey: 'ed', x25519PublicKey: 'x', enrolledAtMs: NOW_MS + 5 });
      s.insertSite({ siteId: 'site-a', siteName: 'A', ed25519PublicKey: 'ed', x25519PublicKey: 'x', enrolledAtMs: NOW_MS });
      assert.deepEqual(
        s.sites().map((x) => x.siteId),
        ['site-a', 'site-b'],
      );
      assert.deepEqual(s.site('site-a'), { siteId: 'site-a', siteName: 'A', ed25519PublicKey: 'ed', x25519PublicKey: 'x', enrolledAtMs: NOW_MS, lastSeq: 0, lastSeenAtMs: null, revokedAtMs: null });
      s.setSiteSeq('site-a', 42, NOW_MS + 9);
      s.revokeSite('site-b', NOW_MS + 10);
      assert.equal(s.site('site-a')?.lastSeq, 42);
      assert.equal(s.site('site-a')?.lastSeenAtMs, NOW_MS + 9);
      assert.equal(s.site('site-b')?.revokedAtMs, NOW_MS + 10);
      assert.equal(s.site('nope'), undefined);
    });

    it('a second row with the same primary key is refused, and the store still works', () => {
      s.insertSite({ siteId: 'dup', siteName: 'A', ed25519PublicKey: 'ed', x25519PublicKey: 'x', enrolledAtMs: NOW_MS });
      assert.throws(() => s.insertSite({ siteId: 'dup', siteName: 'B', ed25519PublicKey: 'ed', x25519PublicKey: 'x', enrolledAtMs: NOW_MS }));
      assert.equal(s.site('dup')?.siteName, 'A');
      assert.equal(s.nextSeq(), 1);
    });

    it('studies: defaults, filter by state, oldest first, partial updates, only drafts are deleted', () => {
      study('s2', 'running', NOW_MS + 2);
      study('s1', 'draft', NOW_MS + 1);
      assert.deepEqual(
        s.studies().map((x) => x.studyId),
        ['s1', 's2'],
      );
      assert.deepEqual(
        s.studies('draft').map((x) => x.studyId),
        ['s1'],
      );
      const r = s.study('s2')!;
      assert.equal(r.currentRound, 0);
      assert.equal(r.keyEpoch, 0);
      assert.equal(r.stopReason, null);
      s.updateStudy('s2', { state: 'stopped', stopReason: 'lead', currentRound: 3 });
      assert.deepEqual([s.study('s2')?.state, s.study('s2')?.stopReason, s.study('s2')?.currentRound, s.study('s2')?.manifestHash], ['stopped', 'lead', 3, 'h1']);
      assert.equal(s.deleteDraft('s2'), false, 'a started study is no draft');
      assert.equal(s.deleteDraft('s1'), true);
      assert.equal(s.deleteDraft('s1'), false);
      assert.equal(s.study('s1'), undefined);
    });

    it('roster rows: added once, updated, listed by study and by site', () => {
      study('s1');
      study('s2');
      s.addStudySite('s1', 'b');
      s.addStudySite('s1', 'a');
      s.addStudySite('s1', 'a');
      s.addStudySite('s2', 'a');
      assert.deepEqual(
        s.studySites('s1').map((x) => x.siteId),
        ['a', 'b'],
      );
      assert.deepEqual(s.studySite('s1', 'a'), {
        studyId: 's1',
        siteId: 'a',
        manifestHash: '',
        joinedAtMs: null,
        trainSamples: 0,
        valPatients: 0,
        excluded: null,
        excludedAtMs: null,
        dpExhaustedAtMs: null,
      });
      s.updateStudySite('s1', 'a', { manifestHash: 'h1', joinedAtMs: NOW_MS, trainSamples: 12, excluded: 'withdrawn' });
      const a = s.studySite('s1', 'a')!;
      assert.deepEqual([a.manifestHash, a.joinedAtMs, a.trainSamples, a.excluded], ['h1', NOW_MS, 12, 'withdrawn']);
      assert.deepEqual(
        s
          .studiesOfSite('a')
          .map((x) => x.studyId)
          .sort(),
        ['s1', 's2'],
      );
      assert.equal(s.studySite('s1', 'zz'), undefined);
    });

    it('key epochs and sealed keys: latest epoch, handout update, filters, delivery', () => {
      study('s1');
      for (const epoch of [1, 2]) s.insertEpoch({ studyId: 's1', epoch, manifestHash: 'h1', dealer: 'a', recipientsJson: '["a","b"]', requestedAtMs: NOW_MS + epoch });
      assert.equal(s.latestEpoch('s1')?.epoch, 2);
      assert.equal(s.latestEpoch('none'), undefined);
      s.updateEpoch('s1', 2, { handoutJson: '{"x":1}', dealtAtMs: NOW_MS + 7 });
      assert.deepEqual([s.epoch('s1', 2)?.handoutJson, s.epoch('s1', 2)?.dealtAtMs, s.epoch('s1', 1)?.handoutJson], ['{"x":1}', NOW_MS + 7, null]);
      s.insertSealedKey({ studyId: 's1', epoch: 2, siteId: 'b', sealedKey: 'kb', deliveredAtMs: null });
      s.insertSealedKey({ studyId: 's1', epoch: 2, siteId: 'a', sealedKey: 'ka', deliveredAtMs: null });
      s.insertSealedKey({ studyId: 's1', epoch: 2, siteId: 'a', sealedKey: 'other', deliveredAtMs: null });
      s.insertSealedKey({ studyId: 's1', epoch: 1, siteId: 'a', sealedKey: 'old', deliveredAtMs: NOW_MS });
      assert.deepEqual(
        s
          .sealedKeys('s1', 2, 'all')
          .map((k) => k.sealedKey)
          .sort(),
        ['ka', 'kb'],
        'a repeated sealed key is ignored',
      );
      s.markDelivered('s1', 2, 'a', NOW_MS + 8);
      assert.deepEqual(
        s.sealedKeys('s1', 2, 'undelivered').map((k) => k.siteId),
        ['b'],
      );
      assert.deepEqual(
        s.sealedKeys('s1', 2, { siteId: 'a' }).map((k) => [k.sealedKey, k.deliveredAtMs]),
        [['ka', NOW_MS + 8]],
      );
      assert.deepEqual(
        s
          .sealedKeysOfSite('s1', 'a')
          .map((k) => k.epoch)
          .sort(),
        [1, 2],
      );
    });

    it('rounds: column defaults, 64-bit integers, doubles, filter by state, in order', () => {
      study('s1');
      round('s1', 2, 'closed');
      round('s1', 1, 'open');
      const r = s.round('s1', 1)!;
      assert.deepEqual([r.phase, r.keyEpoch, r.baseVersion, r.threshold, r.totalSamples, r.bytesIn, r.aggregateMs, r.length, r.closedAtMs], ['setup', 0, 0, 0, 0, 0, 0, null, null]);
      s.updateRound('s1', 1, { phase: 'upload', bytesIn: BIG_BYTES, aggregateMs: 12.375, aggregateBytes: BIG_BYTES + 1, phaseDeadlineAtMs: NOW_MS + 1, keySetJson: '["a"]' });
      const u = s.round('s1', 1)!;
      assert.deepEqual([u.phase, u.bytesIn, u.aggregateMs, u.aggregateBytes, u.phaseDeadlineAtMs, u.keySetJson], ['upload', BIG_BYTES, 12.375, BIG_BYTES + 1, NOW_MS + 1, '["a"]']);
      assert.deepEqual(
        s.rounds('s1').map((x) => x.round),
        [1, 2],
      );
      assert.deepEqual(
        s.rounds('s1', 'closed').map((x) => x.round),
        [2],
      );
      assert.equal(s.round('s1', 9), undefined);
    });

    it('secure-aggregation rows per round and site: insert, read, list by site, forget a set-up', () => {
      study('s1');
      round('s1', 1);
      for (const siteId of ['b', 'a']) {
        s.insertRoundSiteRow('maskSetups', { studyId: 's1', round: 1, siteId, sPk: `pk-${siteId}`, bCommit: 'c', signature: 'sig', boxesJson: '[]', receivedAtMs: NOW_MS });
        s.insertRoundSiteRow('maskSignatures', { studyId: 's1', round: 1, siteId, signature: `s-${siteId}` });
        s.insertRoundSiteRow('maskReveals', { studyId: 's1', round: 1, siteId, bodyJson: `{"from":"${siteId}"}` });
      }
      assert.equal(s.roundSiteRow('maskSetups', 's1', 1, 'a')?.sPk, 'pk-a');
      assert.deepEqual(
        s.roundSiteRows('maskSignatures', 's1', 1).map((x) => x.signature),
        ['s-a', 's-b'],
      );
      assert.deepEqual(
        s.roundSiteRows('maskReveals', 's1', 1).map((x) => x.bodyJson),
        ['{"from":"a"}', '{"from":"b"}'],
      );
      assert.throws(() => s.insertRoundSiteRow('maskSignatures', { studyId: 's1', round: 1, siteId: 'a', signature: 'again' }));
      s.deleteMaskSetup('s1', 1, 'a');
      assert.equal(s.roundSiteRow('maskSetups', 's1', 1, 'a'), undefined);
      assert.equal(s.roundSiteRows('maskSetups', 's1', 1).length, 1);
    });

    it('declines and refusals: one per site and round, a repeat is ignored', () => {
      study('s1');
      round('s1', 1);
      s.insertDecline({ studyId: 's1', round: 1, siteId: 'b', code: 'TWF_E_DP_BUDGET', detail: 'spent', atMs: NOW_MS });
      s.insertDecline({ studyId: 's1', round: 1, siteId: 'b', code: 'OTHER', detail: 'again', atMs: NOW_MS });
      s.insertDecline({ studyId: 's1', round: 1, siteId: 'a', code: 'TWF_E_NO_DATA', detail: 'none', atMs: NOW_MS });
      assert.deepEqual(
        s.declines('s1', 1).map((d) => [d.siteId, d.code]),
        [
          ['a', 'TWF_E_NO_DATA'],
          ['b', 'TWF_E_DP_BUDGET'],
        ],
      );
      s.insertRefusal({ studyId: 's1', round: 1, siteId: 'a', code: 'TWF_E_AGGREGATE_BOUNDS', detail: 'd', atMs: NOW_MS });
      s.insertRefusal({ studyId: 's1', round: 1, siteId: 'a', code: 'X', detail: 'again', atMs: NOW_MS });
      assert.deepEqual(
        s.refusals('s1', 1).map((x) => x.code),
        ['TWF_E_AGGREGATE_BOUNDS'],
      );
    });

    it('updates, ciphertext chunks and running sums keep bytes exactly and come back as Buffers', () => {
      study('s1');
      round('s1', 1);
      s.insertUpdate({ studyId: 's1', round: 1, siteId: 'a', state: 'receiving', count: 2, nSamples: 30, length: 5000, startedAtMs: NOW_MS });
      s.setUpdate('s1', 1, 'a', { received: 1, bytes: BIG_BYTES });
      assert.deepEqual([s.update('s1', 1, 'a')?.received, s.update('s1', 1, 'a')?.bytes, s.update('s1', 1, 'a')?.completedAtMs], [1, BIG_BYTES, null]);
      s.setUpdate('s1', 1, 'a', { state: 'complete', completedAtMs: NOW_MS + 3 });
      assert.deepEqual(
        s.updates('s1', 1, 'complete').map((u) => u.siteId),
        ['a'],
      );
      assert.equal(s.updates('s1', 1, 'receiving').length, 0);
      const cts = [randomBytes(32 * 1024), randomBytes(65_649), Buffer.from([0, 0, 255, 0])];
      cts.forEach((ct, index) => s.insertChunk({ studyId: 's1', round: 1, siteId: 'a', index, ct, digest: `d${index}` }));
      assert.equal(s.hasChunk('s1', 1, 'a', 1), true);
      assert.equal(s.hasChunk('s1', 1, 'a', 7), false);
      const back = s.chunks('s1', 1, 'a');
      assert.deepEqual(
        back.map((c) => c.index),
        [0, 1, 2],
      );
      for (const [i, c] of back.entries()) {
        assert.ok(Buffer.isBuffer(c.ct), 'a Buffer, as better-sqlite3 returns');
        assert.ok(c.ct.equals(cts[i]), `chunk ${i} byte for byte`);
      }
      s.deleteChunks('s1', 1);
      assert.equal(s.chunks('s1', 1, 'a').length, 0);

      s.putAccumulator({ studyId: 's1', round: 1, index: 0, ct: cts[0], contributions: 1 });
      s.putAccumulator({ studyId: 's1', round: 1, index: 1, ct: cts[2], contributions: 1 });
      s.putAccumulator({ studyId: 's1', round: 1, index: 0, ct: cts[1], contributions: 2 });
      const acc = s.accumulator('s1', 1, 0)!;
      assert.equal(acc.contributions, 2);
      assert.ok(Buffer.isBuffer(acc.ct) && acc.ct.equals(cts[1]), 'the upsert replaced the sum');
      assert.deepEqual(
        s.accumulators('s1', 1).map((a) => a.index),
        [0, 1],
      );
      s.deleteAccumulator('s1', 1, 0);
      assert.deepEqual(
        s.accumulators('s1', 1).map((a) => a.index),
        [1],
      );
      s.deleteAccumulators('s1', 1);
      assert.equal(s.accumulators('s1', 1).length, 0);
      s.reclaimSpace();
    });

    it('metrics: a report replaces the previous one of the site, suppressed values stay null', () => {
      study('s1');
      const row = { studyId: 's1', round: 1, siteId: 'b', valPatients: 4, trainLoss: 0.25, trainMs: 1200.5, encryptMs: 3.5, uploadBytes: 66_000, reportedAtMs: NOW_MS };
      s.putMetrics(row, [
        { name: 'meanDice', value: 0.5 },
        { name: 'old', value: 1 },
      ]);
      s.putMetrics({ ...row, trainLoss: 0.125 }, [
        { name: 'meanDice', value: 0.75 },
        { name: 'auc', value: null },
      ]);
      s.putMetrics({ ...row, siteId: 'a', trainLoss: null }, []);
      const m = s.metrics('s1', 1);
      assert.deepEqual(
        m.map((x) => [x.siteId, x.trainLoss, x.metrics]),
        [
          ['a', null, []],
          [
            'b',
            0.125,
            [
              { name: 'auc', value: null },
              { name: 'meanDice', value: 0.75 },
            ],
          ],
        ],
      );
      assert.equal(m[1].trainMs, 1200.5);
    });

    it('a transaction commits all of its writes, or none when its callback throws', () => {
      const r = s.transaction((tx) => {
        study('s1');
        tx.addStudySite('s1', 'a');
        return tx.study('s1')?.state;
      });
      assert.equal(r, 'running', 'reads its own writes, returns the callback value');
      assert.throws(
        () =>
          s.transaction((tx) => {
            tx.updateStudy('s1', { state: 'stopped' });
            tx.addStudySite('s1', 'b');
            throw new Error('changed my mind');
          }),
        /changed my mind/,
      );
      assert.equal(s.study('s1')?.state, 'running');
      assert.equal(s.studySites('s1').length, 1);
    });

    it('a write refused inside a transaction fails the whole transaction, writes before and after it included', () => {
      const row = { siteId: 'dup', siteName: 'A', ed25519PublicKey: 'ed', x25519PublicKey: 'x', enrolledAtMs: NOW_MS };
      s.insertSite(row);
      assert.throws(() =>
        s.transaction((tx) => {
          study('s1');
          tx.insertSite(row);
          tx.addStudySite('s1', 'a');
        }),
      );
      assert.equal(s.study('s1'), undefined);
      assert.equal(s.studySites('s1').length, 0);
      assert.equal(s.nextSeq(), 1, 'the store still works');
    });

    it('a nested transaction that throws undoes only its own writes when the outer one catches', () => {
      s.transaction((tx) => {
        study('s1');
        assert.throws(() =>
          tx.transaction((inner) => {
            inner.addStudySite('s1', 'b');
            inner.insertSite({ siteId: 'x', siteName: 'X', ed25519PublicKey: 'e', x25519PublicKey: 'x', enrolledAtMs: NOW_MS });
            inner.insertSite({ siteId: 'x', siteName: 'X', ed25519PublicKey: 'e', x25519PublicKey: 'x', enrolledAtMs: NOW_MS });
          }),
        );
        tx.addStudySite('s1', 'a');
      });
      assert.deepEqual(
        s.studySites('s1').map((x) => x.siteId),
        ['a'],
      );
      assert.equal(s.site('x'), undefined);
      assert.equal(s.nextSeq(), 1, 'nextSeq is its own transaction, nested or not');
    });

    it('the audit log: entries chain and verify, an entry written in a rolled-back transaction is gone, edits are refused', async () => {
      await initSodium();
      const id = generateIdentity();
      const audit = new AuditLog(t.audit, 'coordinator-test', id.ed25519SecretKey, id.ed25519PublicKey);
      audit.append({ actor: 'lead', action: 'study.created', studyId: 's1', tsMs: NOW_MS });
      assert.throws(() =>
        s.transaction(() => {
          study('s1');
          audit.append({ actor: 'lead', action: 'study.started', studyId: 's1' });
          throw new Error('rolled back');
        }),
      );
      s.transaction(() => {
        study('s2');
        audit.append({ actor: 'lead', action: 'study.started', studyId: 's2', round: 3, sizeBytes: BIG_BYTES });
      });
      const entries = audit.entries();
      assert.deepEqual(
        entries.map((e) => [e.id, e.action, e.studyId]),
        [
          [1, 'study.created', 's1'],
          [2, 'study.started', 's2'],
        ],
      );
      assert.equal(entries[0].tsMs, NOW_MS);
      assert.equal(entries[1].sizeBytes, BIG_BYTES);
      assert.deepEqual(audit.head(), entries[1]);
      assert.deepEqual(audit.entries(1, 10), [entries[1]]);
      assert.equal(verifyAuditChain(entries, id.ed25519PublicKey).ok, true);
      assert.throws(() => t.exec("update audit_log set detail = 'edited' where id = 1"), /append-only/);
      assert.throws(() => t.exec('delete from audit_log where id = 2'), /append-only/);
      const other = generateIdentity();
      assert.throws(() => new AuditLog(t.audit, 'someone-else', other.ed25519SecretKey, other.ed25519PublicKey), /another key/);
    });
  });
}
