import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TwinPriorManifest } from '@twinfed/protocols';
import type { Coordinator } from '@twinfed/coordinator';
import { BUILTIN_MAPPINGS, SiteNode, TwinService, createTwinPriorTrainer, federatedPriorHistory, importPath, openSiteStore, readFederatedPrior, siteBoxStats } from '@twinfed/site-node';
import { mergeStats, modelBox, priorCodecErrorBound, twinPriorStudySpec, zStatsFromBox, type ModelName } from '@twinfed/shared/twin/index';
import { createAndStart, enrolNewSite, startCoordinator, tempDir, waitFor, connectAndApprove } from './harness.js';

const FIX = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../fixtures/growth-laleh2022');
const MODELS: ModelName[] = ['exponential', 'gompertz'];

/**
 * The population prior (task 'twin-prior') through the spine: three real site nodes (Laleh
 * Study1-3, imported into their own SQLite files), a real coordinator on loopback sockets, real
 * SEAL ciphertexts and secure aggregation; one round.
 */
describe('federated population prior on three trial sites', () => {
  const tmp = tempDir('tprior');
  let c: Coordinator;
  let studyId: string;
  let manifest: TwinPriorManifest;
  const nodes: SiteNode[] = [];

  before(async () => {
    let url: string;
    ({ c, url } = await startCoordinator(join(tmp.dir, 'coordinator')));
    for (const s of [1, 2, 3]) {
      const dir = join(tmp.dir, `site-${s}`);
      await enrolNewSite(url, dir, `Study${s}`);
      const { db, audit } = await openSiteStore(dir);
      await importPath(db, audit, join(FIX, `Study${s}.csv`), { mapping: BUILTIN_MAPPINGS.laleh, refit: false });
      nodes.push(await SiteNode.open({ dataDir: dir, trainer: createTwinPriorTrainer(db), approvalPollMs: 100 }));
    }
    const started = await createAndStart(url, twinPriorStudySpec(MODELS));
    studyId = started.studyId;
    manifest = started.manifest as TwinPriorManifest;
    await connectAndApprove(nodes, { studyId, manifestHash: started.manifestHash });
  });

  after(async () => {
    for (const n of nodes) await n.close().catch(() => undefined);
    await c?.close();
    tmp.cleanup();
  });

  it('completes its one round with all three sites and every site stores the same prior with provenance', async () => {
    const st = await waitFor(() => (c.engine.studyStatus(studyId).state === 'completed' ? c.engine.studyStatus(studyId) : null), 'study completion', 180_000, 200);
    assert.equal(st.roundSummaries.length, 1);
    assert.equal(st.roundSummaries[0].completed.length, 3);
    const recs = await waitFor(() => (nodes.every((n) => readFederatedPrior(n.db)) ? nodes.map((n) => readFederatedPrior(n.db)!) : null), 'stored priors', 20_000);
    for (const r of recs) {
      assert.equal(r.studyId, studyId);
      assert.equal(r.round, 1);
      assert.equal(r.version, 1);
      assert.equal(r.contributingSites, 3);
      assert.deepEqual(r.models, recs[0].models);
      assert.deepEqual(Object.keys(r.models), MODELS);
    }
    assert.deepEqual(
      federatedPriorHistory(nodes[0].db).map((r) => r.version),
      [1],
    );
    assert.ok(nodes.every((n) => n.audit.entries().some((e) => e.action === 'twin.prior.stored' && e.studyId === studyId)));
  });

  it('the decrypted prior equals the plaintext mergeStats of the three sites within the codec bound', () => {
    const rec = readFederatedPrior(nodes[0].db)!;
    const local = nodes.map((n) => siteBoxStats(n.db, manifest));
    assert.equal(
      rec.patients,
      local.reduce((s, l) => s + l.patients, 0),
    );
    // Least-squares fits lie in the box, so the box statistics are exactly sufficientStats of the fits.
    assert.ok(local.every((l) => l.clipped === 0));
    const eps = priorCodecErrorBound(3, manifest.encryption.precisionBits) * manifest.model.maxPatientsPerSite;
    assert.equal(rec.errorBoundU, eps);
    for (const m of MODELS) {
      const box = modelBox(m);
      const exact = zStatsFromBox(
        local.map((l) => l.byModel.get(m)!).reduce((a, b) => mergeStats(a, b)),
        box,
      );
      const got = rec.models[m];
      assert.equal(got.n, exact.n);
      assert.equal(got.dof, exact.dof);
      const { centre: cc, half: h } = box;
      got.sum.forEach((v, j) => assert.ok(Math.abs(v - exact.sum[j]) <= h[j] * eps * (1 + 1e-9), `${m} Σz_${j}: ${v} vs ${exact.sum[j]}`));
      got.sumSq.forEach((row, i) =>
        row.forEach((v, j) => {
          const b = (Math.abs(cc[i]) * h[j] + Math.abs(cc[j]) * h[i] + h[i] * h[j]) * eps * (1 + 1e-9);
          assert.ok(Math.abs(v - exact.sumSq[i][j]) <= b, `${m} Σzz_${i}${j}: ${v} vs ${exact.sumSq[i][j]} (bound ${b})`);
        }),
      );
      assert.ok(Math.abs(got.rss - exact.rss) <= eps * manifest.model.maxRssPerPatient);
    }
  });

  it("a sparse patient's twin is fitted MAP with the federated prior", () => {
    const n = nodes[0];
    const twin = new TwinService(n.db, n.audit);
    const ids = [
      ...new Set(
        n.db.$client
          .prepare('select patient_id as id from measurements')
          .all()
          .map((r) => (r as { id: string }).id),
      ),
    ];
    const sparse = ids.find((id) => {
      const o = twin.observations(id);
      return o.days.length >= 2 && o.days.length < 4 && Math.max(...o.volumesMm3) > 0;
    });
    assert.ok(sparse, 'Study1 has a patient with 2-3 measurements');
    const r = twin.refit(sparse);
    assert.equal(r.method, 'map');
    assert.ok(MODELS.includes(r.selected!));
    assert.match(twin.priorSource(r.selected!)!, /^federated prior v1 \(study /);
    assert.ok(n.audit.entries().some((e) => e.action === 'twin.refit' && e.detail?.includes(`${sparse}:`) && e.detail.includes('MAP with federated prior v1')));
  });
});
