import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateIdentity } from '../crypto/identity.js';
import { initSodium } from '../crypto/sodium.js';
import { signStatement } from '../crypto/statement.js';
import { verifyAuditChain } from './chain.js';
import { compareAuditLogs, type CompareReport } from './compare.js';
import { CHECKPOINT_KIND, RECEIPT_KIND, checkpointFields, receiptFields } from './receipts.js';
import { AuditExchange, dropTail, editEntry, rewriteAndResign } from './testing.js';

/**
 * Two rounds of a study between one site and the coordinator: every site
 * message accepted with a receipt, a checkpoint of the coordinator's chain
 * head at the end of each round. Returns the seqs the site sent.
 */
function twoRounds(x: AuditExchange): number[] {
  const seqs = [x.siteSends('hello')];
  x.coordinatorSends('welcome');
  x.coordinatorSends('study.announce', { studyId: 's1' });
  seqs.push(x.siteSends('study.join', { studyId: 's1' }));
  for (const round of [1, 2]) {
    x.coordinatorSends('round.open', { studyId: 's1', round });
    seqs.push(x.siteSends('update.chunk', { studyId: 's1', round }), x.siteSends('update.chunk', { studyId: 's1', round }), x.siteSends('metrics.report', { studyId: 's1', round }));
    x.coordinatorLogs('round.closed', `s1 round ${round}`);
    x.checkpoint(round);
  }
  return seqs;
}

const checks = (r: CompareReport) => [...new Set(r.problems.map((p) => p.check))].sort();

describe('compareAuditLogs: a site against the coordinator, with receipts and checkpoints', () => {
  const root = mkdtempSync(join(tmpdir(), 'twf-compare-'));
  let n = 0;
  const exchange = () => AuditExchange.create(join(root, String(++n)));
  before(() => initSodium());
  after(() => rmSync(root, { recursive: true, force: true }));

  it('passes an honest exchange and counts what it checked', async () => {
    const x = await exchange();
    const sent = twoRounds(x);
    const r = compareAuditLogs(x.input());
    x.close();
    assert.equal(r.ok, true, JSON.stringify(r.problems));
    assert.deepEqual(r.problems, []);
    assert.equal(r.siteChain.ok && r.coordinatorChain.ok, true);
    assert.equal(r.matched, sent.length);
    assert.equal(r.matchedDownstream, 6); // welcome, announce, 2 x (round.open, audit.checkpoint)
    assert.equal(r.receiptsChecked, sent.length);
    assert.equal(r.checkpointsChecked, 2);
    assert.equal(r.newestCheckpoint, r.coordinatorChain.checked - 1, 'the last checkpoint names the entry before the message carrying it');
    assert.deepEqual([r.withoutReceipt, r.notReceivedBySite, r.unackedNotReceived.length, r.resyncExplained.length], [0, 0, 0, 0]);
  });

  it('reports what is explained without failing: site offline, lost acknowledgement, a rejected message', async () => {
    const x = await exchange();
    twoRounds(x);
    x.coordinatorSends('round.open', { studyId: 's1', round: 3, delivered: false });
    const ackLost = x.siteSends('update.chunk', { studyId: 's1', round: 3, outcome: 'ack-lost' });
    x.siteSends('update.chunk', { studyId: 's1', round: 9, outcome: 'rejected' });
    const r = compareAuditLogs(x.input());
    x.close();
    assert.equal(r.ok, true, JSON.stringify(r.problems));
    assert.equal(r.notReceivedBySite, 1);
    assert.equal(r.withoutReceipt, 1, `seq ${ackLost} was accepted but its receipt never arrived`);
    assert.deepEqual(r.unackedNotReceived, [], 'the coordinator has the unacknowledged message');
  });

  it('catches a coordinator that drops the last 3 entries of its log after signing a checkpoint and a receipt naming them', async () => {
    const x = await exchange();
    const sent = twoRounds(x);
    dropTail(x.coordinator.sqlite, 3);
    const input = x.input();
    x.close();
    assert.equal(verifyAuditChain(input.coordinator, input.coordinatorKey).ok, true, 'a shortened log still verifies on its own');
    const r = compareAuditLogs(input);
    assert.equal(r.ok, false);
    assert.deepEqual(
      r.badCheckpoints.map((c) => c.entryId),
      [r.coordinatorChain.checked + 2],
    );
    assert.match(r.badCheckpoints[0].reason, /no entry .*tail was dropped/);
    const last = r.badReceipts.find((b) => b.seq === sent.at(-1));
    assert.match(last!.reason, /no entry .*tail was dropped/);
  });

  it('catches a coordinator that deletes one received message from the middle and re-signs its whole log', async () => {
    const x = await exchange();
    const sent = twoRounds(x);
    const victim = sent[3]; // round 1, second update chunk
    rewriteAndResign(x.coordinator.sqlite, x.coordinator.identity.ed25519SecretKey, (es) => es.filter((e) => !(e.action === 'msg.received' && e.actor === x.site.id && e.seq === victim)));
    const input = x.input();
    x.close();
    assert.equal(verifyAuditChain(input.coordinator, input.coordinatorKey).ok, true, 'the re-signed log verifies under the pinned coordinator key');
    const r = compareAuditLogs(input);
    assert.equal(r.ok, false);
    assert.match(r.badReceipts.find((b) => b.seq === victim)!.reason, /another hash .*rewritten/);
    assert.ok(r.badCheckpoints.length === 2, 'both checkpoints name entries after the deletion');
  });

  it('catches a coordinator that alters a payload digest and re-signs its log', async () => {
    const x = await exchange();
    const sent = twoRounds(x);
    const victim = sent[4];
    rewriteAndResign(x.coordinator.sqlite, x.coordinator.identity.ed25519SecretKey, (es) => es.map((e) => (e.actor === x.site.id && e.seq === victim ? { ...e, digest: 'f'.repeat(64) } : e)));
    const input = x.input();
    x.close();
    assert.equal(verifyAuditChain(input.coordinator, input.coordinatorKey).ok, true);
    const r = compareAuditLogs(input);
    assert.deepEqual(
      r.digestMismatch.map((d) => d.seq),
      [victim],
    );
    assert.match(r.badReceipts.find((b) => b.seq === victim)!.reason, /another hash/);
    assert.equal(r.ok, false);
  });

  it('fails a message sent but never logged by the coordinator, unless the site logged it unacknowledged', async () => {
    const silent = await exchange();
    twoRounds(silent);
    const lost = silent.siteSends('metrics.report', { outcome: 'lost-silently' });
    const r1 = compareAuditLogs(silent.input());
    silent.close();
    assert.deepEqual(
      r1.sentNotReceived.map((m) => m.seq),
      [lost],
    );
    assert.equal(r1.ok, false);

    const unacked = await exchange();
    twoRounds(unacked);
    const timedOut = unacked.siteSends('metrics.report', { outcome: 'lost' });
    const r2 = compareAuditLogs(unacked.input());
    unacked.close();
    assert.deepEqual(
      r2.unackedNotReceived.map((m) => m.seq),
      [timedOut],
    );
    assert.equal(r2.ok, true, JSON.stringify(r2.problems));
  });

  it('fails a message the coordinator logged from the site that the site never sent', async () => {
    const x = await exchange();
    twoRounds(x);
    x.coordinator.audit.append({ actor: x.site.id, action: 'msg.received', peer: x.coordinator.id, msgType: 'update.chunk', seq: 99, studyId: 's1', round: 2, digest: 'a'.repeat(64) });
    const r = compareAuditLogs(x.input());
    x.close();
    assert.deepEqual(
      r.receivedNotSent.map((m) => m.seq),
      [99],
    );
    assert.deepEqual(checks(r), ['received-not-sent']);
  });

  it('fails a receipt or checkpoint signed with another key than the pinned coordinator key', async () => {
    const x = await exchange();
    twoRounds(x);
    const seq = x.siteSends('metrics.report', { outcome: 'ack-lost' });
    const entry = x.input().coordinator.find((e) => e.action === 'msg.received' && e.seq === seq)!;
    const rogue = generateIdentity();
    const claim = { coordinatorId: x.coordinator.id, siteId: x.site.id, seq, msgType: 'metrics.report', studyId: null, round: null, digest: entry.digest!, entryId: entry.id, entryHash: entry.hash };
    x.storeReceipt({ ...claim, signature: signStatement(RECEIPT_KIND, receiptFields(claim), rogue.ed25519SecretKey) });
    const cp = { coordinatorId: x.coordinator.id, entryId: entry.id, entryHash: entry.hash, tsMs: 1 };
    x.site.sqlite
      .prepare('insert into audit_checkpoints values (?, ?, ?, ?, ?, 0)')
      .run(cp.entryId, cp.entryHash, cp.coordinatorId, cp.tsMs, signStatement(CHECKPOINT_KIND, checkpointFields(cp), rogue.ed25519SecretKey));
    const r = compareAuditLogs(x.input());
    x.close();
    assert.deepEqual(
      r.badReceipts.map((b) => [b.seq, b.reason]),
      [[seq, 'signature does not verify under the pinned coordinator key (forged or altered)']],
    );
    assert.deepEqual(
      r.badCheckpoints.map((b) => b.entryId),
      [entry.id],
    );
    assert.deepEqual(checks(r), ['checkpoint', 'receipt']);
  });

  it('fails a site log with an edited entry', async () => {
    const x = await exchange();
    twoRounds(x);
    editEntry(x.site.sqlite, 3, 'nothing happened');
    const r = compareAuditLogs(x.input());
    x.close();
    assert.equal(r.siteChain.firstBroken?.id, 3);
    assert.deepEqual(checks(r), ['site-chain']);
    assert.match(r.problems[0].message, /^site log broken at entry 3: .*edited/);
  });

  it('explains the messages a site lost when restored from a backup (seq.resync), and only those', async () => {
    const x = await exchange();
    twoRounds(x);
    const backup = x.backupSite(join(root, 'backup.db'));
    const lostWithBackup = [x.siteSends('metrics.report'), x.siteSends('metrics.report'), x.siteSends('metrics.report')];
    x.restoreSite(backup);
    const after = x.siteSends('hello');
    const r = compareAuditLogs(x.input());
    assert.equal(r.ok, true, JSON.stringify(r.problems));
    assert.deepEqual(r.resyncGaps, [{ from: backup.siteSeq, to: lostWithBackup.at(-1) }]);
    assert.deepEqual(
      r.resyncExplained.map((m) => m.seq),
      lostWithBackup,
    );
    assert.ok(r.matched > 0 && after === lostWithBackup.at(-1)! + 1);

    // The gap explains nothing beyond it.
    x.coordinator.audit.append({ actor: x.site.id, action: 'msg.received', peer: x.coordinator.id, msgType: 'update.chunk', seq: after + 5, digest: 'b'.repeat(64) });
    const r2 = compareAuditLogs(x.input());
    x.close();
    assert.deepEqual(
      r2.receivedNotSent.map((m) => m.seq),
      [after + 5],
    );
    assert.equal(r2.ok, false);
  });

  it('uses the keys it is given, never a key a log records about itself', async () => {
    const x = await exchange();
    twoRounds(x);
    const input = x.input();
    x.close();
    const r = compareAuditLogs({ ...input, coordinatorKey: generateIdentity().ed25519PublicKey });
    assert.equal(r.coordinatorChain.firstBroken?.id, 1);
    assert.ok(r.badReceipts.length === r.receiptsChecked && r.badCheckpoints.length === r.checkpointsChecked);
    assert.equal(r.ok, false);
  });
});
