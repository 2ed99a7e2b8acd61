import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { Coordinator } from '@twinfed/coordinator';
import { SiteNode, type LocalTrainer } from '@twinfed/site-node';
import { responseStudySpec } from '@twinfed/shared/response/index';
import { createAndStart, startCoordinator, tempDir, waitFor, connectAndApprove } from './harness.js';
import { responseSite } from './strategies-harness.js';

const ROUNDS = 5;

/**
 * The coordinator keeps the aggregates of its last 2 closed rounds (catchUpRounds: 2). Site D goes
 * offline in round 2 and comes back after round 4 closed: the aggregates it needs (from round 2)
 * are pruned. The coordinator refuses its catch-up with TWF_E_AGGREGATE_PRUNED; D marks the
 * study stranded, keeps its last model, declines what it is asked; A, B and C finish the study.
 */
describe('a site further behind than the catch-up window', () => {
  const tmp = tempDir('catchup-pruned');
  let c: Coordinator;
  let url: string;
  const nodes: SiteNode[] = [];
  let studyId: string;
  let dTrainer: LocalTrainer;
  let dDir: string;
  let dropped = false;

  before(async () => {
    ({ c, url } = await startCoordinator(join(tmp.dir, 'coordinator'), { phaseTimeoutS: 4, quorumGraceS: 1, catchUpRounds: 2 }));
    const files = ['Study1.csv', 'Study2.csv', 'Study3.csv', 'Study1.csv'];
    for (const [i, name] of ['A', 'B', 'C', 'D'].entries()) {
      const site = await responseSite(url, join(tmp.dir, name), `Hospital ${name}`, files[i]);
      const node: SiteNode = await SiteNode.open({
        dataDir: site.dir,
        trainer: site.trainer,
        approvalPollMs: 100,
        events:
          name !== 'D'
            ? {}
            : {
                onStep: (e) => {
                  if (e.round === 2 && e.step === 'setup-sent' && !dropped) {
                    dropped = true;
                    void node.close();
                  }
                },
              },
      });
      nodes.push(node);
      if (name === 'D') {
        dTrainer = site.trainer;
        dDir = site.dir;
      }
    }
    const started = await createAndStart(url, { ...responseStudySpec(ROUNDS), title: 'response, catch-up window 2, one site away for 3 rounds', minSites: 3, roundDeadlineS: 60 });
    studyId = started.studyId;
    await connectAndApprove(nodes, { studyId: studyId, manifestHash: started.manifestHash });
  });

  after(async () => {
    for (const n of nodes) await n.close().catch(() => undefined);
    await c?.close();
    tmp.cleanup();
  });

  it('is refused with TWF_E_AGGREGATE_PRUNED, stranded with its last model; the others finish', async () => {
    const dId = nodes[3].siteId;
    await waitFor(() => c.engine.studyStatus(studyId).roundSummaries.filter((r) => r.state === 'closed' && r.round >= 2).length >= 3, 'rounds 2-4 closed without D', 120_000, 100);
    assert.ok(dropped, 'D went offline in round 2');
    const pruned = c.db.$client.prepare('select round, aggregate_digest d from rounds where study_id = ? and aggregate_pruned_at_ms is not null order by round').all(studyId) as {
      round: number;
      d: string;
    }[];
    assert.ok(
      pruned.some((r) => r.round === 2),
      `round 2 pruned (${JSON.stringify(pruned)})`,
    );
    assert.ok(pruned.every((r) => /^[0-9a-f]{64}$/.test(r.d)));

    const D = await SiteNode.open({ dataDir: dDir, trainer: dTrainer, approvalPollMs: 100 });
    nodes[3] = D;
    assert.equal(D.latestModel(studyId)!.version, 1);
    D.connect();
    await waitFor(() => SiteNode.listStudies(D.db).find((s) => s.studyId === studyId)?.status === 'stranded', 'D stranded', 90_000, 200);
    await waitFor(() => c.engine.studyStatus(studyId).state === 'completed', 'study completion', 120_000, 200);
    assert.equal(c.engine.studyStatus(studyId).roundSummaries.filter((r) => r.state === 'closed').length, ROUNDS);
    assert.equal(D.latestModel(studyId)!.version, 1, 'D kept its last model, applied nothing it could not check');
    assert.ok(
      c.engine.audit.entries().some((e) => e.action === 'msg.rejected' && e.actor === dId && e.detail?.startsWith('TWF_E_AGGREGATE_PRUNED')),
      'the coordinator refused D with TWF_E_AGGREGATE_PRUNED',
    );
    assert.ok(
      D.audit.entries().some((e) => e.action === 'study.state' && e.detail?.includes('-> stranded: TWF_E_AGGREGATE_PRUNED')),
      'D recorded why it is stranded',
    );
    await waitFor(() => nodes.slice(0, 3).every((n) => n.latestModel(studyId)?.version === ROUNDS), 'final model at A, B, C', 30_000);
  });
});
