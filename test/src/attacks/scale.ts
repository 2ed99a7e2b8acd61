import { join } from 'node:path';
import { SiteNode } from '@twinfed/site-node';
import { responseStudySpec } from '@twinfed/shared/response/index';
import { RawSite, createAndStart, startCoordinator, waitFor, connectAndApprove } from '../harness.js';
import { responseSite } from '../strategies-harness.js';
import { failed, refused, type Attack, type AttackOutcome } from './types.js';

/**
 * Attacks on what the consortium-scale work added: pruning of old encrypted aggregates beyond the
 * coordinator's catch-up window (issue 11). Real parts: a coordinator keeping 2 rounds, three real
 * response sites (Laleh et al. 2022 Study1-3) running 4 rounds, then one site's own identity
 * asking, hand-driven, for aggregates the window no longer holds.
 */
const prunedAggregateRequests: Attack = {
  name: 'aggregate-request-beyond-window',
  finding: null,
  expected:
    'a participant asks again and again for aggregates older than the catch-up window (2 rounds) -> each refused TWF_E_AGGREGATE_PRUNED naming the window, nothing sent; a request inside the window is answered; the pruned rounds keep their digests',
  async run(ctx): Promise<AttackOutcome> {
    const { dir } = ctx;
    const { c, url } = await startCoordinator(join(dir, 'coordinator'), { catchUpRounds: 2, joinSettleMs: 300 });
    const nodes: SiteNode[] = [];
    let raw: RawSite | null = null;
    try {
      const sites = [];
      for (const [i, csv] of ['Study1.csv', 'Study2.csv', 'Study3.csv'].entries()) sites.push(await responseSite(url, join(dir, `s${i}`), `Hospital ${i + 1}`, csv));
      for (const s of sites) nodes.push(await SiteNode.open({ dataDir: s.dir, trainer: s.trainer, approvalPollMs: 100 }));
      const started = await createAndStart(url, { ...responseStudySpec(4), title: 'catch-up window attack' });
      await connectAndApprove(nodes, started);
      await waitFor(() => (c.engine.studyStatus(started.studyId).state === 'completed' ? true : null), 'four rounds', 120_000, 200);
      ctx.log('study completed; site 1 reconnects hand-driven');
      await nodes[0].close();
      raw = await RawSite.create(url, sites[0].dir);
      await raw.connected();
      if (!(await raw.hello()).ok) return failed('the participant could not say hello');
      const acks = [];
      for (let k = 0; k < 20; k++) acks.push(await raw.send('aggregate.request', started.studyId, null, { fromRound: 1 + (k % 2) }));
      const inside = await raw.send('aggregate.request', started.studyId, null, { fromRound: 4 });
      const pruned = c.db.$client.prepare('select count(*) n from rounds where study_id = ? and aggregate_pruned_at_ms is not null and length(aggregate_digest) = 64').get(started.studyId) as {
        n: number;
      };
      const refusedAll = acks.every((a) => !a.ok && a.code === 'TWF_E_AGGREGATE_PRUNED');
      if (!refusedAll) return failed(`answers ${[...new Set(acks.map((a) => (a.ok ? 'accepted' : a.code)))].join(', ')}`);
      if (!inside.ok) return failed(`a request inside the window was refused: ${inside.code}`);
      if (pruned.n < 2) return failed(`only ${pruned.n} pruned rounds kept their digest`);
      return refused(`20 requests for rounds 1-2 -> TWF_E_AGGREGATE_PRUNED each; round 4 (inside the window) answered; ${pruned.n} pruned rounds keep their SHA-256 digests`, 'TWF_E_AGGREGATE_PRUNED');
    } finally {
      raw?.close();
      for (const n of nodes) await n.close().catch(() => undefined);
      await c.close();
    }
  },
};

export const SCALE_ATTACKS: Attack[] = [prunedAggregateRequests];
