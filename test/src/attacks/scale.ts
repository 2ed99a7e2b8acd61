import { join } from 'node:path';
import { packFrames, unpackFrames, type Ack } from '@twinfed/protocols';
import { SiteNode } from '@twinfed/site-node';
import { responseStudySpec } from '@twinfed/shared/response/index';
import { RawSite, createAndStart, startCoordinator, waitFor, connectAndApprove } from '../harness.js';
import { responseSite } from '../strategies-harness.js';
import { failed, refused, type Attack, type AttackOutcome } from './types.js';
import { scaleRun } from '../bench/aggregate-scale.js';

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

/**
 * A participant of a study with ciphertextsPerChunk 3 (update.chunk messages of several
 * ciphertexts) tries to slip extra or broken ciphertexts into the sums: a chunk with one frame too
 * many, one frame too few, a valid frame followed by a corrupted one (the valid one would already
 * be added if the chunk were not all or nothing), trailing bytes after the frames, and the same
 * chunk twice. Real parts: a real coordinator process, 4 sites over real sockets with signed
 * envelopes, real SEAL ciphertexts under the study key (the scale bench's simulated sites).
 */
const multiCiphertextChunks: Attack = {
  name: 'multi-ciphertext-chunk-smuggling',
  finding: null,
  expected:
    'chunks of 4 or 2 ciphertexts where the manifest puts 3 -> TWF_E_UPDATE_SHAPE; a chunk whose third ciphertext is corrupted, or with trailing bytes -> TWF_E_BAD_CIPHERTEXT; a repeated chunk -> TWF_E_DUPLICATE_CHUNK; the published aggregate is exactly the honest sum (nothing of a refused chunk stays in it)',
  async run(ctx): Promise<AttackOutcome> {
    const answers: Record<string, string> = {};
    const r = await scaleRun({
      sites: 4,
      params: 25_000,
      mode: 'encrypted',
      perChunk: 3,
      log: (m) => ctx.log(m),
      probe: async ({ send, honest }) => {
        const frames = unpackFrames(honest(0));
        const code = (a: Ack) => (a.ok ? 'accepted' : (a.code ?? 'refused'));
        answers.tooMany = code(await send(packFrames([...frames, frames[0]]), 0));
        answers.tooFew = code(await send(packFrames(frames.slice(0, 2)), 0));
        const broken = frames[2].slice();
        broken[broken.length >> 1] ^= 0x5a;
        answers.corrupted = code(await send(packFrames([frames[0], frames[1], broken]), 0));
        const honest0 = honest(0);
        const trailing = new Uint8Array(honest0.length + 5);
        trailing.set(honest0);
        answers.trailing = code(await send(trailing, 0));
        answers.first = code(await send(honest0, 0));
        answers.again = code(await send(honest0, 0));
        return { delivered: answers.first === 'accepted' ? [0] : [] };
      },
    });
    const want = {
      tooMany: 'TWF_E_UPDATE_SHAPE',
      tooFew: 'TWF_E_UPDATE_SHAPE',
      corrupted: 'TWF_E_BAD_CIPHERTEXT',
      trailing: 'TWF_E_BAD_CIPHERTEXT',
      first: 'accepted',
      again: 'TWF_E_DUPLICATE_CHUNK',
    };
    for (const [k, v] of Object.entries(want)) if (answers[k] !== v) return failed(`${k}: ${answers[k] ?? 'not sent'} (expected ${v})`);
    if (!/exact/.test(r.verified)) return failed(`the aggregate is not the honest sum: ${r.verified}`);
    return refused(
      `4 and 2 ciphertexts in a 3-ciphertext chunk -> TWF_E_UPDATE_SHAPE; a corrupted third ciphertext or trailing bytes -> TWF_E_BAD_CIPHERTEXT; a repeat -> TWF_E_DUPLICATE_CHUNK; aggregate ${r.verified}`,
      'TWF_E_UPDATE_SHAPE',
    );
  },
};

export const SCALE_ATTACKS: Attack[] = [prunedAggregateRequests, multiCiphertextChunks];
