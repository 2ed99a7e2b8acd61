import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { StudyManifest } from '@twinfed/protocols';
import type { Coordinator } from '@twinfed/coordinator';
import { SiteNode, type LocalTrainer } from '@twinfed/site-node';
import { responseStudySpec } from '@twinfed/shared/response/index';
import { createAndStart, startCoordinator, tempDir, waitFor, connectAndApprove } from './harness.js';
import { responseSite } from './strategies-harness.js';

const ROUNDS = 3;

/**
 * A FedAdam study on four response sites (quorum 3). Site D goes offline in round 2 right after
 * its mask set-up was acknowledged; the round closes with A, B and C. D comes back on the same
 * data folder, asks for the aggregates it missed, checks and replays each through the strategy —
 * from the optimiser state it stored with model version 1 — and ends with the same model and the
 * same FedAdam state as the others, version by version.
 */
describe('a site that missed a FedAdam round catches up on model and optimiser state', () => {
  const tmp = tempDir('strategy-catchup');
  let c: Coordinator;
  let url: string;
  const nodes: SiteNode[] = [];
  let studyId: string;
  let manifest: StudyManifest;
  let dTrainer: LocalTrainer;
  let dDir: string;
  let dropped = false;

  before(async () => {
    ({ c, url } = await startCoordinator(join(tmp.dir, 'coordinator'), { phaseTimeoutS: 4, quorumGraceS: 1 }));
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
                  // The fault: D's connection and process go away once its round-2 set-up was acknowledged.
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
    const spec = {
      ...responseStudySpec(ROUNDS),
      title: 'response, FedAdam, one site offline in round 2',
      minSites: 3,
      roundDeadlineS: 60,
      strategy: { name: 'fedadam' as const, serverLearningRate: 0.05, beta1: 0.9, beta2: 0.99, tau: 1e-3 },
    };
    const started = await createAndStart(url, spec);
    ({ studyId, manifest } = started);
    await connectAndApprove(nodes, { studyId: studyId, manifestHash: started.manifestHash });
  });

  after(async () => {
    for (const n of nodes) await n.close().catch(() => undefined);
    await c?.close();
    tmp.cleanup();
  });

  it('closes round 2 without D, then D replays the missed aggregates to the same model digest and state hash', async () => {
    const dId = nodes[3].siteId;
    const missed = await waitFor(
      () => c.engine.studyStatus(studyId).roundSummaries.find((r) => r.state === 'closed' && r.round >= 2 && !r.survivors.includes(dId)),
      'a round closed without D',
      60_000,
      100,
    );
    assert.ok(dropped, 'D went offline in round 2');
    assert.ok(missed.keySet.includes(dId), 'D had sent its mask keys: the others removed its masks');
    await waitFor(() => nodes.slice(0, 3).every((n) => n.modelAt(studyId, missed.round)), `round ${missed.round} applied at A, B, C`, 20_000);

    // D comes back on its own folder: it holds model version 1 and the FedAdam state stored with it.
    const D = await SiteNode.open({ dataDir: dDir, trainer: dTrainer, approvalPollMs: 100 });
    nodes[3] = D;
    assert.equal(D.latestModel(studyId)!.version, 1);
    assert.notEqual(D.stateHashAt(studyId, 1), 'none');
    D.connect();

    await waitFor(() => c.engine.studyStatus(studyId).state === 'completed', 'study completion', 90_000, 200);
    const closed = c.engine
      .studyStatus(studyId)
      .roundSummaries.filter((r) => r.state === 'closed')
      .map((r) => r.round);
    assert.equal(closed.length, ROUNDS);
    const final = closed[closed.length - 1];
    await waitFor(() => nodes.every((n) => n.latestModel(studyId)?.version === final), 'final model at all four sites', 30_000);
    for (const v of closed) {
      const digests = nodes.map((n) => n.modelHistory(studyId).find((m) => m.version === v)!.digest);
      const states = nodes.map((n) => n.stateHashAt(studyId, v));
      assert.equal(new Set(digests).size, 1, `v${v}: model digests ${digests.join(' ')}`);
      assert.equal(new Set(states).size, 1, `v${v}: state hashes ${states.join(' ')}`);
      assert.match(states[0], /^[0-9a-f]{64}$/);
    }
    // D got there by asking for the aggregates and replaying them, each checked like a live one.
    const dLog = D.audit.entries();
    assert.ok(
      dLog.some((e) => e.action === 'msg.sent' && e.msgType === 'aggregate.request' && e.studyId === studyId),
      'D asked for the missed aggregates',
    );
    const replayed = dLog.find((e) => e.action === 'aggregate.applied' && e.studyId === studyId && e.round === missed.round)!;
    assert.ok(replayed, `D applied round ${missed.round} after reconnecting`);
    assert.match(
      replayed.detail!,
      new RegExp(`strategy=fedadam model=${nodes[0].modelHistory(studyId).find((m) => m.version === missed.round)!.digest} state=${nodes[0].stateHashAt(studyId, missed.round)}`),
    );
    assert.equal(D.strategyStateAt(studyId, final)!.steps, ROUNDS, `${ROUNDS} FedAdam steps in D's state`);
    assert.equal(manifest.strategy?.name, 'fedadam');
  });
});
