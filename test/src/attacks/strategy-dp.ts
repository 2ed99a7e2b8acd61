import Database from '@twinfed/shared/db/driver';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PROTOCOL_VERSION, canonicalJson, manifestHash as hashOf, quorumOf, sha256Hex, utf8, type Ack, type BodyOf, type Envelope, type StudyManifest, type StudySpec } from '@twinfed/protocols';
import type { Coordinator, SiteTransport } from '@twinfed/coordinator';
import { BUILTIN_MAPPINGS, SITE_FILES, SiteNode, budgetView, createResponseTrainer, formatBudget, importPath, loadSiteConfig, openSiteStore, type SiteEvents } from '@twinfed/site-node';
import { formatManifestForOfficer } from '@twinfed/cli/commands/manifest-view';
import { verifyAuditDb } from '@twinfed/cli/commands/audit';
import { sealEnvelope, sign, toB64 } from '@twinfed/shared/crypto/index';
import { addDiscreteGaussianZt } from '@twinfed/shared/dp/discrete-gaussian';
import { siteNoiseAllowance, siteNoiseSigmaQ, type SiteLevelNoise } from '@twinfed/shared/dp/site-level';
import type { HeParams } from '@twinfed/shared/he/index';
import { responseStudySpec } from '@twinfed/shared/response/index';
import { RawSite, createAndStart, enrolNewSite, lead, startCoordinator, tinySpec, waitFor } from '../harness.js';
import { Unexpected, audited, expect, expectOk, inLab, joinAll, jsonBody, openLab, refusedWith, smallDelta, startOf, type Lab } from './protocol-fixtures.js';
import { operatorSigner } from './ops-kit.js';
import { contained, failed, refused, type Attack, type AttackOutcome } from './types.js';

/**
 * Attacks on what issue 9 added: server-optimiser strategies (their state at each site),
 * differential privacy (the budget in the manifest, the site's ledger, site-level noise), the
 * round.decline message and the metrics list of metrics.report. Real parts throughout: the
 * protocol attacks play hand-driven participants against a real coordinator; the ones that test a
 * site's own checks run real site nodes with the response trainer (Laleh et al. 2022 Study1-3,
 * fast and deterministic).
 */

const FIX = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../../fixtures/growth-laleh2022');
const ackText = (a: Ack) => (a.ok ? 'accepted' : `${a.code}`);

// ---------------------------------------------------------------- response sites

interface RespLab {
  c: Coordinator;
  url: string;
  studyId: string;
  manifest: StudyManifest;
  manifestHash: string;
  nodes: SiteNode[];
  dirs: string[];
  close(): Promise<void>;
}

/** A coordinator and real response sites (one per `data` entry, Study1..3.csv), a started study with all of them; officers have not approved yet. */
async function openRespLab(dir: string, spec: StudySpec, data: string[], events: (i: number) => SiteEvents = () => ({})): Promise<RespLab> {
  const { c, url } = await startCoordinator(join(dir, 'coordinator'), { joinSettleMs: 300 });
  const nodes: SiteNode[] = [];
  const stores: { close(): void }[] = [];
  const dirs: string[] = [];
  const close = async () => {
    for (const n of nodes) await n.close().catch(() => undefined);
    for (const s of stores) s.close();
    await c.close().catch(() => undefined);
  };
  try {
    for (const [i, s] of data.entries()) {
      const d = join(dir, `site-${i + 1}`);
      await enrolNewSite(url, d, `${s} site ${i + 1}`);
      const store = await openSiteStore(d);
      stores.push(store);
      const rep = await importPath(store.db, store.audit, join(FIX, `${s}.csv`), { mapping: BUILTIN_MAPPINGS.laleh, refit: false });
      if (!rep.rows.some((r) => r.status === 'imported')) throw new Error(`import: ${JSON.stringify(rep.rows)}`);
      nodes.push(await SiteNode.open({ dataDir: d, trainer: createResponseTrainer(store.db), approvalPollMs: 100, events: events(i) }));
      dirs.push(d);
    }
    const s = await createAndStart(url, spec);
    for (const n of nodes) n.connect();
    await waitFor(() => nodes.every((n) => SiteNode.listStudies(n.db).length === 1), 'the announcement at every site', 20_000, 20);
    return { c, url, ...s, nodes, dirs, close };
  } catch (e) {
    await close();
    throw e;
  }
}

async function inRespLab(open: () => Promise<RespLab>, body: (lab: RespLab) => Promise<AttackOutcome>): Promise<AttackOutcome> {
  const lab = await open();
  try {
    return await body(lab);
  } catch (e) {
    if (e instanceof Unexpected) return failed(e.message);
    throw e;
  } finally {
    await lab.close();
  }
}

const approveResp = (lab: RespLab, hash = lab.manifestHash) => lab.nodes.forEach((n, i) => SiteNode.approve(n.db, n.audit, lab.studyId, `officer ${i + 1}`, hash));

/** A small, fast response study: patient-level DP-SGD when `dp`, 2 steps per round. */
function respSpec(rounds: number, over: Partial<StudySpec> = {}, dp = true): StudySpec {
  const base = responseStudySpec(rounds);
  return {
    ...base,
    training: { ...base.training, epochsPerRound: 1, batchSize: 64, learningRate: 0.3 },
    roundDeadlineS: 15,
    ...(dp ? { dp: { level: 'patient' as const, epsilon: 4, delta: 1e-5, clipNorm: 1, samplingRate: 0.5 } } : {}),
    ...over,
  } as StudySpec;
}

const closedRound = (c: Coordinator, studyId: string, round: number) => {
  const r = c.engine.studyStatus(studyId).roundSummaries.find((x) => x.round === round);
  return r?.state === 'closed' ? r : null;
};

// ---------------------------------------------------------------- 1. round.decline misuse

const declineMisuse: Attack = {
  name: 'round-decline-misuse',
  finding: null,
  expected:
    'round.decline for a study the sender is not in, a round that is not open or closed, or after its update is in / in the unmask phase is refused (TWF_E_NOT_PARTICIPANT / TWF_E_WRONG_ROUND / TWF_E_ROUND_CLOSED); a decline only removes its signed sender; the round closes unaffected',
  run(ctx) {
    let outsider: RawSite | null = null;
    return inLab(
      () => openLab(ctx.dir, { raw: 4, spec: { rounds: 2 } }),
      async (lab) => {
        const { c, studyId, manifest: m } = lab;
        await joinAll(lab);
        const [a, b, victim, rogue] = lab.raws;
        const decline = (p: { raw: RawSite }, round: number | null, sid = studyId, extra: Record<string, unknown> = {}) =>
          p.raw.send('round.decline', sid, round, { code: 'TWF_E_NO_DATA', detail: 'nothing this week', ...extra });
        const seen: string[] = [];

        // Round 1 is open (every participant has its round.start).
        const starts = await Promise.all(lab.raws.map((p) => startOf(p, 1)));

        // (a) a site enrolled after the start (not in the roster), and a study that does not exist.
        const oDir = join(ctx.dir, 'outsider');
        await enrolNewSite(lab.url, oDir, 'Outsider');
        outsider = await RawSite.create(lab.url, oDir);
        await outsider.connected();
        expectOk(await outsider.hello(), "the outsider's hello");
        const notIn = await decline({ raw: outsider }, 1);
        const unknown = await decline(rogue, 1, 'study-00000000');
        expect(refusedWith(notIn, 'TWF_E_NOT_PARTICIPANT'), `a decline for a study the sender is not in: ${JSON.stringify(notIn)}`);
        expect(refusedWith(unknown, 'TWF_E_UNKNOWN_STUDY'), `a decline for an unknown study: ${JSON.stringify(unknown)}`);
        seen.push(`not in the study -> ${ackText(notIn)}`, `unknown study -> ${ackText(unknown)}`);

        // (b) a round that is not open.
        const future = await decline(rogue, 7);
        const noRound = await decline(rogue, null);
        expect(refusedWith(future, 'TWF_E_WRONG_ROUND') && refusedWith(noRound, 'TWF_E_WRONG_ROUND'), `round 7: ${JSON.stringify(future)}; no round: ${JSON.stringify(noRound)}`);
        seen.push(`round 7 / no round -> ${ackText(future)}`);

        // (d) a decline in another site's name: an envelope claiming the victim as sender (signed by the rogue), and a body naming it.
        const forged = rogue.raw.envelope('round.decline', studyId, 1, { code: 'TWF_E_NO_DATA', detail: '' });
        const asVictim = await rogue.raw.emit({ ...forged, header: { ...forged.header, senderId: victim.siteId } });
        expect(!asVictim.ok, `a decline claiming ${victim.siteId} as sender on the rogue's connection was accepted`);
        const naming = await decline(rogue, 1, studyId, { siteId: victim.siteId, site: victim.siteId });
        expectOk(naming, "the rogue's own decline (its body also names the victim)");
        const r1 = c.engine.roundStatus(studyId, 1);
        expect(r1.declined.length === 1 && r1.declined[0].siteId === rogue.siteId, `declined after the rogue's decline naming ${victim.siteId}: ${JSON.stringify(r1.declined)}`);
        seen.push(`envelope claiming another sender -> ${ackText(asVictim)}; body naming the victim -> only the signed sender left the round`);

        // (c) the victim sets up and uploads first; its decline with a complete update, then in the unmask phase.
        const three = [a, b, victim];
        for (const [k, p] of three.entries()) expectOk(await p.sendSetup(1, starts[k]), 'mask.setup');
        await waitFor(() => c.engine.roundStatus(studyId, 1).phase === 'upload', 'the upload phase', 10_000, 20);
        const deltas = [0, 1, 2].map((k) => smallDelta(m, k));
        for (const x of await victim.upload(1, deltas[2], 100)) expectOk(x, 'update.chunk');
        const afterUpload = await decline(victim, 1);
        expect(refusedWith(afterUpload, 'TWF_E_ROUND_CLOSED'), `a decline after its update was complete: ${JSON.stringify(afterUpload)}`);
        for (const [k, p] of [a, b].entries()) for (const x of await p.upload(1, deltas[k], 100)) expectOk(x, 'update.chunk');
        await Promise.all(three.map(async (p) => expectOk((await p.sign(1)).ack, 'mask.consistency')));
        await waitFor(() => c.engine.roundStatus(studyId, 1).phase === 'unmask', 'the unmask phase', 10_000, 20);
        const inUnmask = await decline(victim, 1);
        expect(refusedWith(inUnmask, 'TWF_E_ROUND_CLOSED'), `a decline in the unmask phase: ${JSON.stringify(inUnmask)}`);
        seen.push(`update complete -> ${ackText(afterUpload)}`, `unmask phase -> ${ackText(inUnmask)}`);
        for (const p of three) expectOk(await p.reveal(1), 'mask.unmask');
        const { avg, info } = await a.aggregate(1);
        let err = 0;
        for (let i = 0; i < avg.length; i++) err = Math.max(err, Math.abs(avg[i] - (deltas[0][i] + deltas[1][i] + deltas[2][i]) / 3));
        const ids = three.map((p) => p.siteId).sort();
        expect(
          [...info.survivors].sort().join(',') === ids.join(',') && info.totalSamples === 300 && err < 3 * 2 ** -21 + 1e-7,
          `round 1's aggregate: survivors ${info.survivors.join(',')}, N ${info.totalSamples}, error ${err}`,
        );

        // (b) the closed round.
        await waitFor(() => c.engine.roundStatus(studyId, 1).state === 'closed', 'round 1 closed', 10_000, 20);
        const closed = await decline(rogue, 1);
        expect(refusedWith(closed, 'TWF_E_ROUND_CLOSED') || refusedWith(closed, 'TWF_E_WRONG_ROUND'), `a decline for closed round 1: ${JSON.stringify(closed)}`);
        seen.push(`closed round 1 -> ${ackText(closed)}`);
        const declinedAfter = c.engine.roundStatus(studyId, 1).declined.map((d) => d.siteId);
        expect(declinedAfter.join(',') === rogue.siteId, `round 1's declines at the end: ${declinedAfter.join(',')}`);
        return refused(`${seen.join('; ')}; round 1 closed with the victim and the 2 others (N=300, error ${err.toExponential(1)}), only the rogue recorded as declined`, 'TWF_E_ROUND_CLOSED');
      },
      () => outsider?.close(),
    );
  },
};

// ---------------------------------------------------------------- 2. decline every round

const declineEveryRound: Attack = {
  name: 'decline-every-round-to-stall',
  finding: null,
  expected: 'contained: a participant that declines every round (non-budget code) is left out of each; every round closes with the quorum well before its deadline',
  run: (ctx) =>
    inLab(
      () => openLab(ctx.dir, { raw: 4, spec: { rounds: 3, roundDeadlineS: 60 } }),
      async (lab) => {
        const { c, studyId, manifest: m } = lab;
        await joinAll(lab);
        const honest = lab.raws.slice(0, 3);
        const rogue = lab.raws[3];
        const seconds: number[] = [];
        for (let round = 1; round <= 3; round++) {
          const t0 = performance.now();
          const rogueStart = await startOf(rogue, round);
          expect(rogueStart.participants.includes(rogue.siteId), `round ${round} does not list the rogue`);
          expectOk(await rogue.raw.send('round.decline', studyId, round, { code: 'TWF_E_NO_DATA', detail: 'not this round either' }), `the rogue's decline of round ${round}`);
          await Promise.all(
            honest.map(async (p, k) => {
              expectOk(await p.sendSetup(round, await startOf(p, round)), 'mask.setup');
              for (const x of await p.upload(round, smallDelta(m, 10 * round + k), 100)) expectOk(x, 'update.chunk');
              expectOk((await p.sign(round)).ack, 'mask.consistency');
              expectOk(await p.reveal(round), 'mask.unmask');
            }),
          );
          await waitFor(() => c.engine.roundStatus(studyId, round).state === 'closed', `round ${round} closed`, 20_000, 20);
          seconds.push((performance.now() - t0) / 1000);
          const r = c.engine.roundStatus(studyId, round);
          expect(!r.survivors.includes(rogue.siteId) && r.declined.some((d) => d.siteId === rogue.siteId), `round ${round}: survivors ${r.survivors.join(',')}`);
        }
        const st = await waitFor(
          () => {
            const s = c.engine.studyStatus(studyId);
            return s.state === 'completed' ? s : null;
          },
          'study completion',
          10_000,
          20,
        );
        const slowest = Math.max(...seconds);
        expect(slowest < m.roundDeadlineS / 2, `a round took ${slowest.toFixed(1)} s of its ${m.roundDeadlineS} s deadline`);
        return contained(
          `the rogue declined rounds 1-3 (TWF_E_NO_DATA), was asked again each time (not exhausted: ${!st.participants.find((p) => p.siteId === rogue.siteId)!.dpExhausted ? 'no' : 'yes'}) and left out; each round closed with the 3 others in ${seconds.map((s) => s.toFixed(1)).join(' / ')} s (deadline ${m.roundDeadlineS} s); study completed`,
        );
      },
    ),
};

// ---------------------------------------------------------------- 3. coordinator weakens privacy / strategy

const weakenedManifest: Attack = {
  name: 'coordinator-weakens-privacy-or-strategy',
  finding: null,
  expected:
    "a re-announced manifest with the same study id but a lower noise multiplier / higher epsilon, or another strategy, has a new hash: no approval carries over, every site refuses the next round (TWF_E_STUDY_NOT_APPROVED) and trains nothing, and the officer's view shows the new epsilon",
  run: (ctx) =>
    inRespLab(
      () => openRespLab(ctx.dir, respSpec(3), ['Study1', 'Study2', 'Study3']),
      async (lab) => {
        const { c, studyId, manifest: m } = lab;
        expect(m.dp?.level === 'patient' && m.dp.noiseMultiplier !== undefined, `the approved manifest's dp: ${JSON.stringify(m.dp)}`);
        const weak: StudyManifest = { ...m, dp: { ...m.dp, epsilon: 40, noiseMultiplier: 0.3 } };
        const weakHash = hashOf(weak);
        const otherStrategy: StudyManifest = { ...m, strategy: { name: 'fedadam', serverLearningRate: 1, beta1: 0.9, beta2: 0.99, tau: 1e-3 } };
        const otherHash = hashOf(otherStrategy);
        // The operator puts the weakened announcement in front of round 2's start to every site (re-signing that start after it, so sequence numbers stay in order).
        const t = (c.engine as unknown as { transport: SiteTransport }).transport;
        const signer = operatorSigner(c);
        const forged = new Set<string>();
        c.engine.attach({
          send: (siteId: string, env: Envelope) => {
            if (env.header.type === 'round.start' && env.header.studyId === studyId && (env.header.round ?? 0) >= 2 && !forged.has(siteId)) {
              forged.add(siteId);
              t.send(siteId, sealEnvelope(signer, { to: siteId, type: 'study.announce', studyId, round: null, body: { manifest: weak, manifestHash: weakHash, status: 'running' } }));
              env = sealEnvelope(signer, { to: siteId, type: 'round.start', studyId, round: env.header.round, body: jsonBody(env), ...(env.header.meta ? { meta: env.header.meta } : {}) });
            }
            return t.send(siteId, env);
          },
          isConnected: (siteId: string) => t.isConnected(siteId),
          disconnect: (siteId: string) => t.disconnect(siteId),
        });
        approveResp(lab);
        await waitFor(() => closedRound(c, studyId, 1) && lab.nodes.every((n) => n.modelAt(studyId, 1)), 'round 1 closed and applied at every site', 60_000, 50);
        await waitFor(() => forged.size === 3 && lab.nodes.every((n) => audited(n, 'training.refused', 'TWF_E_STUDY_NOT_APPROVED').length > 0), "every site's verdict on round 2", 30_000, 50);
        for (const n of lab.nodes) {
          const st = SiteNode.listStudies(n.db)[0];
          expect(st.manifestHash === weakHash && st.status === 'pending' && st.approvedBy === null, `${n.config.siteName} after the weakened announce: ${st.status}, approved by ${st.approvedBy}`);
          expect(audited(n, 'study.manifest_changed').length === 1, `${n.config.siteName} did not audit the changed manifest`);
          const r2 = n.audit.entries().filter((e) => e.studyId === studyId && e.round === 2 && ['training.started', 'dp.spent', 'update.trained'].includes(e.action));
          expect(r2.length === 0, `${n.config.siteName} trained round 2 under the unapproved manifest: ${r2.map((e) => e.action).join(',')}`);
        }
        // The officer's view of what is now pending (twinfed site studies --show).
        const n0 = lab.nodes[0];
        const policy = loadSiteConfig(lab.dirs[0]).privacy;
        const view = await formatManifestForOfficer(weak, weakHash, n0.siteId, formatBudget(budgetView(n0.db, weak, policy), weak, policy));
        expect(
          view.includes('(epsilon, delta) = (40,') && view.includes('sigma 0.3') && view.includes(weakHash),
          `the officer's view does not show the new budget: ${view.split('\n').filter((l) => /epsilon|sigma/.test(l))}`,
        );
        // A second re-announce, now changing the strategy: another hash, pending again.
        for (const n of lab.nodes) c.engine.sendAsCoordinator(n.siteId, 'study.announce', studyId, null, { manifest: otherStrategy, manifestHash: otherHash, status: 'running' });
        await waitFor(() => lab.nodes.every((n) => SiteNode.listStudies(n.db)[0]?.manifestHash === otherHash), 'the strategy change at every site', 10_000, 20);
        expect(
          lab.nodes.every((n) => SiteNode.listStudies(n.db)[0].status === 'pending' && audited(n, 'study.manifest_changed').length === 2),
          'a site took the strategy change without its officer',
        );
        const sview = await formatManifestForOfficer(otherStrategy, otherHash, n0.siteId);
        expect(/fedadam/i.test(sview), `the officer's view does not name the new strategy: ${sview.split('\n').find((l) => l.includes('strategy'))}`);
        const trainedLater = lab.nodes.flatMap((n) => n.audit.entries().filter((e) => e.studyId === studyId && (e.round ?? 0) >= 2 && e.action === 'training.started'));
        expect(trainedLater.length === 0, `rounds after the change were trained: ${trainedLater.map((e) => `${e.actor}@${e.round}`).join(',')}`);
        const epsLine = view
          .split('\n')
          .find((l) => l.includes('(epsilon, delta)'))!
          .trim();
        return refused(
          `weakened dp (epsilon ${m.dp.epsilon} -> 40, sigma ${m.dp.noiseMultiplier!.toFixed(3)} -> 0.3) announced before round 2: 3/3 sites pending under the new hash, no approval carried over, round 2 refused (training.refused TWF_E_STUDY_NOT_APPROVED), nothing trained; officer view: "${epsLine.slice(0, 90)}"; strategy fedavg -> fedadam: pending again (study.manifest_changed), view names fedadam`,
          'TWF_E_STUDY_NOT_APPROVED',
        );
      },
    ),
};

// ---------------------------------------------------------------- 4. non-linear / overspending studies

const badStudy: Attack = {
  name: 'lead-asks-for-non-linear-or-overspending-study',
  finding: null,
  expected:
    'POST /api/studies with a non-linear strategy (krum, median) -> 422 TWF_E_STRATEGY_NOT_LINEAR; a noise multiplier that overspends epsilon, or an epsilon no sigma <= 1000 meets -> 422 TWF_E_DP_PARAMS; no study created',
  async run(ctx) {
    const { c, url } = await startCoordinator(join(ctx.dir, 'coordinator'));
    try {
      const count = async () => ((await lead<unknown[]>(url, 'GET', '/api/studies')).json ?? []).length;
      const before = await count();
      const site = (over: object) => ({ level: 'site', delta: 1e-5, clipNorm: 1, ...over });
      const cases: [string, unknown, number, string][] = [
        ['strategy krum', tinySpec({ strategy: { name: 'krum' } as never }), 422, 'TWF_E_STRATEGY_NOT_LINEAR'],
        ['strategy median', tinySpec({ strategy: { name: 'median', trim: 0.1 } as never }), 422, 'TWF_E_STRATEGY_NOT_LINEAR'],
        ['sigma 0.3 for epsilon 1 over 10 rounds', tinySpec({ rounds: 10, dp: site({ epsilon: 1, noiseMultiplier: 0.3 }) as never }), 422, 'TWF_E_DP_PARAMS'],
        ['patient-level sigma 0.5 for epsilon 0.5', tinySpec({ dp: { level: 'patient', epsilon: 0.5, delta: 1e-5, clipNorm: 1, samplingRate: 0.5, noiseMultiplier: 0.5 } }), 422, 'TWF_E_DP_PARAMS'],
        ['epsilon 1e-4 over 1000 rounds (no sigma <= 1000)', tinySpec({ rounds: 1000, dp: site({ epsilon: 1e-4 }) as never }), 422, 'TWF_E_DP_PARAMS'],
      ];
      const seen: string[] = [];
      for (const [what, spec, status, code] of cases) {
        const r = await lead<{ code?: string; detail?: string }>(url, 'POST', '/api/studies', spec);
        if (r.status !== status || r.json?.code !== code) return failed(`${what}: ${r.status} ${JSON.stringify(r.json).slice(0, 300)} (expected ${status} ${code})`);
        seen.push(`${what} -> ${r.status} ${r.json.code}`);
      }
      const after = await count();
      if (after !== before) return failed(`${after - before} studies were created by the refused requests`);
      return refused(`${seen.join('; ')}; no study created`, 'TWF_E_DP_PARAMS');
    } finally {
      await c.close();
    }
  },
};

// ---------------------------------------------------------------- 5. tampered strategy state

const tamperedState: Attack = {
  name: 'tampered-strategy-state',
  finding: null,
  expected:
    "after a FedAdam round, one site's operator flips a byte of its strategy_state row, another replaces the state with its SHA-256 recomputed: at the next aggregate each refuses to apply (TWF_E_STRATEGY_STATE), holds no diverged model and uploads nothing from one; the others go on",
  run(ctx) {
    const tampered = new Map<number, string>();
    /** The operator of site i+1's machine edits its database right after it applied round 1 (another connection to the file, as sqlite3 would). */
    const edit = (i: number, how: 'flip' | 'rehash') => (e: { studyId: string; round: number }) => {
      if (e.round !== 1 || tampered.has(i)) return;
      const db = new Database(join(ctx.dir, `site-${i + 1}`, SITE_FILES.db));
      try {
        const row = db.prepare('select state from strategy_state where study_id = ? and version = 1').get(e.studyId) as { state: Buffer } | undefined;
        if (!row) return;
        const s = Buffer.from(row.state);
        s[s.length - 3] ^= 0x01; // in a float64 of the last vector: a plausible value, a different state
        if (how === 'flip') db.prepare('update strategy_state set state = ? where study_id = ? and version = 1').run(s, e.studyId);
        else db.prepare('update strategy_state set state = ?, state_hash = ? where study_id = ? and version = 1').run(s, sha256Hex(s), e.studyId);
        tampered.set(i, how === 'flip' ? `byte ${s.length - 3} of ${s.length} flipped` : 'a changed state with its SHA-256 recomputed');
      } finally {
        db.close();
      }
    };
    return inRespLab(
      () =>
        openRespLab(
          ctx.dir,
          respSpec(3, { strategy: { name: 'fedadam', serverLearningRate: 0.05, beta1: 0.9, beta2: 0.99, tau: 1e-3 }, roundDeadlineS: 8 }, false),
          ['Study1', 'Study2', 'Study3', 'Study1', 'Study2'],
          (i) => (i === 3 ? { onApplied: edit(3, 'flip') } : i === 4 ? { onApplied: edit(4, 'rehash') } : {}),
        ),
      async (lab) => {
        const { c, studyId } = lab;
        const honest = lab.nodes.slice(0, 3);
        const victims = lab.nodes.slice(3);
        approveResp(lab);
        await waitFor(() => closedRound(c, studyId, 2) && tampered.size === 2, 'round 2 closed after both edits', 60_000, 50);
        await waitFor(() => honest.every((n) => n.modelAt(studyId, 2)), 'round 2 applied at the 3 untouched sites', 20_000, 50);
        const seen: string[] = [];
        for (const [k, victim] of victims.entries()) {
          const verdict = await waitFor(
            () => victim.audit.entries().find((e) => e.round === 2 && (e.action === 'aggregate.applied' || (e.action === 'msg.failed' && e.msgType === 'round.aggregate'))),
            "a tampered site's verdict on round 2",
            20_000,
            50,
          );
          const how = tampered.get(3 + k)!;
          if (verdict.action === 'aggregate.applied') return failed(`a site whose state was edited (${how}) applied round 2 with it and now holds a model the others do not: ${verdict.detail}`);
          expect((verdict.detail ?? '').startsWith('TWF_E_STRATEGY_STATE'), `a tampered site failed round 2 for another reason: ${verdict.detail}`);
          expect(!victim.modelAt(studyId, 2), 'a tampered site holds a model version 2');
          seen.push(`${how} -> msg.failed ${(verdict.detail ?? '').split(': ').at(-1)!.slice(0, 80)}`);
        }
        // Round 3: the others go on; the tampered sites cannot get past version 1 and train nothing.
        const st = await waitFor(
          () => {
            const s = c.engine.studyStatus(studyId);
            return s.state === 'completed' || s.roundSummaries.some((r) => r.round >= 3 && r.state !== 'open') ? s : null;
          },
          'round 3 over',
          40_000,
          50,
        );
        const r3 = st.roundSummaries.find((r) => r.round === 3)!;
        for (const victim of victims) {
          const trained = victim.audit.entries().filter((e) => e.studyId === studyId && (e.round ?? 0) >= 3 && (e.action === 'training.started' || e.action === 'update.trained'));
          expect(trained.length === 0 && !r3.survivors.includes(victim.siteId), `a tampered site took part in round 3: ${trained.map((e) => e.action).join(',')} survivors ${r3.survivors.join(',')}`);
        }
        const digests = new Set(honest.map((n) => n.modelHistory(studyId).find((x) => x.version === 2)!.digest));
        expect(digests.size === 1, 'the untouched sites disagree on model version 2');
        return refused(
          `${seen.join('; ')}; neither holds a version 2 nor trained in round 3 (round 3 ${r3.state} with the ${r3.survivors.length} others); the 3 untouched sites hold the same version 2`,
          'TWF_E_STRATEGY_STATE',
        );
      },
    );
  },
};

// ---------------------------------------------------------------- 6. privacy ledger rollback

const ledgerRollback: Attack = {
  name: 'privacy-ledger-rollback',
  finding: null,
  expected:
    "the site operator deletes dp_ledger rows to regain budget: the site's next DP round is refused (TWF_E_DP_BUDGET) because its signed, hash-chained audit log (twinfed audit verify) still records every dp.spent; the coordinator's records show the rounds the site contributed to",
  run: (ctx) =>
    inRespLab(
      () => openRespLab(ctx.dir, respSpec(2), ['Study1', 'Study2', 'Study3']),
      async (lab) => {
        const { c, studyId, manifest: m } = lab;
        approveResp(lab);
        await waitFor(() => c.engine.studyStatus(studyId).state === 'completed', 'study completion', 60_000, 50);
        const [n] = lab.nodes;
        const policy = loadSiteConfig(lab.dirs[0]).privacy;
        const before = budgetView(n.db, m, policy);
        // The operator, with the file: deletes the ledger rows (sqlite3 site.db 'delete from dp_ledger').
        const dbFile = join(lab.dirs[0], SITE_FILES.db);
        const db = new Database(dbFile);
        let deleted: number;
        try {
          deleted = db.prepare('delete from dp_ledger').run().changes;
        } finally {
          db.close();
        }
        const after = budgetView(n.db, m, policy);
        expect(deleted === 2 && before.datasetSpent > 0 && after.datasetSpent === 0, `ledger rows deleted ${deleted}; spent ${before.datasetSpent} -> ${after.datasetSpent}`);

        // What still says the budget was spent.
        const v = await verifyAuditDb(dbFile);
        const spent = n.audit.entries().filter((e) => e.action === 'dp.spent' && e.studyId === studyId);
        const ledgerRounds = (n.db.$client.prepare('select round from dp_ledger where study_id = ?').all(studyId) as { round: number }[]).map((r) => r.round);
        const unrecorded = spent.filter((e) => !ledgerRounds.includes(e.round!)).map((e) => e.round);
        const contributed = c.engine
          .studyStatus(studyId)
          .roundSummaries.filter((r) => r.survivors.includes(n.siteId))
          .map((r) => r.round);
        const receipts = c.engine.audit
          .entries()
          .filter((e) => e.actor === n.siteId && e.action === 'msg.received' && e.msgType === 'update.chunk')
          .map((e) => e.round);
        if (!v.ok) return failed(`audit verify of the site's log failed after the ledger edit: ${v.firstBroken?.reason}`);
        if (unrecorded.length !== 2 || contributed.length !== 2)
          return failed(
            `after deleting the ledger nothing shows the spend: audit dp.spent rounds without a ledger row ${unrecorded.join(',') || 'none'}, coordinator rounds with this site ${contributed.join(',') || 'none'}`,
          );
        const lastSpend = spent.at(-1)!.detail!.match(/epsilon of this study ([0-9.]+)/)?.[1];

        // The regained budget is meant for the next study on the same data: the site's own budget check compares the ledger with its audit log.
        const s2 = await createAndStart(lab.url, respSpec(1));
        await waitFor(() => lab.nodes.every((x) => SiteNode.listStudies(x.db).some((st) => st.studyId === s2.studyId)), 'the second announcement', 20_000, 20);
        lab.nodes.forEach((x, i) => SiteNode.approve(x.db, x.audit, s2.studyId, `officer ${i + 1}`, s2.manifestHash));
        const refusal = await waitFor(
          () => n.audit.entries().find((e) => e.studyId === s2.studyId && (e.action === 'dp.refused' || e.action === 'training.started')),
          "the edited site's verdict on the second study's round 1",
          30_000,
          50,
        );
        const detected = `twinfed audit verify OK (${v.checked} signed entries) with dp.spent for rounds ${unrecorded.join(',')} (study epsilon ${lastSpend}) that the ledger lacks; the coordinator's audit has this site's update.chunk for rounds ${[...new Set(receipts)].join(',')} and lists it among the survivors of ${contributed.join(',')}`;
        if (refusal.action === 'training.started')
          return contained(
            `operator deleted ${deleted} dp_ledger rows: the budget view fell from epsilon ${before.datasetSpent.toFixed(3)} to 0 and the site trained a new DP study on it; detected only afterwards: ${detected}`,
          );
        expect(/privacy ledger lacks 2 round/.test(refusal.detail ?? ''), `the site refused the second study for another reason: ${refusal.detail}`);
        const declined = await waitFor(
          () => c.engine.audit.entries().find((e) => e.msgType === 'round.decline' && e.studyId === s2.studyId && e.actor === n.siteId),
          "the coordinator's record of the decline",
          10_000,
          50,
        );
        return refused(
          `operator deleted ${deleted} dp_ledger rows (budget view: epsilon ${before.datasetSpent.toFixed(3)} -> 0); the next DP study's round was refused before training (dp.refused TWF_E_DP_BUDGET: ledger lacks 2 rounds the audit log records as spent; round.decline at the coordinator: ${declined.action}); detected as well: ${detected}`,
          'TWF_E_DP_BUDGET',
        );
      },
    ),
};

// ---------------------------------------------------------------- 7. site-level DP: rogue bias

const noiseBias: Attack = {
  name: 'site-level-noise-bias',
  finding: null,
  expected:
    'site-level DP: a rogue adding a constant bias to its quantised update within the noise allowance (12 sigma of the summed noise per element) is applied (contained, shift reported); beyond it the honest sites refuse the aggregate (TWF_E_AGGREGATE_BOUNDS)',
  run: (ctx) =>
    inLab(
      () =>
        openLab(ctx.dir, {
          real: 3,
          raw: 1,
          spec: { rounds: 2, training: { epochsPerRound: 1, batchSize: 8, learningRate: 1e-2, clipBound: 1, seed: 5 }, dp: { level: 'site', epsilon: 8, delta: 1e-5, clipNorm: 0.5 } },
        }),
      async (lab: Lab) => {
        const { studyId, manifest: m } = lab;
        expect(m.dp?.level === 'site' && m.dp.noiseMultiplier !== undefined, `the manifest's dp: ${JSON.stringify(m.dp)}`);
        const [rogue] = lab.raws;
        const params = m.encryption as HeParams;
        const noise: SiteLevelNoise = { noiseMultiplier: m.dp.noiseMultiplier, clipNorm: m.dp.clipNorm, clipBound: m.training.clipBound, precisionBits: params.precisionBits, minSites: quorumOf(m) };
        const k = 4;
        const allowance = siteNoiseAllowance(noise, k);
        const S = 2 ** params.precisionBits / m.training.clipBound;
        const elementBound = Math.min(m.training.clipBound, m.dp.clipNorm);
        const t = Number(rogue.he.plainModulus);
        const biased = (biasQ: number) => (q: Float64Array) => {
          const noisy = addDiscreteGaussianZt(q, rogue.he.plainModulus, siteNoiseSigmaQ(noise));
          return noisy.map((v) => (((v + biasQ) % t) + t) % t);
        };
        const play = async (round: number, biasQ: number) => {
          expectOk(await rogue.sendSetup(round, await startOf(rogue, round)), 'mask.setup');
          const { ciphertexts } = await rogue.prepareUpload(round, new Float32Array(m.updateLength), 1, 30_000, biased(biasQ));
          for (let i = 0; i < ciphertexts.length; i++) expectOk(await rogue.raw.send('update.chunk', studyId, round, ciphertexts[i], rogue.chunkMeta(round, i, ciphertexts.length, 1)), 'update.chunk');
          expectOk((await rogue.sign(round)).ack, 'mask.consistency');
          expectOk(await rogue.reveal(round), 'mask.unmask');
        };
        await joinAll(lab, [1]);
        // Round 1: half the allowance.
        const bias1 = Math.round(0.5 * allowance.sumQ);
        await play(1, bias1);
        await waitFor(() => lab.nodes.every((n) => n.modelAt(studyId, 1) || audited(n, 'aggregate.refused').some((e) => e.round === 1)), "the honest sites' verdicts on round 1", 30_000, 20);
        if (!lab.nodes.every((n) => n.modelAt(studyId, 1))) {
          const why = lab.nodes.flatMap((n) => audited(n, 'aggregate.refused').map((e) => e.detail)).join(' | ');
          return failed(`an aggregate with a bias inside the noise allowance was refused (a false alarm an honest noisy round could raise too): ${why.slice(0, 200)}`);
        }
        const before = lab.nodes[0].modelAt(studyId, 0)!;
        const after = lab.nodes[0].modelAt(studyId, 1)!;
        let mean = 0;
        for (let i = 0; i < before.length; i++) mean += after[i] - before[i];
        mean /= before.length;
        const expectedShift = bias1 / (S * k);
        // Round 2: twice the whole bound (clip + allowance) on the average.
        const bias2 = Math.round(2 * (elementBound + allowance.averaged) * S * k);
        await play(2, bias2);
        await waitFor(() => lab.nodes.every((n) => n.modelAt(studyId, 2) || audited(n, 'aggregate.refused').some((e) => e.round === 2)), "the honest sites' verdicts on round 2", 30_000, 20);
        const refusedBy = lab.nodes.filter((n) => audited(n, 'aggregate.refused', 'TWF_E_AGGREGATE_BOUNDS').some((e) => e.round === 2));
        if (refusedBy.length !== 3)
          return failed(
            `a bias of ${(bias2 / (S * k)).toFixed(3)} per averaged element (bound ${(elementBound + allowance.averaged).toFixed(3)}) was applied by ${3 - refusedBy.length} honest site(s)`,
          );
        const sigmaAvg = allowance.averaged / 12;
        return contained(
          `sigma ${m.dp.noiseMultiplier.toFixed(3)}, C ${m.dp.clipNorm}, 4 contributors: noise sd per averaged element ${sigmaAvg.toFixed(4)}, allowance 12 sd = ${allowance.averaged.toFixed(4)} (bound min(B,C) + allowance = ${(elementBound + allowance.averaged).toFixed(4)}); round 1 bias ${expectedShift.toFixed(4)}/element applied at 3/3 (mean shift of the model ${mean.toFixed(4)}); round 2 bias ${(bias2 / (S * k)).toFixed(3)}/element refused by 3/3 (TWF_E_AGGREGATE_BOUNDS)`,
          'TWF_E_AGGREGATE_BOUNDS',
        );
      },
    ),
};

// ---------------------------------------------------------------- 8. metrics.report abuse

/** A metrics.report envelope with a hand-written JSON body (NaN is not JSON; canonicalJson refuses it), signed like any other. */
function rawBodyEnvelope(raw: RawSite, studyId: string, text: string): Envelope {
  const body = utf8(text);
  const header = {
    v: PROTOCOL_VERSION,
    type: 'metrics.report' as const,
    senderId: raw.siteId,
    to: raw.coordinatorId,
    studyId,
    round: null,
    seq: ++raw.seq,
    tsMs: Date.now(),
    digest: sha256Hex(body),
    sizeBytes: body.length,
  };
  return { header, signature: toB64(sign(utf8(canonicalJson(header)), raw.identity.ed25519SecretKey)), body };
}

const metricsAbuse: Attack = {
  name: 'metrics-report-abuse',
  finding: null,
  expected: 'metrics.report with 33 entries, a name listed twice, a 1 MB name, NaN or infinite values is refused (TWF_E_MALFORMED) and nothing is stored',
  run: (ctx) =>
    inLab(
      () => openLab(ctx.dir, { raw: 3 }),
      async (lab) => {
        const { c, studyId } = lab;
        await joinAll(lab);
        const [p] = lab.raws;
        const report = (metrics: unknown): BodyOf['metrics.report'] => ({
          evaluatedRound: 0,
          metrics: metrics as never,
          valPatients: 5,
          trainLoss: null,
          trainMs: null,
          encryptMs: null,
          uploadBytes: null,
        });
        const stored = () => {
          const q = (t: string) => (c.db.$client.prepare(`select count(*) n from ${t} where study_id = ?`).get(studyId) as { n: number }).n;
          return q('site_metrics') + q('site_metric_values');
        };
        const base = stored();
        const rawText = (value: string) => `{"encryptMs":null,"evaluatedRound":0,"metrics":[{"name":"auc","value":${value}}],"trainLoss":null,"trainMs":null,"uploadBytes":null,"valPatients":5}`;
        const cases: [string, () => Promise<Ack>][] = [
          ['33 entries', () => p.raw.send('metrics.report', studyId, null, report(Array.from({ length: 33 }, (_, i) => ({ name: `m${i}`, value: 0.5 }))))],
          [
            'a name twice',
            () =>
              p.raw.send(
                'metrics.report',
                studyId,
                null,
                report([
                  { name: 'auc', value: 0.9 },
                  { name: 'auc', value: 0.1 },
                ]),
              ),
          ],
          ['a 1 MB name', () => p.raw.send('metrics.report', studyId, null, report([{ name: 'x'.repeat(1 << 20), value: 0.5 }]))],
          ['value NaN', () => p.raw.emit(rawBodyEnvelope(p.raw, studyId, rawText('NaN')))],
          ['value 1e999 (Infinity)', () => p.raw.emit(rawBodyEnvelope(p.raw, studyId, rawText('1e999')))],
          ['value "0.9" (a string)', () => p.raw.emit(rawBodyEnvelope(p.raw, studyId, rawText('"0.9"')))],
        ];
        const seen: string[] = [];
        for (const [what, send] of cases) {
          const a = await send();
          expect(refusedWith(a, 'TWF_E_MALFORMED'), `${what}: ${JSON.stringify(a).slice(0, 300)}`);
          seen.push(`${what} -> ${a.ok ? 'accepted' : a.code}`);
        }
        expect(stored() === base, `${stored() - base} metric rows were stored from refused reports`);
        // The control: a well-formed report is stored, so the refusals above are the checks, not a broken path.
        expectOk(await p.raw.send('metrics.report', studyId, null, report([{ name: 'auc', value: 0.5 }])), 'a well-formed metrics.report');
        expect(stored() > base, 'a well-formed report was not stored');
        return refused(`${seen.join('; ')}; nothing stored (a well-formed report afterwards is)`, 'TWF_E_MALFORMED');
      },
    ),
};

export const STRATEGY_DP_ATTACKS: Attack[] = [declineMisuse, declineEveryRound, weakenedManifest, badStudy, tamperedState, ledgerRollback, noiseBias, metricsAbuse];
