import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ResponseManifest } from '@twinfed/protocols';
import type { Coordinator } from '@twinfed/coordinator';
import { BUILTIN_MAPPINGS, SiteNode, createResponseTrainer, importPath, loadResponsePatients, openSiteStore, readModelDir, responseModelConfig, siteResponseSplit } from '@twinfed/site-node';
import { evaluateResponse, federatedPlain, initLogReg, responseStudySpec } from '@twinfed/shared/response/index';
import { aggregateError, createAndStart, enrolNewSite, recordingTrainer, startCoordinator, tempDir, waitFor, type DeltaLog, connectAndApprove } from './harness.js';

const FIX = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../fixtures/growth-laleh2022');

/**
 * The response model through the spine: three real site nodes (Study1-3 of Laleh et al. 2022,
 * imported with `site import`'s code path into their own SQLite files), a real coordinator on
 * loopback sockets, real SEAL ciphertexts. Test-sized: 3 rounds.
 */
describe('federated response model on three trial sites', () => {
  const tmp = tempDir('resp');
  let c: Coordinator;
  let studyId: string;
  let manifest: ResponseManifest;
  const nodes: SiteNode[] = [];
  const deltas: DeltaLog[] = [];
  const ROUNDS = 3;

  before(async () => {
    let url: string;
    ({ c, url } = await startCoordinator(join(tmp.dir, 'coordinator')));
    for (const s of [1, 2, 3]) {
      const dir = join(tmp.dir, `site-${s}`);
      await enrolNewSite(url, dir, `Study${s}`);
      const { db, audit } = await openSiteStore(dir);
      const rep = await importPath(db, audit, join(FIX, `Study${s}.csv`), { mapping: BUILTIN_MAPPINGS.laleh, refit: false });
      assert.ok(
        rep.rows.some((r) => r.status === 'imported'),
        JSON.stringify(rep.rows),
      );
      const { trainer, deltas: log } = recordingTrainer(createResponseTrainer(db));
      deltas.push(log);
      nodes.push(await SiteNode.open({ dataDir: dir, trainer, approvalPollMs: 100 }));
    }
    const started = await createAndStart(url, responseStudySpec(ROUNDS));
    studyId = started.studyId;
    manifest = started.manifest as ResponseManifest;
    await connectAndApprove(nodes, { studyId: studyId, manifestHash: started.manifestHash });
  });

  after(async () => {
    for (const n of nodes) await n.close().catch(() => undefined);
    await c?.close();
    tmp.cleanup();
  });

  it('runs every round with all three sites, each training on its own imported patients', async () => {
    const st = await waitFor(
      () => {
        const s = c.engine.studyStatus(studyId);
        return s.state === 'completed' ? s : null;
      },
      'study completion',
      120_000,
      200,
    );
    assert.equal(st.roundSummaries.length, ROUNDS);
    for (const r of st.roundSummaries) assert.equal(r.completed.length, 3);
    // Every site trained on its 70 % of patients with ≥ 5 measurements (Study1: 46, Study2: 89, Study3: 250 such patients).
    const nTrain = deltas.map((d) => d.get(1)!.n);
    nodes.forEach((n, i) => assert.equal(nTrain[i], siteResponseSplit(loadResponsePatients(n.db), manifest).train.length));
    assert.ok(nTrain[2] > nTrain[1] && nTrain[1] > nTrain[0], `train patients ${nTrain}`);
  });

  it('the decrypted aggregate is the weighted average of the plaintext updates, identical at every site', async () => {
    await waitFor(() => nodes.every((n) => (n.latestModel(studyId)?.version ?? 0) === ROUNDS), 'final models', 30_000);
    for (let round = 1; round <= ROUNDS; round++) {
      const err = aggregateError(
        nodes[0].modelAt(studyId, round - 1)!,
        nodes[0].modelAt(studyId, round)!,
        deltas.map((d) => d.get(round)!),
      );
      // Quantisation 2^-(p+1)·B per site (B = clipBound = 2, p = 20) plus float32 rounding.
      assert.ok(err < 3 * 2 * 2 ** -21 + 1e-6, `round ${round}: ${err}`);
      assert.equal(new Set(nodes.map((n) => n.modelHistory(studyId).find((m) => m.version === round)!.digest)).size, 1);
    }
  });

  it('matches plaintext FedAvg of the same data, learns (held-out AUC above the initial model), and reports AUC not Dice', async () => {
    const cfg = responseModelConfig(manifest);
    const splits = nodes.map((n) => siteResponseSplit(loadResponsePatients(n.db), manifest));
    const plain = federatedPlain(
      cfg,
      initLogReg(cfg, manifest.model.initSeed),
      splits.map((s) => s.train),
      { ...manifest.training, epochs: manifest.training.epochsPerRound, rounds: ROUNDS },
    );
    const enc = nodes[0].modelAt(studyId, ROUNDS)!;
    const maxDiff = Math.max(...Array.from(enc, (v, i) => Math.abs(v - plain[i])));
    assert.ok(maxDiff < 1e-3, `encrypted vs plaintext FedAvg: max |Δw| = ${maxDiff}`);
    const heldOut = splits.flatMap((s) => s.test);
    const auc0 = evaluateResponse(cfg, nodes[0].modelAt(studyId, 0)!, heldOut).auc!;
    const aucN = evaluateResponse(cfg, enc, heldOut).auc!;
    assert.ok(aucN > auc0 && aucN > 0.6, `held-out macro AUC ${auc0} → ${aucN}`);
    await waitFor(() => c.engine.roundStatus(studyId, ROUNDS).metrics.length === 3, 'metrics', 20_000);
    for (const m of c.engine.roundStatus(studyId, ROUNDS).metrics) assert.ok(!m.metrics.some((x) => x.name === 'meanDice'), 'a response study never reports a Dice');
    assert.ok(c.engine.audit.entries().some((e) => e.msgType === 'metrics.report' && /macroAucOvr=0\.\d{4}/.test(e.detail ?? '')));
    const dir = join(tmp.dir, 'site-1', 'models', studyId);
    await waitFor(() => existsSync(join(dir, 'model.json')), 'exported model', 10_000);
    const { meta, weights } = readModelDir(dir);
    assert.equal(meta.model.arch, 'logreg');
    assert.deepEqual(weights, enc);
  });
});
