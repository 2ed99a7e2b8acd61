import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import Database from '@twinfed/shared/db/driver';
import { drizzle } from 'drizzle-orm/better-sqlite3';
import type { Coordinator } from '@twinfed/coordinator';
import { SITE_FILES, SiteNode } from '@twinfed/site-node';
import { compareAuditLogs, readAuditLog, readSiteStatements, verifyAuditChain } from '@twinfed/shared/audit/index';
import { fromB64, initSodium, loadIdentity } from '@twinfed/shared/crypto/index';
import { aggregateError, createAndStart, realSite, startCoordinator, tempDir, tinySpec, waitFor, type DeltaLog } from './harness.js';

/**
 * Three site nodes and a coordinator on loopback, each with its own SQLite
 * file, real SEAL, real training of a test-sized U-Net on real PET slices,
 * secure aggregation (masks inside the encrypted updates). A fourth roster
 * site whose officer never approves takes no part.
 */
describe('encrypted federation of three sites', () => {
  const tmp = tempDir('fed');
  let c: Coordinator;
  let url: string;
  let studyId: string;
  let manifestHash: string;
  const nodes: SiteNode[] = [];
  const deltas = new Map<string, DeltaLog>();
  const SITES = [
    { name: 'A', patients: ['STS_001', 'STS_002', 'STS_003'], val: ['STS_003'] },
    { name: 'B', patients: ['STS_011', 'STS_012', 'STS_013'], val: ['STS_013'] },
    { name: 'C', patients: ['STS_021', 'STS_022', 'STS_023'], val: ['STS_023'] },
    { name: 'D (never approved)', patients: ['STS_031', 'STS_032'], val: ['STS_032'] },
  ];
  const dir = (i: number) => join(tmp.dir, `site-${i}`);

  before(async () => {
    await initSodium();
    ({ c, url } = await startCoordinator(join(tmp.dir, 'coordinator')));
    for (let i = 0; i < SITES.length; i++) {
      const r = await realSite(url, dir(i), `Hospital ${SITES[i].name}`, SITES[i].patients, SITES[i].val);
      nodes.push(r.node);
      deltas.set(String(i), r.deltas);
    }
    ({ studyId, manifestHash } = await createAndStart(url, tinySpec({ rounds: 2, minSites: 3, roundDeadlineS: 120 })));
    for (const n of nodes) n.connect();
    // The officers of A, B and C approve the manifest they were shown; D's never does.
    await waitFor(() => nodes.every((n) => SiteNode.listStudies(n.db).length === 1), 'announcements', 20_000);
    for (let i = 0; i < 3; i++) SiteNode.approve(nodes[i].db, nodes[i].audit, studyId, `officer ${SITES[i].name}`, manifestHash);
  });

  after(async () => {
    for (const n of nodes) await n.close().catch(() => undefined);
    await c?.close();
    tmp.cleanup();
  });

  it('runs every round with the three approved sites to completion', async () => {
    const st = await waitFor(
      () => {
        const s = c.engine.studyStatus(studyId);
        return s.state === 'completed' ? s : null;
      },
      'study completion',
      240_000,
      250,
    );
    assert.equal(st.roundSummaries.length, 2);
    const ids = nodes
      .slice(0, 3)
      .map((n) => n.siteId)
      .sort();
    for (const r of st.roundSummaries) assert.deepEqual([...r.completed].sort(), ids);
    assert.ok(!st.joined.includes(nodes[3].siteId), 'the unapproved site never joined');
  });

  it("decrypts to the plaintext weighted average of the sites' updates, identically at every site", async () => {
    await waitFor(() => nodes.slice(0, 3).every((n) => (n.latestModel(studyId)?.version ?? 0) === 2), 'models at version 2', 30_000);
    for (const round of [1, 2]) {
      const per = [0, 1, 2].map((i) => deltas.get(String(i))!.get(round)!);
      const maxErr = aggregateError(nodes[0].modelAt(studyId, round - 1)!, nodes[0].modelAt(studyId, round)!, per);
      // Quantisation bound 2^-(p+1)·B per site (B = 1, p = 20) plus float32 rounding of the weights.
      assert.ok(maxErr < 3 * 2 ** -21 + 1e-6, `round ${round}: max |decrypted - plaintext average| = ${maxErr}`);
      const digests = nodes.slice(0, 3).map((n) => n.modelHistory(studyId).find((m) => m.version === round)!.digest);
      assert.equal(new Set(digests).size, 1, 'all sites hold the same global model');
    }
  });

  it('reports federated metrics per round and writes the final model with provenance', async () => {
    const st = c.engine.studyStatus(studyId);
    assert.equal(st.baselineMetrics.length, 3);
    await waitFor(() => c.engine.roundStatus(studyId, 2).metrics.length === 3, 'round 2 metrics', 20_000);
    for (const m of c.engine.roundStatus(studyId, 2).metrics) {
      assert.deepEqual(m.metrics, [{ name: 'meanDice', value: null }], 'one validation patient per site: Dice suppressed (small count)');
      assert.ok((m.uploadBytes ?? 0) > 0);
    }
    const fs = await import('node:fs');
    await waitFor(() => fs.existsSync(join(dir(0), 'models', studyId, 'model.json')), 'final model', 10_000);
    const meta = JSON.parse(fs.readFileSync(join(dir(0), 'models', studyId, 'model.json'), 'utf8')) as { manifestHash: string; version: number };
    assert.equal(meta.manifestHash, manifestHash);
    assert.equal(meta.version, 2);
  });

  it('the site that was never approved trained on nothing and says why in its audit log', () => {
    const d = nodes[3];
    assert.equal(deltas.get('3')!.size, 0);
    const entries = d.audit.entries();
    assert.ok(entries.some((e) => e.action === 'study.awaiting_approval' && e.detail === 'TWF_E_STUDY_NOT_APPROVED'));
    const coord = c.engine.audit.entries();
    assert.ok(coord.some((e) => e.actor === d.siteId && e.msgType === 'study.decline'));
  });

  it('audit chains verify at both ends and cross-check site by site', () => {
    const coordEntries = c.engine.audit.entries();
    assert.equal(verifyAuditChain(coordEntries, c.engine.identity.ed25519PublicKey).ok, true);
    for (const n of nodes) {
      const siteKey = loadIdentity(join(dir(nodes.indexOf(n)), SITE_FILES.identity)).ed25519PublicKey;
      const v = verifyAuditChain(n.audit.entries(), siteKey);
      assert.equal(v.ok, true, JSON.stringify(v.firstBroken));
      const statements = readSiteStatements(n.db, n.siteId);
      const cmp = compareAuditLogs({
        siteId: n.siteId,
        coordinatorId: c.engine.coordinatorId,
        site: n.audit.entries(),
        coordinator: coordEntries,
        siteKey,
        coordinatorKey: c.engine.identity.ed25519PublicKey,
        receipts: statements.receipts ?? [],
        checkpoints: statements.checkpoints ?? [],
      });
      assert.equal(cmp.ok, true, JSON.stringify(cmp.problems));
      assert.ok(cmp.matched > 0 && cmp.matchedDownstream > 0);
    }
  });

  it('detects an edited audit entry and names the first broken link', async () => {
    const n = nodes[1];
    await n.close();
    const path = join(dir(1), SITE_FILES.db);
    const sqlite = new Database(path);
    assert.throws(() => sqlite.prepare("update audit_log set detail = 'nothing happened' where id = 5").run(), /append-only/);
    // Someone with write access to the file removes the guard and edits an entry.
    sqlite.exec('drop trigger audit_log_no_update');
    sqlite.prepare("update audit_log set detail = 'nothing happened' where id = 5").run();
    const { entries, owner } = readAuditLog(drizzle(sqlite));
    sqlite.close();
    const v = verifyAuditChain(entries, fromB64(owner!.ed25519PublicKey));
    assert.equal(v.ok, false);
    assert.equal(v.firstBroken!.id, 5);
    assert.match(v.firstBroken!.reason, /edited/);
  });
});
