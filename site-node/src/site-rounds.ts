import { and, eq } from 'drizzle-orm';
import {
  AggregateInfo,
  MASK_KEYS_KIND,
  MASK_SURVIVORS_KIND,
  WireError,
  maskKeysFields,
  maskSurvivorsFields,
  chunkBody,
  chunkCount,
  packFrames,
  quorumOf,
  secaggThresholdFor,
  unpackFrames,
  type Ack,
  type AggregateInfoT,
  type BodyOf,
  type Envelope,
  type SiteMessageType,
  type StudyManifest,
} from '@twinfed/protocols';
import type { AuditLog } from '@twinfed/shared/audit/index';
import { fromB64, signStatement, toB64, verifyStatement, type Identity } from '@twinfed/shared/crypto/index';
import {
  HeError,
  averageFromCentred,
  ciphertextCount,
  createHeContext,
  decryptSlots,
  encryptSlots,
  heParamsDigest,
  laneSumLimitQ,
  packLanes,
  packedLength,
  quantizeToZt,
  unpackLanes,
  type HeParams,
} from '@twinfed/shared/he/index';
import { buildMaskSetup, isKeyPair, maskInput, openShares, reconstructChecked, selfMaskCommitment, unmaskSum, type RoundContext } from '@twinfed/shared/secagg/index';
import { StrategyError, strategyFor, type StrategyState } from '@twinfed/shared/strategy/index';
import type { SiteDb } from './db/index.js';
import { roundWork } from './db/schema.js';
import { studyKey } from './keys.js';
import { addDiscreteGaussianZt } from '@twinfed/shared/dp/discrete-gaussian';
import { clipL2, siteNoiseAllowance, siteNoiseSigmaQ, type SiteLevelNoise } from '@twinfed/shared/dp/site-level';
import { budgetView, ledgerGaps, recordRound, type PrivacyPolicy } from './privacy.js';
import type { LocalEvalResult, LocalTrainProgress, LocalTrainer } from './trainer.js';

export type RoundWorkRow = typeof roundWork.$inferSelect;

/** What a round needs from the site node around it. */
export interface SiteRoundHost {
  readonly db: SiteDb;
  readonly audit: AuditLog;
  readonly identity: Identity;
  readonly siteId: string;
  readonly trainer: LocalTrainer;
  /** The site's differential-privacy policy (site.json `privacy`). */
  readonly privacy: PrivacyPolicy;
  send(type: SiteMessageType, studyId: string, round: number | null, body: unknown, meta?: Record<string, string | number | boolean>): Promise<Ack>;
  /** The manifest this site takes part under (approved; `forNewRound` false lets a withdrawn site finish the round it is in). */
  manifest(studyId: string, forNewRound: boolean): { manifest: StudyManifest; hash: string };
  modelAt(studyId: string, version: number): Float32Array | null;
  /**
   * Stores model `version` and, in the same transaction, the strategy state reached with it (none
   * for stateless strategies); returns the model's digest and the state's hash ('none' without state).
   */
  storeModel(studyId: string, version: number, w: Float32Array, meanDice: number | null, state?: StrategyState | null): { digest: string; stateHash: string };
  /** The strategy state stored with model `version`; null when there is none (version 0, stateless strategies). */
  strategyStateAt(studyId: string, version: number): StrategyState | null;
  /**
   * True when the model `version` is here; otherwise asks for the missing aggregates and runs
   * `then` once they are applied (false); 'pruned' when the coordinator no longer holds them.
   */
  caughtUp(studyId: string, version: number, then: () => Promise<void>): Promise<boolean | 'pruned'>;
  reportMetrics(studyId: string, round: number, ev: LocalEvalResult, work: RoundWorkRow | null): Promise<void>;
  log(level: 'info' | 'warn' | 'error', msg: string): void;
  events: {
    onUploaded?: (r: { studyId: string; round: number; nSamples: number; trainLoss: number; trainMs: number; encryptMs: number; uploadBytes: number; chunks: number }) => void;
    onApplied?: (e: { studyId: string; round: number; meanDice: number | null; decryptMs: number; contributors: number; dropped: string[]; metric?: { name: string; value: number | null } }) => void;
    onRefusedAggregate?: (e: { studyId: string; round: number; code: string; detail: string }) => void;
    onStep?: (e: RoundStepEvent) => void;
    onTrainProgress?: (e: { studyId: string; round: number } & LocalTrainProgress) => void;
  };
}

/** A step this site completed in a round (after its message was acknowledged). */
export interface RoundStepEvent {
  studyId: string;
  round: number;
  step: 'setup-sent' | 'uploaded' | 'signed' | 'revealed';
}

const b64 = (u: Uint8Array | Buffer) => toB64(new Uint8Array(u));
const sortedEq = (a: readonly string[], b: readonly string[]) => a.length === b.length && [...a].sort().join(',') === [...b].sort().join(',');

/**
 * This site's part in the rounds of its studies: train, take part in secure aggregation
 * (Bonawitz et al., CCS 2017, with the masks inside the HE plaintexts), upload, sign the survivor
 * set, reveal shares, and apply an aggregate only after checking it. Every step is persisted in
 * round_work before its message leaves, so a restart repeats the same bytes.
 */
export class SiteRounds {
  constructor(private readonly host: SiteRoundHost) {}

  private work(studyId: string, round: number): RoundWorkRow | undefined {
    return this.host.db
      .select()
      .from(roundWork)
      .where(and(eq(roundWork.studyId, studyId), eq(roundWork.round, round)))
      .get();
  }

  private update(studyId: string, round: number, set: Partial<RoundWorkRow>): void {
    this.host.db
      .update(roundWork)
      .set(set)
      .where(and(eq(roundWork.studyId, studyId), eq(roundWork.round, round)))
      .run();
  }

  private refuse(studyId: string, round: number | null, code: 'TWF_E_SECAGG' | 'TWF_E_NOT_PARTICIPANT' | 'TWF_E_TOO_FEW_CONTRIBUTORS' | 'TWF_E_UPDATE_SHAPE', why: string): never {
    this.host.audit.append({ actor: this.host.siteId, action: 'round.refused', studyId, round, detail: `${code}: ${why}` });
    throw new WireError(code, why);
  }

  // -------------------------------------------------------------- round.start

  /** Checks the round against the approved manifest, trains once, and sends the mask set-up. */
  async onStart(studyId: string, round: number, b: BodyOf['round.start']): Promise<void> {
    const existing = this.work(studyId, round);
    const { manifest: m, hash } = this.host.manifest(studyId, !existing);
    const roster = new Set(m.participants.map((p) => p.siteId));
    if (!b.participants.includes(this.host.siteId)) return;
    const outsiders = b.participants.filter((p) => !roster.has(p));
    if (outsiders.length) this.refuse(studyId, round, 'TWF_E_NOT_PARTICIPANT', `round participants outside the approved roster: ${outsiders.join(',')}`);
    if (new Set(b.participants).size !== b.participants.length) this.refuse(studyId, round, 'TWF_E_SECAGG', 'a participant is listed twice');
    if (b.participants.length < quorumOf(m)) this.refuse(studyId, round, 'TWF_E_TOO_FEW_CONTRIBUTORS', `${b.participants.length} participants, the manifest needs ${quorumOf(m)}`);
    if (b.threshold !== secaggThresholdFor(b.participants.length))
      this.refuse(studyId, round, 'TWF_E_SECAGG', `threshold ${b.threshold}; ${b.participants.length} participants need ${secaggThresholdFor(b.participants.length)}`);
    if (existing) {
      if (existing.state === 'failed' || existing.state === 'applied') return;
      if (existing.setupJson) await this.host.send('mask.setup', studyId, round, JSON.parse(existing.setupJson));
      return;
    }
    if (!studyKey(this.host.db, studyId, b.keyEpoch)) throw new WireError('TWF_E_NOT_PARTICIPANT', `no study key of epoch ${b.keyEpoch} yet`);
    const ready = await this.host.caughtUp(studyId, b.modelVersion, () => this.onStart(studyId, round, b));
    if (ready === 'pruned') {
      // Without the base model this site cannot train: it says so at once, so the round goes on
      // with the others instead of waiting for this site until its deadline.
      const detail = `no model version ${b.modelVersion} here and the coordinator pruned the aggregates to rebuild it (catch-up window)`;
      this.host.audit.append({ actor: this.host.siteId, action: 'round.refused', studyId, round, detail: `TWF_E_AGGREGATE_PRUNED: ${detail}` });
      await this.host.send('round.decline', studyId, round, { code: 'TWF_E_AGGREGATE_PRUNED', detail });
      return;
    }
    if (!ready) return;
    // The privacy budget is checked before any training: a refused round never touches the data.
    const budget = budgetView(this.host.db, m, this.host.privacy);
    const gaps = m.dp ? ledgerGaps(this.host.db) : [];
    if (gaps.length && !budget.refusal)
      budget.refusal = `the privacy ledger lacks ${gaps.length} round(s) the audit log records as spent (${gaps
        .slice(0, 3)
        .map((g) => `${g.studyId} round ${g.round}`)
        .join(', ')}${gaps.length > 3 ? ', ...' : ''}): it was edited; restore it from a backup before this site trains under DP again`;
    if (budget.refusal) {
      this.host.audit.append({ actor: this.host.siteId, action: 'dp.refused', studyId, round, detail: `TWF_E_DP_BUDGET: ${budget.refusal}` });
      this.host.log('warn', `${studyId} round ${round}: refused, ${budget.refusal}`);
      await this.host.send('round.decline', studyId, round, { code: 'TWF_E_DP_BUDGET', detail: budget.refusal.slice(0, 500) });
      return;
    }
    const base = this.host.modelAt(studyId, b.modelVersion)!;
    this.host.audit.append({ actor: this.host.siteId, action: 'training.started', studyId, round, detail: `from model version ${b.modelVersion}` });
    const tr = await this.host.trainer.train(m, base, round, (p) => this.host.events.onTrainProgress?.({ studyId, round, ...p }));
    const spent = recordRound(this.host.db, m, round, this.host.privacy, tr.dp);
    if (spent)
      this.host.audit.append({
        actor: this.host.siteId,
        action: 'dp.spent',
        studyId,
        round,
        detail: `epsilon of this study ${spent.epsilonStudy.toFixed(4)} (budget ${m.dp!.epsilon}, delta ${m.dp!.delta}); of all studies on ${budget.datasetKey} ${spent.epsilonDataset.toFixed(4)} (site maxEpsilon ${this.host.privacy.maxEpsilon}, delta ${this.host.privacy.delta})`,
      });
    if (tr.weights.length !== m.updateLength) this.refuse(studyId, round, 'TWF_E_UPDATE_SHAPE', `the local model has ${tr.weights.length} parameters, the manifest ${m.updateLength}`);
    // What this site contributes to the encrypted sum (shared/src/strategy): a vector, quantised
    // with its weight, which is declared as the update's nSamples.
    let enc = strategyFor(m.strategy).encode(base, tr.weights, tr.nSamples);
    if (m.dp?.level === 'site') {
      // Site-level DP: the whole update clipped to L2 C and weight 1, so one site's influence on the
      // sum is at most C whatever its size; the discrete Gaussian share is added after quantisation.
      const c = clipL2(enc.vector, m.dp.clipNorm);
      enc = { vector: c.vector, weight: 1 };
      this.host.log('info', `${studyId} round ${round}: site-level DP, update L2 ${c.normBefore.toPrecision(4)} clipped to ${m.dp.clipNorm}`);
    }
    if (enc.weight > m.training.maxSamplesPerSite) this.refuse(studyId, round, 'TWF_E_UPDATE_SHAPE', `n=${enc.weight} exceeds the manifest's maxSamplesPerSite ${m.training.maxSamplesPerSite}`);
    const delta = enc.vector;

    // Round secrets and the Shamir shares of the self-mask seed b and of sSk, t-of-n over P.
    const ctx: RoundContext = { studyId, manifestHash: hash, round };
    const n = b.participants.length;
    const keys = new Map(m.participants.map((p) => [p.siteId, p]));
    const { body: setup, secrets: sec, own } = await buildMaskSetup(ctx, this.host.siteId, b.participants, b.threshold, (p) => fromB64(keys.get(p)!.x25519PublicKey), this.host.identity);
    this.host.db
      .insert(roundWork)
      .values({
        studyId,
        round,
        state: 'setup-sent',
        keyEpoch: b.keyEpoch,
        baseVersion: b.modelVersion,
        participantsJson: JSON.stringify(b.participants),
        threshold: b.threshold,
        delta: Buffer.from(delta.buffer, delta.byteOffset, delta.byteLength),
        nSamples: enc.weight,
        length: delta.length,
        trainLoss: tr.loss,
        trainMs: tr.ms,
        sSk: Buffer.from(sec.sSk),
        sPk: Buffer.from(sec.sPk),
        b: Buffer.from(sec.b),
        setupJson: JSON.stringify(setup),
        sharesJson: JSON.stringify({ [this.host.siteId]: { b: b64(own.bShare), s: b64(own.sShare) } }),
      })
      .run();
    this.host.audit.append({
      actor: this.host.siteId,
      action: 'update.trained',
      studyId,
      round,
      detail: `n=${enc.weight} loss=${tr.loss.toFixed(4)}; mask keys for ${n} participants, t=${b.threshold}`,
    });
    const ack = await this.host.send('mask.setup', studyId, round, setup);
    if (ack.ok) this.host.events.onStep?.({ studyId, round, step: 'setup-sent' });
  }

  // --------------------------------------------------------------- mask.peers

  /** Checks every key of the key set against the roster, opens the shares sent to us, masks, encrypts and uploads. */
  async onPeers(studyId: string, round: number, b: BodyOf['mask.peers']): Promise<void> {
    const w = this.work(studyId, round);
    if (!w || w.state === 'failed' || w.state === 'applied') return;
    const { manifest: m, hash } = this.host.manifest(studyId, false);
    const ctx: RoundContext = { studyId, manifestHash: hash, round };
    const participants = JSON.parse(w.participantsJson) as string[];
    const ids = b.keySet.map((e) => e.siteId);
    if (w.keySetJson) {
      const had = (JSON.parse(w.keySetJson) as { siteId: string }[]).map((e) => e.siteId);
      if (!sortedEq(had, ids)) this.refuse(studyId, round, 'TWF_E_SECAGG', `a second, different key set (${ids.join(',')} after ${had.join(',')})`);
    } else {
      const keys = new Map(m.participants.map((p) => [p.siteId, p]));
      if (new Set(ids).size !== ids.length) this.refuse(studyId, round, 'TWF_E_SECAGG', 'a site appears twice in the key set');
      if (!ids.every((id) => participants.includes(id))) this.refuse(studyId, round, 'TWF_E_SECAGG', `key set ${ids.join(',')} is not within the round's participants`);
      if (!ids.includes(this.host.siteId)) this.refuse(studyId, round, 'TWF_E_SECAGG', 'this site is not in the key set');
      if (ids.length < Math.max(quorumOf(m), w.threshold)) this.refuse(studyId, round, 'TWF_E_TOO_FEW_CONTRIBUTORS', `key set of ${ids.length}; at least ${Math.max(quorumOf(m), w.threshold)} needed`);
      const shares = JSON.parse(w.sharesJson ?? '{}') as Record<string, { b: string; s: string }>;
      for (const e of b.keySet) {
        const ok = verifyStatement(MASK_KEYS_KIND, maskKeysFields(ctx, e.siteId, e.sPk, e.bCommit), e.signature, fromB64(keys.get(e.siteId)!.ed25519PublicKey));
        if (!ok) this.refuse(studyId, round, 'TWF_E_SECAGG', `the mask keys of ${e.siteId} are not signed with its roster key`);
        if (e.siteId === this.host.siteId) {
          if (e.sPk !== b64(w.sPk!) || e.bCommit !== (JSON.parse(w.setupJson!) as { bCommit: string }).bCommit) this.refuse(studyId, round, 'TWF_E_SECAGG', 'our own mask keys came back altered');
          continue;
        }
        if (!e.box) {
          this.host.log('warn', `${studyId} round ${round}: no share box from ${e.siteId}`);
          continue;
        }
        try {
          const sh = openShares(ctx, e.siteId, this.host.siteId, e.box, this.host.identity.x25519SecretKey, fromB64(keys.get(e.siteId)!.x25519PublicKey));
          shares[e.siteId] = { b: b64(sh.bShare), s: b64(sh.sShare) };
        } catch (err) {
          this.host.audit.append({ actor: e.siteId, action: 'secagg.bad_box', studyId, round, detail: (err as Error).message });
        }
      }
      this.update(studyId, round, { keySetJson: JSON.stringify(b.keySet.map(({ box: _box, ...rest }) => rest)), sharesJson: JSON.stringify(shares) });
    }
    let cur = this.work(studyId, round)!;
    if (!cur.ciphertexts) {
      const params = m.encryption as HeParams;
      const he = await createHeContext(params);
      const key = studyKey(this.host.db, studyId, cur.keyEpoch);
      if (!key) throw new WireError('TWF_E_NOT_PARTICIPANT', `no study key of epoch ${cur.keyEpoch}`);
      const t0 = performance.now();
      const delta = new Float32Array(new Uint8Array(cur.delta!).buffer.slice(0));
      const q = quantizeToZt(delta, cur.nSamples, m.training.clipBound, params.precisionBits, he.plainModulus);
      if (m.dp?.level === 'site') q.values = addDiscreteGaussianZt(q.values, he.plainModulus, siteNoiseSigmaQ(siteNoiseOf(m)));
      // `lanes` values per slot (shared/src/he/lanes.ts; the same vector with one lane); masks go over the packed slots
      const slots = packLanes(he, q.values);
      const peers = (JSON.parse(cur.keySetJson!) as { siteId: string; sPk: string }[]).filter((e) => e.siteId !== this.host.siteId).map((e) => ({ siteId: e.siteId, sPk: fromB64(e.sPk) }));
      const y = maskInput(ctx, he.plainModulus, this.host.siteId, { sPk: new Uint8Array(cur.sPk!), sSk: new Uint8Array(cur.sSk!), b: new Uint8Array(cur.b!) }, slots, peers);
      const enc = encryptSlots(he, new Uint8Array(key.secretKey), y);
      const encryptMs = performance.now() - t0;
      this.update(studyId, round, { ciphertexts: Buffer.from(packFrames(enc.ciphertexts)), encryptMs, uploadBytes: enc.bytes });
      this.host.audit.append({
        actor: this.host.siteId,
        action: 'update.encrypted',
        studyId,
        round,
        detail: `masked with ${peers.length} peers + self mask, ${enc.ciphertexts.length} ciphertexts ${enc.bytes} bytes, ${q.clipped} elements clipped`,
      });
      cur = this.work(studyId, round)!;
    }
    await this.upload(studyId, round, cur, new Set(b.alreadyReceived), m);
  }

  private async upload(studyId: string, round: number, w: RoundWorkRow, skip: Set<number>, m: StudyManifest): Promise<void> {
    const cts = unpackFrames(new Uint8Array(w.ciphertexts!));
    const digest = heParamsDigest(m.encryption as HeParams);
    // ciphertextsPerChunk to a message (protocols/src/messages.ts chunkBody): one is sent as is, more as packFrames.
    const perChunk = m.ciphertextsPerChunk ?? 1;
    const count = chunkCount(cts.length, perChunk);
    for (let i = 0; i < count; i++) {
      if (skip.has(i)) continue;
      const ack = await this.host.send('update.chunk', studyId, round, chunkBody(cts, i, perChunk), {
        index: i,
        count,
        nSamples: w.nSamples,
        length: w.length,
        keyEpoch: w.keyEpoch,
        heParamsDigest: digest,
      });
      if (!ack.ok) {
        if (ack.code === 'TWF_E_DUPLICATE_CHUNK') continue;
        return; // disconnected or refused: the coordinator re-sends mask.peers on reconnect
      }
    }
    this.update(studyId, round, { state: 'uploaded', uploadedAtMs: Date.now() });
    this.host.events.onStep?.({ studyId, round, step: 'uploaded' });
    this.host.events.onUploaded?.({
      studyId,
      round,
      nSamples: w.nSamples,
      trainLoss: w.trainLoss ?? NaN,
      trainMs: w.trainMs ?? NaN,
      encryptMs: w.encryptMs ?? NaN,
      uploadBytes: w.uploadBytes ?? 0,
      chunks: count,
    });
  }

  // ---------------------------------------------------- consistency and reveal

  /** Signs (key set, survivors) — once per round: a second, different survivor set is refused. */
  async onSurvivors(studyId: string, round: number, b: BodyOf['mask.survivors']): Promise<void> {
    const w = this.work(studyId, round);
    if (!w || !w.keySetJson || w.state === 'failed' || w.state === 'applied') return;
    const { manifest: m, hash } = this.host.manifest(studyId, false);
    const keySet = (JSON.parse(w.keySetJson) as { siteId: string }[]).map((e) => e.siteId);
    if (!sortedEq(keySet, b.keySet)) this.refuse(studyId, round, 'TWF_E_SECAGG', `the survivor message names key set ${b.keySet.join(',')}; ours is ${keySet.join(',')}`);
    if (!b.survivors.every((s) => keySet.includes(s)) || new Set(b.survivors).size !== b.survivors.length) this.refuse(studyId, round, 'TWF_E_SECAGG', 'survivors outside the key set');
    if (!b.survivors.includes(this.host.siteId)) this.refuse(studyId, round, 'TWF_E_SECAGG', 'this site is not among the survivors');
    if (b.survivors.length < Math.max(quorumOf(m), w.threshold))
      this.refuse(studyId, round, 'TWF_E_TOO_FEW_CONTRIBUTORS', `${b.survivors.length} survivors; at least ${Math.max(quorumOf(m), w.threshold)} needed`);
    if (w.signedJson) {
      const had = JSON.parse(w.signedJson) as { survivors: string[] };
      if (!sortedEq(had.survivors, b.survivors))
        this.refuse(studyId, round, 'TWF_E_SECAGG', `a second, different survivor set (${b.survivors.join(',')} after ${had.survivors.join(',')}): refusing to sign it`);
    } else {
      this.update(studyId, round, { signedJson: JSON.stringify({ keySet: [...keySet].sort(), survivors: [...b.survivors].sort() }), state: 'signed' });
    }
    const ctx = { studyId, manifestHash: hash, round };
    const signature = signStatement(MASK_SURVIVORS_KIND, maskSurvivorsFields(ctx, keySet, b.survivors), this.host.identity.ed25519SecretKey);
    const ack = await this.host.send('mask.consistency', studyId, round, { signature });
    if (ack.ok) this.host.events.onStep?.({ studyId, round, step: 'signed' });
  }

  /**
   * Reveals shares once at least t survivors signed the same (key set, survivors) this site
   * signed: of the self-mask seed of each survivor, of the mask key of each site that dropped.
   * Never both for one site — that is what keeps a slow site's update masked.
   */
  async onReveal(studyId: string, round: number, b: BodyOf['mask.reveal']): Promise<void> {
    const w = this.work(studyId, round);
    if (!w || w.state === 'failed' || w.state === 'applied') return;
    if (!w.signedJson) this.refuse(studyId, round, 'TWF_E_SECAGG', 'asked to reveal before signing a survivor set');
    const { manifest: m, hash } = this.host.manifest(studyId, false);
    const signed = JSON.parse(w.signedJson!) as { keySet: string[]; survivors: string[] };
    if (!sortedEq(signed.keySet, b.keySet) || !sortedEq(signed.survivors, b.survivors))
      this.refuse(studyId, round, 'TWF_E_SECAGG', 'the reveal request names another key set or survivor set than the one this site signed');
    const ctx = { studyId, manifestHash: hash, round };
    const fields = maskSurvivorsFields(ctx, signed.keySet, signed.survivors);
    const keys = new Map(m.participants.map((p) => [p.siteId, p.ed25519PublicKey]));
    const valid = new Set(
      b.signatures.filter((s) => signed.survivors.includes(s.siteId) && verifyStatement(MASK_SURVIVORS_KIND, fields, s.signature, fromB64(keys.get(s.siteId)!))).map((s) => s.siteId),
    );
    if (valid.size < w.threshold) this.refuse(studyId, round, 'TWF_E_SECAGG', `${valid.size} valid survivor-set signatures; ${w.threshold} needed before any share is revealed`);
    const shares = JSON.parse(w.sharesJson ?? '{}') as Record<string, { b: string; s: string }>;
    const dropped = signed.keySet.filter((s) => !signed.survivors.includes(s));
    const missing = [...signed.survivors, ...dropped].filter((s) => !shares[s]);
    if (missing.length) this.refuse(studyId, round, 'TWF_E_SECAGG', `no shares held for ${missing.join(',')}`);
    const revealed = { b: [...signed.survivors].sort(), s: dropped.sort() };
    if (w.revealedJson && w.revealedJson !== JSON.stringify(revealed)) this.refuse(studyId, round, 'TWF_E_SECAGG', 'a different reveal was already made for this round');
    this.update(studyId, round, { revealedJson: JSON.stringify(revealed), state: 'revealed' });
    this.host.audit.append({
      actor: this.host.siteId,
      action: 'secagg.revealed',
      studyId,
      round,
      detail: `self-mask shares of ${revealed.b.join(',')}; mask-key shares of ${revealed.s.join(',') || 'none'} (dropped); ${valid.size} signatures checked`,
    });
    const ack = await this.host.send('mask.unmask', studyId, round, {
      bShares: revealed.b.map((of) => ({ of, share: shares[of].b })),
      sShares: revealed.s.map((of) => ({ of, share: shares[of].s })),
    });
    if (ack.ok) this.host.events.onStep?.({ studyId, round, step: 'revealed' });
  }

  onFailed(studyId: string, round: number, b: BodyOf['round.failed']): void {
    const w = this.work(studyId, round);
    this.host.audit.append({ actor: this.host.siteId, action: 'round.failed', studyId, round, detail: `${b.code}: ${b.reason}` });
    if (w && w.state !== 'applied') this.update(studyId, round, { state: 'failed', ...WIPED });
  }

  // ----------------------------------------------------------------- aggregate

  /**
   * Applies a round's aggregate after checking it: contributors >= max(3, minSites), key set and
   * survivors within the roster with keys signed by their sites, each survivor's self-mask seed
   * and each dropped site's mask key reconstructed from t shares and checked against what that site
   * committed to; then decrypt, unmask, and refuse unless every averaged element lies within
   * [-B, B] (plus the quantisation error bound).
   */
  async onAggregate(env: Envelope): Promise<'applied' | 'skipped' | 'pending'> {
    const h = env.header;
    const studyId = h.studyId!;
    const round = h.round!;
    if (this.host.modelAt(studyId, round)) return 'skipped';
    const frames = unpackFrames(env.body);
    if (frames.length < 2) throw new WireError('TWF_E_MALFORMED', 'aggregate without info frame or ciphertexts');
    let info: AggregateInfoT;
    try {
      info = AggregateInfo.parse(JSON.parse(Buffer.from(frames[0]).toString('utf8')));
    } catch (e) {
      throw new WireError('TWF_E_MALFORMED', `aggregate info: ${(e as Error).message.slice(0, 200)}`);
    }
    const cts = frames.slice(1);
    const { manifest: m, hash } = this.host.manifest(studyId, false);
    if (info.round !== round) throw new WireError('TWF_E_MALFORMED', `info for round ${info.round} in an envelope of round ${round}`);
    const ready = await this.host.caughtUp(studyId, info.baseVersion, async () => void (await this.onAggregate(env)));
    if (ready === 'pruned') return 'skipped';
    if (!ready) return 'pending';
    const refuse = async (code: string, detail: string): Promise<'skipped'> => {
      this.host.audit.append({ actor: this.host.siteId, action: 'aggregate.refused', studyId, round, digest: h.digest, detail: `${code}: ${detail}` });
      this.host.log('warn', `${studyId} round ${round}: aggregate refused: ${code} ${detail}`);
      this.host.events.onRefusedAggregate?.({ studyId, round, code, detail });
      const w = this.work(studyId, round);
      if (w) this.update(studyId, round, { state: 'failed', ...WIPED });
      await this.host.send('aggregate.refused', studyId, null, { round, code, detail: detail.slice(0, 500) });
      return 'skipped';
    };
    const params = m.encryption as HeParams;
    const he = await createHeContext(params);
    const roster = new Map(m.participants.map((p) => [p.siteId, p]));
    const ids = info.keySet.map((e) => e.siteId);
    const quorum = quorumOf(m);
    if (info.heParamsDigest !== heParamsDigest(params) || info.length !== m.updateLength || cts.length !== ciphertextCount(params, m.updateLength)) {
      return refuse('TWF_E_UPDATE_SHAPE', `aggregate of ${info.length} parameters in ${cts.length} ciphertexts; the manifest fixes ${m.updateLength}`);
    }
    if (info.survivors.length < quorum) return refuse('TWF_E_TOO_FEW_CONTRIBUTORS', `${info.survivors.length} contributors; the manifest needs at least ${quorum}`);
    if (!ids.every((id) => roster.has(id)) || new Set(ids).size !== ids.length) return refuse('TWF_E_SECAGG', 'key set outside the roster or with a site twice');
    if (!info.survivors.every((s) => ids.includes(s)) || new Set(info.survivors).size !== info.survivors.length) return refuse('TWF_E_SECAGG', 'survivors outside the key set');
    if (info.threshold < secaggThresholdFor(ids.length) || info.threshold > ids.length) return refuse('TWF_E_SECAGG', `threshold ${info.threshold} for a key set of ${ids.length}`);
    const mine = this.work(studyId, round);
    if (mine && mine.threshold !== info.threshold) return refuse('TWF_E_SECAGG', `threshold ${info.threshold}; round.start said ${mine.threshold}`);
    if (info.totalSamples < info.survivors.length || info.totalSamples > info.survivors.length * m.training.maxSamplesPerSite) {
      return refuse('TWF_E_SAMPLES_BOUND', `total ${info.totalSamples} samples for ${info.survivors.length} contributors (cap ${m.training.maxSamplesPerSite} each)`);
    }
    const ctx: RoundContext = { studyId, manifestHash: hash, round };
    for (const e of info.keySet) {
      if (!verifyStatement(MASK_KEYS_KIND, maskKeysFields(ctx, e.siteId, e.sPk, e.bCommit), e.signature, fromB64(roster.get(e.siteId)!.ed25519PublicKey))) {
        return refuse('TWF_E_SECAGG', `mask keys of ${e.siteId} not signed with its roster key`);
      }
    }
    const key = studyKey(this.host.db, studyId, info.keyEpoch);
    if (!key) return refuse('TWF_E_NOT_PARTICIPANT', `no study key of epoch ${info.keyEpoch}`);
    // Reconstruct: b of every survivor, sSk of every dropped site, each checked against its commitment.
    const entry = new Map(info.keySet.map((e) => [e.siteId, e]));
    const sharesOf = (kind: 'bShares' | 'sShares', of: string) => info.reveals.flatMap((r) => r[kind].filter((x) => x.of === of).map((x) => fromB64(x.share)));
    const survivorsB: { siteId: string; b: Uint8Array }[] = [];
    for (const s of info.survivors) {
      const b = await reconstructChecked(sharesOf('bShares', s), info.threshold, (x) => selfMaskCommitment(ctx, s, x) === entry.get(s)!.bCommit);
      if (!b) return refuse('TWF_E_SECAGG', `the self-mask seed of ${s} does not reconstruct from the revealed shares`);
      survivorsB.push({ siteId: s, b });
    }
    const dropped = ids.filter((id) => !info.survivors.includes(id));
    const droppedSk: { siteId: string; sSk: Uint8Array }[] = [];
    for (const d of dropped) {
      const pk = fromB64(entry.get(d)!.sPk);
      const sk = await reconstructChecked(sharesOf('sShares', d), info.threshold, (x) => isKeyPair(x, pk));
      if (!sk) return refuse('TWF_E_SECAGG', `the mask key of dropped site ${d} does not reconstruct from the revealed shares`);
      droppedSk.push({ siteId: d, sSk: sk });
    }
    const noise = m.dp?.level === 'site' ? siteNoiseAllowance(siteNoiseOf(m), info.survivors.length) : { sumQ: 0, averaged: 0 };
    const t0 = performance.now();
    const sums = decryptSlots(he, new Uint8Array(key.secretKey), cts, packedLength(params, info.length));
    unmaskSum(ctx, he.plainModulus, sums, survivorsB, droppedSk, new Map(info.survivors.map((s) => [s, fromB64(entry.get(s)!.sPk)])));
    let avg: Float32Array;
    try {
      const laneSums = unpackLanes(he, sums, info.length, laneSumLimitQ(params, info.totalSamples, noise.sumQ));
      avg = averageFromCentred(laneSums, info.totalSamples, m.training.clipBound, params.precisionBits, undefined, noise.sumQ);
    } catch (e) {
      // A sum beyond ±N·2^p is an average beyond ±B: some site encoded more weight than it declared
      // (or the sum wrapped modulo t, or a lane carried into the next). Refused like any out-of-bounds
      // aggregate, so the coordinator hears of it and the study goes on from the last good model
      // instead of waiting on this one.
      if (e instanceof HeError && e.code === 'TWF_E_HE_OVERFLOW')
        return refuse('TWF_E_AGGREGATE_BOUNDS', `the unmasked sum leaves ±N·2^p (an average outside [-B, B] = ±${m.training.clipBound}): ${e.message}`);
      throw e;
    }
    const decryptMs = performance.now() - t0;
    // Each averaged element of clipped updates lies in [-B, B]; quantisation adds at most
    // (contributors / N) · 2^-(p+1) · B, below 2^-p · B.
    // Under site-level DP each element of a clipped update is within min(B, C), and the noise adds
    // at most `noise.averaged` (12 standard deviations) to each averaged element.
    const bound = (m.dp?.level === 'site' ? Math.min(m.training.clipBound, m.dp.clipNorm) : m.training.clipBound) * (1 + 2 ** -params.precisionBits) * (1 + 1e-6) + noise.averaged;
    let outside = 0;
    let worst = 0;
    for (let i = 0; i < avg.length; i++) {
      const a = Math.abs(avg[i]);
      if (!(a <= bound)) outside++;
      if (a > worst || Number.isNaN(a)) worst = a;
    }
    if (outside > 0) return refuse('TWF_E_AGGREGATE_BOUNDS', `${outside} of ${avg.length} averaged elements outside [-B, B] = ±${m.training.clipBound} (largest |value| ${worst.toPrecision(4)})`);
    // The strategy turns (model, mean, state) of the base version into the next model and state,
    // with the same float64 arithmetic at every site: all sites hold the same bits afterwards. A
    // site catching up replays each missed aggregate through here in order, so it rebuilds the
    // state as well as the model.
    const strategy = strategyFor(m.strategy);
    const base = this.host.modelAt(studyId, info.baseVersion)!;
    const prior = this.host.strategyStateAt(studyId, info.baseVersion);
    if (strategy.stateful && info.baseVersion > 0 && !prior) {
      throw new StrategyError(
        'TWF_E_STRATEGY_STATE',
        `${studyId}: no ${strategy.name} state stored with model version ${info.baseVersion}; cannot apply round ${round} identically to the other sites`,
      );
    }
    const next = strategy.apply(base, avg, prior);
    const hook = this.host.trainer.onAggregate?.(m, next.weights, { round, totalSamples: info.totalSamples, contributors: info.survivors.length, audit: this.host.audit });
    if (hook?.refuse) return refuse('TWF_E_AGGREGATE_BOUNDS', hook.refuse);
    const ev = await this.host.trainer.evaluate(m, next.weights);
    const stored = this.host.storeModel(studyId, round, next.weights, ev.meanDice, next.state);
    this.host.audit.append({
      actor: this.host.siteId,
      action: 'aggregate.applied',
      studyId,
      round,
      digest: h.digest,
      detail: `contributors=${info.survivors.join(',')} dropped=${dropped.join(',') || 'none'} totalSamples=${info.totalSamples} base=${info.baseVersion} strategy=${strategy.name} model=${stored.digest} state=${stored.stateHash}`,
    });
    if (mine) this.update(studyId, round, { state: 'applied', ...WIPED });
    await this.host.reportMetrics(studyId, round, ev, this.work(studyId, round) ?? null);
    this.host.events.onApplied?.({ studyId, round, meanDice: ev.meanDice, decryptMs, contributors: info.survivors.length, dropped, ...(ev.metric ? { metric: ev.metric } : {}) });
    return 'applied';
  }
}

/** Round secrets and the plaintext update are wiped once a round is over (applied, failed or refused). */
const WIPED = { sSk: null, b: null, sharesJson: null, delta: null } as const;

/** The site-level noise parameters of a manifest whose dp.level is 'site'. */
function siteNoiseOf(m: StudyManifest): SiteLevelNoise {
  if (m.dp?.level !== 'site' || m.dp.noiseMultiplier === undefined)
    throw new WireError('TWF_E_DP_PARAMS', `study ${m.studyId}: site-level DP needs dp.noiseMultiplier (the coordinator derives it at creation)`);
  return { noiseMultiplier: m.dp.noiseMultiplier, clipNorm: m.dp.clipNorm, clipBound: m.training.clipBound, precisionBits: (m.encryption as HeParams).precisionBits, minSites: quorumOf(m) };
}
