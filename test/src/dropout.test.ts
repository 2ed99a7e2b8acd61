import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { SiteNode } from '@twinfed/site-node';
import { aggregateError, createAndStart, realSite, startCoordinator, tempDir, tinySpec, waitFor, type DeltaLog, connectAndApprove } from './harness.js';

const SITES = [
  ['A', ['STS_004', 'STS_005', 'STS_006'], ['STS_006']],
  ['B', ['STS_014', 'STS_015', 'STS_016'], ['STS_016']],
  ['C', ['STS_024', 'STS_025', 'STS_026'], ['STS_026']],
  ['D', ['STS_030', 'STS_031', 'STS_033'], ['STS_033']],
] as const;

/**
 * Four real site nodes in secure aggregation (t = 3 of 4). Sites listed in `dropAfterSetup` vanish
 * right after their mask keys and share boxes reached the coordinator in round 1 — their pairwise
 * masks are already inside every other site's update, so the survivors must remove them.
 */
async function fourSites(tmpDir: string, dropAfterSetup: string[]) {
  const { c, url } = await startCoordinator(join(tmpDir, 'coordinator'), { phaseTimeoutS: 4, quorumGraceS: 1 });
  const nodes: SiteNode[] = [];
  const logs: DeltaLog[] = [];
  for (const [name, patients, val] of SITES) {
    // eslint-disable-next-line prefer-const -- assigned after realSite returns, read by its callbacks before that
    let node: SiteNode | undefined;
    const r = await realSite(url, join(tmpDir, name), `Hospital ${name}`, [...patients], [...val], {
      onStep: (e) => {
        // The fault: the site's connection drops the moment its set-up was acknowledged.
        if (e.round === 1 && e.step === 'setup-sent' && dropAfterSetup.includes(name)) void node!.close();
      },
    });
    node = r.node;
    nodes.push(r.node);
    logs.push(r.deltas);
  }
  const spec = tinySpec({ rounds: 1, minSites: 3, roundDeadlineS: 60 });
  spec.model.base = 8; // ~6.5k parameters: two ciphertexts per update
  const { studyId, manifestHash } = await createAndStart(url, spec);
  await connectAndApprove(nodes, { studyId, manifestHash }, () => 'officer');
  return { c, url, nodes, logs, studyId };
}

describe('secure aggregation survives a site that drops after the masks were set up', () => {
  const tmp = tempDir('drop1');
  let env: Awaited<ReturnType<typeof fourSites>>;

  before(async () => {
    env = await fourSites(tmp.dir, ['D']);
  });
  after(async () => {
    for (const n of env?.nodes ?? []) await n.close().catch(() => undefined);
    await env?.c.close();
    tmp.cleanup();
  });

  it('closes round 1 with the three survivors; D is in the key set but not among the contributors', async () => {
    const st = await waitFor(
      () => {
        const s = env.c.engine.studyStatus(env.studyId);
        return s.state === 'completed' ? s : null;
      },
      'study completion without D',
      120_000,
      200,
    );
    const r = st.roundSummaries[0];
    const [a, b, cc, d] = env.nodes.map((n) => n.siteId);
    assert.equal(r.state, 'closed');
    assert.deepEqual([...r.keySet].sort(), [a, b, cc, d].sort(), "D sent its mask keys: its masks are in the others' updates");
    assert.deepEqual([...r.survivors].sort(), [a, b, cc].sort());
    assert.equal(r.threshold, 3);
    const closed = env.c.engine.audit.entries().find((e) => e.action === 'round.closed')!;
    assert.match(closed.detail!, new RegExp(`dropped=${d}`));
  });

  it('the decrypted, unmasked aggregate equals the plaintext FedAvg of the survivors', async () => {
    const live = env.nodes.slice(0, 3);
    await waitFor(() => live.every((n) => (n.latestModel(env.studyId)?.version ?? 0) === 1), 'survivors at model version 1', 30_000);
    const err = aggregateError(
      live[0].modelAt(env.studyId, 0)!,
      live[0].modelAt(env.studyId, 1)!,
      env.logs.slice(0, 3).map((l) => l.get(1)!),
    );
    // Quantisation bound: survivors/N · 2^-(p+1) · B per element (B = 1, p = 20), plus float32 rounding.
    assert.ok(err < 3 * 2 ** -21 + 1e-6, `max |applied - FedAvg(A, B, C)| = ${err}`);
    assert.equal(new Set(live.map((n) => n.latestModel(env.studyId)!.digest)).size, 1, 'the three survivors hold the same model');
    const applied = live[0].audit.entries().find((e) => e.action === 'aggregate.applied')!;
    assert.match(applied.detail!, new RegExp(`dropped=${env.nodes[3].siteId}`));
  });
});

describe('too many dropouts fail the round cleanly', () => {
  const tmp = tempDir('drop2');
  let env: Awaited<ReturnType<typeof fourSites>>;

  before(async () => {
    env = await fourSites(tmp.dir, ['C', 'D']);
  });
  after(async () => {
    for (const n of env?.nodes ?? []) await n.close().catch(() => undefined);
    await env?.c.close();
    tmp.cleanup();
  });

  it('fails round 1 when only 2 of 4 upload (quorum 3): nothing is published, no site applies anything, secrets are wiped', async () => {
    const r = await waitFor(
      () => {
        const s = env.c.engine.studyStatus(env.studyId).roundSummaries[0];
        return s?.state === 'failed' ? s : null;
      },
      'round 1 to fail',
      60_000,
      200,
    );
    assert.match(r.failReason!, /encrypted updates: 2 of 4 answered/);
    assert.equal(
      env.c.db.$client.prepare('select count(*) n from accumulators where round = 1').get() &&
        (env.c.db.$client.prepare('select count(*) n from accumulators where round = 1').get() as { n: number }).n,
      0,
      'the partial sum is deleted',
    );
    const [a, b] = env.nodes;
    await waitFor(
      () => [a, b].every((n) => (n.db.$client.prepare('select state from round_work where round = 1').get() as { state: string } | undefined)?.state === 'failed'),
      'A and B told the round failed',
      20_000,
    );
    for (const n of [a, b]) {
      assert.equal(n.modelAt(env.studyId, 1), null, 'no model version 1');
      const w = n.db.$client.prepare('select s_sk, b, shares_json, delta from round_work where round = 1').get() as Record<string, unknown>;
      assert.deepEqual(w, { s_sk: null, b: null, shares_json: null, delta: null }, 'round secrets and the plaintext update wiped');
      assert.ok(n.audit.entries().some((e) => e.action === 'round.failed'));
    }
    assert.equal(env.c.engine.studyStatus(env.studyId).state, 'running', 'the study waits for a quorum to open a fresh round');
  });
});
