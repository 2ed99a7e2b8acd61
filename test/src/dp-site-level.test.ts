import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { Coordinator } from '@twinfed/coordinator';
import type { StudyManifest } from '@twinfed/protocols';
import { SiteNode } from '@twinfed/site-node';
import { dpLedger } from '@twinfed/site-node/db/schema';
import { epsilonFor } from '@twinfed/shared/dp/accountant';
import { clipL2, siteNoiseSigmaQ } from '@twinfed/shared/dp/site-level';
import { responseStudySpec } from '@twinfed/shared/response/index';
import { createAndStart, startCoordinator, tempDir, waitFor, connectAndApprove } from './harness.js';
import { responseSite, type StudyDeltaLog } from './strategies-harness.js';

/**
 * Site-level DP end to end (Kairouz, Liu & Steinke, ICML 2021): three real response sites, each
 * clipping its whole update to L2 C with weight 1 and adding its discrete Gaussian share after
 * quantisation, inside the masked, encrypted sum. The aggregate every site applies is the plain
 * mean of the clipped updates plus noise of the expected size, identical at all sites; each round
 * is one composition at sampling rate 1 in every site's ledger.
 */
describe('site-level DP with the distributed discrete Gaussian', () => {
  const tmp = tempDir('dp-site');
  let c: Coordinator;
  let studyId: string;
  let manifest: StudyManifest;
  const nodes: SiteNode[] = [];
  const logs: StudyDeltaLog[] = [];
  const ROUNDS = 2;
  const C = 0.5;
  // Two rounds at sigma 1 spend epsilon ≈ 7.1 (delta 1e-5): within the sites' default maxEpsilon of 10.
  const sigma = 1;

  before(async () => {
    let url: string;
    ({ c, url } = await startCoordinator(join(tmp.dir, 'coordinator')));
    for (const s of [1, 2, 3]) {
      const site = await responseSite(url, join(tmp.dir, `site-${s}`), `Study${s}`, `Study${s}.csv`);
      logs.push(site.log);
      nodes.push(await SiteNode.open({ dataDir: site.dir, trainer: site.trainer, approvalPollMs: 100 }));
    }
    const started = await createAndStart(url, { ...responseStudySpec(ROUNDS), dp: { level: 'site', epsilon: 10, delta: 1e-5, clipNorm: C, noiseMultiplier: sigma } });
    ({ studyId, manifest } = started);
    await connectAndApprove(nodes, { studyId: studyId, manifestHash: started.manifestHash });
  });

  after(async () => {
    for (const n of nodes) await n.close().catch(() => undefined);
    await c?.close();
    tmp.cleanup();
  });

  it('aggregates clipped, weight-1 updates plus noise of sigma·C over the sum, the same at every site', async () => {
    await waitFor(() => c.engine.studyStatus(studyId).state === 'completed', 'study completion', 120_000, 200).catch((e: Error) => {
      const tail = nodes.map((n) =>
        n.audit
          .entries()
          .slice(-4)
          .map((a) => `${a.action} r${a.round ?? '-'} ${a.detail ?? ''}`)
          .join(' | '),
      );
      throw new Error(`${e.message}: ${JSON.stringify(c.engine.studyStatus(studyId).roundSummaries)}; sites: ${tail.join(' || ')}`);
    });
    await waitFor(() => nodes.every((n) => (n.latestModel(studyId)?.version ?? 0) === ROUNDS), 'final models', 30_000);
    const m = manifest;
    const S = 2 ** m.encryption.precisionBits / m.training.clipBound;
    // Per element of the mean: the sum of 3 shares of sd sigmaQ, in model units, divided by 3 sites.
    const expectedSd = (Math.sqrt(3) * siteNoiseSigmaQ({ noiseMultiplier: sigma, clipNorm: C, clipBound: m.training.clipBound, precisionBits: m.encryption.precisionBits, minSites: 3 })) / S / 3;
    for (let round = 1; round <= ROUNDS; round++) {
      assert.equal(new Set(nodes.map((n) => n.modelHistory(studyId).find((h) => h.version === round)!.digest)).size, 1, `round ${round}: one model at every site`);
      const before_ = nodes[0].modelAt(studyId, round - 1)!;
      const applied = nodes[0].modelAt(studyId, round)!;
      const clipped = logs.map((l) => clipL2(l.get(`${studyId}:${round}`)!.delta, C).vector);
      for (const v of clipped) assert.ok(Math.hypot(...v) <= C * (1 + 1e-6));
      let ss = 0;
      for (let k = 0; k < applied.length; k++) {
        const mean = (clipped[0][k] + clipped[1][k] + clipped[2][k]) / 3;
        const noise = applied[k] - before_[k] - mean;
        ss += noise * noise;
      }
      const sd = Math.sqrt(ss / applied.length);
      // 60 weights: the sample sd of 60 normal draws is within ±35 % of sigma with probability > 0.999.
      assert.ok(sd > 0.65 * expectedSd && sd < 1.35 * expectedSd, `round ${round}: noise sd ${sd} vs expected ${expectedSd}`);
    }
    for (const n of nodes) {
      const rows = n.db.select().from(dpLedger).all();
      assert.deepEqual(
        rows.map((r) => [r.round, r.level, r.steps, r.samplingRate]),
        [
          [1, 'site', 1, 1],
          [2, 'site', 1, 1],
        ],
      );
      assert.ok(Math.abs(rows[1].epsilonStudy - epsilonFor({ samplingRate: 1, noiseMultiplier: sigma, steps: 2, delta: 1e-5 }).epsilon) < 1e-9);
    }
  });
});
