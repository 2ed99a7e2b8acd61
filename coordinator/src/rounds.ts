import {
  AggregateInfo,
  MASK_KEYS_KIND,
  MASK_SURVIVORS_KIND,
  WireError,
  canonicalJson,
  chunkCiphertextRange,
  chunkCount,
  maskKeysFields,
  maskSurvivorsFields,
  quorumOf,
  secaggThresholdFor,
  sha256Hex,
  utf8,
  type AggregateInfoT,
  type BodyOf,
  type Envelope,
  type StudyManifest,
  type UpdateChunkMetaT,
  unpackFrames,
} from '@twinfed/protocols';
import { decodeBody, decodeMeta, fromB64, verifyStatement } from '@twinfed/shared/crypto/index';
import type { AuditEntry } from '@twinfed/shared/audit/index';
import { ciphertextCount, createHeContext, heParamsDigest, type HeParams } from '@twinfed/shared/he/index';
import { activeJoined, manifestOfRow, parseList, requireStudyId, studyRow, type EngineContext, type HandlerResult, type RoundRow, type StudyRow } from './context.js';
import type { StudyKeys } from './keys.js';
import { decideRound, type RoundDecision, type RoundSnapshot } from './round-policy.js';
import type { ChunkRow, CoordinatorStore } from './store/index.js';
import { SumPool } from './sums/pool.js';

type Tx = CoordinatorStore;
const EMPTY = Buffer.alloc(0);

/** Chunks posted to the aggregation workers at once when sums are rebuilt or partial uploads subtracted. */
const REBUILD_WINDOW = 64;

/**
 * Extra time the upload phase gets for the work it carries: `msPerMParams` per million
 * parameters per site of the key set, on top of the phase timeout. A fixed phase timeout (120 s by
 * default) that suits a 30k-parameter model cut a round of 100 sites x 10M parameters off half
 * way (1e9 parameters took 7 to 10 minutes on a loaded 2-core coordinator, bench:aggregate); the
 * default of 1000 ms per million adds 16 minutes to that round and 88 ms to a 3-site,
 * 29k-parameter one.
 */
export function uploadAllowanceMs(m: Pick<StudyManifest, 'updateLength'>, keySetSize: number, msPerMParams: number): number {
  return Math.ceil((keySetSize * m.updateLength * msPerMParams) / 1e6);
}

/**
 * Rounds of a running study: opening, the secure-aggregation phases (round-policy.ts decides,
 * this applies), adding ciphertexts as they stream in, closing, failing, publishing.
 */
export class Rounds {
  /** The aggregate body of the round being closed, built once in the closing transaction and published from it. */
  private published: { studyId: string; round: number; body: Uint8Array; count: number; infoBytes: number; digest: string } | null = null;
  /** Sums being written, by round key (one writer per round). */
  private readonly summing = new Map<string, Promise<void>>();

  constructor(
    private readonly ctx: EngineContext,
    private readonly keys: StudyKeys,
    private readonly received: (env: Envelope, detail?: string) => HandlerResult['entry'],
  ) {}

  // ------------------------------------------------------------------ queries

  lastClosed(studyId: string): number {
    return this.ctx.store.rounds(studyId, 'closed').at(-1)?.round ?? 0;
  }

  closedCount(studyId: string): number {
    return this.ctx.store.rounds(studyId, 'closed').length;
  }

  openRound(st: StudyRow): RoundRow | null {
    const r = this.ctx.store.round(st.studyId, st.currentRound);
    return r && r.state === 'open' ? r : null;
  }

  private requireOpen(st: StudyRow, round: number | null): RoundRow {
    if (round === null) throw new WireError('TWF_E_WRONG_ROUND', 'message without a round');
    const r = this.ctx.store.round(st.studyId, round);
    if (r && r.state !== 'open') throw new WireError('TWF_E_ROUND_CLOSED', `round ${round} is ${r.state}`);
    if (!r || st.state !== 'running' || round !== st.currentRound)
      throw new WireError('TWF_E_WRONG_ROUND', `round ${round}; open round is ${st.state === 'running' && this.openRound(st) ? st.currentRound : 'none'}`);
    return r;
  }

  /** The study, manifest and open round a round message is for; its sender must be an active participant of that round. */
  private roundMessage(env: Envelope): { st: StudyRow; m: StudyManifest; r: RoundRow } {
    const h = env.header;
    const st = studyRow(this.ctx.store, requireStudyId(h.studyId));
    const m = manifestOfRow(st);
    const r = this.requireOpen(st, h.round);
    this.requireActiveParticipant(st, r, h.senderId);
    return { st, m, r };
  }

  private requireActiveParticipant(st: StudyRow, r: RoundRow, siteId: string, store: CoordinatorStore = this.ctx.store): void {
    const row = store.studySite(st.studyId, siteId);
    if (row?.excluded) throw new WireError('TWF_E_EVICTED', `${siteId} is ${row.excluded} from ${st.studyId}`);
    if (!parseList(r.participantsJson).includes(siteId)) throw new WireError('TWF_E_NOT_PARTICIPANT', `${siteId} is not a participant of round ${r.round}`);
    if (store.declines(st.studyId, r.round).some((d) => d.siteId === siteId)) throw new WireError('TWF_E_NOT_PARTICIPANT', `${siteId} declined round ${r.round}`);
  }

  // ------------------------------------------------------------------ opening

  /** Opens the next round with `participants` (nextAction decided; the study's round counter is re-checked in the transaction). */
  open(st: StudyRow, m: StudyManifest, participants: string[], keyEpoch: number): void {
    const now = this.ctx.now();
    const round = st.currentRound + 1;
    const base = this.lastClosed(st.studyId);
    const threshold = secaggThresholdFor(participants.length);
    const deadlineAtMs = now + m.roundDeadlineS * 1000;
    const opened = this.ctx.store.transaction((tx) => {
      const again = tx.study(st.studyId)!;
      if (again.currentRound !== st.currentRound || again.state !== 'running') return false;
      tx.insertRound({
        studyId: st.studyId,
        round,
        state: 'open',
        phase: 'setup',
        keyEpoch,
        baseVersion: base,
        threshold,
        openedAtMs: now,
        deadlineAtMs,
        participantsJson: JSON.stringify(participants),
      });
      tx.updateStudy(st.studyId, { currentRound: round });
      this.ctx.audit.append({
        actor: this.ctx.coordinatorId,
        action: 'round.opened',
        studyId: st.studyId,
        round,
        detail: `participants=${participants.join(',')} threshold=${threshold} keyEpoch=${keyEpoch} base=${base}`,
      });
      return true;
    });
    if (!opened) return;
    this.ctx.metrics.roundsOpened.inc();
    this.ctx.metrics.currentRound.set({ study: st.studyId }, round);
    this.ctx.log('info', `${st.studyId}: round ${round} opened with ${participants.length} sites (t=${threshold})`);
    this.sendStart(st.studyId, this.ctx.store.round(st.studyId, round)!, participants);
    this.ctx.checkpoint(st.studyId);
  }

  private sendStart(studyId: string, r: RoundRow, siteIds: string[]): void {
    const body = { deadlineMs: r.deadlineAtMs, modelVersion: r.baseVersion, keyEpoch: r.keyEpoch, participants: parseList(r.participantsJson), threshold: r.threshold };
    this.ctx.sendMany(siteIds.map((siteId) => ({ siteId, type: 'round.start' as const, studyId, round: r.round, body })));
  }

  // ----------------------------------------------------------- site messages

  /** mask.setup: signed mask keys and one share box per other participant, during the setup phase. */
  onSetup(env: Envelope): HandlerResult {
    const h = env.header;
    const b: BodyOf['mask.setup'] = decodeBody(env, 'mask.setup');
    const { st, m, r } = this.roundMessage(env);
    const key = m.participants.find((p) => p.siteId === h.senderId)!.ed25519PublicKey;
    const fields = maskKeysFields({ studyId: st.studyId, manifestHash: st.manifestHash, round: r.round }, h.senderId, b.sPk, b.bCommit);
    if (!verifyStatement(MASK_KEYS_KIND, fields, b.signature, fromB64(key))) throw new WireError('TWF_E_SECAGG', "mask keys not signed with the site's roster key");
    const others = parseList(r.participantsJson)
      .filter((p) => p !== h.senderId)
      .sort();
    const to = b.boxes.map((x) => x.to).sort();
    if (to.join(',') !== others.join(',')) throw new WireError('TWF_E_SECAGG', `share boxes for ${to.join(',') || 'nobody'}; the round's other participants are ${others.join(',')}`);
    const entry = this.ctx.store.transaction((tx) => {
      const again = this.requireOpenTx(tx, st.studyId, r.round);
      this.requireActiveParticipant(st, again, h.senderId, tx);
      const prev = tx.roundSiteRow('maskSetups', st.studyId, r.round, h.senderId);
      if (prev) {
        if (prev.sPk === b.sPk && prev.bCommit === b.bCommit && prev.signature === b.signature) return this.received(env, 'mask keys (again, identical)');
        throw new WireError('TWF_E_SECAGG', `a different mask set-up of ${h.senderId} for round ${r.round} was already received`);
      }
      if (again.phase !== 'setup') throw new WireError('TWF_E_SECAGG', `round ${r.round}'s key set is fixed; ${h.senderId} sent its mask keys too late and takes no part in this round`);
      tx.insertRoundSiteRow('maskSetups', {
        studyId: st.studyId,
        round: r.round,
        siteId: h.senderId,
        sPk: b.sPk,
        bCommit: b.bCommit,
        signature: b.signature,
        boxesJson: JSON.stringify(b.boxes),
        receivedAtMs: this.ctx.now(),
      });
      return this.received(env, `mask keys, ${b.boxes.length} share boxes`);
    });
    return { entry };
  }

  /**
   * round.decline: the site takes no part in the open round, as if it had never set up (its mask
   * set-up, if any, is forgotten; in the upload phase it counts as a dropout whose masks are
   * removed). Too late once its update is complete or the survivors are fixed. TWF_E_DP_BUDGET also
   * marks the site exhausted for the study. Returns whether the round or the study may have to move.
   */
  onDecline(env: Envelope): HandlerResult {
    const h = env.header;
    const b: BodyOf['round.decline'] = decodeBody(env, 'round.decline');
    const { st, r } = this.roundMessage(env);
    const now = this.ctx.now();
    const exhausted = b.code === 'TWF_E_DP_BUDGET';
    const entry = this.ctx.store.transaction((tx) => {
      const again = this.requireOpenTx(tx, st.studyId, r.round);
      this.requireActiveParticipant(st, again, h.senderId, tx);
      if (again.phase === 'upload') {
        if (!parseList(again.keySetJson).includes(h.senderId)) throw new WireError('TWF_E_NOT_PARTICIPANT', `${h.senderId} is not in round ${r.round}'s key set; it takes no part already`);
        if (tx.update(st.studyId, r.round, h.senderId)?.state === 'complete') throw new WireError('TWF_E_ROUND_CLOSED', `${h.senderId}'s update for round ${r.round} is complete; too late to decline`);
      } else if (again.phase !== 'setup') {
        throw new WireError('TWF_E_ROUND_CLOSED', `round ${r.round}'s survivors are fixed (${again.phase} phase); too late to decline`);
      } else {
        tx.deleteMaskSetup(st.studyId, r.round, h.senderId);
      }
      tx.insertDecline({ studyId: st.studyId, round: r.round, siteId: h.senderId, code: b.code, detail: b.detail, atMs: now });
      if (exhausted) {
        tx.updateStudySite(st.studyId, h.senderId, { dpExhaustedAtMs: now });
        this.ctx.audit.append({
          actor: this.ctx.coordinatorId,
          action: 'site.dp_exhausted',
          studyId: st.studyId,
          round: r.round,
          peer: h.senderId,
          detail: `${h.senderId} is asked to no later round of ${st.studyId}: ${b.detail}`,
        });
      }
      return this.received(env, `declined round ${r.round} (${again.phase} phase): ${b.code} ${b.detail}`);
    });
    return { entry, info: { declined: r.round, exhausted } };
  }

  private requireOpenTx(tx: Tx, studyId: string, round: number): RoundRow {
    const again = tx.round(studyId, round);
    if (!again || again.state !== 'open') throw new WireError('TWF_E_ROUND_CLOSED', `round ${round} is ${again?.state ?? 'unknown'}`);
    return again;
  }

  /**
   * update.chunk: one ciphertext of a masked update, from a site of the key set, during the upload
   * phase. Its length, chunk count and key epoch must be the round's, its sample count within the
   * manifest's cap and the counts the site joined with.
   *
   * The ciphertext is validated and added to the running sum of its index on an aggregation
   * worker (sums/pool.ts), then stored as the round's durable record in a transaction that
   * re-checks everything (shared with the chunks of other sites through one group commit); the
   * site is acknowledged only after that commit. A chunk the transaction refuses is subtracted
   * again before anything reads the sum. The sums are written once, when the upload phase ends
   * (finalizeSums), from the workers or, when they may lack stored chunks (a restart), rebuilt
   * from the rows: so a coordinator killed at any instant counts each stored chunk exactly once.
   */
  async onChunk(env: Envelope): Promise<HandlerResult & { complete: boolean }> {
    const h = env.header;
    const meta = decodeMeta<UpdateChunkMetaT>(env);
    const { st, m, r } = this.roundMessage(env);
    if (r.phase === 'setup') throw new WireError('TWF_E_SECAGG', `round ${r.round} is still collecting mask keys; upload after mask.peers`);
    if (r.phase !== 'upload') throw new WireError('TWF_E_ROUND_CLOSED', `round ${r.round}'s upload phase is over`);
    if (!parseList(r.keySetJson).includes(h.senderId)) throw new WireError('TWF_E_NOT_PARTICIPANT', `${h.senderId} is not in round ${r.round}'s key set (no mask keys in time)`);
    const params = m.encryption as HeParams;
    if (meta.heParamsDigest !== heParamsDigest(params)) throw new WireError('TWF_E_UPDATE_SHAPE', 'ciphertext for other encryption parameters');
    if (meta.keyEpoch !== r.keyEpoch) throw new WireError('TWF_E_UPDATE_SHAPE', `encrypted under key epoch ${meta.keyEpoch}; round ${r.round} uses ${r.keyEpoch}`);
    await createHeContext(params); // refuses parameters SEAL cannot use before any chunk is counted
    if (meta.length !== m.updateLength) throw new WireError('TWF_E_UPDATE_SHAPE', `length ${meta.length}; the manifest fixes ${m.updateLength} parameters`);
    const total = ciphertextCount(params, m.updateLength);
    const perChunk = m.ciphertextsPerChunk ?? 1;
    const expectedCount = chunkCount(total, perChunk);
    if (meta.count !== expectedCount)
      throw new WireError(
        'TWF_E_UPDATE_SHAPE',
        `count ${meta.count}; ${m.updateLength} parameters take ${total} ciphertexts${perChunk > 1 ? `, ${perChunk} to a chunk: ${expectedCount} chunks` : ''}`,
      );
    if (meta.index >= meta.count) throw new WireError('TWF_E_UPDATE_SHAPE', `chunk ${meta.index} of ${meta.count}`);
    if (perChunk > 1) {
      // The body is packFrames of the chunk's ciphertexts; each is validated where it is added.
      let frames: number;
      try {
        frames = unpackFrames(env.body).length;
      } catch (e) {
        throw new WireError('TWF_E_BAD_CIPHERTEXT', `chunk ${meta.index}: ${(e as Error).message}`);
      }
      const want = chunkCiphertextRange(meta.index, total, perChunk).n;
      if (frames !== want) throw new WireError('TWF_E_UPDATE_SHAPE', `chunk ${meta.index} carries ${frames} ciphertexts; the manifest puts ${want} in it`);
    }
    if (meta.nSamples > m.training.maxSamplesPerSite) throw new WireError('TWF_E_SAMPLES_BOUND', `n=${meta.nSamples} > maxSamplesPerSite ${m.training.maxSamplesPerSite}`);
    const round = r.round;
    // A re-sent chunk is refused before it costs an addition (and checked again where it is stored).
    if (this.ctx.store.hasChunk(st.studyId, round, h.senderId, meta.index)) throw new WireError('TWF_E_DUPLICATE_CHUNK', `chunk ${meta.index} of round ${round}`);
    const key = SumPool.key(st.studyId, round);
    this.ctx.sums.begin(key); // TWF_E_ROUND_CLOSED once the round's sums are being written
    try {
      // Validates the ciphertext (TWF_E_BAD_CIPHERTEXT, nothing added), adds it on its index's worker
      // and writes its bytes to that worker's chunk log, synced before the answer.
      const { ms, log } = await this.ctx.sums.add(key, params, meta.index, env.body, true, perChunk);
      let result: { complete: boolean; received: number; count: number; entry: AuditEntry };
      try {
        result = await this.ctx.commits.run((tx) => this.storeChunk(tx, env, meta, st, round, ms, log, total));
      } catch (e) {
        // Refused where it is stored (the round moved on, the site was excluded, a duplicate): it
        // leaves the sum again, posted before this chunk counts as settled, so before any take.
        this.ctx.sums.sub(key, params, meta.index, env.body, perChunk).catch((x: unknown) => this.ctx.log('warn', `undoing a refused chunk of ${st.studyId} round ${round}: ${(x as Error).message}`));
        throw e;
      }
      this.ctx.metrics.aggregationSeconds.observe(ms / 1000);
      if (result.complete) this.ctx.metrics.updatesAccepted.inc();
      return { entry: result.entry, info: { received: result.received, count: result.count, complete: result.complete }, complete: result.complete };
    } finally {
      this.ctx.sums.end(key);
    }
  }

  /**
   * The chunk's transaction: everything checked before the awaits above is checked again here,
   * where the chunk is stored: the round may have moved on (survivors fixed, failed), the study
   * stopped, the site been excluded or declined meanwhile.
   */
  private storeChunk(
    tx: Tx,
    env: Envelope,
    meta: UpdateChunkMetaT,
    st: StudyRow,
    round: number,
    ms: number,
    log: { file: string; offset: number; length: number } | undefined,
    /** Ciphertexts of the whole update (chunks may carry several). */
    ciphertexts: number,
  ): { complete: boolean; received: number; count: number; entry: AuditEntry } {
    const h = env.header;
    this.ctx.advanceSeq(tx, env); // rolled back with the chunk if it is refused (the engine then writes it alone)
    const study = tx.study(st.studyId);
    if (!study || study.state !== 'running' || study.currentRound !== round) throw new WireError('TWF_E_ROUND_CLOSED', `round ${round} is no longer the open round of ${st.studyId}`);
    const again = this.requireOpenTx(tx, st.studyId, round);
    if (again.phase !== 'upload') throw new WireError('TWF_E_ROUND_CLOSED', `round ${round}'s upload phase is over`);
    this.requireActiveParticipant(st, again, h.senderId, tx);
    if (!parseList(again.keySetJson).includes(h.senderId)) throw new WireError('TWF_E_NOT_PARTICIPANT', `${h.senderId} is not in round ${round}'s key set`);
    const ss = tx.studySite(st.studyId, h.senderId);
    if (!ss || meta.nSamples > ss.trainSamples) throw new WireError('TWF_E_SAMPLES_BOUND', `n=${meta.nSamples} > the ${ss?.trainSamples ?? 0} training samples ${h.senderId} joined with`);
    let up = tx.update(st.studyId, round, h.senderId);
    if (up && up.state !== 'receiving') throw new WireError('TWF_E_DUPLICATE_CHUNK', `update of ${h.senderId} for round ${round} is ${up.state}`);
    if (up && (up.count !== meta.count || up.nSamples !== meta.nSamples || up.length !== meta.length))
      throw new WireError('TWF_E_UPDATE_SHAPE', 'chunk metadata differs from earlier chunks of this update');
    if (tx.hasChunk(st.studyId, round, h.senderId, meta.index)) throw new WireError('TWF_E_DUPLICATE_CHUNK', `chunk ${meta.index} of round ${round}`);
    if (!up) {
      tx.insertUpdate({ studyId: st.studyId, round, siteId: h.senderId, state: 'receiving', count: meta.count, nSamples: meta.nSamples, length: meta.length, startedAtMs: this.ctx.now() });
      up = tx.update(st.studyId, round, h.senderId)!;
    }
    // The row points at the bytes in the chunk log; without one (an in-memory database) it holds them.
    if (log) tx.insertChunk({ studyId: st.studyId, round, siteId: h.senderId, index: meta.index, ct: EMPTY, digest: h.digest, logFile: log.file, logOffset: log.offset, logLength: log.length });
    else tx.insertChunk({ studyId: st.studyId, round, siteId: h.senderId, index: meta.index, ct: Buffer.from(env.body.buffer, env.body.byteOffset, env.body.byteLength), digest: h.digest });
    const receivedNow = up.received + 1;
    const complete = receivedNow === up.count;
    tx.setUpdate(st.studyId, round, h.senderId, {
      received: receivedNow,
      bytes: up.bytes + env.body.length,
      state: complete ? 'complete' : 'receiving',
      completedAtMs: complete ? this.ctx.now() : null,
    });
    tx.updateRound(st.studyId, round, { bytesIn: again.bytesIn + env.body.length, aggregateMs: again.aggregateMs + ms, length: meta.length, ciphertexts });
    const entry = this.received(env, `chunk ${meta.index + 1}/${meta.count} n=${meta.nSamples}${complete ? ' complete' : ''}`);
    if (complete) this.ctx.audit.append({ actor: h.senderId, action: 'update.accepted', studyId: st.studyId, round, detail: `n=${meta.nSamples} chunks=${meta.count}` });
    return { complete, received: receivedNow, count: up.count, entry };
  }

  /** mask.consistency: a survivor's signature of (key set, survivors), checked against its roster key before it is relayed. */
  onConsistency(env: Envelope): HandlerResult {
    const h = env.header;
    const b: BodyOf['mask.consistency'] = decodeBody(env, 'mask.consistency');
    const { st, m, r } = this.roundMessage(env);
    if (r.phase !== 'consistency' && r.phase !== 'unmask') throw new WireError('TWF_E_SECAGG', `round ${r.round} is in its ${r.phase} phase`);
    if (!parseList(r.survivorsJson).includes(h.senderId)) throw new WireError('TWF_E_NOT_PARTICIPANT', `${h.senderId} is not a survivor of round ${r.round}`);
    const fields = maskSurvivorsFields({ studyId: st.studyId, manifestHash: st.manifestHash, round: r.round }, parseList(r.keySetJson), parseList(r.survivorsJson));
    const key = m.participants.find((p) => p.siteId === h.senderId)!.ed25519PublicKey;
    if (!verifyStatement(MASK_SURVIVORS_KIND, fields, b.signature, fromB64(key)))
      throw new WireError('TWF_E_SECAGG', 'survivor-set signature does not verify (the site saw another key set or survivor set)');
    const entry = this.ctx.store.transaction((tx) => {
      const again = this.requireOpenTx(tx, st.studyId, r.round);
      const prev = tx.roundSiteRow('maskSignatures', st.studyId, r.round, h.senderId);
      if (prev) return this.received(env, 'survivor-set signature (again)');
      if (again.phase !== 'consistency') throw new WireError('TWF_E_SECAGG', `round ${r.round}'s revealers are fixed; this signature came too late`);
      tx.insertRoundSiteRow('maskSignatures', { studyId: st.studyId, round: r.round, siteId: h.senderId, signature: b.signature });
      return this.received(env, 'survivor-set signature');
    });
    return { entry };
  }

  /** mask.unmask: shares of every survivor's self-mask seed and of every dropped site's mask key; never both for one site. */
  onUnmask(env: Envelope): HandlerResult {
    const h = env.header;
    const b: BodyOf['mask.unmask'] = decodeBody(env, 'mask.unmask');
    const { st, r } = this.roundMessage(env);
    if (r.phase !== 'unmask') throw new WireError('TWF_E_SECAGG', `round ${r.round} is in its ${r.phase} phase`);
    if (!parseList(r.revealersJson).includes(h.senderId)) throw new WireError('TWF_E_NOT_PARTICIPANT', `${h.senderId} is not asked to reveal in round ${r.round}`);
    const survivors = parseList(r.survivorsJson).sort();
    const dropped = parseList(r.keySetJson)
      .filter((s) => !survivors.includes(s))
      .sort();
    const bOf = b.bShares.map((x) => x.of).sort();
    const sOf = b.sShares.map((x) => x.of).sort();
    if (bOf.join(',') !== survivors.join(',')) throw new WireError('TWF_E_SECAGG', `self-mask shares for ${bOf.join(',')}; survivors are ${survivors.join(',')}`);
    if (sOf.join(',') !== dropped.join(',')) throw new WireError('TWF_E_SECAGG', `mask-key shares for ${sOf.join(',') || 'none'}; dropped sites are ${dropped.join(',') || 'none'}`);
    const entry = this.ctx.store.transaction((tx) => {
      const again = this.requireOpenTx(tx, st.studyId, r.round);
      if (again.phase !== 'unmask') throw new WireError('TWF_E_SECAGG', `round ${r.round} is in its ${again.phase} phase`);
      const prev = tx.roundSiteRow('maskReveals', st.studyId, r.round, h.senderId);
      if (prev) return this.received(env, 'unmasking shares (again)');
      tx.insertRoundSiteRow('maskReveals', { studyId: st.studyId, round: r.round, siteId: h.senderId, bodyJson: JSON.stringify(b) });
      return this.received(env, `unmasking shares: ${b.bShares.length} self-mask, ${b.sShares.length} dropped-site`);
    });
    return { entry };
  }

  /**
   * aggregate.refused: a site decrypted a round's aggregate and found it invalid (out of bounds).
   * A majority of the round's contributors refusing marks the round refused: it no longer counts
   * and the next round trains from the last good model (a study that this round completed runs
   * again). One site alone cannot undo a round.
   */
  onRefused(env: Envelope): HandlerResult {
    const h = env.header;
    const b: BodyOf['aggregate.refused'] = decodeBody(env, 'aggregate.refused');
    const st = studyRow(this.ctx.store, requireStudyId(h.studyId));
    const r = this.ctx.store.round(st.studyId, b.round);
    if (!r || (r.state !== 'closed' && r.state !== 'refused')) throw new WireError('TWF_E_WRONG_ROUND', `round ${b.round} has no published aggregate`);
    const survivors = parseList(r.survivorsJson);
    let refusedNow = false;
    const entry = this.ctx.store.transaction((tx) => {
      tx.insertRefusal({ studyId: st.studyId, round: b.round, siteId: h.senderId, code: b.code, detail: b.detail, atMs: this.ctx.now() });
      const e = this.received(env, `refused the aggregate of round ${b.round}: ${b.code} ${b.detail}`);
      const byContributors = tx.refusals(st.studyId, b.round).filter((x) => survivors.includes(x.siteId));
      const again = tx.round(st.studyId, b.round)!;
      if (again.state === 'closed' && byContributors.length >= Math.floor(survivors.length / 2) + 1) {
        tx.updateRound(st.studyId, b.round, { state: 'refused', failReason: `${byContributors.length} of ${survivors.length} contributors refused the aggregate: ${b.code}` });
        this.ctx.audit.append({
          actor: this.ctx.coordinatorId,
          action: 'round.refused',
          studyId: st.studyId,
          round: b.round,
          detail: `refused by ${byContributors.map((x) => x.siteId).join(',')}: ${b.code}`,
        });
        // The round that completed the study no longer counts: the study goes on with a fresh round
        // from the last good model, instead of ending on an aggregate its sites refused.
        const study = tx.study(st.studyId)!;
        if (study.state === 'completed') {
          tx.updateStudy(st.studyId, { state: 'running' });
          this.ctx.audit.append({
            actor: this.ctx.coordinatorId,
            action: 'study.reopened',
            studyId: st.studyId,
            round: b.round,
            detail: `round ${b.round} completed the study but its contributors refused its aggregate; a fresh round replaces it`,
          });
        }
        refusedNow = true;
      }
      return e;
    });
    if (refusedNow) {
      const open = this.openRound(studyRow(this.ctx.store, st.studyId));
      if (open && open.baseVersion === b.round) this.fail(st.studyId, open.round, `its base model (round ${b.round}) was refused by the sites`);
    }
    return { entry };
  }

  // ----------------------------------------------------------------- stepping

  private snapshot(tx: Tx, st: StudyRow, m: StudyManifest, r: RoundRow): RoundSnapshot {
    const ids = <T extends { siteId: string }>(rows: T[]) => rows.map((x) => x.siteId);
    const declined = new Set(ids(tx.declines(st.studyId, r.round)));
    // Ids only: a set-up row carries share boxes for every other site (30 KB each at 100 sites), read on every tick otherwise.
    return {
      phase: r.phase,
      participants: parseList(r.participantsJson).filter((p) => !declined.has(p)),
      declined: [...declined],
      setups: tx.roundSiteIds('maskSetups', st.studyId, r.round),
      keySet: r.keySetJson ? parseList(r.keySetJson) : null,
      complete: tx.updateSites(st.studyId, r.round, 'complete'),
      survivors: r.survivorsJson ? parseList(r.survivorsJson) : null,
      signed: tx.roundSiteIds('maskSignatures', st.studyId, r.round),
      revealers: r.revealersJson ? parseList(r.revealersJson) : null,
      revealed: tx.roundSiteIds('maskReveals', st.studyId, r.round),
      deadlineAtMs: r.deadlineAtMs,
      phaseDeadlineAtMs: r.phaseDeadlineAtMs,
      quorum: quorumOf(m),
      threshold: r.threshold,
      graceMs: this.ctx.opts.quorumGraceMs,
    };
  }

  /** The open round's snapshot for the policy (read with `store`, a transaction when deciding). */
  roundSnapshot(store: CoordinatorStore, st: StudyRow, m: StudyManifest): RoundSnapshot | null {
    const r = store.round(st.studyId, st.currentRound);
    return r && r.state === 'open' ? this.snapshot(store, st, m, r) : null;
  }

  /**
   * Applies one step of the open round: decideRound() on a snapshot read inside the transaction
   * that applies it, then sends what the new phase needs. Returns false when there was nothing to do.
   */
  async step(studyId: string): Promise<boolean> {
    let st = studyRow(this.ctx.store, studyId);
    const open = st.state === 'running' ? this.openRound(st) : null;
    if (!open) return false;
    // Past the upload phase the round's sums must be written before anything else happens to it
    // (a restart in the consistency or unmask phase finds them pending and rebuilds them).
    if (open.phase === 'consistency' || open.phase === 'unmask') {
      await this.ensureSums(studyId, open.round);
      st = studyRow(this.ctx.store, studyId);
      if (st.state !== 'running' || !this.openRound(st)) return false;
    }
    const m = manifestOfRow(st);
    const applied = this.ctx.store.transaction((tx) => {
      const study = tx.study(studyId)!;
      const r = tx.round(studyId, study.currentRound);
      if (study.state !== 'running' || !r || r.state !== 'open') return null;
      const d = decideRound(this.snapshot(tx, study, m, r), this.ctx.now());
      if (d.kind !== 'wait') this.apply(tx, study, r, d);
      return { d, round: r.round };
    });
    if (!applied || applied.d.kind === 'wait') return false;
    // In the same synchronous stretch as the commit, so no chunk slips between the two.
    const key = SumPool.key(studyId, applied.round);
    if (applied.d.kind === 'fix-key-set') this.ctx.sums.open(key);
    if (applied.d.kind === 'fix-survivors') this.ctx.sums.seal(key);
    this.afterApply(st, m, applied.round, applied.d);
    return true;
  }

  private apply(tx: Tx, st: StudyRow, r: RoundRow, d: Exclude<RoundDecision, { kind: 'wait' }>): void {
    const now = this.ctx.now();
    const phaseDeadlineAtMs = now + this.ctx.opts.phaseTimeoutMs;
    switch (d.kind) {
      case 'fix-key-set':
        tx.updateRound(st.studyId, r.round, {
          phase: 'upload',
          keySetJson: JSON.stringify(d.keySet),
          phaseDeadlineAtMs: phaseDeadlineAtMs + uploadAllowanceMs(manifestOfRow(st), d.keySet.length, this.ctx.opts.uploadMsPerMParams),
        });
        this.ctx.audit.append({
          actor: this.ctx.coordinatorId,
          action: 'round.key_set',
          studyId: st.studyId,
          round: r.round,
          detail: `keySet=${d.keySet.join(',')}${
            d.keySet.length < parseList(r.participantsJson).length
              ? ` (without ${parseList(r.participantsJson)
                  .filter((p) => !d.keySet.includes(p))
                  .join(',')})`
              : ''
          }`,
        });
        return;
      case 'fix-survivors': {
        // Partial uploads leave the sum (finalizeSums subtracts their stored chunks, which stay until
        // the sums are written); late chunks are refused, never mixed in.
        const partial = tx.updates(st.studyId, r.round, 'receiving');
        for (const u of partial) {
          tx.setUpdate(st.studyId, r.round, u.siteId, { state: 'abandoned' });
          this.ctx.audit.append({
            actor: this.ctx.coordinatorId,
            action: 'update.abandoned',
            studyId: st.studyId,
            round: r.round,
            peer: u.siteId,
            detail: `${u.received}/${u.count} chunks removed from the aggregate`,
          });
        }
        const complete = tx.updates(st.studyId, r.round, 'complete');
        const totalSamples = complete.filter((u) => d.survivors.includes(u.siteId)).reduce((a, u) => a + u.nSamples, 0);
        tx.updateRound(st.studyId, r.round, { phase: 'consistency', survivorsJson: JSON.stringify(d.survivors), totalSamples, phaseDeadlineAtMs });
        this.ctx.audit.append({
          actor: this.ctx.coordinatorId,
          action: 'round.survivors',
          studyId: st.studyId,
          round: r.round,
          detail: `survivors=${d.survivors.join(',')} totalSamples=${totalSamples}`,
        });
        this.ctx.metrics.updatesAbandoned.inc(partial.length);
        return;
      }
      case 'fix-revealers':
        tx.updateRound(st.studyId, r.round, { phase: 'unmask', revealersJson: JSON.stringify(d.revealers), phaseDeadlineAtMs });
        return;
      case 'close': {
        const survivors = parseList(r.survivorsJson);
        if (survivors.length < Math.max(3, r.threshold)) throw new Error(`refusing to publish round ${r.round} with ${survivors.length} contributors`);
        // The digest of the body every site receives (and records in aggregate.applied): it stays
        // with the round when the ciphertexts are pruned.
        const agg = this.aggregateBody(tx, st, manifestOfRow(st), r);
        // step() wrote the sums before deciding; a round without them is not closed.
        if (!agg) throw new Error(`round ${r.round}: the sums of ${r.ciphertexts} ciphertexts are not written; not closing`);
        const aggregateDigest = sha256Hex(agg.body);
        const aggregate = { aggregateDigest, aggregateBytes: agg.body.length };
        this.published = { studyId: st.studyId, round: r.round, ...agg, digest: aggregateDigest };
        tx.updateRound(st.studyId, r.round, { state: 'closed', closedAtMs: now, ...aggregate });
        tx.deleteChunks(st.studyId, r.round); // none left unless a crash came between the sums and their deletion
        const dropped = parseList(r.keySetJson).filter((s) => !survivors.includes(s));
        const revealed = tx.roundSiteRows('maskReveals', st.studyId, r.round).map((x) => x.siteId);
        this.ctx.audit.append({
          actor: this.ctx.coordinatorId,
          action: 'round.closed',
          studyId: st.studyId,
          round: r.round,
          ...(aggregate.aggregateDigest ? { digest: aggregate.aggregateDigest, sizeBytes: aggregate.aggregateBytes } : {}),
          detail: `contributors=${survivors.join(',')} totalSamples=${r.totalSamples} dropped=${dropped.join(',') || 'none'} revealers=${revealed.join(',')}`,
        });
        this.pruneTx(tx, st, now);
        return;
      }
      case 'fail':
        this.failTx(tx, st.studyId, r.round, d.reason);
        return;
    }
  }

  private afterApply(st: StudyRow, m: StudyManifest, round: number, d: Exclude<RoundDecision, { kind: 'wait' }>): void {
    const r = this.ctx.store.round(st.studyId, round)!;
    switch (d.kind) {
      // Each phase's message to every site in one commit (engine sendMany).
      case 'fix-key-set':
        this.sendPeers(st, r, d.keySet);
        return;
      case 'fix-survivors': {
        const body = { keySet: parseList(r.keySetJson), survivors: d.survivors };
        this.ctx.sendMany(d.survivors.map((siteId) => ({ siteId, type: 'mask.survivors' as const, studyId: st.studyId, round, body })));
        return;
      }
      case 'fix-revealers': {
        const sigs = this.ctx.store.roundSiteRows('maskSignatures', st.studyId, round);
        const body = { keySet: parseList(r.keySetJson), survivors: parseList(r.survivorsJson), signatures: sigs.map((x) => ({ siteId: x.siteId, signature: x.signature })) };
        this.ctx.sendMany(d.revealers.map((siteId) => ({ siteId, type: 'mask.reveal' as const, studyId: st.studyId, round, body })));
        return;
      }
      case 'close': {
        this.ctx.sums.removeLogs(st.studyId, round);
        this.reclaimSpace();
        this.ctx.metrics.roundsClosed.inc();
        this.ctx.log('info', `${st.studyId}: round ${round} closed with ${parseList(r.survivorsJson).length} contributors`);
        const receivers = activeJoined(this.ctx.store, st)
          .map((x) => x.siteId)
          .filter((s) => this.keys.epochsOf(st.studyId, s).has(r.keyEpoch));
        this.publish(st.studyId, round, receivers);
        this.published = null;
        this.ctx.checkpoint(st.studyId);
        return;
      }
      case 'fail':
        this.afterFail(st.studyId, r);
        return;
    }
  }

  /** mask.peers to each of `siteIds`: the key set's signed keys and the share boxes addressed to it (every set-up's boxes parsed once, not once per recipient). */
  private sendPeers(st: StudyRow, r: RoundRow, siteIds: string[]): void {
    const setups = new Map(this.ctx.store.roundSiteRows('maskSetups', st.studyId, r.round).map((s) => [s.siteId, s]));
    const keySet = parseList(r.keySetJson);
    const boxes = new Map(keySet.map((id) => [id, new Map((JSON.parse(setups.get(id)!.boxesJson) as { to: string; box: string }[]).map((b) => [b.to, b.box]))]));
    this.ctx.sendMany(
      siteIds.map((siteId) => {
        const entries = keySet.map((id) => {
          const s = setups.get(id)!;
          return { siteId: id, sPk: s.sPk, bCommit: s.bCommit, signature: s.signature, box: id === siteId ? null : (boxes.get(id)!.get(siteId) ?? null) };
        });
        return { siteId, type: 'mask.peers' as const, studyId: st.studyId, round: r.round, body: { keySet: entries, alreadyReceived: this.ctx.store.chunkIndexes(st.studyId, r.round, siteId) } };
      }),
    );
  }

  // ---------------------------------------------------------------- failing

  /** Fails the open round (lead abort, stop, roster change, refused base); no-op when none is open. */
  fail(studyId: string, round: number, reason: string): boolean {
    const done = this.ctx.store.transaction((tx) => {
      const r = tx.round(studyId, round);
      if (!r || r.state !== 'open') return false;
      this.failTx(tx, studyId, round, reason);
      return true;
    });
    if (done) this.afterFail(studyId, this.ctx.store.round(studyId, round)!);
    return done;
  }

  private failTx(tx: Tx, studyId: string, round: number, reason: string): void {
    tx.updateRound(studyId, round, { state: 'failed', failReason: reason, closedAtMs: this.ctx.now() });
    tx.deleteChunks(studyId, round);
    tx.deleteAccumulators(studyId, round);
    tx.updateStudy(studyId, { lastFailedAtMs: this.ctx.now() });
    this.ctx.audit.append({ actor: this.ctx.coordinatorId, action: 'round.failed', studyId, round, detail: reason });
  }

  private afterFail(studyId: string, r: RoundRow): void {
    this.ctx.sums.drop(SumPool.key(studyId, r.round));
    this.ctx.sums.removeLogs(studyId, r.round);
    this.ctx.metrics.roundsFailed.inc();
    this.ctx.log('warn', `${studyId}: round ${r.round} failed: ${r.failReason}`);
    const body = { reason: r.failReason ?? 'failed', code: 'TWF_E_ROUND_FAILED' };
    this.ctx.sendMany(parseList(r.participantsJson).map((siteId) => ({ siteId, type: 'round.failed' as const, studyId, round: r.round, body })));
    this.ctx.checkpoint(studyId);
  }

  // ------------------------------------------------------------------ sums

  /**
   * Writes the sums of a round whose upload phase is over (survivors fixed) as its accumulators,
   * once: from the aggregation workers when they hold every stored chunk of the round (minus the
   * abandoned partial uploads, subtracted here), else rebuilt from the stored chunks of the
   * survivors (the process restarted, or a worker died, during the upload phase). Then the chunk
   * rows go. Idempotent; a crash at any point leaves either no accumulators and every chunk row
   * (done again after the restart) or the accumulators written (the rows are garbage).
   */
  ensureSums(studyId: string, round: number): Promise<void> {
    const key = SumPool.key(studyId, round);
    let p = this.summing.get(key);
    if (!p) {
      p = this.finalizeSums(studyId, round, key).finally(() => this.summing.delete(key));
      this.summing.set(key, p);
    }
    return p;
  }

  private pendingSums(studyId: string, round: number): RoundRow | null {
    const r = this.ctx.store.round(studyId, round);
    if (!r || r.state !== 'open' || (r.phase !== 'consistency' && r.phase !== 'unmask')) return null;
    return this.ctx.store.accumulatorCount(studyId, round) === 0 ? r : null;
  }

  private async finalizeSums(studyId: string, round: number, key: string): Promise<void> {
    const sums = this.ctx.sums;
    sums.seal(key);
    await sums.settled(key); // every chunk in flight is stored or undone
    const r = this.pendingSums(studyId, round);
    if (!r) {
      if (this.ctx.store.chunkSites(studyId, round).length && this.ctx.store.accumulatorCount(studyId, round) > 0) this.deleteChunkRows(studyId, round);
      return;
    }
    const t0 = performance.now();
    const st = studyRow(this.ctx.store, studyId);
    const manifest = manifestOfRow(st);
    const params = manifest.encryption as HeParams;
    const perChunk = manifest.ciphertextsPerChunk ?? 1;
    const survivors = parseList(r.survivorsJson);
    const withRows = this.ctx.store.chunkSites(studyId, round);
    const replay = async (sites: string[], op: 'add' | 'sub') => {
      let window: Promise<unknown>[] = [];
      for (const siteId of sites)
        for (const index of this.ctx.store.chunkIndexes(studyId, round, siteId)) {
          const c = this.ctx.store.chunk(studyId, round, siteId, index);
          if (!c) continue; // the round failed meanwhile (its rows deleted); the check after take() stops here
          const bytes = this.chunkBytes(c);
          window.push(op === 'add' ? sums.add(key, params, index, bytes, false, perChunk) : sums.sub(key, params, index, bytes, perChunk));
          if (window.length >= REBUILD_WINDOW) {
            await Promise.all(window);
            window = [];
          }
        }
      await Promise.all(window);
    };
    const complete = sums.isComplete(key);
    if (complete) {
      // Everything stored is in the sums; what is not a survivor's leaves them.
      await replay(
        withRows.filter((s) => !survivors.includes(s)),
        'sub',
      );
    } else {
      sums.reset(key);
      await replay(
        withRows.filter((s) => survivors.includes(s)),
        'add',
      );
    }
    const taken = await sums.take(key);
    if (!this.pendingSums(studyId, round)) return; // failed or written meanwhile
    const count = r.ciphertexts ?? 0;
    const missing = Array.from({ length: count }, (_, i) => i).filter((i) => !taken.has(i));
    if (count === 0 || missing.length || taken.size !== count)
      throw new Error(`${studyId} round ${round}: sums of ${taken.size} ciphertexts, ${count} expected${missing.length ? ` (missing ${missing.slice(0, 5).join(',')})` : ''}`);
    const ms = performance.now() - t0;
    const written = this.ctx.store.transaction((tx) => {
      const again = tx.round(studyId, round);
      if (!again || again.state !== 'open' || (again.phase !== 'consistency' && again.phase !== 'unmask') || tx.accumulatorCount(studyId, round) > 0) return false;
      for (const [index, ct] of taken) tx.putAccumulator({ studyId, round, index, ct: Buffer.from(ct.buffer, ct.byteOffset, ct.byteLength), contributions: survivors.length });
      // The chunk rows go with the same commit: from here on the sums are the record.
      tx.deleteChunks(studyId, round);
      this.ctx.audit.append({
        actor: this.ctx.coordinatorId,
        action: 'round.summed',
        studyId,
        round,
        detail: `${count} ciphertexts of ${survivors.length} contributors written in ${Math.round(ms)} ms (${
          complete ? `from ${sums.workerCount || 'inline'} aggregation workers` : 'rebuilt from the stored chunks'
        }${withRows.length > survivors.length ? `; ${withRows.length - survivors.length} partial upload(s) left out` : ''})`,
      });
      return true;
    });
    taken.clear();
    if (written) this.ctx.log('info', `${studyId}: round ${round} sums written (${count} ciphertexts, ${Math.round(ms)} ms${complete ? '' : ', rebuilt from the stored chunks'})`);
    this.deleteChunkRows(studyId, round); // the logs (and rows, if another writer won the race)
  }

  /** A stored chunk's bytes: from its chunk log (checked against the digest its site signed), or from its row. */
  private chunkBytes(c: ChunkRow): Uint8Array {
    if (c.logFile === null) return new Uint8Array(c.ct.buffer, c.ct.byteOffset, c.ct.byteLength);
    const bytes = this.ctx.sums.readLog(c.logFile, c.logOffset!, c.logLength!);
    if (sha256Hex(bytes) !== c.digest) throw new Error(`chunk ${c.index} of ${c.siteId} (round ${c.round}) in ${c.logFile} does not match its digest: the chunk log is damaged`);
    return bytes;
  }

  /** Deletes a round's chunk rows and logs once its sums are written. */
  private deleteChunkRows(studyId: string, round: number): void {
    if (this.ctx.store.chunkSites(studyId, round).length)
      this.ctx.store.transaction((tx) => {
        if (tx.accumulatorCount(studyId, round) > 0 || tx.round(studyId, round)?.state !== 'open') tx.deleteChunks(studyId, round);
      });
    if (this.ctx.store.chunkSites(studyId, round).length === 0) this.ctx.sums.removeLogs(studyId, round);
  }

  /**
   * At start: chunk logs and rows a crash left behind (of rounds that failed or closed, or whose
   * sums were written) are deleted; those of a round still in its upload phase, or whose sums are
   * pending, stay (they are its record).
   */
  sweepChunks(): void {
    // A database from before the aggregation workers keeps a running sum row per index during the
    // upload phase; its chunk rows hold every byte, so the sums are rebuilt from those instead.
    for (const st of this.ctx.store.studies('running')) {
      const r = this.openRound(st);
      if (r?.phase === 'upload' && this.ctx.store.accumulatorCount(st.studyId, r.round) > 0) {
        this.ctx.store.deleteAccumulators(st.studyId, r.round);
        this.ctx.log('info', `${st.studyId}: round ${r.round}'s running sums of an earlier version dropped; they will be rebuilt from its stored chunks`);
      }
    }
    const live = (studyId: string, round: number) => {
      const r = this.ctx.store.round(studyId, round);
      return !!r && r.state === 'open' && (r.phase === 'upload' || ((r.phase === 'consistency' || r.phase === 'unmask') && this.ctx.store.accumulatorCount(studyId, round) === 0));
    };
    for (const { studyId, round } of this.ctx.store.chunkRounds()) if (!live(studyId, round)) this.ctx.store.deleteChunks(studyId, round);
    for (const f of this.ctx.sums.logFiles()) {
      const r = SumPool.logRound(f)!;
      if (!live(r.studyId, r.round)) this.ctx.sums.removeLogs(r.studyId, r.round);
    }
  }

  // ---------------------------------------------------------------- pruning

  /**
   * Deletes the ciphertexts of aggregates older than the catch-up window (the last catchUpRounds
   * closed rounds of the study keep theirs), in the transaction that closes a round: a crash leaves
   * either the old state or the closed round with its window, never a half-pruned one. Each pruned
   * round keeps its row (digest, size, contributors, pruning time), its mask set-ups, survivor
   * signatures and reveals (small next to the aggregate).
   */
  private pruneTx(tx: Tx, st: StudyRow, now: number): void {
    const keep = this.ctx.opts.catchUpRounds;
    const old = tx.rounds(st.studyId, 'closed').slice(0, -keep);
    const pruned: number[] = [];
    for (const r of old) {
      if (r.aggregatePrunedAtMs !== null) continue;
      // A round closed before digests were recorded gets its digest now, before its bytes go.
      const legacy = r.aggregateDigest === null ? this.aggregateBody(tx, st, manifestOfRow(st), r) : null;
      tx.deleteAccumulators(st.studyId, r.round);
      tx.updateRound(st.studyId, r.round, { aggregatePrunedAtMs: now, ...(legacy ? { aggregateDigest: sha256Hex(legacy.body), aggregateBytes: legacy.body.length } : {}) });
      pruned.push(r.round);
    }
    if (pruned.length) this.ctx.log('info', `${st.studyId}: pruned the aggregates of round(s) ${pruned.join(',')} (catch-up window ${keep} rounds; digests kept)`);
  }

  private reclaimSpace(): void {
    try {
      this.ctx.store.reclaimSpace();
    } catch (e) {
      // Only disk space is at stake: the pages stay free and are reused by later rows.
      this.ctx.log('warn', `reclaiming free pages: ${(e as Error).message}`);
    }
  }

  // -------------------------------------------------------------- publishing

  /** The aggregate info (first frame) of a closed round. */
  aggregateInfo(st: StudyRow, m: StudyManifest, r: RoundRow, store: CoordinatorStore = this.ctx.store): AggregateInfoT {
    const keySet = parseList(r.keySetJson);
    const setups = store.roundSiteRows('maskSetups', st.studyId, r.round);
    const reveals = store.roundSiteRows('maskReveals', st.studyId, r.round);
    return AggregateInfo.parse({
      round: r.round,
      baseVersion: r.baseVersion,
      keyEpoch: r.keyEpoch,
      length: m.updateLength,
      totalSamples: r.totalSamples,
      threshold: r.threshold,
      keySet: keySet.map((id) => {
        const s = setups.find((x) => x.siteId === id)!;
        return { siteId: id, sPk: s.sPk, bCommit: s.bCommit, signature: s.signature };
      }),
      survivors: parseList(r.survivorsJson),
      reveals: reveals.map((x) => ({ siteId: x.siteId, ...(JSON.parse(x.bodyJson) as BodyOf['mask.unmask']) })),
      heParamsDigest: heParamsDigest(m.encryption as HeParams),
    });
  }

  /** The round.aggregate body of a closed round (info frame, then its ciphertexts); null when its ciphertexts are not all there (pruned). */
  private aggregateBody(store: CoordinatorStore, st: StudyRow, m: StudyManifest, r: RoundRow): { body: Uint8Array; count: number; infoBytes: number } | null {
    const sizes = store.accumulatorSizes(st.studyId, r.round);
    if (sizes.length === 0 || sizes.length !== r.ciphertexts) return null;
    const info = utf8(canonicalJson(this.aggregateInfo(st, m, r, store)));
    // packFrames([info, ...sums]) (protocols/src/messages.ts), filled one sum at a time: holding
    // every row and then the packed copy doubled the coordinator's memory at close (160 MB each
    // at 10M parameters).
    const body = new Uint8Array(4 + 4 + info.length + sizes.reduce((a, x) => a + 4 + x.bytes, 0));
    const dv = new DataView(body.buffer);
    dv.setUint32(0, 1 + sizes.length, true);
    dv.setUint32(4, info.length, true);
    body.set(info, 8);
    let o = 8 + info.length;
    for (const { index, bytes } of sizes) {
      const ct = store.accumulator(st.studyId, r.round, index)!.ct;
      if (ct.length !== bytes) throw new Error(`accumulator ${index} of round ${r.round} changed while it was read`);
      dv.setUint32(o, bytes, true);
      body.set(ct, o + 4);
      o += 4 + bytes;
    }
    return { body, count: sizes.length, infoBytes: info.length };
  }

  publish(studyId: string, round: number, to: string[]): void {
    if (to.length === 0) return;
    const st = studyRow(this.ctx.store, studyId);
    const m = manifestOfRow(st);
    const r = this.ctx.store.round(studyId, round)!;
    const cached = this.published?.studyId === studyId && this.published.round === round ? this.published : null;
    const agg = cached ?? this.aggregateBody(this.ctx.store, st, m, r);
    if (!agg) {
      this.ctx.log(
        'error',
        `${studyId}: aggregate of round ${round} is ${r.aggregatePrunedAtMs !== null ? 'pruned (outside the catch-up window)' : `incomplete (${r.ciphertexts} ciphertexts expected)`}`,
      );
      return;
    }
    // One SHA-256 of the body for every recipient (160 MB at 10M parameters: hashing it per site took seconds).
    const digest = cached?.digest ?? sha256Hex(agg.body);
    this.ctx.sendMany(to.map((siteId) => ({ siteId, type: 'round.aggregate' as const, studyId, round, body: agg.body, meta: { count: agg.count, infoBytes: agg.infoBytes }, digest })));
  }

  /**
   * aggregate.request: every closed round from `fromRound` on whose key the site holds, in order.
   * Refused with TWF_E_AGGREGATE_PRUNED when one of them is older than the catch-up window: the
   * site could not rebuild the model without it, so none is sent.
   */
  onAggregateRequest(env: Envelope, isJoined: boolean): HandlerResult {
    const h = env.header;
    const b: BodyOf['aggregate.request'] = decodeBody(env, 'aggregate.request');
    const st = studyRow(this.ctx.store, requireStudyId(h.studyId));
    if (!isJoined) throw new WireError('TWF_E_NOT_PARTICIPANT', `${h.senderId} has not joined ${st.studyId}`);
    const all = this.ctx.store.rounds(st.studyId, 'closed');
    const pruned = all.filter((r) => r.round >= b.fromRound && r.aggregatePrunedAtMs !== null);
    if (pruned.length) {
      const kept = all.find((r) => r.aggregatePrunedAtMs === null);
      throw new WireError(
        'TWF_E_AGGREGATE_PRUNED',
        `${st.studyId}: asked from round ${b.fromRound}; the aggregates of ${pruned.length} closed round(s) up to round ${pruned.at(-1)!.round} are pruned (catch-up window ${
          this.ctx.opts.catchUpRounds
        } rounds${kept ? `; the oldest kept is round ${kept.round}` : ''}): this site cannot rebuild the current model and sits the study out`,
      );
    }
    const entry = this.received(env);
    const epochs = this.keys.epochsOf(st.studyId, h.senderId);
    const closed = all.filter((r) => r.round >= b.fromRound && epochs.has(r.keyEpoch));
    for (const r of closed) this.publish(st.studyId, r.round, [h.senderId]);
    return { entry, info: { sent: closed.map((r) => r.round) } };
  }

  // ------------------------------------------------------------ reconnection

  /** Re-sends what a participant of the open round needs after (re)connecting. */
  sync(st: StudyRow, siteId: string): void {
    const r = this.openRound(st);
    if (!r || !parseList(r.participantsJson).includes(siteId)) return;
    const has = (t: 'maskSignatures' | 'maskReveals') => !!this.ctx.store.roundSiteRow(t, st.studyId, r.round, siteId);
    this.sendStart(st.studyId, r, [siteId]);
    if (r.phase === 'upload' && parseList(r.keySetJson).includes(siteId)) {
      const up = this.ctx.store.update(st.studyId, r.round, siteId);
      if (up?.state !== 'complete') this.sendPeers(st, r, [siteId]);
    }
    if (r.phase === 'consistency' && parseList(r.survivorsJson).includes(siteId) && !has('maskSignatures')) {
      this.ctx.send(siteId, 'mask.survivors', st.studyId, r.round, { keySet: parseList(r.keySetJson), survivors: parseList(r.survivorsJson) });
    }
    if (r.phase === 'unmask' && parseList(r.revealersJson).includes(siteId) && !has('maskReveals')) {
      const sigs = this.ctx.store.roundSiteRows('maskSignatures', st.studyId, r.round);
      this.ctx.send(siteId, 'mask.reveal', st.studyId, r.round, {
        keySet: parseList(r.keySetJson),
        survivors: parseList(r.survivorsJson),
        signatures: sigs.map((x) => ({ siteId: x.siteId, signature: x.signature })),
      });
    }
  }

  /** Round summaries for the lead. */
  summaries(studyId: string) {
    return this.ctx.store.rounds(studyId);
  }
}
