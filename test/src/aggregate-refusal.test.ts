import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { SiteNode } from '@twinfed/site-node';
import { tempDir, waitFor } from './harness.js';
import { atBound, audited, joinAll, openLab, playRound, smallDelta, startOf, type Lab } from './attacks/protocol-fixtures.js';

/**
 * A rogue participant declares n = 1 but encodes +B with n = 50 · maxSamplesPerSite: the honest
 * sites' unmasked sum leaves ±N·2^p. A real site refuses that aggregate (it used to fail on it
 * with TWF_E_HE_OVERFLOW and say nothing, so the round stayed good), and when the refused round
 * was the one that completed the study, the study runs a fresh round instead of ending on it.
 * One real site node and three hand-driven participants (the first deals the key).
 */
describe('an aggregate beyond ±N·2^p is refused, and a refused final round is replaced', () => {
  const tmp = tempDir('agg-refusal');
  let lab: Lab;

  before(async () => {
    lab = await openLab(tmp.dir, { real: 1, raw: 3 });
    await joinAll(lab, [100, 100, 1]);
  });
  after(async () => {
    await lab?.close();
    tmp.cleanup();
  });

  it('the real site refuses it with TWF_E_AGGREGATE_BOUNDS, applies nothing and tells the coordinator', async () => {
    const { c, studyId, manifest: m } = lab;
    const [p0, p1, rogue] = lab.raws;
    const [site] = lab.nodes;
    const rogueRound = async () => {
      assert.equal((await rogue.sendSetup(1, await startOf(rogue, 1))).ok, true);
      const { ciphertexts } = await rogue.prepareUpload(1, atBound(m), 50 * m.training.maxSamplesPerSite);
      for (const [i, ct] of ciphertexts.entries()) assert.equal((await rogue.raw.send('update.chunk', studyId, 1, ct, rogue.chunkMeta(1, i, ciphertexts.length, 1))).ok, true);
      assert.equal((await rogue.sign(1)).ack.ok, true);
      assert.equal((await rogue.reveal(1)).ok, true);
    };
    await Promise.all([playRound(p0, 1, smallDelta(m, 0), 100), playRound(p1, 1, smallDelta(m, 1), 100), rogueRound()]);
    await waitFor(() => c.engine.refusalsOf(studyId, 1).some((r) => r.siteId === site.siteId), "the real site's refusal at the coordinator", 20_000, 20);
    assert.equal(c.engine.refusalsOf(studyId, 1)[0].code, 'TWF_E_AGGREGATE_BOUNDS');
    assert.match(audited(site, 'aggregate.refused')[0].detail!, /^TWF_E_AGGREGATE_BOUNDS: the unmasked sum leaves ±N·2\^p/);
    assert.equal(site.audit.entries().filter((e) => e.action === 'msg.failed' && e.msgType === 'round.aggregate').length, 0);
    assert.equal(site.modelAt(studyId, 1), null);
  });

  it('once a majority of contributors refused it, the round that completed the study no longer counts: a fresh round from model 0 completes it', async () => {
    const { c, studyId, manifest: m } = lab;
    const [p0, p1, rogue] = lab.raws;
    const [site] = lab.nodes;
    assert.equal(c.engine.studyStatus(studyId).state, 'completed', 'round 1 completed the study when it closed');
    for (const p of [p0, p1]) {
      const ack = await p.raw.send('aggregate.refused', studyId, null, { round: 1, code: 'TWF_E_AGGREGATE_BOUNDS', detail: 'sum beyond ±N·2^p' });
      assert.equal(ack.ok, true, JSON.stringify(ack));
    }
    assert.equal(c.engine.roundStatus(studyId, 1).state, 'refused');
    assert.equal(c.engine.studyStatus(studyId).state, 'running');
    assert.ok(c.engine.audit.entries().some((e) => e.action === 'study.reopened' && e.round === 1));
    await Promise.all([playRound(p0, 2, smallDelta(m, 5), 100), playRound(p1, 2, smallDelta(m, 6), 100), playRound(rogue, 2, smallDelta(m, 7), 1)]);
    const st = await waitFor(
      () => {
        const s = c.engine.studyStatus(studyId);
        return s.state === 'completed' ? s : null;
      },
      'completion with round 2',
      20_000,
      20,
    );
    assert.deepEqual(
      st.roundSummaries.map((r) => [r.round, r.state, r.baseVersion]),
      [
        [1, 'refused', 0],
        [2, 'closed', 0],
      ],
    );
    await waitFor(() => SiteNode.listStudies(site.db)[0].status === 'completed', 'the real site exported the final model', 20_000, 20);
    assert.ok(site.modelAt(studyId, 2));
    assert.equal(site.modelAt(studyId, 1), null);
  });
});
