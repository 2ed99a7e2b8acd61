import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { SiteNode } from '@twinfed/site-node';
import { createAndStart, enrolNewSite, startCoordinator, tempDir, tinySpec, waitFor } from './harness.js';
import { enrolledSite, sleep } from './attacks/ops-kit.js';

/**
 * A site whose officer approves a study it has no data for declines it with TWF_E_NO_DATA, once,
 * even though it already declined the same manifest as "awaiting approval" before the approval
 * (the two declines were deduplicated on the manifest hash alone, so the second was never sent:
 * the coordinator kept "not approved" as the reason and the site's log said nothing).
 */
describe('an approved site without data', () => {
  const tmp = tempDir('no-data');
  after(() => tmp.cleanup());

  it('declines with TWF_E_NO_DATA once after its officer approves', async () => {
    const { c, url } = await startCoordinator(join(tmp.dir, 'coordinator'));
    const a = await enrolledSite(url, join(tmp.dir, 'a'), 'Hospital A');
    try {
      await enrolNewSite(url, join(tmp.dir, 'b'), 'Hospital B');
      await enrolNewSite(url, join(tmp.dir, 'c'), 'Hospital C');
      a.node.connect();
      const { studyId, manifestHash } = await createAndStart(url, tinySpec({ rounds: 1 }));
      const declines = () =>
        c.engine.audit
          .entries()
          .filter((e) => e.actor === a.node.siteId && e.msgType === 'study.decline')
          .map((e) => e.detail);
      await waitFor(() => declines().length === 1, 'the awaiting-approval decline', 10_000, 20);
      assert.deepEqual(declines(), ['declined: TWF_E_STUDY_NOT_APPROVED']);

      SiteNode.approve(a.node.db, a.node.audit, studyId, 'Officer A', manifestHash);
      await waitFor(() => declines().length === 2, 'the no-data decline', 10_000, 20);
      await sleep(500); // several approval polls: no repeat
      assert.deepEqual(declines(), ['declined: TWF_E_STUDY_NOT_APPROVED', 'declined: TWF_E_NO_DATA']);
      const local = a.node.audit.entries().filter((e) => e.action === 'study.declined');
      assert.equal(local.length, 1);
      assert.match(local[0].detail ?? '', /^TWF_E_NO_DATA: 0 training slices < 1$/);
    } finally {
      await a.close();
      await c.close();
    }
  });
});
