import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { io } from 'socket.io-client';
import { KEY_HANDOUT_KIND, canonicalJson, keyHandoutFields, packFrames, utf8, type Ack, type BodyOf, type StudyManifest } from '@twinfed/protocols';
import { SiteNode, studyKeyCommitment } from '@twinfed/site-node';
import { fromB64, generateIdentity, openSealed, parseEnvelope, sealTo, signStatement, toB64 } from '@twinfed/shared/crypto/index';
import { createHeContext, encryptSlots, generateSecretKey, heParamsDigest, maxTotalSamples, type HeParams } from '@twinfed/shared/he/index';
import { RawSite, aggregateError, enrolNewSite, lead, realSite, startCoordinator, tinySpec, waitFor } from '../harness.js';
import {
  Unexpected,
  approveAll,
  atBound,
  audited,
  expect,
  expectOk,
  inLab,
  joinAll,
  jsonBody,
  keyOf,
  openLab,
  playRound,
  recordReceived,
  refusedWith,
  smallDelta,
  startOf,
  type Lab,
} from './protocol-fixtures.js';
import { contained, failed, refused, type Attack } from './types.js';

/**
 * Attacks on protocol 2.0 itself (findings 1-7 of the 2026-11-27 review): who can take part, how
 * much weight a site can claim, connections, update shapes, rounds, study keys. Rogue sites are
 * hand-driven participants speaking the real protocol; where a site's own checks are what is
 * tested, the sites are real site nodes and the malicious coordinator operator signs with the
 * coordinator's real key (engine.sendAsCoordinator).
 */

const fmt = (x: number, d = 3) => x.toFixed(d);
const ackText = (a: Ack) => (a.ok ? 'accepted' : `${a.code}`);

/** Finding 1: the lead enrols its own site after the start and tries to get into the study and its key. */
const outsider: Attack = {
  name: 'outsider-site-joins-running-study',
  finding: 1,
  expected:
    "a site enrolled after start cannot join (TWF_E_NOT_PARTICIPANT), sees no announce or key; a real dealer refuses to seal to it (TWF_E_KEY_HANDOUT); adding it takes every officer's new approval, and never yields an earlier epoch's key",
  async run(ctx) {
    let o: RawSite | null = null;
    return inLab(
      () => openLab(ctx.dir, { real: 3, raw: 1, dealers: 'real', spec: { minSites: 4 } }),
      async (lab) => {
        const { c, studyId } = lab;
        approveAll(lab);
        await waitFor(() => lab.nodes.every((n) => keyOf(n, studyId, 1)), 'the study key at the three real sites', 20_000, 20);
        // The real site that joined first dealt epoch 1.
        const dealer = lab.nodes.find((n) => n.siteId === c.engine.studyStatus(studyId).keyDealer);
        expect(dealer && keyOf(dealer, studyId, 1), `epoch 1 was dealt by ${c.engine.studyStatus(studyId).keyDealer}, not a real site`);

        // The lead enrols its own site after the start and connects it with a proper handshake.
        const oDir = join(ctx.dir, 'outsider');
        await enrolNewSite(lab.url, oDir, "The lead's own site");
        o = await RawSite.create(lab.url, oDir);
        await o.connected();
        expectOk(await o.hello(), "the outsider's hello");
        const outsiderId = o.siteId;
        const joinAck = await o.send('study.join', studyId, null, { manifestHash: lab.manifestHash, trainSamples: 500, valPatients: 5 });
        expect(refusedWith(joinAck, 'TWF_E_NOT_PARTICIPANT'), `the outsider's study.join was answered ${JSON.stringify(joinAck)}`);
        const aggAck = await o.send('aggregate.request', studyId, null, { fromRound: 1 });
        expect(refusedWith(aggAck, 'TWF_E_NOT_PARTICIPANT'), `the outsider's aggregate.request was answered ${JSON.stringify(aggAck)}`);
        const studyMsgs = () => o!.inbox.filter((e) => e.header.studyId === studyId && e.header.type !== 'reject').map((e) => e.header.type);
        expect(studyMsgs().length === 0, `the outsider was sent ${studyMsgs().join(', ')}`);

        // The malicious coordinator asks the real dealer to seal the study key to the outsider.
        const roster = lab.manifest.participants.map((p) => p.siteId);
        const ask = (epoch: number, manifestHash: string, recipients: string[]) =>
          c.engine.sendAsCoordinator(dealer.siteId, 'keys.request', studyId, null, { epoch, manifestHash, encryption: lab.manifest.encryption, recipients });
        const sealed0 = audited(dealer, 'keys.sealed').length;
        const refused0 = audited(dealer, 'keys.refused', 'TWF_E_KEY_HANDOUT').length;
        ask(1, lab.manifestHash, [...roster, outsiderId]);
        ask(2, lab.manifestHash, [outsiderId]);
        await waitFor(() => audited(dealer, 'keys.refused', 'TWF_E_KEY_HANDOUT').length >= refused0 + 2, "the dealer's refusals", 10_000, 20);
        expect(audited(dealer, 'keys.sealed').length === sealed0, 'the dealer sealed the study key again');
        expect(studyMsgs().length === 0, `the outsider was sent ${studyMsgs().join(', ')}`);

        // A roster change that adds it: a new manifest, pending at every site until its officer approves.
        const change = await lead(lab.url, 'POST', `/api/studies/${studyId}/roster`, { add: [outsiderId] });
        expect(change.status === 200, `roster change answered ${change.status} ${JSON.stringify(change.json)}`);
        const m2 = (await lead<{ manifest: StudyManifest; manifestHash: string }>(lab.url, 'GET', `/api/studies/${studyId}/manifest`)).json;
        await waitFor(() => lab.nodes.every((n) => SiteNode.listStudies(n.db)[0]?.status === 'pending'), 'the new manifest pending at every real site', 10_000, 20);
        expect(c.engine.studyStatus(studyId).joined.length === 0, `sites count as joined under manifest version 2 before any approval: ${c.engine.studyStatus(studyId).joined.join(',')}`);
        const notApproved0 = audited(dealer, 'training.refused', 'TWF_E_STUDY_NOT_APPROVED').length;
        ask(2, m2.manifestHash, [...roster, outsiderId]);
        await waitFor(() => audited(dealer, 'training.refused', 'TWF_E_STUDY_NOT_APPROVED').length > notApproved0, "the dealer's answer before its officer approved version 2", 10_000, 20);
        expect(audited(dealer, 'keys.sealed').length === sealed0, 'the dealer sealed a key for manifest version 2 before its officer approved it');

        // Every officer approves version 2 (the outsider's is the lead): it now gets the key of a new epoch.
        approveAll(lab, m2.manifestHash);
        await waitFor(() => lab.nodes.every((n) => c.engine.studyStatus(studyId).joined.includes(n.siteId)), 'the real sites joined under version 2', 10_000, 20);
        await o.next('study.announce');
        expectOk(await o.send('study.join', studyId, null, { manifestHash: m2.manifestHash, trainSamples: 500, valPatients: 5 }), "the approved outsider's join");
        const handout = jsonBody<BodyOf['keys.deliver']>(await o.next('keys.deliver', 20_000));
        expect(handout.epoch === 2 && handout.manifestHash === m2.manifestHash, `the outsider was handed epoch ${handout.epoch}`);

        // Now a member, it asks (through the coordinator) for the key of epoch 1, dealt under version 1.
        const got = recordReceived(c);
        const refused1 = audited(dealer, 'keys.refused', 'TWF_E_KEY_HANDOUT').length;
        ask(1, m2.manifestHash, [...roster, outsiderId]);
        const resealed = () =>
          got.map((g) => parseEnvelope(g.raw)).find((e) => e.header.type === 'keys.sealed' && e.header.senderId === dealer.siteId && jsonBody<BodyOf['keys.sealed']>(e).epoch === 1);
        await waitFor(() => audited(dealer, 'keys.refused', 'TWF_E_KEY_HANDOUT').length > refused1 || resealed(), "the dealer's answer to a request for epoch 1", 10_000, 20);
        const env = resealed();
        if (env) {
          const box = jsonBody<BodyOf['keys.sealed']>(env).recipients.find((r) => r.siteId === outsiderId)!;
          const opened = openSealed(fromB64(box.sealedKey), o.identity);
          const same = Buffer.from(opened).equals(keyOf(dealer, studyId, 1)!.secretKey);
          return failed(
            `after the roster change the dealer re-sealed the epoch-1 key (dealt under manifest version 1, before the outsider was approved) to the outsider${same ? ', which opened it: it can decrypt every round of version 1' : ''}`,
          );
        }
        const why = audited(dealer, 'keys.refused', 'TWF_E_KEY_HANDOUT').at(-1)!.detail ?? '';
        expect(/dealt under manifest/.test(why), `the dealer refused the epoch-1 request for another reason: ${why}`);
        return refused(
          `join and aggregate.request -> TWF_E_NOT_PARTICIPANT, no announce or key; the dealer refused 2 requests naming it (keys.refused) and sealed nothing; after the roster change all 3 sites were pending and the dealer refused (TWF_E_STUDY_NOT_APPROVED) until approved; approved, it got epoch 2 only; a request to re-seal epoch 1 to it -> TWF_E_KEY_HANDOUT`,
          'TWF_E_NOT_PARTICIPANT',
        );
      },
      () => o?.close(),
    );
  },
};

/** Finding 2 (second half): a published aggregate of too few contributors. */
const tooFew: Attack = {
  name: 'aggregate-of-too-few-contributors',
  finding: 2,
  expected: 'real sites refuse a round.aggregate naming 2 contributors or fewer than minSites, before decrypting (aggregate.refused TWF_E_TOO_FEW_CONTRIBUTORS), and apply nothing',
  run: (ctx) =>
    inLab(
      () => openLab(ctx.dir, { real: 3, raw: 1, dealers: 'real', spec: { minSites: 4 } }),
      async (lab) => {
        const { c, studyId, manifest: m } = lab;
        approveAll(lab);
        await waitFor(() => lab.nodes.every((n) => keyOf(n, studyId, 1) && n.modelAt(studyId, 0)), 'key and initial model at the real sites', 20_000, 20);
        // Ciphertexts of the right shape (under a key of the coordinator's: it never holds the study's).
        const he = await createHeContext(m.encryption as HeParams);
        const cts = encryptSlots(he, generateSecretKey(he), new Float64Array(m.updateLength)).ciphertexts;
        const entry = (siteId: string) => ({ siteId, sPk: toB64(randomBytes(32)), bCommit: randomBytes(32).toString('hex'), signature: toB64(randomBytes(64)) });
        const ids = lab.nodes.map((n) => n.siteId);
        const variants = [ids.slice(0, 2), ids]; // 2 (< 3), and 3 (< minSites 4)
        for (const survivors of variants) {
          const info = utf8(
            canonicalJson({
              round: 1,
              baseVersion: 0,
              keyEpoch: 1,
              length: m.updateLength,
              totalSamples: 40 * survivors.length,
              threshold: 3,
              keySet: survivors.map(entry),
              survivors,
              reveals: [],
              heParamsDigest: heParamsDigest(m.encryption as HeParams),
            }),
          );
          for (const n of lab.nodes) c.engine.sendAsCoordinator(n.siteId, 'round.aggregate', studyId, 1, packFrames([info, ...cts]), { count: cts.length, infoBytes: info.length });
        }
        await waitFor(() => lab.nodes.every((n) => audited(n, 'aggregate.refused').length >= variants.length), "the sites' verdicts", 10_000, 20);
        for (const n of lab.nodes) {
          const codes = audited(n, 'aggregate.refused').map((e) => (e.detail ?? '').split(':')[0]);
          expect(
            codes.every((x) => x === 'TWF_E_TOO_FEW_CONTRIBUTORS'),
            `${n.config.siteName} refused with ${codes.join(', ')}`,
          );
          expect(audited(n, 'aggregate.applied').length === 0 && !n.modelAt(studyId, 1), `${n.config.siteName} applied a forged aggregate`);
        }
        return refused(
          `3 real sites x {2 contributors, 3 < minSites 4}: each refused before decrypting (aggregate.refused TWF_E_TOO_FEW_CONTRIBUTORS), no model version 1 anywhere`,
          'TWF_E_TOO_FEW_CONTRIBUTORS',
        );
      },
    ),
};

/** Finding 3 (a, b): declared sample counts above the manifest's cap or above the counts a site joined with. */
const samplesAboveCaps: Attack = {
  name: 'declared-samples-above-caps',
  finding: 3,
  expected: 'a declared n above training.maxSamplesPerSite, or above the counts the site joined with, is refused (TWF_E_SAMPLES_BOUND) and nothing reaches the sum',
  run: (ctx) =>
    inLab(
      () => openLab(ctx.dir, { raw: 3 }),
      async (lab) => {
        const { c, studyId, manifest: m } = lab;
        const cap = m.training.maxSamplesPerSite;
        await joinAll(lab, [2 * cap, 100, 100]);
        const [big, small] = lab.raws;
        for (const p of lab.raws) expectOk(await p.sendSetup(1, await startOf(p, 1)), 'mask.setup');
        const prepared = await Promise.all(lab.raws.map((p, k) => p.prepareUpload(1, smallDelta(m, k), 100)));
        const send = (k: number, n: number) => lab.raws[k].raw.send('update.chunk', studyId, 1, prepared[k].ciphertexts[0], lab.raws[k].chunkMeta(1, 0, prepared[k].ciphertexts.length, n));
        const aboveCap = await send(0, cap + 1);
        const aboveJoin = await send(1, 101);
        expect(refusedWith(aboveCap, 'TWF_E_SAMPLES_BOUND'), `n=${cap + 1} from ${big.siteId} (joined with ${2 * cap}): ${JSON.stringify(aboveCap)}`);
        expect(refusedWith(aboveJoin, 'TWF_E_SAMPLES_BOUND'), `n=101 from ${small.siteId} (joined with 100): ${JSON.stringify(aboveJoin)}`);
        const held = c.db.$client.prepare('select (select count(*) from updates where study_id = ?) + (select count(*) from accumulators where study_id = ?) as n').get(studyId, studyId) as {
          n: number;
        };
        expect(held.n === 0, `${held.n} update or sum rows were written`);
        return refused(
          `n=${cap + 1} from a site that joined with ${2 * cap} -> TWF_E_SAMPLES_BOUND (maxSamplesPerSite ${cap}); n=101 from a site that joined with 100 -> TWF_E_SAMPLES_BOUND; no update row, nothing in the sum`,
          'TWF_E_SAMPLES_BOUND',
        );
      },
    ),
};

/** What each real site made of round `round`'s aggregate (applied, refused with a code, or failed on it). */
function verdicts(lab: Lab, round: number): string[] {
  return lab.nodes.map((n) => {
    const e = n.audit
      .entries()
      .find((x) => x.round === round && (x.action === 'aggregate.applied' || x.action === 'aggregate.refused' || (x.action === 'msg.failed' && x.msgType === 'round.aggregate')));
    return e ? `${e.action}${e.action === 'aggregate.applied' ? '' : ` ${(e.detail ?? '').slice(0, 120)}`}` : 'nothing yet';
  });
}

/** Finding 3 (c): declares n = 1, encodes its update with n = 50 · maxSamplesPerSite among honest real sites. */
const hugeEncodedN: Attack = {
  name: 'rogue-encodes-huge-sample-count',
  finding: 3,
  expected:
    'honest real sites refuse the aggregate (TWF_E_AGGREGATE_BOUNDS), the round becomes refused, a fresh round opens from the last good model and, once the lead evicts the rogue, the study completes',
  run: (ctx) =>
    inLab(
      () => openLab(ctx.dir, { real: 3, raw: 1 }),
      async (lab) => {
        const { c, url, studyId, manifest: m } = lab;
        const [rogue] = lab.raws;
        const hugeN = 50 * m.training.maxSamplesPerSite;
        await joinAll(lab, [1]);
        const start = await startOf(rogue, 1);
        expectOk(await rogue.sendSetup(1, start), 'mask.setup');
        const { ciphertexts } = await rogue.prepareUpload(1, atBound(m), hugeN);
        for (let i = 0; i < ciphertexts.length; i++)
          expectOk(await rogue.raw.send('update.chunk', studyId, 1, ciphertexts[i], rogue.chunkMeta(1, i, ciphertexts.length, 1)), "the rogue's chunk (declared n = 1)");
        expectOk((await rogue.sign(1)).ack, 'mask.consistency');
        expectOk(await rogue.reveal(1), 'mask.unmask');
        await waitFor(() => verdicts(lab, 1).every((v) => v !== 'nothing yet'), "the honest sites' verdicts on round 1", 20_000, 20);
        const v = verdicts(lab, 1);
        expect(
          lab.nodes.every((n) => audited(n, 'aggregate.refused', 'TWF_E_AGGREGATE_BOUNDS').some((e) => e.round === 1)),
          `the honest sites did not refuse round 1 as out of bounds: ${v.join(' | ')}; round 1 is ${c.engine.roundStatus(studyId, 1).state}`,
        );
        await waitFor(() => c.engine.roundStatus(studyId, 1).state === 'refused', 'round 1 marked refused', 10_000, 20);
        const st1 = c.engine.studyStatus(studyId);
        expect(st1.state === 'running', `after round 1 was refused the study is ${st1.state} with ${st1.closedRounds} closed rounds: it ended without a model the sites accept`);

        // The lead evicts the rogue; a round that still lists it is aborted.
        const ev = await lead(url, 'POST', `/api/studies/${studyId}/sites/${rogue.siteId}/evict`, { reason: 'encoded a weight far above its declared sample count' });
        expect(ev.status === 200, `evict answered ${ev.status} ${JSON.stringify(ev.json)}`);
        const open = c.engine.studyStatus(studyId).roundSummaries.find((r) => r.state === 'open');
        if (open?.participants.includes(rogue.siteId)) await lead(url, 'POST', `/api/studies/${studyId}/rounds/current/abort`, { reason: 'a participant was evicted' });
        const st = await waitFor(
          () => {
            const s = c.engine.studyStatus(studyId);
            return s.state === 'completed' ? s : null;
          },
          'the study to complete without the rogue',
          40_000,
          50,
        );
        const good = st.roundSummaries.filter((r) => r.state === 'closed');
        expect(
          good.length === 1 && good[0].baseVersion === 0 && !good[0].survivors.includes(rogue.siteId),
          `closed rounds: ${JSON.stringify(good.map((r) => ({ round: r.round, base: r.baseVersion, survivors: r.survivors })))}`,
        );
        const final = good[0].round;
        await waitFor(() => lab.nodes.every((n) => n.modelAt(studyId, final)), `model version ${final} at every honest site`, 20_000, 20);
        const err = aggregateError(
          lab.nodes[0].modelAt(studyId, 0)!,
          lab.nodes[0].modelAt(studyId, final)!,
          lab.deltas.map((d) => d.get(final)!),
        );
        expect(err < 3 * 2 ** -21 + 1e-6, `the final round's model differs from the honest FedAvg by ${err}`);
        await waitFor(() => lab.nodes.every((n) => SiteNode.listStudies(n.db)[0]?.status === 'completed'), 'the final model exported at every honest site', 20_000, 20);
        const reopened = c.engine.audit.entries().some((e) => e.action === 'study.reopened' && e.round === 1);
        const others = st.roundSummaries.filter((r) => r.round !== 1 && r.round !== final).map((r) => `${r.round} ${r.state}`);
        return refused(
          `round 1: 3/3 honest sites refused (${v[0].replace('aggregate.refused ', '').slice(0, 60)}…), round 1 marked refused${reopened ? ' and the study it had completed reopened' : ''}${others.length ? `; round ${others.join(', ')}` : ''}; after the eviction round ${final} from model 0 (the last good one) closed with the 3 honest sites (FedAvg error ${err.toExponential(1)}), the study completed and each site exported model ${final}`,
          'TWF_E_AGGREGATE_BOUNDS',
        );
      },
    ),
};

/** Shift of the applied average against the honest sites' own FedAvg, per element. */
function shiftStats(lab: Lab, round: number) {
  const n0 = lab.nodes[0];
  const before = n0.modelAt(lab.studyId, round - 1)!;
  const after = n0.modelAt(lab.studyId, round)!;
  const honest = lab.deltas.map((d) => d.get(round)!);
  const nH = honest.reduce((s, h) => s + h.n, 0);
  let sum = 0;
  let maxAbs = 0;
  for (let k = 0; k < before.length; k++) {
    const applied = after[k] - before[k];
    const fedavg = honest.reduce((s, h) => s + h.n * h.delta[k], 0) / nH;
    sum += applied - fedavg;
    maxAbs = Math.max(maxAbs, Math.abs(applied));
  }
  return { meanShift: sum / before.length, maxAbs, nH };
}

/** Finding 3 (d): a rogue with a legitimate n pushes every element to +B; then declares n = 1 but encodes a larger weight that stays in bounds. */
const pushToBound: Attack = {
  name: 'rogue-moves-average-within-bound',
  finding: 3,
  expected: 'contained: a rogue sending +B everywhere is applied, the average moves but stays within [-B, B]',
  run: (ctx) =>
    inLab(
      () => openLab(ctx.dir, { real: 3, raw: 1, spec: { rounds: 2 } }),
      async (lab) => {
        const { studyId, manifest: m } = lab;
        const B = m.training.clipBound;
        const [rogue] = lab.raws;
        const nR = 77; // what a real site of the lab declares
        await joinAll(lab, [nR]);
        await playRound(rogue, 1, atBound(m), nR);
        await waitFor(() => lab.nodes.every((n) => n.modelAt(studyId, 1)), 'round 1 applied at the honest sites', 20_000, 20);
        const r1 = shiftStats(lab, 1);
        // Round 2: declares n = 1 (below what it joined with), encodes +B with n = 100.
        const nEnc = 100;
        expectOk(await rogue.sendSetup(2, await startOf(rogue, 2)), 'mask.setup');
        const { ciphertexts } = await rogue.prepareUpload(2, atBound(m), nEnc);
        for (let i = 0; i < ciphertexts.length; i++) expectOk(await rogue.raw.send('update.chunk', studyId, 2, ciphertexts[i], rogue.chunkMeta(2, i, ciphertexts.length, 1)), 'update.chunk');
        expectOk((await rogue.sign(2)).ack, 'mask.consistency');
        expectOk(await rogue.reveal(2), 'mask.unmask');
        await waitFor(() => verdicts(lab, 2).every((v) => v !== 'nothing yet'), "the honest sites' verdicts on round 2", 20_000, 20);
        expect(
          lab.nodes.every((n) => n.modelAt(studyId, 2)),
          `round 2: ${verdicts(lab, 2).join(' | ')}`,
        );
        const r2 = shiftStats(lab, 2);
        const bound = B * (1 + 2 ** -m.encryption.precisionBits);
        if (r1.maxAbs > bound || r2.maxAbs > bound) return failed(`an applied average left [-B, B]: max |avg| ${fmt(r1.maxAbs)}, ${fmt(r2.maxAbs)}`);
        const declaredShare = B / (r2.nH + 1);
        return contained(
          `round 1 (n=${nR} of N=${r1.nH + nR}, +B everywhere): applied, mean shift +${fmt(r1.meanShift)}·B (its share n/N = ${fmt(nR / (r1.nH + nR))}), max |avg| ${fmt(r1.maxAbs)} <= B; round 2 (declared n=1, encoded n=${nEnc}): applied, mean shift +${fmt(r2.meanShift)}·B where a declared n=1 allows ${fmt(declaredShare)}·B — the declared n does not bind the encoded weight, only [-B, B] does`,
        );
      },
    ),
};

/** Finding 3 (e): a roster whose sample caps could overflow the plaintext modulus. */
const rosterOverflow: Attack = {
  name: 'roster-overflows-plaintext-modulus',
  finding: 3,
  expected: 'a study whose roster × maxSamplesPerSite could exceed what one encrypted sum holds is refused at start (and at a roster change), so no round can fail TWF_E_HE_OVERFLOW',
  async run(ctx) {
    const { c, url } = await startCoordinator(join(ctx.dir, 'coordinator'));
    try {
      const ids: string[] = [];
      for (let k = 0; k < 4; k++) ids.push((await enrolNewSite(url, join(ctx.dir, `site-${k}`), `Hospital ${k}`)).siteId);
      const create = async (spec: ReturnType<typeof tinySpec>) => {
        const created = await lead<{ studyId: string }>(url, 'POST', '/api/studies', spec);
        expect(created.status === 201, `create answered ${created.status} ${JSON.stringify(created.json)}`);
        const draft = (await lead<{ manifest: { encryption: HeParams } }>(url, 'GET', `/api/studies/${created.json.studyId}/manifest`)).json.manifest;
        return { studyId: created.json.studyId, maxTotal: maxTotalSamples(draft.encryption) };
      };
      const startWith = async (spec: ReturnType<typeof tinySpec>, sites: string[]) => {
        const d = await create(spec);
        const started = await lead<{ code?: string; detail?: string }>(url, 'POST', `/api/studies/${d.studyId}/start`, { sites });
        return { ...d, status: started.status, code: started.json.code, detail: started.json.detail };
      };
      const spec = (maxSamplesPerSite: number, encryption?: HeParams) => {
        const s = tinySpec();
        s.training = { ...s.training, maxSamplesPerSite };
        return encryption ? { ...s, encryption } : s;
      };
      const { maxTotal } = await create(spec(1));
      const perSite = Math.floor(maxTotal / 3);
      const over = await startWith(spec(perSite + 1), ids.slice(0, 3));
      expect(over.maxTotal === maxTotal, `the study's encryption holds ${over.maxTotal}, expected ${maxTotal}`);
      expect(over.status >= 400 && over.status < 500, `3 × ${perSite + 1} > ${maxTotal} was started (${over.status})`);
      const fits = await startWith(spec(perSite), ids.slice(0, 3));
      expect(fits.status === 200, `3 × ${perSite} <= ${maxTotal} was refused: ${fits.status} ${fits.detail}`);
      const grow = await lead<{ code?: string }>(url, 'POST', `/api/studies/${fits.studyId}/roster`, { add: [ids[3]] });
      expect(grow.status >= 400 && grow.status < 500, `adding a 4th site (4 × ${perSite} > ${maxTotal}) answered ${grow.status}`);
      const small: HeParams = { scheme: 'bfv-sym-seeded', polyModulusDegree: 4096, coeffModulusBits: [60], plainModulusBits: 20, precisionBits: 12 };
      const tiny = await startWith(spec(10_000, small), ids.slice(0, 3));
      expect(tiny.status >= 400 && tiny.status < 500, `3 × 10000 with a ${small.plainModulusBits}-bit plain modulus (holds ${tiny.maxTotal}) was started (${tiny.status})`);
      return refused(
        `one sum holds ${maxTotal} samples at p=20: 3 × ${perSite + 1} refused at start (${over.code}), 3 × ${perSite} started, adding a 4th site refused (${grow.json.code}); a lead-chosen 20-bit t (holds ${tiny.maxTotal}) with 3 × 10000 refused (${tiny.code}); every started roster has n·cap·2^p <= (t-1)/2`,
        over.code ?? null,
      );
    } catch (e) {
      if (e instanceof Unexpected) return failed(e.message);
      throw e;
    } finally {
      await c.close();
    }
  },
};

/** Outcome of one connection attempt: refused (with code) or connected. */
async function attempt(connect: () => Promise<{ refusal: Promise<{ code?: string }>; connected: Promise<void>; close(): void }>): Promise<string> {
  const s = await connect();
  try {
    return await Promise.race([
      s.refusal.then((r) => r.code ?? 'refused without a code'),
      s.connected.then(
        () => 'CONNECTED',
        () => new Promise<string>(() => undefined),
      ),
      new Promise<string>((res) => setTimeout(() => res('no answer in 5 s'), 5000)),
    ]);
  } finally {
    s.close();
  }
}

/** Finding 4: knowing a site id (and even a recorded handshake) is not enough to connect as that site. */
const siteIdAlone: Attack = {
  name: 'connect-with-site-id-alone',
  finding: 4,
  expected: 'the 1.x handshake, a signature by another key, or a replayed nonce are refused (TWF_E_HANDSHAKE); the real site keeps its connection and GET /api/sites shows it connected',
  async run(ctx) {
    const { c, url } = await startCoordinator(join(ctx.dir, 'coordinator'));
    let node: SiteNode | null = null;
    const seen: { siteId: string; nonce: string; signature: string; protocolVersion: string }[] = [];
    const authenticate = c.engine.authenticateHandshake.bind(c.engine);
    c.engine.authenticateHandshake = (auth) => {
      seen.push(auth as (typeof seen)[number]); // what anyone on the path sees of the real site's handshake
      return authenticate(auth);
    };
    try {
      const dir = join(ctx.dir, 'site-A');
      ({ node } = await realSite(url, dir, 'Hospital A', ['STS_004', 'STS_005', 'STS_006'], ['STS_006']));
      const id = node.siteId;
      node.connect();
      const isConnected = async () => (await lead<{ siteId: string; connected: boolean }[]>(url, 'GET', '/api/sites')).json.find((s) => s.siteId === id)?.connected === true;
      await waitFor(isConnected, 'the real site connected', 10_000, 20);
      const theirs = seen.find((a) => a.siteId === id)!;
      const raw = (opts: Parameters<typeof RawSite.create>[2]) => async () => {
        const s = await RawSite.create(url, dir, opts);
        return { refusal: s.refused(), connected: s.connected(), close: () => s.close() };
      };
      const cases: [string, () => ReturnType<ReturnType<typeof raw>>, string][] = [
        ['1.x handshake {siteId, protocolVersion: 2.0}', raw({ bareAuth: true }), 'TWF_E_HANDSHAKE'],
        ['1.x handshake {siteId, protocolVersion: 1.0}', raw({ bareAuth: true, protocolVersion: '1.0' }), 'TWF_E_PROTOCOL_VERSION'],
        ['fresh nonce signed by another key', raw({ signWith: generateIdentity().ed25519SecretKey }), 'TWF_E_HANDSHAKE'],
        [
          "the real site's recorded handshake replayed",
          async () => {
            const s = io(url, { auth: theirs, transports: ['websocket'], reconnection: false });
            return {
              refusal: new Promise<{ message: string; code?: string }>((res) => s.once('connect_error', (e: Error & { data?: { code?: string } }) => res({ message: e.message, code: e.data?.code }))),
              connected: new Promise<void>((res) => s.once('connect', () => res())),
              close: () => s.disconnect(),
            };
          },
          'TWF_E_HANDSHAKE',
        ],
        ["its used nonce signed again with the site's own key", raw({ nonce: theirs.nonce }), 'TWF_E_HANDSHAKE'],
      ];
      const results: string[] = [];
      for (const [what, connect, code] of cases) {
        const got = await attempt(connect);
        expect(got === code, `${what}: ${got} (expected ${code})`);
        expect(node.connected && (await isConnected()), `after "${what}" the real site is no longer connected`);
        results.push(`${what} -> ${got}`);
      }
      const drops = c.engine.audit.entries().filter((e) => e.action === 'site.disconnected' && e.actor === id).length;
      expect(drops === 0, `the real site was disconnected ${drops} time(s)`);
      return refused(`${results.join('; ')}; the real site stayed connected throughout (GET /api/sites: connected, no site.disconnected)`, 'TWF_E_HANDSHAKE');
    } catch (e) {
      if (e instanceof Unexpected) return failed(e.message);
      throw e;
    } finally {
      await node?.close().catch(() => undefined);
      await c.close();
    }
  },
};

/** Finding 5: a 1-parameter update sent first, then a stuck round the lead aborts. */
const oneParameter: Attack = {
  name: 'one-parameter-update-and-stuck-round',
  finding: 5,
  expected:
    'a 1-parameter update is refused (TWF_E_UPDATE_SHAPE), the honest uploads complete and the round closes; a stuck round is aborted by the lead (failed, audited) and a fresh round completes',
  run: (ctx) =>
    inLab(
      () => openLab(ctx.dir, { raw: 4, spec: { rounds: 2, roundDeadlineS: 600 }, coordinator: { phaseTimeoutS: 3, quorumGraceS: 1 } }),
      async (lab) => {
        const { c, url, studyId, manifest: m } = lab;
        await joinAll(lab);
        const honest = lab.raws.slice(0, 3);
        const rogue = lab.raws[3];
        for (const p of lab.raws) expectOk(await p.sendSetup(1, await startOf(p, 1)), 'mask.setup');
        const deltas = lab.raws.map((_, k) => smallDelta(m, k));
        const prepared = await Promise.all(lab.raws.map((p, k) => p.prepareUpload(1, deltas[k], 100)));
        const one = await rogue.raw.send('update.chunk', studyId, 1, prepared[3].ciphertexts[0], rogue.chunkMeta(1, 0, 1, 100, { length: 1 }));
        expect(refusedWith(one, 'TWF_E_UPDATE_SHAPE'), `the 1-parameter update was answered ${JSON.stringify(one)}`);
        for (const [k, p] of honest.entries()) {
          for (const [i, ct] of prepared[k].ciphertexts.entries())
            expectOk(await p.raw.send('update.chunk', studyId, 1, ct, p.chunkMeta(1, i, prepared[k].ciphertexts.length, 100)), 'an honest chunk');
        }
        await Promise.all(
          honest.map(async (p) => {
            expectOk((await p.sign(1)).ack, 'mask.consistency');
            expectOk(await p.reveal(1), 'mask.unmask');
          }),
        );
        const { avg, info } = await honest[0].aggregate(1);
        let err = 0;
        for (let i = 0; i < avg.length; i++) err = Math.max(err, Math.abs(avg[i] - (deltas[0][i] + deltas[1][i] + deltas[2][i]) / 3));
        expect(info.survivors.length === 3 && !info.survivors.includes(rogue.siteId) && err < 3 * 2 ** -21 + 1e-7, `round 1: survivors ${info.survivors.join(',')}, error ${err}`);

        // Round 2: the rogue never sends its mask keys; with a 600 s set-up deadline the round is stuck.
        for (const p of honest) expectOk(await p.sendSetup(2, await startOf(p, 2)), 'mask.setup');
        await waitFor(
          () => (c.db.$client.prepare('select count(*) n from mask_setups where study_id = ? and round = 2').get(studyId) as { n: number }).n === 3,
          'three set-ups in round 2',
          10_000,
          20,
        );
        expect(c.engine.roundStatus(studyId, 2).phase === 'setup', `round 2 is ${c.engine.roundStatus(studyId, 2).phase}`);
        const ev = await lead(url, 'POST', `/api/studies/${studyId}/sites/${rogue.siteId}/evict`, { reason: 'sent a malformed update and stalls rounds' });
        const ab = await lead<{ round?: number }>(url, 'POST', `/api/studies/${studyId}/rounds/current/abort`, { reason: 'stuck waiting for an evicted site' });
        expect(ev.status === 200 && ab.status === 200 && ab.json.round === 2, `evict ${ev.status}, abort ${ab.status} ${JSON.stringify(ab.json)}`);
        const r2 = c.engine.roundStatus(studyId, 2);
        expect(r2.state === 'failed' && /aborted by the lead/.test(r2.failReason ?? ''), `round 2 after the abort: ${r2.state} ${r2.failReason}`);
        expect(
          c.engine.audit.entries().some((e) => e.action === 'round.aborted' && e.round === 2),
          'the abort is not in the audit log',
        );
        // A new key without the rogue, a fresh round with the three honest sites.
        expectOk((await honest[0].deal()).ack, 'keys.sealed (epoch 2)');
        for (const p of honest.slice(1)) await p.acceptKey();
        await Promise.all(honest.map((p, k) => playRound(p, 3, smallDelta(m, 10 + k), 100)));
        const st = await waitFor(
          () => {
            const s = c.engine.studyStatus(studyId);
            return s.state === 'completed' ? s : null;
          },
          'study completion',
          20_000,
          20,
        );
        const states = st.roundSummaries.map((r) => `${r.round} ${r.state}`).join(', ');
        return refused(
          `1-parameter chunk -> TWF_E_UPDATE_SHAPE (the manifest fixes ${m.updateLength}); the 3 honest uploads completed and round 1 closed without the rogue (error ${err.toExponential(1)}); round 2 stuck in set-up, lead evicted + aborted it (round.aborted audited), round 3 closed: ${states}`,
          'TWF_E_UPDATE_SHAPE',
        );
      },
    ),
};

/** Finding 6: uploads from a roster site outside the open round, and from a participant outside the key set. */
const nonParticipant: Attack = {
  name: 'upload-from-non-participant',
  finding: 6,
  expected: 'a roster site that joined after the round opened, and a participant that sent no mask keys in time, are refused (TWF_E_NOT_PARTICIPANT / TWF_E_SECAGG); the round closes without them',
  run: (ctx) =>
    inLab(
      () => openLab(ctx.dir, { raw: 5, spec: { roundDeadlineS: 3 } }),
      async (lab) => {
        const { c, studyId, manifest: m } = lab;
        const [a, b, cc, slow, late] = lab.raws;
        const four = [a, b, cc, slow];
        for (const p of four) expectOk(await p.join(100), 'study.join');
        expectOk((await a.deal()).ack, 'keys.sealed');
        for (const p of [b, cc, slow]) await p.acceptKey();
        const starts = await Promise.all([a, b, cc].map((p) => startOf(p, 1)));
        expect(starts[0].participants.length === 4 && !starts[0].participants.includes(late.siteId), `round 1 participants: ${starts[0].participants.join(',')}`);
        for (const [k, p] of [a, b, cc].entries()) expectOk(await p.sendSetup(1, starts[k]), 'mask.setup');
        await waitFor(() => c.engine.roundStatus(studyId, 1).keySet.length === 3, 'the key set fixed at the set-up deadline without the slow site', 10_000, 20);

        // A roster site that joins now: it gets the study key, but it is no participant of round 1.
        expectOk(await late.join(100), 'the late join');
        await late.acceptKey();
        const lateCts = encryptSlots(late.he, late.keys.get(1)!, new Float64Array(m.updateLength)).ciphertexts;
        const meta = { index: 0, count: lateCts.length, nSamples: 100, length: m.updateLength, keyEpoch: 1, heParamsDigest: heParamsDigest(m.encryption as HeParams) };
        const lateUp = await late.raw.send('update.chunk', studyId, 1, lateCts[0], meta);
        const lateSetup = await late.sendSetup(1, starts[0]);
        // A participant that sent no mask keys before the deadline.
        const slowSetup = await slow.sendSetup(1, await startOf(slow, 1));
        const slowCts = encryptSlots(slow.he, slow.keys.get(1)!, new Float64Array(m.updateLength)).ciphertexts;
        const slowUp = await slow.raw.send('update.chunk', studyId, 1, slowCts[0], meta);
        expect(refusedWith(lateUp, 'TWF_E_NOT_PARTICIPANT') && refusedWith(lateSetup, 'TWF_E_NOT_PARTICIPANT'), `late joiner: upload ${ackText(lateUp)}, mask.setup ${ackText(lateSetup)}`);
        expect(refusedWith(slowUp, 'TWF_E_NOT_PARTICIPANT') && refusedWith(slowSetup, 'TWF_E_SECAGG'), `slow participant: upload ${ackText(slowUp)}, mask.setup ${ackText(slowSetup)}`);

        const deltas = [0, 1, 2].map((k) => smallDelta(m, k));
        await Promise.all(
          [a, b, cc].map(async (p, k) => {
            for (const x of await p.upload(1, deltas[k], 100)) expectOk(x, 'update.chunk');
            expectOk((await p.sign(1)).ack, 'mask.consistency');
            expectOk(await p.reveal(1), 'mask.unmask');
          }),
        );
        const { avg, info } = await a.aggregate(1);
        let err = 0;
        for (let i = 0; i < avg.length; i++) err = Math.max(err, Math.abs(avg[i] - (deltas[0][i] + deltas[1][i] + deltas[2][i]) / 3));
        const ids = [a, b, cc]
          .map((p) => p.siteId)
          .sort()
          .join(',');
        expect(
          info.keySet
            .map((e) => e.siteId)
            .sort()
            .join(',') === ids &&
            [...info.survivors].sort().join(',') === ids &&
            info.totalSamples === 300 &&
            err < 3 * 2 ** -21 + 1e-7,
          `aggregate: key set ${info.keySet.map((e) => e.siteId).join(',')}, survivors ${info.survivors.join(',')}, N ${info.totalSamples}, error ${err}`,
        );
        return refused(
          `late joiner (has the key): upload -> ${ackText(lateUp)}, mask.setup -> ${ackText(lateSetup)}; participant without mask keys in time: mask.setup -> ${ackText(slowSetup)}, upload -> ${ackText(slowUp)}; round 1 closed with the 3 others (N=300, error ${err.toExponential(1)})`,
          'TWF_E_NOT_PARTICIPANT',
        );
      },
    ),
};

/** Finding 7: a key planted by the coordinator, or a handout signed by the coordinator or by a non-dealer. */
const plantedKey: Attack = {
  name: 'planted-study-key',
  finding: 7,
  expected:
    "a real site refuses a sealed key that does not match the dealer's signed commitment, and handouts signed by the coordinator or by a non-dealer (TWF_E_KEY_HANDOUT); it holds no key for the epoch, then keeps the dealer's",
  run: (ctx) =>
    inLab(
      () => openLab(ctx.dir, { real: 1, raw: 2, dealers: (raw) => [raw[0]] }),
      async (lab) => {
        const { c, studyId, manifestHash, manifest: m } = lab;
        const [dealer, other] = lab.raws;
        const [victim] = lab.nodes;
        expectOk(await dealer.join(100), 'study.join');
        expectOk(await other.join(100), 'study.join');
        approveAll(lab);
        await waitFor(() => c.engine.studyStatus(studyId).joined.includes(victim.siteId), 'the real site joined', 10_000, 20);
        // The dealer was asked; what it will sign is known before its handout reaches anyone.
        const reqEnv = await waitFor(() => dealer.raw.inbox.find((e) => e.header.type === 'keys.request'), 'the key request to the dealer', 10_000, 20);
        const req = jsonBody<BodyOf['keys.request']>(reqEnv);
        const recipients = [...req.recipients].sort();
        const fields = (dealerSiteId: string, keyCommitment: string) => keyHandoutFields({ studyId, manifestHash, epoch: req.epoch, dealerSiteId, recipients, keyCommitment });
        const skDealer = generateSecretKey(dealer.he);
        dealer.keys.set(req.epoch, skDealer);
        const commitDealer = studyKeyCommitment(studyId, req.epoch, manifestHash, skDealer);
        const sigDealer = signStatement(KEY_HANDOUT_KIND, fields(dealer.siteId, commitDealer), dealer.raw.identity.ed25519SecretKey);
        const skPlanted = generateSecretKey(dealer.he);
        const commitPlanted = studyKeyCommitment(studyId, req.epoch, manifestHash, skPlanted);
        const victimX = fromB64(m.participants.find((p) => p.siteId === victim.siteId)!.x25519PublicKey);
        const deliver = (over: Partial<BodyOf['keys.deliver']>) =>
          c.engine.sendAsCoordinator(victim.siteId, 'keys.deliver', studyId, null, {
            epoch: req.epoch,
            manifestHash,
            dealerSiteId: dealer.siteId,
            heParamsDigest: heParamsDigest(m.encryption as HeParams),
            keyCommitment: commitDealer,
            recipients,
            signature: sigDealer,
            sealedKey: toB64(sealTo(victimX, skPlanted)),
            ...over,
          });
        const planted = {};
        const coordinatorSigned = { keyCommitment: commitPlanted, signature: signStatement(KEY_HANDOUT_KIND, fields(dealer.siteId, commitPlanted), c.engine.identity.ed25519SecretKey) };
        const nonDealerSigned = {
          dealerSiteId: other.siteId,
          keyCommitment: commitPlanted,
          signature: signStatement(KEY_HANDOUT_KIND, fields(other.siteId, commitPlanted), other.raw.identity.ed25519SecretKey),
        };
        const refusals = () => audited(victim, 'keys.refused', 'TWF_E_KEY_HANDOUT');
        for (const over of [planted, coordinatorSigned, nonDealerSigned]) deliver(over);
        await waitFor(() => refusals().length >= 3, "the real site's verdicts on the planted handouts", 10_000, 20);
        const why = refusals().map((e) => (e.detail ?? '').replace('TWF_E_KEY_HANDOUT: ', ''));
        expect(/signed commitment/.test(why[0]) && /signature does not verify/.test(why[1]) && /not a key dealer/.test(why[2]), `refusals: ${why.join(' | ')}`);
        expect(!keyOf(victim, studyId, req.epoch), 'the real site stored a key from a planted handout');

        // The real dealer deals; the real site takes its key; planting again changes nothing.
        expectOk((await dealer.deal()).ack, 'keys.sealed');
        await waitFor(() => keyOf(victim, studyId, req.epoch), "the dealer's key at the real site", 10_000, 20);
        deliver(planted);
        deliver(coordinatorSigned);
        await waitFor(() => refusals().length >= 4, "the real site's verdict on the second coordinator-signed handout", 10_000, 20);
        const held = keyOf(victim, studyId, req.epoch)!;
        expect(held.secretKey.equals(Buffer.from(skDealer)) && held.keyCommitment === commitDealer, "the real site holds another key than the dealer's");
        return refused(
          `planted key under the dealer's signature -> "${why[0].slice(0, 60)}"; coordinator-signed -> "${why[1].slice(0, 45)}…"; signed by roster non-dealer -> "${why[2].slice(0, 45)}…"; no key held until the dealer's arrived, which it kept through later plants`,
          'TWF_E_KEY_HANDOUT',
        );
      },
    ),
};

export const PROTOCOL_ATTACKS: Attack[] = [outsider, tooFew, samplesAboveCaps, hugeEncodedN, pushToBound, rosterOverflow, siteIdAlone, oneParameter, nonParticipant, plantedKey];
