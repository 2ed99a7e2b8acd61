import { AggregateInfo, MASK_KEYS_KIND, MASK_SURVIVORS_KIND, canonicalJson, maskKeysFields, maskSurvivorsFields, packFrames, unpackFrames, utf8, type BodyOf } from '@twinfed/protocols';
import { signStatement, toB64 } from '@twinfed/shared/crypto/index';
import { decryptSlots, quantizeToZt } from '@twinfed/shared/he/index';
import { centreZt, generateRoundSecrets } from '@twinfed/shared/secagg/index';
import { RawSite, aggregateError, waitFor } from '../harness.js';
import { audited, expect, expectOk, inLab, joinAll, jsonBody, openLab, playRound, recordSent, refusedWith, smallDelta, startOf, workOf } from './protocol-fixtures.js';
import { contained, refused, type Attack } from './types.js';

/**
 * Attacks on secure aggregation (Bonawitz et al., CCS 2017, inside the HE plaintexts): what a
 * colluding coordinator and site learn, inconsistent survivor sets, late uploads, wrong shares,
 * forged mask keys, replayed round messages. Not findings of the 2026-11-27 review (it predates
 * secure aggregation): added with it.
 */

const QUANT_ERR = 3 * 2 ** -21 + 1e-6;
const countRows = (lab: { c: { db: { $client: { prepare(sql: string): { get(...a: unknown[]): unknown } } } } }, sql: string, ...args: unknown[]) =>
  (lab.c.db.$client.prepare(sql).get(...args) as { n: number }).n;

function pearson(x: ArrayLike<number>, y: ArrayLike<number>): number {
  const n = x.length;
  let mx = 0;
  let my = 0;
  for (let i = 0; i < n; i++) {
    mx += x[i] / n;
    my += y[i] / n;
  }
  let sxy = 0;
  let sxx = 0;
  let syy = 0;
  for (let i = 0; i < n; i++) {
    sxy += (x[i] - mx) * (y[i] - my);
    sxx += (x[i] - mx) ** 2;
    syy += (y[i] - my) ** 2;
  }
  return sxy / Math.sqrt(sxx * syy);
}

/** The coordinator hands one site the individual ciphertexts of another; that site holds the study key. */
const collusion: Attack = {
  name: 'coordinator-and-site-collude',
  finding: null,
  expected:
    "contained: B's individual ciphertexts, decrypted by A with the study key, look uniform mod t (mean ≈ t/2, no correlation with B's quantised update, no slot where an unmasked value would lie)",
  run: (ctx) =>
    inLab(
      () => openLab(ctx.dir, { raw: 3 }),
      async (lab) => {
        const { c, studyId, manifest: m } = lab;
        const N = [100, 120, 140];
        await joinAll(lab, N);
        const [a, b] = lab.raws;
        for (const p of lab.raws) expectOk(await p.sendSetup(1, await startOf(p, 1)), 'mask.setup');
        const deltas = lab.raws.map((_, k) => smallDelta(m, k));
        const prepared = await Promise.all(lab.raws.map((p, k) => p.prepareUpload(1, deltas[k], N[k])));
        for (const [i, ct] of prepared[1].ciphertexts.entries()) expectOk(await b.raw.send('update.chunk', studyId, 1, ct, b.chunkMeta(1, i, prepared[1].ciphertexts.length, N[1])), "B's chunk");

        // What the coordinator holds of B (its chunk rows point into the round's chunk logs), handed to A over A's own connection.
        const rows = c.db.$client.prepare('select ct, log_file, log_offset, log_length from update_chunks where study_id = ? and round = 1 and site_id = ? order by idx').all(studyId, b.siteId) as {
          ct: Buffer;
          log_file: string | null;
          log_offset: number;
          log_length: number;
        }[];
        expect(rows.length === prepared[1].ciphertexts.length, `the coordinator holds ${rows.length} chunks of B`);
        const held = rows.map((r) => (r.log_file ? c.engine.sums.readLog(r.log_file, r.log_offset, r.log_length) : new Uint8Array(r.ct)));
        c.engine.sendAsCoordinator(a.siteId, 'round.aggregate', studyId, 1, packFrames(held), { count: rows.length, infoBytes: 1 });
        const handed = unpackFrames((await a.raw.next('round.aggregate')).body);
        const slots = decryptSlots(a.he, a.keys.get(1)!, handed, m.updateLength);
        const t = Number(a.he.plainModulus);
        const q = centreZt(quantizeToZt(deltas[1], N[1], m.training.clipBound, m.encryption.precisionBits, a.he.plainModulus).values, a.he.plainModulus);
        const L = slots.length;
        const mean = slots.reduce((s, v) => s + v, 0) / L / t;
        const sd = Math.sqrt(slots.reduce((s, v) => s + (v / t - mean) ** 2, 0) / L);
        const corr = pearson(slots, q);
        const range = N[1] * 2 ** m.encryption.precisionBits;
        const inRange = slots.filter((v) => v <= range || v >= t - range).length;
        const byChance = (L * (2 * range + 1)) / t;

        // B's update is nevertheless in the round's sum: the published aggregate unmasks to the FedAvg.
        for (const k of [0, 2]) {
          const p = lab.raws[k];
          for (const [i, ct] of prepared[k].ciphertexts.entries()) expectOk(await p.raw.send('update.chunk', studyId, 1, ct, p.chunkMeta(1, i, prepared[k].ciphertexts.length, N[k])), 'chunk');
        }
        for (const p of lab.raws) expectOk((await p.sign(1)).ack, 'mask.consistency');
        for (const p of lab.raws) expectOk(await p.reveal(1), 'mask.unmask');
        const { avg } = await a.aggregate(1);
        const total = N.reduce((s, n) => s + n, 0);
        let err = 0;
        for (let i = 0; i < L; i++) err = Math.max(err, Math.abs(avg[i] - (N[0] * deltas[0][i] + N[1] * deltas[1][i] + N[2] * deltas[2][i]) / total));
        expect(
          Math.abs(mean - 0.5) < 0.05 && Math.abs(sd - 0.2887) < 0.03 && Math.abs(corr) < 0.15 && inRange <= 3,
          `B's update leaks: mean ${mean.toFixed(3)}·t, sd ${sd.toFixed(3)}·t, correlation ${corr.toFixed(3)}, ${inRange} of ${L} slots within |q| <= ${range}`,
        );
        expect(err < QUANT_ERR, `the round's aggregate is off by ${err}`);
        return contained(
          `A decrypted B's ${rows.length} ciphertext(s) with the study key: ${L} slots, mean ${mean.toFixed(3)}·t (uniform 0.500), sd ${sd.toFixed(3)}·t (0.289), correlation with B's quantised update ${corr.toFixed(3)}, ${inRange} slots within B's range |q| <= n·2^p (${byChance.toFixed(4)} by chance); the round's sum still unmasked to the FedAvg (error ${err.toExponential(1)})`,
        );
      },
    ),
};

/** The coordinator asks real sites to reveal with signatures over another survivor set, or too few valid ones. */
const inconsistentSurvivors: Attack = {
  name: 'inconsistent-survivor-sets',
  finding: null,
  expected:
    'real sites refuse mask.reveal naming another survivor set than they signed, or with fewer than t valid signatures (TWF_E_SECAGG), and reveal nothing (revealed_json null, no mask.unmask sent)',
  run: (ctx) =>
    inLab(
      () => openLab(ctx.dir, { real: 3, raw: 1, coordinator: { phaseTimeoutS: 60 } }),
      async (lab) => {
        const { c, studyId, manifestHash, manifest: m } = lab;
        const [x] = lab.raws;
        const nX = 80;
        const xDelta = smallDelta(m, 7);
        await joinAll(lab, [nX]);
        expectOk(await x.sendSetup(1, await startOf(x, 1)), 'mask.setup');
        for (const a of await x.upload(1, xDelta, nX)) expectOk(a, 'update.chunk');
        // The real sites sign the survivor set; X holds its signature back, so the round waits.
        await waitFor(() => countRows(lab, 'select count(*) n from mask_signatures where study_id = ? and round = 1', studyId) === 3, "the real sites' survivor signatures", 20_000, 20);
        const announced = jsonBody<BodyOf['mask.survivors']>(await waitFor(() => x.raw.inbox.find((e) => e.header.type === 'mask.survivors'), 'mask.survivors', 5_000, 20));
        const { keySet, survivors } = announced;
        const sigs = c.db.$client.prepare('select site_id as siteId, signature from mask_signatures where study_id = ? and round = 1 order by site_id').all(studyId) as {
          siteId: string;
          signature: string;
        }[];
        const [A, B, C] = lab.nodes;
        const without = survivors.filter((s) => s !== C.siteId); // "C dropped": its mask-key shares would unmask its update
        const sigOver = (set: string[]) => signStatement(MASK_SURVIVORS_KIND, maskSurvivorsFields({ studyId, manifestHash, round: 1 }, keySet, set), x.raw.identity.ed25519SecretKey);
        const sigOf = (id: string) => sigs.find((s) => s.siteId === id)!.signature;
        const forged = [
          { keySet, survivors: without, signatures: [{ siteId: x.siteId, signature: sigOver(without) }, ...sigs] },
          {
            keySet,
            survivors,
            signatures: [
              { siteId: A.siteId, signature: sigOf(A.siteId) },
              { siteId: B.siteId, signature: sigOf(B.siteId) },
              { siteId: x.siteId, signature: sigOver(without) },
            ],
          },
          { keySet, survivors, signatures: [A, B, C].map((n) => ({ siteId: n.siteId, signature: sigOf(A.siteId) })) },
        ];
        const before = lab.nodes.map((n) => audited(n, 'round.refused', 'TWF_E_SECAGG').length);
        for (const f of forged) for (const n of lab.nodes) c.engine.sendAsCoordinator(n.siteId, 'mask.reveal', studyId, 1, f);
        await waitFor(() => lab.nodes.every((n, k) => audited(n, 'round.refused', 'TWF_E_SECAGG').length >= before[k] + forged.length), "the real sites' refusals", 10_000, 20);
        for (const n of lab.nodes) {
          const w = workOf(n, studyId, 1);
          const sentUnmask = n.audit.entries().filter((e) => e.action === 'msg.sent' && e.msgType === 'mask.unmask').length;
          expect(w?.state === 'signed' && w.revealedJson === null && sentUnmask === 0, `${n.config.siteName}: state ${w?.state}, revealed ${w?.revealedJson}, ${sentUnmask} mask.unmask sent`);
        }
        expect(countRows(lab, 'select count(*) n from mask_reveals where study_id = ?', studyId) === 0, 'the coordinator holds revealed shares');
        const reasons = audited(A, 'round.refused', 'TWF_E_SECAGG')
          .slice(-3)
          .map((e) => (e.detail ?? '').replace('TWF_E_SECAGG: ', '').slice(0, 50));

        // The honest path still works: X signs, the coordinator relays the real signatures, the sites reveal and apply.
        expectOk((await x.sign(1)).ack, 'mask.consistency');
        expectOk(await x.reveal(1), 'mask.unmask');
        await waitFor(() => lab.nodes.every((n) => n.modelAt(studyId, 1)), 'round 1 applied', 20_000, 20);
        const err = aggregateError(A.modelAt(studyId, 0)!, A.modelAt(studyId, 1)!, [...lab.deltas.map((d) => d.get(1)!), { delta: xDelta, n: nX }]);
        expect(err < QUANT_ERR, `the applied aggregate is off by ${err}`);
        return refused(
          `3 forged reveals x 3 real sites, each refused (TWF_E_SECAGG: "${reasons.join('" / "')}"), revealed_json null, no mask.unmask sent; then the consistent reveal was honoured and round 1 applied (error ${err.toExponential(1)})`,
          'TWF_E_SECAGG',
        );
      },
    ),
};

/** A site that dropped after the masks were set up uploads after the survivors were fixed. */
const lateUpload: Attack = {
  name: 'late-upload-after-survivors',
  finding: null,
  expected: 'chunks of a site that dropped are refused once the survivors are fixed (TWF_E_ROUND_CLOSED); its partial upload leaves the sum and the aggregate excludes it',
  run: (ctx) =>
    inLab(
      () => openLab(ctx.dir, { raw: 4, modelBase: 8, coordinator: { phaseTimeoutS: 3, quorumGraceS: 1 } }),
      async (lab) => {
        const { c, url, studyId, manifest: m } = lab;
        await joinAll(lab);
        const [a, , , d] = lab.raws;
        for (const p of lab.raws) expectOk(await p.sendSetup(1, await startOf(p, 1)), 'mask.setup');
        const deltas = lab.raws.map((_, k) => smallDelta(m, k));
        const prepared = await Promise.all(lab.raws.map((p, k) => p.prepareUpload(1, deltas[k], 100)));
        expect(prepared[3].ciphertexts.length === 2, `D's update is ${prepared[3].ciphertexts.length} ciphertexts`);
        expectOk(await d.raw.send('update.chunk', studyId, 1, prepared[3].ciphertexts[0], d.chunkMeta(1, 0, 2, 100)), "D's first chunk");
        d.raw.close(); // D drops
        for (const k of [0, 1, 2]) {
          const p = lab.raws[k];
          for (const [i, ct] of prepared[k].ciphertexts.entries()) expectOk(await p.raw.send('update.chunk', studyId, 1, ct, p.chunkMeta(1, i, 2, 100)), 'chunk');
        }
        await waitFor(() => c.engine.roundStatus(studyId, 1).phase === 'consistency', 'the survivors fixed at the upload deadline', 15_000, 20);
        // D comes back and sends the rest, then the first chunk again.
        d.raw = await RawSite.create(url, lab.rawDirs[3]);
        await d.raw.connected();
        expectOk(await d.raw.hello(), 'hello');
        const late1 = await d.raw.send('update.chunk', studyId, 1, prepared[3].ciphertexts[1], d.chunkMeta(1, 1, 2, 100));
        const late0 = await d.raw.send('update.chunk', studyId, 1, prepared[3].ciphertexts[0], d.chunkMeta(1, 0, 2, 100));
        expect(refusedWith(late1, 'TWF_E_ROUND_CLOSED') && refusedWith(late0, 'TWF_E_ROUND_CLOSED'), `D's late chunks: ${JSON.stringify(late1)} ${JSON.stringify(late0)}`);
        for (const p of lab.raws.slice(0, 3)) expectOk((await p.sign(1)).ack, 'mask.consistency');
        for (const p of lab.raws.slice(0, 3)) expectOk(await p.reveal(1), 'mask.unmask');
        const { avg, info } = await a.aggregate(1);
        let err = 0;
        for (let i = 0; i < avg.length; i++) err = Math.max(err, Math.abs(avg[i] - (deltas[0][i] + deltas[1][i] + deltas[2][i]) / 3));
        const abandoned = c.engine.audit.entries().find((e) => e.action === 'update.abandoned' && e.peer === d.siteId);
        expect(
          info.keySet.some((e) => e.siteId === d.siteId) && !info.survivors.includes(d.siteId) && info.totalSamples === 300 && err < QUANT_ERR && abandoned,
          `aggregate: survivors ${info.survivors.join(',')}, N ${info.totalSamples}, error ${err}, abandoned ${abandoned?.detail}`,
        );
        return refused(
          `D's chunks after the survivors were fixed -> ${late1.ok ? 'accepted' : late1.code} (both); its first chunk was taken out of the sum (update.abandoned: ${abandoned!.detail}); the aggregate of A, B, C (N=300) unmasked with D's mask key reconstructed, error ${err.toExponential(1)}`,
          'TWF_E_ROUND_CLOSED',
        );
      },
    ),
};

/** A rogue participant sends forged mask keys, then wrong shares in its unmask message. */
const wrongShares: Attack = {
  name: 'wrong-shares-and-forged-mask-keys',
  finding: null,
  expected:
    'mask keys copied from another site or wrongly signed are refused at the coordinator (TWF_E_SECAGG); wrong shares in mask.unmask are caught by the commitment checks at real sites, which unmask correctly from the others (contained)',
  run: (ctx) =>
    inLab(
      () => openLab(ctx.dir, { real: 3, raw: 1 }),
      async (lab) => {
        const { c, studyId, manifestHash, manifest: m } = lab;
        const [r] = lab.raws;
        const [A] = lab.nodes;
        const nR = 80;
        const rDelta = smallDelta(m, 5);
        await joinAll(lab, [nR]);
        const start = await startOf(r, 1);
        const aSetup = await waitFor(
          () =>
            c.db.$client.prepare('select s_pk as sPk, b_commit as bCommit, signature from mask_setups where study_id = ? and round = 1 and site_id = ?').get(studyId, A.siteId) as
              { sPk: string; bCommit: string; signature: string } | undefined,
          "A's mask set-up",
          20_000,
          20,
        );
        const copied = await r.raw.send('mask.setup', studyId, 1, { ...aSetup, boxes: [] });
        const own = generateRoundSecrets();
        const bCommit = 'ab'.repeat(32);
        const badSig = await r.raw.send('mask.setup', studyId, 1, {
          sPk: toB64(own.sPk),
          bCommit,
          boxes: [],
          signature: signStatement(MASK_KEYS_KIND, maskKeysFields({ studyId, manifestHash, round: 1 }, r.siteId, toB64(generateRoundSecrets().sPk), bCommit), r.raw.identity.ed25519SecretKey),
        });
        const forA = await r.raw.send('mask.setup', studyId, 1, {
          sPk: toB64(own.sPk),
          bCommit,
          boxes: [],
          signature: signStatement(MASK_KEYS_KIND, maskKeysFields({ studyId, manifestHash, round: 1 }, A.siteId, toB64(own.sPk), bCommit), r.raw.identity.ed25519SecretKey),
        });
        expect(
          [copied, badSig, forA].every((x) => refusedWith(x, 'TWF_E_SECAGG')),
          `forged mask keys: copied ${JSON.stringify(copied)}, bad signature ${JSON.stringify(badSig)}, signed for A ${JSON.stringify(forA)}`,
        );

        // Then it plays along until the reveal, where every share it sends is wrong (right x coordinate, wrong value).
        expectOk(await r.sendSetup(1, start), 'mask.setup');
        for (const x of await r.upload(1, rDelta, nR)) expectOk(x, 'update.chunk');
        expectOk((await r.sign(1)).ack, 'mask.consistency');
        const rv = jsonBody<BodyOf['mask.reveal']>(await r.raw.next('mask.reveal', 20_000));
        const st = r.rounds.get(1)!;
        const wrong = (share: Uint8Array) => {
          const w = new Uint8Array(share);
          for (let i = 0; i < w.length - 1; i++) w[i] ^= 0x5a;
          return toB64(w);
        };
        expectOk(await r.raw.send('mask.unmask', studyId, 1, { bShares: rv.survivors.map((of) => ({ of, share: wrong(st.shares.get(of)!.b) })), sShares: [] }), "the rogue's mask.unmask");
        const done = (n: (typeof lab.nodes)[number]) => n.modelAt(studyId, 1) || audited(n, 'aggregate.refused').length > 0;
        await waitFor(() => lab.nodes.every(done), "the real sites' verdicts", 20_000, 20);
        const refusedBy = lab.nodes.filter((n) => audited(n, 'aggregate.refused').length > 0);
        if (refusedBy.length) {
          return refused(
            `forged mask keys -> TWF_E_SECAGG (x3); the wrong shares made ${refusedBy.length} real site(s) refuse the aggregate (${audited(refusedBy[0], 'aggregate.refused')[0].detail}): nothing wrong applied, but the rogue denied the round`,
            'TWF_E_SECAGG',
          );
        }
        const err = aggregateError(A.modelAt(studyId, 0)!, A.modelAt(studyId, 1)!, [...lab.deltas.map((d) => d.get(1)!), { delta: rDelta, n: nR }]);
        expect(err < QUANT_ERR, `the applied aggregate is off by ${err}`);
        const digests = new Set(lab.nodes.map((n) => n.modelHistory(studyId).find((v) => v.version === 1)!.digest));
        expect(digests.size === 1, 'the real sites hold different models');
        return contained(
          `mask keys copied from A, signed over another key, signed for A's id -> TWF_E_SECAGG at the coordinator; ${rv.survivors.length} wrong self-mask shares in the rogue's mask.unmask: all 3 real sites rejected them against the seed commitments, reconstructed from the 3 honest revealers and applied the same model (FedAvg of 4, error ${err.toExponential(1)})`,
          'TWF_E_SECAGG',
        );
      },
    ),
};

/** The coordinator replays round 1's mask.peers and aggregate to a real site while round 2 is open. */
const replays: Attack = {
  name: 'replayed-round-messages',
  finding: null,
  expected:
    'refused: a verbatim replay by the envelope sequence check (TWF_E_REPLAY); re-signed copies by state and round binding (round 1 done: ignored; relabelled for round 2: TWF_E_MALFORMED / TWF_E_SECAGG, keys signed for round 1)',
  run: (ctx) =>
    inLab(
      () => openLab(ctx.dir, { real: 3, raw: 1, spec: { rounds: 2, roundDeadlineS: 600 } }),
      async (lab) => {
        const { c, studyId, manifest: m } = lab;
        const rec = recordSent(c);
        const [x] = lab.raws;
        const [A] = lab.nodes;
        await joinAll(lab, [80]);
        await playRound(x, 1, smallDelta(m, 3), 80);
        await waitFor(() => lab.nodes.every((n) => n.modelAt(studyId, 1)), 'round 1 applied', 20_000, 20);
        // Round 2: X withholds its mask keys, so the round waits in set-up with the real sites' keys in.
        await waitFor(
          () => countRows(lab, 'select count(*) n from mask_setups where study_id = ? and round = 2', studyId) === 3 && workOf(A, studyId, 2)?.state === 'setup-sent',
          'round 2 set-ups',
          20_000,
          20,
        );
        const old = (type: string) => rec.sent.find((s) => s.siteId === A.siteId && s.env.header.type === type && s.env.header.round === 1)!.env;
        const peers1 = old('mask.peers');
        const agg1 = old('round.aggregate');
        const digest1 = A.modelHistory(studyId).find((v) => v.version === 1)!.digest;
        const replayed0 = audited(A, 'msg.rejected', 'TWF_E_REPLAY').length;
        rec.replay(A.siteId, peers1);
        rec.replay(A.siteId, agg1);
        await waitFor(() => audited(A, 'msg.rejected', 'TWF_E_REPLAY').length >= replayed0 + 2, "A's verdict on the verbatim replays", 10_000, 20);

        // Re-signed with fresh sequence numbers: as round 1 again, then relabelled for round 2.
        const frames = unpackFrames(agg1.body);
        const info1 = AggregateInfo.parse(JSON.parse(Buffer.from(frames[0]).toString('utf8')));
        const info2 = utf8(canonicalJson({ ...info1, round: 2, baseVersion: 1 }));
        const received0 = A.audit.entries().filter((e) => e.action === 'msg.received').length;
        c.engine.sendAsCoordinator(A.siteId, 'mask.peers', studyId, 1, jsonBody(peers1));
        c.engine.sendAsCoordinator(A.siteId, 'round.aggregate', studyId, 1, agg1.body, agg1.header.meta);
        c.engine.sendAsCoordinator(A.siteId, 'mask.peers', studyId, 2, jsonBody(peers1));
        c.engine.sendAsCoordinator(A.siteId, 'round.aggregate', studyId, 2, agg1.body, agg1.header.meta);
        c.engine.sendAsCoordinator(A.siteId, 'round.aggregate', studyId, 2, packFrames([info2, ...frames.slice(1)]), { count: frames.length - 1, infoBytes: info2.length });
        await waitFor(() => audited(A, 'aggregate.refused').some((e) => e.round === 2), "A's verdict on the relabelled aggregate", 10_000, 20);
        const after = A.audit.entries().slice(0);
        const received = after.filter((e) => e.action === 'msg.received').length - received0;
        const peersRefused = after.find((e) => e.action === 'round.refused' && e.round === 2)?.detail ?? '';
        const malformed = after.find((e) => e.action === 'msg.failed' && e.msgType === 'round.aggregate' && e.round === 2)?.detail ?? '';
        const aggRefused = after.find((e) => e.action === 'aggregate.refused' && e.round === 2)?.detail ?? '';
        expect(received >= 5, `A took in ${received} of the 5 re-signed messages`);
        expect(peersRefused.startsWith('TWF_E_SECAGG'), `round-1 key set as round 2: ${peersRefused || 'not refused'}`);
        expect(malformed.startsWith('TWF_E_MALFORMED'), `round-1 aggregate as round 2: ${malformed || 'not refused'}`);
        expect(aggRefused.startsWith('TWF_E_SECAGG'), `round-1 aggregate rewritten as round 2: ${aggRefused || 'not refused'}`);
        const versions = A.modelHistory(studyId).map((v) => v.version);
        expect(versions.join(',') === '0,1' && A.modelHistory(studyId).find((v) => v.version === 1)!.digest === digest1, `A's models after the replays: ${versions.join(',')}`);
        expect(workOf(A, studyId, 1)?.state === 'applied' && workOf(A, studyId, 2)?.keySetJson === null, "A's round state changed");
        return refused(
          `verbatim round-1 mask.peers and aggregate -> TWF_E_REPLAY (envelope sequence); re-signed as round 1 -> ignored (round 1 applied, model 1 unchanged); mask.peers as round 2 -> "${peersRefused.slice(0, 60)}"; aggregate as round 2 -> TWF_E_MALFORMED (info says round 1); info rewritten to round 2 -> "${aggRefused.slice(0, 60)}"; A holds models 0,1 only`,
          'TWF_E_REPLAY',
        );
      },
    ),
};

export const SECAGG_ATTACKS: Attack[] = [collusion, inconsistentSurvivors, lateUpload, wrongShares, replays];
