import { and, asc, eq, gte } from 'drizzle-orm';
import { randomBytes, randomUUID } from 'node:crypto';
import {
  PROTOCOL_VERSION, StudyManifestSchema, WireError, isCompatibleVersion, isWireErrorCode, manifestHash, packFrames, sha256Hex,
  type Ack, type CoordinatorMessageType, type Envelope, type StudyManifest, type StudySpec, type UpdateChunkMetaT,
} from '@twinfed/protocols';
import { AuditLog } from '@twinfed/shared/audit/index';
import {
  decodeBody, decodeMeta, fromB64, parseEnvelope, sealEnvelope, toB64, verifyEnvelope, type Identity, type Signer,
} from '@twinfed/shared/crypto/index';
import {
  DEFAULT_HE_PARAMS, addCiphertexts, createHeContext, heParamsDigest, subtractCiphertext, validateCiphertext,
  type HeParams,
} from '@twinfed/shared/he/index';
import type { CoordinatorDb } from './db/index.js';
import {
  accumulators, enrolmentTokens, meta, rounds, siteMetrics, sites, studies, studySites, updateChunks, updates,
} from './db/schema.js';
import type { CoordinatorMetrics } from './metrics.js';

/** How the engine reaches connected sites; the socket.io layer implements it. */
export interface SiteTransport {
  send(siteId: string, env: Envelope): boolean;
  isConnected(siteId: string): boolean;
}

export interface EngineOptions {
  clockSkewMs: number;
  /** A round opens only when no site joined in the last joinSettleMs (default 2000). */
  joinSettleMs?: number;
  now?: () => number;
  log?: (level: 'info' | 'warn' | 'error', msg: string) => void;
}

type StudyRow = typeof studies.$inferSelect;

/** Errors of the core (e.g. HeError TWF_E_BAD_CIPHERTEXT) keep their code on the wire when it is catalogued. */
function toWireError(e: unknown): WireError {
  if (e instanceof WireError) return e;
  const code = (e as { code?: unknown })?.code;
  const msg = e instanceof Error ? e.message : String(e);
  return typeof code === 'string' && isWireErrorCode(code) ? new WireError(code, msg) : new WireError('TWF_E_INTERNAL', msg);
}
type RoundRow = typeof rounds.$inferSelect;

/**
 * The coordinator's round state machine. Every state change is a SQLite
 * transaction, so a coordinator killed at any instant restarts into a
 * consistent state: each accepted chunk is in the running sum exactly once.
 * The engine holds no secret key: it validates, adds and relays ciphertexts.
 */
export class CoordinatorEngine {
  readonly coordinatorId: string;
  private transport: SiteTransport | null = null;
  private readonly authenticated = new Set<string>();
  /** When keys were last requested from the dealer, per study (throttles re-requests). */
  private readonly keysRequestedAt = new Map<string, { ids: string; atMs: number }>();
  private readonly now: () => number;
  private readonly signer: Signer;

  constructor(
    private readonly db: CoordinatorDb,
    readonly audit: AuditLog,
    readonly identity: Identity,
    private readonly metrics: CoordinatorMetrics,
    private readonly opts: EngineOptions,
  ) {
    this.coordinatorId = audit.ownerId;
    this.now = opts.now ?? Date.now;
    this.signer = { id: this.coordinatorId, ed25519SecretKey: identity.ed25519SecretKey, nextSeq: () => this.nextSeq() };
  }

  attach(t: SiteTransport): void {
    this.transport = t;
  }

  private log(level: 'info' | 'warn' | 'error', msg: string): void {
    this.opts.log?.(level, msg);
  }

  // ---------------------------------------------------------------- lead API

  createStudy(spec: StudySpec): { studyId: string; manifest: StudyManifest; manifestHash: string } {
    const studyId = `study-${randomUUID().slice(0, 8)}`;
    const manifest = StudyManifestSchema.parse({
      ...spec,
      studyId,
      encryption: spec.encryption ?? DEFAULT_HE_PARAMS,
      coordinatorId: this.coordinatorId,
      createdAt: new Date(this.now()).toISOString(),
    });
    const hash = manifestHash(manifest);
    this.db.transaction((tx) => {
      tx.insert(studies).values({ studyId, manifestJson: JSON.stringify(manifest), manifestHash: hash, state: 'draft', createdAtMs: this.now() }).run();
      this.audit.append({ actor: 'lead', action: 'study.created', studyId, digest: hash, detail: manifest.title });
    });
    return { studyId, manifest, manifestHash: hash };
  }

  issueEnrolmentToken(siteName: string, expiresInS: number): { token: string; siteName: string; expiresAt: string } {
    const token = randomBytes(24).toString('base64url');
    const expiresAtMs = this.now() + expiresInS * 1000;
    this.db.transaction((tx) => {
      tx.insert(enrolmentTokens).values({ tokenHash: sha256Hex(token), siteName, expiresAtMs }).run();
      this.audit.append({ actor: 'lead', action: 'enrolment.token_issued', detail: siteName });
    });
    return { token, siteName, expiresAt: new Date(expiresAtMs).toISOString() };
  }

  /** Registers a site's public keys against a one-time token. */
  enrol(req: { token: string; protocolVersion: string; ed25519PublicKey: string; x25519PublicKey: string }) {
    if (!isCompatibleVersion(req.protocolVersion)) {
      this.audit.append({ actor: 'unknown', action: 'enrolment.refused', detail: `TWF_E_PROTOCOL_VERSION: ${req.protocolVersion}` });
      throw new WireError('TWF_E_PROTOCOL_VERSION', `site speaks ${req.protocolVersion}, coordinator ${PROTOCOL_VERSION}`);
    }
    for (const k of [req.ed25519PublicKey, req.x25519PublicKey]) {
      if (fromB64(k).length !== 32) throw new WireError('TWF_E_BAD_REQUEST', 'public keys must be 32 bytes, base64');
    }
    return this.db.transaction((tx) => {
      const tok = tx.select().from(enrolmentTokens).where(eq(enrolmentTokens.tokenHash, sha256Hex(req.token))).get();
      if (!tok || tok.usedAtMs !== null || tok.expiresAtMs < this.now()) {
        this.audit.append({ actor: 'unknown', action: 'enrolment.refused', detail: 'TWF_E_ENROLMENT_TOKEN: unknown, used or expired' });
        throw new WireError('TWF_E_ENROLMENT_TOKEN', !tok ? 'unknown token' : tok.usedAtMs !== null ? 'already used' : 'expired');
      }
      const siteId = `site-${randomUUID().slice(0, 8)}`;
      tx.insert(sites).values({ siteId, siteName: tok.siteName, ed25519PublicKey: req.ed25519PublicKey, x25519PublicKey: req.x25519PublicKey, enrolledAtMs: this.now() }).run();
      tx.update(enrolmentTokens).set({ usedAtMs: this.now(), siteId }).where(eq(enrolmentTokens.tokenHash, tok.tokenHash)).run();
      this.audit.append({ actor: siteId, action: 'site.enrolled', digest: sha256Hex(req.ed25519PublicKey + req.x25519PublicKey), detail: tok.siteName });
      return { siteId, siteName: tok.siteName, coordinatorId: this.coordinatorId, coordinatorPublicKey: toB64(this.identity.ed25519PublicKey), protocolVersion: PROTOCOL_VERSION };
    });
  }

  listSites() {
    return this.db.select().from(sites).orderBy(asc(sites.enrolledAtMs)).all().map((s) => ({
      siteId: s.siteId,
      siteName: s.siteName,
      enrolledAt: new Date(s.enrolledAtMs).toISOString(),
      connected: this.transport?.isConnected(s.siteId) ?? false,
      lastSeenAt: s.lastSeenAtMs === null ? null : new Date(s.lastSeenAtMs).toISOString(),
      ed25519PublicKey: s.ed25519PublicKey,
    }));
  }

  startStudy(studyId: string): void {
    const st = this.study(studyId);
    if (st.state !== 'draft' && st.state !== 'stopped') throw new WireError('TWF_E_STUDY_STATE', `study is ${st.state}`);
    this.db.transaction((tx) => {
      tx.update(studies).set({ state: 'running' }).where(eq(studies.studyId, studyId)).run();
      this.audit.append({ actor: 'lead', action: 'study.started', studyId, digest: st.manifestHash });
    });
    for (const siteId of this.connectedSites()) this.announce(studyId, siteId);
    this.advance(studyId);
  }

  stopStudy(studyId: string): void {
    const st = this.study(studyId);
    if (st.state !== 'running') throw new WireError('TWF_E_STUDY_STATE', `study is ${st.state}`);
    this.db.transaction((tx) => {
      tx.update(studies).set({ state: 'stopped' }).where(eq(studies.studyId, studyId)).run();
      this.audit.append({ actor: 'lead', action: 'study.stopped', studyId, round: st.currentRound });
    });
  }

  listStudies() {
    return this.db.select().from(studies).orderBy(asc(studies.createdAtMs)).all().map((s) => ({ studyId: s.studyId, state: s.state, currentRound: s.currentRound, manifestHash: s.manifestHash, title: (JSON.parse(s.manifestJson) as StudyManifest).title }));
  }

  manifestOf(studyId: string): { manifest: StudyManifest; manifestHash: string } {
    const st = this.study(studyId);
    return { manifest: StudyManifestSchema.parse(JSON.parse(st.manifestJson)), manifestHash: st.manifestHash };
  }

  studyStatus(studyId: string) {
    const st = this.study(studyId);
    const m = this.manifestOf(studyId).manifest;
    const joined = this.db.select().from(studySites).where(eq(studySites.studyId, studyId)).all();
    const rs = this.db.select().from(rounds).where(eq(rounds.studyId, studyId)).orderBy(asc(rounds.round)).all();
    return {
      studyId,
      title: m.title,
      state: st.state as 'draft' | 'running' | 'completed' | 'stopped',
      manifestHash: st.manifestHash,
      currentRound: st.currentRound,
      rounds: m.rounds,
      joined: joined.map((j) => j.siteId),
      keyDealer: st.keyDealer,
      roundSummaries: rs.map((r) => this.roundSummary(r)),
      baselineMetrics: this.metricsOf(studyId, 0),
    };
  }

  roundStatus(studyId: string, round: number) {
    const r = this.db.select().from(rounds).where(and(eq(rounds.studyId, studyId), eq(rounds.round, round))).get();
    if (!r) throw new WireError('TWF_E_NOT_FOUND', `study ${studyId} has no round ${round}`);
    return this.roundSummary(r);
  }

  private roundSummary(r: RoundRow) {
    const ups = this.db.select().from(updates).where(and(eq(updates.studyId, r.studyId), eq(updates.round, r.round))).all();
    const completed = ups.filter((u) => u.state === 'complete').map((u) => u.siteId);
    const participants = JSON.parse(r.participantsJson) as string[];
    const metrics = this.metricsOf(r.studyId, r.round);
    return {
      round: r.round,
      state: r.state as 'open' | 'closed' | 'failed',
      openedAt: new Date(r.openedAtMs).toISOString(),
      closedAt: r.closedAtMs === null ? null : new Date(r.closedAtMs).toISOString(),
      deadlineAt: new Date(r.deadlineAtMs).toISOString(),
      participants,
      completed,
      stragglers: participants.filter((p) => !completed.includes(p)),
      totalSamples: r.totalSamples,
      bytesIn: r.bytesIn,
      aggregateMs: r.aggregateMs,
      metrics,
    };
  }

  /** Per-site evaluation of the global model after `round` aggregates (0 = initial model). */
  private metricsOf(studyId: string, round: number) {
    return this.db.select().from(siteMetrics).where(and(eq(siteMetrics.studyId, studyId), eq(siteMetrics.round, round))).orderBy(asc(siteMetrics.siteId)).all()
      .map((x) => ({ siteId: x.siteId, meanDice: x.meanDice, valPatients: x.valPatients, encryptMs: x.encryptMs, uploadBytes: x.uploadBytes }));
  }

  // ------------------------------------------------------------ connections

  /** Called by the socket layer before accepting a connection. */
  checkHandshake(siteId: string, protocolVersion: string): void {
    if (!isCompatibleVersion(protocolVersion)) {
      this.audit.append({ actor: siteId, action: 'connect.refused', detail: `TWF_E_PROTOCOL_VERSION: site=${protocolVersion} coordinator=${PROTOCOL_VERSION}` });
      this.metrics.messagesRejected.inc({ code: 'TWF_E_PROTOCOL_VERSION' });
      throw new WireError('TWF_E_PROTOCOL_VERSION', `site speaks ${protocolVersion}, coordinator ${PROTOCOL_VERSION}`);
    }
    if (!this.site(siteId)) {
      this.audit.append({ actor: siteId, action: 'connect.refused', detail: 'TWF_E_UNKNOWN_SITE: not enrolled' });
      this.metrics.messagesRejected.inc({ code: 'TWF_E_UNKNOWN_SITE' });
      throw new WireError('TWF_E_UNKNOWN_SITE', siteId);
    }
  }

  onDisconnect(siteId: string): void {
    this.authenticated.delete(siteId);
    this.audit.append({ actor: siteId, action: 'site.disconnected' });
  }

  private connectedSites(): string[] {
    return [...this.authenticated].filter((s) => this.transport?.isConnected(s));
  }

  // --------------------------------------------------------- site messages

  /**
   * Handles one envelope from a connected site. Every outcome is audited:
   * accepted messages as msg.received, refusals as msg.rejected with their code.
   */
  async handle(connSiteId: string, raw: unknown): Promise<Ack> {
    let env: Envelope | null = null;
    let sigOk = false;
    try {
      env = parseEnvelope(raw);
      const h = env.header;
      if (h.senderId !== connSiteId) throw new WireError('TWF_E_UNKNOWN_SITE', `envelope sender ${h.senderId} on the connection of ${connSiteId}`);
      const site = this.site(h.senderId);
      if (!site) throw new WireError('TWF_E_UNKNOWN_SITE', h.senderId);
      verifyEnvelope(env, fromB64(site.ed25519PublicKey));
      sigOk = true;
      if (!isCompatibleVersion(h.v)) throw new WireError('TWF_E_PROTOCOL_VERSION', h.v);
      if (h.seq <= site.lastSeq) throw new WireError('TWF_E_REPLAY', `seq ${h.seq} <= last accepted ${site.lastSeq}`);
      // Advance the sequence number first: a replay of this message is a replay even if it is refused below.
      this.db.update(sites).set({ lastSeq: h.seq, lastSeenAtMs: this.now() }).where(eq(sites.siteId, h.senderId)).run();
      if (Math.abs(h.tsMs - this.now()) > this.opts.clockSkewMs) throw new WireError('TWF_E_STALE_MESSAGE', `timestamp ${new Date(h.tsMs).toISOString()}`);
      if (h.type !== 'hello' && !this.authenticated.has(h.senderId)) throw new WireError('TWF_E_HELLO_FIRST', h.type);
      let info: Record<string, unknown> | undefined;
      switch (h.type) {
        case 'hello': info = this.onHello(env); break;
        case 'study.join': info = this.onJoin(env); break;
        case 'study.decline': this.received(env, 'decline recorded'); break;
        case 'keys.sealed': info = this.onKeysSealed(env); break;
        case 'update.chunk': info = await this.onChunk(env); break;
        case 'metrics.report': info = this.onMetrics(env); break;
        case 'aggregate.request': info = this.onAggregateRequest(env); break;
        default: throw new WireError('TWF_E_MALFORMED', `${h.type} is not a site message`);
      }
      this.metrics.messagesAccepted.inc({ type: h.type });
      this.metrics.bytesIn.inc(env.body.length);
      return info ? { ok: true, info } : { ok: true };
    } catch (e) {
      const err = toWireError(e);
      if (err.code === 'TWF_E_INTERNAL') this.log('error', `internal error handling a message from ${connSiteId}: ${(e as Error).stack ?? e}`);
      const h = env?.header;
      this.audit.append({
        actor: h?.senderId ?? connSiteId,
        action: 'msg.rejected',
        msgType: h?.type ?? null,
        // Only a verified sequence number is attributable to the sender.
        seq: sigOk ? h?.seq ?? null : null,
        studyId: h?.studyId ?? null,
        round: h?.round ?? null,
        digest: h?.digest ?? null,
        sizeBytes: env?.body.length ?? null,
        detail: `${err.code}: ${err.detail}`,
      });
      this.metrics.messagesRejected.inc({ code: err.code });
      if (sigOk && h) this.sendTo(h.senderId, 'reject', h.studyId, h.round, { code: err.code, detail: err.detail, refType: h.type, refSeq: h.seq });
      return { ok: false, code: err.code, detail: err.detail };
    }
  }

  private received(env: Envelope, detail?: string): void {
    const h = env.header;
    this.audit.append({ actor: h.senderId, action: 'msg.received', peer: this.coordinatorId, msgType: h.type, seq: h.seq, studyId: h.studyId, round: h.round, digest: h.digest, sizeBytes: env.body.length, detail: detail ?? null });
  }

  private onHello(env: Envelope) {
    const body = decodeBody(env, 'hello');
    const siteId = env.header.senderId;
    this.authenticated.add(siteId);
    this.received(env, `backend=${body.backend}`);
    const site = this.site(siteId)!;
    this.sendTo(siteId, 'welcome', null, null, { coordinatorId: this.coordinatorId, protocolVersion: PROTOCOL_VERSION, serverTimeMs: this.now(), lastSeqSeen: site.lastSeq });
    for (const st of this.db.select().from(studies).where(eq(studies.state, 'running')).all()) {
      this.announce(st.studyId, siteId);
      // A site that joined before (e.g. before a coordinator restart) picks up where it was.
      if (this.isJoined(st.studyId, siteId)) this.syncSite(st.studyId, siteId);
    }
    return { authenticated: true };
  }

  private announce(studyId: string, siteId: string): void {
    const { manifest, manifestHash: hash } = this.manifestOf(studyId);
    const st = this.study(studyId);
    this.sendTo(siteId, 'study.announce', studyId, null, { manifest, manifestHash: hash, status: st.state });
  }

  private onJoin(env: Envelope) {
    const h = env.header;
    const body = decodeBody(env, 'study.join');
    const st = this.requireStudy(h.studyId);
    if (st.state !== 'running') throw new WireError('TWF_E_STUDY_STATE', `study ${st.studyId} is ${st.state}`);
    if (body.manifestHash !== st.manifestHash) throw new WireError('TWF_E_MANIFEST_MISMATCH', `site approved ${body.manifestHash.slice(0, 12)}, study is ${st.manifestHash.slice(0, 12)}`);
    this.db.transaction((tx) => {
      tx.insert(studySites).values({ studyId: st.studyId, siteId: h.senderId, manifestHash: body.manifestHash, joinedAtMs: this.now() }).onConflictDoNothing().run();
      this.received(env, `trainSlices=${body.trainSlices} valPatients=${body.valPatients}`);
    });
    this.advance(st.studyId);
    this.syncSite(st.studyId, h.senderId);
    return { joined: true };
  }

  private onKeysSealed(env: Envelope) {
    const h = env.header;
    const body = decodeBody(env, 'keys.sealed');
    const st = this.requireStudy(h.studyId);
    if (st.keyDealer !== h.senderId) throw new WireError('TWF_E_NOT_PARTICIPANT', `${h.senderId} is not the key dealer of ${st.studyId}`);
    const params = this.manifestOf(st.studyId).manifest.encryption;
    if (body.heParamsDigest !== heParamsDigest(params as HeParams)) throw new WireError('TWF_E_UPDATE_SHAPE', 'sealed key is for other encryption parameters');
    const joined = new Set(this.joinedSites(st.studyId));
    this.db.transaction((tx) => {
      for (const r of body.recipients) {
        if (!joined.has(r.siteId)) continue; // only participants of this study receive key material
        tx.update(studySites).set({ sealedKey: r.sealedKey }).where(and(eq(studySites.studyId, st.studyId), eq(studySites.siteId, r.siteId))).run();
      }
      this.received(env, `sealed for ${body.recipients.map((r) => r.siteId).join(',')}`);
    });
    for (const r of body.recipients) if (joined.has(r.siteId)) this.syncSite(st.studyId, r.siteId);
    this.advance(st.studyId);
    return { stored: body.recipients.length };
  }

  private async onChunk(env: Envelope) {
    const h = env.header;
    const m = decodeMeta<UpdateChunkMetaT>(env);
    const st = this.requireStudy(h.studyId);
    const manifest = this.manifestOf(st.studyId).manifest;
    if (!this.isKeyed(st.studyId, h.senderId)) throw new WireError('TWF_E_NOT_PARTICIPANT', `${h.senderId} has not joined ${st.studyId}`);
    if (h.round === null) throw new WireError('TWF_E_WRONG_ROUND', 'update without a round');
    const round = this.roundRow(st.studyId, h.round);
    if (round && round.state !== 'open') throw new WireError('TWF_E_ROUND_CLOSED', `round ${h.round} is ${round.state}`);
    if (!round || st.state !== 'running' || h.round !== st.currentRound) throw new WireError('TWF_E_WRONG_ROUND', `round ${h.round}; open round is ${st.state === 'running' ? st.currentRound : 'none'}`);
    if (this.now() > round.deadlineAtMs && this.completedCount(st.studyId, h.round) >= manifest.minSites) {
      // Past the deadline with quorum: the round closes now; this update is late.
      await this.tryClose(st.studyId);
      throw new WireError('TWF_E_ROUND_CLOSED', `round ${h.round} passed its deadline`);
    }
    const params = manifest.encryption as HeParams;
    if (m.heParamsDigest !== heParamsDigest(params)) throw new WireError('TWF_E_UPDATE_SHAPE', 'ciphertext for other encryption parameters');
    const ctx = await createHeContext(params);
    const expectedCount = Math.ceil(m.length / ctx.slotCount);
    if (m.count !== expectedCount) throw new WireError('TWF_E_UPDATE_SHAPE', `count ${m.count} for length ${m.length}; expected ${expectedCount}`);
    if (m.index >= m.count) throw new WireError('TWF_E_UPDATE_SHAPE', `chunk ${m.index} of ${m.count}`);
    if (round.length !== null && round.length !== m.length) throw new WireError('TWF_E_UPDATE_SHAPE', `length ${m.length}; this round's updates have ${round.length}`);
    validateCiphertext(ctx, env.body); // throws TWF_E_BAD_CIPHERTEXT

    // One transaction: chunk stored, added into the running sum, update progress,
    // audit entry. A crash leaves either all of it or none of it.
    const t0 = performance.now();
    const result = this.db.transaction((tx) => {
      const key = and(eq(updates.studyId, st.studyId), eq(updates.round, h.round!), eq(updates.siteId, h.senderId));
      let up = tx.select().from(updates).where(key).get();
      if (up && up.state !== 'receiving') throw new WireError('TWF_E_DUPLICATE_CHUNK', `update of ${h.senderId} for round ${h.round} is ${up.state}`);
      if (up && (up.count !== m.count || up.nSamples !== m.nSamples || up.length !== m.length)) throw new WireError('TWF_E_UPDATE_SHAPE', 'chunk metadata differs from earlier chunks of this update');
      const dup = tx.select({ i: updateChunks.index }).from(updateChunks).where(and(eq(updateChunks.studyId, st.studyId), eq(updateChunks.round, h.round!), eq(updateChunks.siteId, h.senderId), eq(updateChunks.index, m.index))).get();
      if (dup) throw new WireError('TWF_E_DUPLICATE_CHUNK', `chunk ${m.index} of round ${h.round}`);
      if (!up) {
        tx.insert(updates).values({ studyId: st.studyId, round: h.round!, siteId: h.senderId, state: 'receiving', count: m.count, nSamples: m.nSamples, length: m.length, startedAtMs: this.now() }).run();
        up = tx.select().from(updates).where(key).get()!;
      }
      tx.insert(updateChunks).values({ studyId: st.studyId, round: h.round!, siteId: h.senderId, index: m.index, ct: Buffer.from(env.body), digest: h.digest }).run();
      const accKey = and(eq(accumulators.studyId, st.studyId), eq(accumulators.round, h.round!), eq(accumulators.index, m.index));
      const acc = tx.select().from(accumulators).where(accKey).get();
      const sum = addCiphertexts(ctx, acc ? new Uint8Array(acc.ct) : null, env.body);
      if (acc) tx.update(accumulators).set({ ct: Buffer.from(sum), contributions: acc.contributions + 1 }).where(accKey).run();
      else tx.insert(accumulators).values({ studyId: st.studyId, round: h.round!, index: m.index, ct: Buffer.from(sum), contributions: 1 }).run();
      const receivedNow = up.received + 1;
      const complete = receivedNow === up.count;
      tx.update(updates).set({ received: receivedNow, bytes: up.bytes + env.body.length, state: complete ? 'complete' : 'receiving', completedAtMs: complete ? this.now() : null }).where(key).run();
      const ms = performance.now() - t0;
      tx.update(rounds).set({ bytesIn: round.bytesIn + env.body.length, aggregateMs: round.aggregateMs + ms, length: m.length, ciphertexts: m.count })
        .where(and(eq(rounds.studyId, st.studyId), eq(rounds.round, h.round!))).run();
      this.received(env, `chunk ${m.index + 1}/${m.count} n=${m.nSamples}${complete ? ' complete' : ''}`);
      return { complete, received: receivedNow, count: up.count, ms };
    });
    this.metrics.aggregationSeconds.observe(result.ms / 1000);
    if (result.complete) {
      this.metrics.updatesAccepted.inc();
      this.audit.append({ actor: h.senderId, action: 'update.accepted', studyId: st.studyId, round: h.round, detail: `n=${m.nSamples} chunks=${m.count}` });
      await this.tryClose(st.studyId);
    }
    return { received: result.received, count: result.count, complete: result.complete };
  }

  private onMetrics(env: Envelope) {
    const h = env.header;
    const b = decodeBody(env, 'metrics.report');
    const st = this.requireStudy(h.studyId);
    if (!this.isJoined(st.studyId, h.senderId)) throw new WireError('TWF_E_NOT_PARTICIPANT', `${h.senderId} has not joined ${st.studyId}`);
    this.db.transaction((tx) => {
      tx.insert(siteMetrics).values({ studyId: st.studyId, round: b.evaluatedRound, siteId: h.senderId, meanDice: b.meanDice, valPatients: b.valPatients, trainLoss: b.trainLoss, trainMs: b.trainMs, encryptMs: b.encryptMs, uploadBytes: b.uploadBytes, reportedAtMs: this.now() })
        .onConflictDoUpdate({ target: [siteMetrics.studyId, siteMetrics.round, siteMetrics.siteId], set: { meanDice: b.meanDice, valPatients: b.valPatients, trainLoss: b.trainLoss, trainMs: b.trainMs, encryptMs: b.encryptMs, uploadBytes: b.uploadBytes, reportedAtMs: this.now() } }).run();
      const task = b.metricName ? ` ${b.metricName}=${b.metricValue === null || b.metricValue === undefined ? 'suppressed' : b.metricValue.toFixed(4)}` : '';
      this.received(env, `dice=${b.meanDice === null ? 'suppressed' : b.meanDice.toFixed(4)}${task} round=${b.evaluatedRound}`);
    });
    return { stored: true };
  }

  private onAggregateRequest(env: Envelope) {
    const h = env.header;
    const b = decodeBody(env, 'aggregate.request');
    const st = this.requireStudy(h.studyId);
    if (!this.isKeyed(st.studyId, h.senderId)) throw new WireError('TWF_E_NOT_PARTICIPANT', `${h.senderId} has not joined ${st.studyId}`);
    this.received(env);
    const closed = this.db.select().from(rounds).where(and(eq(rounds.studyId, st.studyId), gte(rounds.round, b.fromRound), eq(rounds.state, 'closed'))).orderBy(asc(rounds.round)).all();
    for (const r of closed) this.publishAggregate(st.studyId, r.round, [h.senderId]);
    return { sent: closed.map((r) => r.round) };
  }

  // ----------------------------------------------------- state transitions

  /** Moves a running study forward: key set-up, opening and closing rounds. */
  advance(...studyIds: string[]): void {
    for (const id of studyIds) this.advanceOne(id);
  }

  private advanceOne(studyId: string): void {
    const st = this.study(studyId);
    if (st.state !== 'running') return;
    const manifest = this.manifestOf(studyId).manifest;
    const joined = this.joinedSites(studyId);
    // Key set-up: the first connected joined site deals the secret key.
    if (!st.keyDealer) {
      const dealer = joined.find((s) => this.transport?.isConnected(s) && this.authenticated.has(s));
      if (!dealer) return;
      this.db.transaction((tx) => {
        tx.update(studies).set({ keyDealer: dealer }).where(eq(studies.studyId, studyId)).run();
        this.audit.append({ actor: this.coordinatorId, action: 'keys.dealer_chosen', studyId, peer: dealer });
      });
      this.requestKeys(studyId);
      return;
    }
    this.requestKeys(studyId);
    if (st.currentRound === 0 || this.roundRow(studyId, st.currentRound)?.state === 'closed') {
      if (st.currentRound >= manifest.rounds) return this.complete(studyId);
      const keyed = joined.filter((s) => this.isKeyed(studyId, s));
      // Open when quorum holds, every joined site has its key, and no site
      // joined in the last few seconds: sites approved together start together.
      const lastJoinMs = Math.max(0, ...this.db.select({ t: studySites.joinedAtMs }).from(studySites).where(eq(studySites.studyId, studyId)).all().map((r) => r.t));
      const settled = this.now() - lastJoinMs >= (this.opts.joinSettleMs ?? 2000);
      if (keyed.length >= manifest.minSites && keyed.length === joined.length && settled) this.openRound(studyId, st.currentRound + 1, keyed, manifest);
    } else {
      void this.tryClose(studyId).catch((e) => this.log('error', `${studyId}: closing round: ${(e as Error).stack ?? e}`));
    }
  }

  /** Asks the dealer to seal the study key for joined sites that lack it. */
  private requestKeys(studyId: string): void {
    const st = this.study(studyId);
    if (!st.keyDealer || !this.transport?.isConnected(st.keyDealer) || !this.authenticated.has(st.keyDealer)) return;
    const pending = this.db.select().from(studySites).where(eq(studySites.studyId, studyId)).all().filter((r) => r.sealedKey === null && r.siteId !== st.keyDealer);
    const dealerRow = this.db.select().from(studySites).where(and(eq(studySites.studyId, studyId), eq(studySites.siteId, st.keyDealer))).get();
    if (pending.length === 0 && dealerRow?.sealedKey) return;
    const ids = [...pending.map((p) => p.siteId), ...(dealerRow?.sealedKey ? [] : [st.keyDealer])];
    // Ask again for the same recipients only after a pause (the dealer may be busy training).
    const last = this.keysRequestedAt.get(studyId);
    if (last && last.ids === ids.join(',') && this.now() - last.atMs < 5000) return;
    this.keysRequestedAt.set(studyId, { ids: ids.join(','), atMs: this.now() });
    const recipients = ids.map((siteId) => ({ siteId, x25519PublicKey: this.site(siteId)!.x25519PublicKey }));
    this.sendTo(st.keyDealer, 'keys.request', studyId, null, { encryption: this.manifestOf(studyId).manifest.encryption, recipients });
  }

  private openRound(studyId: string, round: number, participants: string[], manifest: StudyManifest): void {
    const deadlineAtMs = this.now() + manifest.roundDeadlineS * 1000;
    this.db.transaction((tx) => {
      tx.insert(rounds).values({ studyId, round, state: 'open', openedAtMs: this.now(), deadlineAtMs, participantsJson: JSON.stringify(participants) }).run();
      tx.update(studies).set({ currentRound: round }).where(eq(studies.studyId, studyId)).run();
      this.audit.append({ actor: this.coordinatorId, action: 'round.opened', studyId, round, detail: `participants=${participants.join(',')}` });
    });
    this.metrics.roundsOpened.inc();
    this.metrics.currentRound.set({ study: studyId }, round);
    this.log('info', `${studyId}: round ${round} opened with ${participants.length} sites`);
    for (const s of participants) this.syncSite(studyId, s);
  }

  /** Closes the open round if every participant is done, or the deadline passed with quorum. */
  async tryClose(studyId: string): Promise<void> {
    const manifest = this.manifestOf(studyId).manifest;
    // Loaded before any check: everything after this await runs without interleaving.
    const ctx = await createHeContext(manifest.encryption as HeParams);
    const st = this.study(studyId);
    if (st.state !== 'running') return;
    const round = this.roundRow(studyId, st.currentRound);
    if (!round || round.state !== 'open') return;
    const participants = JSON.parse(round.participantsJson) as string[];
    const ups = this.db.select().from(updates).where(and(eq(updates.studyId, studyId), eq(updates.round, round.round))).all();
    const complete = ups.filter((u) => u.state === 'complete');
    const allDone = participants.every((p) => complete.some((u) => u.siteId === p));
    const deadlinePassed = this.now() >= round.deadlineAtMs;
    if (!(allDone || (deadlinePassed && complete.length >= manifest.minSites))) return;
    if (complete.length < manifest.minSites) return;
    const partial = ups.filter((u) => u.state === 'receiving');
    {
      this.db.transaction((tx) => {
        // Remove abandoned partial uploads from the running sums: late updates are refused, not mixed.
        for (const u of partial) {
          const chunks = tx.select().from(updateChunks).where(and(eq(updateChunks.studyId, studyId), eq(updateChunks.round, round.round), eq(updateChunks.siteId, u.siteId))).all();
          for (const c of chunks) {
            const accKey = and(eq(accumulators.studyId, studyId), eq(accumulators.round, round.round), eq(accumulators.index, c.index));
            const acc = tx.select().from(accumulators).where(accKey).get()!;
            if (acc.contributions === 1) tx.delete(accumulators).where(accKey).run();
            else tx.update(accumulators).set({ ct: Buffer.from(subtractCiphertext(ctx, new Uint8Array(acc.ct), new Uint8Array(c.ct))), contributions: acc.contributions - 1 }).where(accKey).run();
          }
          tx.update(updates).set({ state: 'abandoned' }).where(and(eq(updates.studyId, studyId), eq(updates.round, round.round), eq(updates.siteId, u.siteId))).run();
          this.audit.append({ actor: this.coordinatorId, action: 'update.abandoned', studyId, round: round.round, peer: u.siteId, detail: `${u.received}/${u.count} chunks removed from the aggregate` });
        }
        tx.delete(updateChunks).where(and(eq(updateChunks.studyId, studyId), eq(updateChunks.round, round.round))).run();
        const totalSamples = complete.reduce((s, u) => s + u.nSamples, 0);
        tx.update(rounds).set({ state: 'closed', closedAtMs: this.now(), totalSamples, contributorsJson: JSON.stringify(complete.map((u) => u.siteId)) })
          .where(and(eq(rounds.studyId, studyId), eq(rounds.round, round.round))).run();
        this.audit.append({ actor: this.coordinatorId, action: 'round.closed', studyId, round: round.round, detail: `contributors=${complete.map((u) => u.siteId).join(',')} totalSamples=${totalSamples}${deadlinePassed && !allDone ? ' (deadline, quorum met)' : ''}` });
      });
      this.metrics.roundsClosed.inc();
      this.metrics.updatesAbandoned.inc(partial.length);
      this.log('info', `${studyId}: round ${round.round} closed with ${complete.length} updates`);
      this.publishAggregate(studyId, round.round, this.joinedSites(studyId).filter((s) => this.isKeyed(studyId, s)));
      this.advance(studyId);
    }
  }

  private complete(studyId: string): void {
    const st = this.study(studyId);
    this.db.transaction((tx) => {
      tx.update(studies).set({ state: 'completed' }).where(eq(studies.studyId, studyId)).run();
      this.audit.append({ actor: this.coordinatorId, action: 'study.completed', studyId, round: st.currentRound });
    });
    for (const s of this.joinedSites(studyId)) this.sendTo(s, 'study.completed', studyId, null, { rounds: st.currentRound });
  }

  private publishAggregate(studyId: string, round: number, to: string[]): void {
    const r = this.roundRow(studyId, round)!;
    const accs = this.db.select().from(accumulators).where(and(eq(accumulators.studyId, studyId), eq(accumulators.round, round))).orderBy(asc(accumulators.index)).all();
    if (accs.length !== r.ciphertexts) {
      this.log('error', `${studyId}: aggregate of round ${round} has ${accs.length}/${r.ciphertexts} ciphertexts`);
      return;
    }
    const body = packFrames(accs.map((a) => new Uint8Array(a.ct)));
    const contributors = JSON.parse(r.contributorsJson ?? '[]') as string[];
    const params = this.manifestOf(studyId).manifest.encryption as HeParams;
    for (const s of to) {
      this.sendTo(s, 'round.aggregate', studyId, round, body, { count: accs.length, length: r.length!, totalSamples: r.totalSamples, sites: contributors.join(','), heParamsDigest: heParamsDigest(params) });
    }
  }

  /** Brings one site up to date with a study: its key, and the open round. */
  private syncSite(studyId: string, siteId: string): void {
    if (!this.transport?.isConnected(siteId) || !this.authenticated.has(siteId)) return;
    const st = this.study(studyId);
    const ss = this.db.select().from(studySites).where(and(eq(studySites.studyId, studyId), eq(studySites.siteId, siteId))).get();
    if (!ss) return;
    if (ss.sealedKey && st.keyDealer) {
      const params = this.manifestOf(studyId).manifest.encryption as HeParams;
      this.sendTo(siteId, 'keys.deliver', studyId, null, { dealerSiteId: st.keyDealer, sealedKey: ss.sealedKey, heParamsDigest: heParamsDigest(params) });
      if (ss.keyDeliveredAtMs === null) this.db.update(studySites).set({ keyDeliveredAtMs: this.now() }).where(and(eq(studySites.studyId, studyId), eq(studySites.siteId, siteId))).run();
    }
    if (st.state === 'completed') {
      this.sendTo(siteId, 'study.completed', studyId, null, { rounds: st.currentRound });
      return;
    }
    const round = this.roundRow(studyId, st.currentRound);
    if (st.state !== 'running' || !round || round.state !== 'open') return;
    const participants = JSON.parse(round.participantsJson) as string[];
    if (!participants.includes(siteId)) return;
    const up = this.db.select().from(updates).where(and(eq(updates.studyId, studyId), eq(updates.round, round.round), eq(updates.siteId, siteId))).get();
    if (up?.state === 'complete') return;
    const have = this.db.select({ i: updateChunks.index }).from(updateChunks).where(and(eq(updateChunks.studyId, studyId), eq(updateChunks.round, round.round), eq(updateChunks.siteId, siteId))).all().map((r) => r.i);
    this.sendTo(siteId, 'round.start', studyId, round.round, { deadlineMs: round.deadlineAtMs, modelVersion: round.round - 1, participants, alreadyReceived: have });
  }

  /** Periodic check of deadlines (and anything a restart left pending). */
  tick(): void {
    for (const st of this.db.select().from(studies).where(eq(studies.state, 'running')).all()) {
      try {
        this.advance(st.studyId);
      } catch (e) {
        this.log('error', `${st.studyId}: ${(e as Error).stack ?? e}`);
      }
    }
  }

  // ---------------------------------------------------------------- helpers

  private sendTo(siteId: string, type: CoordinatorMessageType, studyId: string | null, round: number | null, body: unknown, meta?: Record<string, string | number | boolean>): void {
    if (!this.transport?.isConnected(siteId)) return;
    const env = sealEnvelope(this.signer, { type, studyId, round, body, ...(meta ? { meta } : {}), nowMs: this.now() });
    this.audit.append({ actor: this.coordinatorId, action: 'msg.sent', peer: siteId, msgType: type, seq: env.header.seq, studyId, round, digest: env.header.digest, sizeBytes: env.body.length });
    if (this.transport.send(siteId, env)) this.metrics.bytesOut.inc(env.body.length);
  }

  private nextSeq(): number {
    return this.db.transaction((tx) => {
      const row = tx.select().from(meta).where(eq(meta.key, 'seq')).get();
      const next = (row ? Number(row.value) : 0) + 1;
      tx.insert(meta).values({ key: 'seq', value: String(next) }).onConflictDoUpdate({ target: meta.key, set: { value: String(next) } }).run();
      return next;
    });
  }


  private site(siteId: string) {
    return this.db.select().from(sites).where(eq(sites.siteId, siteId)).get();
  }

  private study(studyId: string): StudyRow {
    const st = this.db.select().from(studies).where(eq(studies.studyId, studyId)).get();
    if (!st) throw new WireError('TWF_E_UNKNOWN_STUDY', studyId);
    return st;
  }

  private requireStudy(studyId: string | null): StudyRow {
    if (!studyId) throw new WireError('TWF_E_MALFORMED', 'studyId missing');
    return this.study(studyId);
  }

  private roundRow(studyId: string, round: number): RoundRow | undefined {
    return this.db.select().from(rounds).where(and(eq(rounds.studyId, studyId), eq(rounds.round, round))).get();
  }

  private joinedSites(studyId: string): string[] {
    return this.db.select().from(studySites).where(eq(studySites.studyId, studyId)).orderBy(asc(studySites.joinedAtMs)).all().map((r) => r.siteId);
  }

  private isJoined(studyId: string, siteId: string): boolean {
    return !!this.db.select().from(studySites).where(and(eq(studySites.studyId, studyId), eq(studySites.siteId, siteId))).get();
  }

  private isKeyed(studyId: string, siteId: string): boolean {
    const r = this.db.select().from(studySites).where(and(eq(studySites.studyId, studyId), eq(studySites.siteId, siteId))).get();
    return !!r && r.sealedKey !== null;
  }

  private completedCount(studyId: string, round: number): number {
    return this.db.select().from(updates).where(and(eq(updates.studyId, studyId), eq(updates.round, round), eq(updates.state, 'complete'))).all().length;
  }
}
