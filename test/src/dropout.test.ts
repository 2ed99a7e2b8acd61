import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { StudyManifest } from '@twinfed/protocols';
import type { Coordinator } from '@twinfed/coordinator';
import { SiteNode } from '@twinfed/site-node';
import { fromB64, openSealed } from '@twinfed/shared/crypto/index';
import { countParams } from '@twinfed/shared/model/index';
import { createHeContext, encryptWeightedUpdate, heParamsDigest, type HeParams } from '@twinfed/shared/he/index';
import { RawSite, aggregateError, enrolNewSite, lead, realSite, startCoordinator, tempDir, tinySpec, waitFor, type DeltaLog } from './harness.js';

/**
 * Two real sites and a third that uploads one chunk of its update and then
 * drops off the network. With quorum 2, each round closes at its deadline
 * with the two complete updates; the dropped site's partial chunk is taken
 * back out of the encrypted sum, so the aggregate is exactly A and B's.
 */
describe('a site dropping mid-round does not stall the study once quorum is met', () => {
  const tmp = tempDir('drop');
  let c: Coordinator;
  let url: string;
  const nodes: SiteNode[] = [];
  const logs: DeltaLog[] = [];
  let studyId: string;
  let dropper: RawSite;

  before(async () => {
    ({ c, url } = await startCoordinator(join(tmp.dir, 'coordinator')));
    for (const [name, patients, val] of [['A', ['STS_004', 'STS_005', 'STS_006'], ['STS_006']], ['B', ['STS_014', 'STS_015', 'STS_016'], ['STS_016']]] as const) {
      const r = await realSite(url, join(tmp.dir, name), `Hospital ${name}`, [...patients], [...val]);
      nodes.push(r.node);
      logs.push(r.deltas);
    }
    await enrolNewSite(url, join(tmp.dir, 'C'), 'Hospital C');
  });

  after(async () => {
    dropper?.close();
    for (const n of nodes) await n.close().catch(() => undefined);
    await c?.close();
    tmp.cleanup();
  });

  it('closes each round at its deadline with the sites that finished', async () => {
    const spec = tinySpec({ rounds: 2, minSites: 2, roundDeadlineS: 4 });
    spec.model.base = 8; // ~6.5k parameters: two ciphertexts, so a partial upload exists
    const created = await lead<{ studyId: string; manifest: StudyManifest; manifestHash: string }>(url, 'POST', '/api/studies', spec);
    studyId = created.json.studyId;
    const { manifest, manifestHash } = created.json;
    await lead(url, 'POST', `/api/studies/${studyId}/start`);

    // C joins first, so that it is a participant of round 1 like the others.
    dropper = await RawSite.create(url, join(tmp.dir, 'C'));
    await dropper.connected();
    await dropper.hello();
    await dropper.next('study.announce');
    await dropper.send('study.join', studyId, null, { manifestHash, trainSlices: 20, valPatients: 1 });
    for (const n of nodes) n.connect();
    await waitFor(() => nodes.every((n) => SiteNode.listStudies(n.db).length === 1), 'announcements', 20_000);
    for (const n of nodes) SiteNode.approve(n.db, n.audit, studyId, 'officer', manifestHash);

    // C is the key dealer (first to join): it seals a key for everyone, then waits for round 1.
    const params = manifest.encryption as HeParams;
    const ctx = await createHeContext(params);
    const { generateSecretKey } = await import('@twinfed/shared/he/index');
    const sk = generateSecretKey(ctx);
    await waitFor(async () => {
      await dropper.dealKeys(studyId, heParamsDigest(params), sk);
      return c.engine.studyStatus(studyId).currentRound === 1;
    }, 'round 1 to open', 60_000, 200);
    const ownKey = JSON.parse(Buffer.from((await dropper.next('keys.deliver')).body).toString()) as { sealedKey: string };
    assert.deepEqual(openSealed(fromB64(ownKey.sealedKey), dropper.identity), sk);
    await dropper.next('round.start');

    // One chunk of a real encrypted update, then the site vanishes.
    const length = countParams({ inChannels: 1, nClasses: 2, base: spec.model.base, depth: spec.model.depth, size: spec.model.size });
    const enc = encryptWeightedUpdate(ctx, sk, Float32Array.from({ length }, () => 0.5), 20, 1);
    assert.ok(enc.ciphertexts.length >= 2, 'the update spans several chunks');
    const ack = await dropper.send('update.chunk', studyId, 1, enc.ciphertexts[0], { index: 0, count: enc.ciphertexts.length, nSamples: 20, length, heParamsDigest: heParamsDigest(params) });
    assert.equal(ack.ok, true);
    dropper.close();

    const st = await waitFor(() => {
      const s = c.engine.studyStatus(studyId);
      return s.state === 'completed' ? s : null;
    }, 'study completion without C', 180_000, 200);
    const ab = nodes.map((n) => n.siteId).sort();
    for (const r of st.roundSummaries) {
      assert.deepEqual([...r.completed].sort(), ab);
      assert.deepEqual(r.stragglers, [dropper.siteId]);
    }
    const abandoned = c.engine.audit.entries().filter((e) => e.action === 'update.abandoned');
    assert.equal(abandoned.length, 1);
    assert.equal(abandoned[0].peer, dropper.siteId);
  });

  it('the partial upload was removed: the aggregate is exactly A and B\'s weighted average', async () => {
    await waitFor(() => nodes.every((n) => (n.latestModel(studyId)?.version ?? 0) === 2), 'models at version 2', 30_000);
    for (const round of [1, 2]) {
      const err = aggregateError(nodes[0].modelAt(studyId, round - 1)!, nodes[0].modelAt(studyId, round)!, logs.map((l) => l.get(round)!));
      assert.ok(err < 2 * 2 ** -21 + 1e-6, `round ${round}: max error ${err}`);
    }
  });
});
