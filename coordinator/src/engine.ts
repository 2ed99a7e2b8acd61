import { and, asc, eq } from 'drizzle-orm';
import { randomBytes, randomUUID } from 'node:crypto';
import {
  CHECKPOINT_KIND, HANDSHAKE_KIND, RECEIPT_KIND, checkpointFields, receiptFields, HandshakeAuthSchema, MIN_CONTRIBUTORS, PROTOCOL_VERSION, StudyDraftSchema, StudyManifestSchema, StudySpecSchema,
  WireError, handshakeFields, isCompatibleVersion, isWireErrorCode, manifestHash, secaggThresholdFor, sha256Hex,
  type Ack, type CoordinatorMessageType, type Envelope, type RosterEntry, type StudyDraft, type StudyManifest,
} from '@twinfed/protocols';
import type { AuditEntry, AuditLog } from '@twinfed/shared/audit/index';
import {
  decodeBody, fromB64, siteFingerprint, parseEnvelope, sealEnvelope, signStatement, toB64, verifyEnvelope, verifyStatement,
  type Identity, type Signer,
} from '@twinfed/shared/crypto/index';
import { DEFAULT_HE_PARAMS, checkHeParams, maxTotalSamples, type HeParams } from '@twinfed/shared/he/index';
import { updateLength } from '@twinfed/shared/model/update-length';
import {
  activeJoined, draftOfRow, manifestOfRow, parseList, requireStudyId, roundRow, siteRow, studyRow, studySiteRows,
  type EngineContext, type EngineOptions, type HandlerResult, type Meta, type StudyRow,
} from './context.js';
import type { CoordinatorDb } from './db/index.js';
import { aggregateRefusals, enrolmentTokens, meta, siteMetrics, sites, studies, studySites } from './db/schema.js';
import { StudyKeys } from './keys.js';
import type { CoordinatorMetrics } from './metrics.js';
import { RateLimiter } from './rate-limit.js';
import { Rounds } from './rounds.js';
import { tlsRolloverBody } from './tls.js';

export type { EngineOptions } from './context.js';

/** How the engine reaches connected sites; the socket.io layer implements it. */
export interface SiteTransport {
  send(siteId: string, env: Envelope): boolean;
  isConnected(siteId: string): boolean;
  /** Closes the site's connection (revoked, rate-limited). */
  disconnect(siteId: string): void;
}

/**
 * Errors of the core keep their code on the wire when it is catalogued. Internal errors never
 * leave the process with their message: the peer gets a reference to the log line.
 */
function toWireError(e: unknown): WireError {
  if (e instanceof WireError) return e;
  const code = (e as { code?: unknown })?.code;
  const msg = e instanceof Error ? e.message : String(e);
  return typeof code === 'string' && isWireErrorCode(code) && code !== 'TWF_E_INTERNAL' ? new WireError(code, msg) : new WireError('TWF_E_INTERNAL', '');
}

/** Handshake nonces live this long (ms); a site asks for one right before it connects. */
const NONCE_TTL_MS = 60_000;
const MAX_NONCES = 10_000;

/**
 * The coordinator: lead API, connections, and one handler per site message type. Round life
 * cycle in rounds.ts (+ the pure round-policy.ts), study-key epochs in keys.ts. Every state change
 * is a SQLite transaction that re-reads what it depends on, so a coordinator killed at any instant
 * restarts consistent. The engine holds no secret key: it validates, adds and relays ciphertexts.
 */
export class CoordinatorEngine {
  readonly coordinatorId: string;
  private transport: SiteTransport | null = null;
  /** Sites whose authenticated connection said hello. */
  private readonly ready = new Set<string>();
  private readonly nonces = new Map<string, { siteId: string; expiresAtMs: number }>();
  /** Coalescing windows of audited enrolment refusals (see auditEnrolmentRefusal). */
  private readonly enrolmentRefusals = new Map<string, { windowStartMs: number; suppressed: number }>();
  /** Per-site budget of refused messages: a site that keeps sending refused messages is disconnected. */
  private readonly refusals: RateLimiter;
  private readonly signer: Signer;
  private readonly ctx: EngineContext;
  readonly keys: StudyKeys;
  readonly rounds: Rounds;
  private readonly stepping = new Map<string, Promise<void>>();
  private readonly now: () => number;
  private readonly tlsRollover: EngineOptions['tlsRollover'];

  constructor(
    private readonly db: CoordinatorDb,
    readonly audit: AuditLog,
    readonly identity: Identity,
    private readonly metrics: CoordinatorMetrics,
    opts: EngineOptions,
  ) {
    this.coordinatorId = audit.ownerId;
    this.now = opts.now ?? Date.now;
    this.tlsRollover = opts.tlsRollover;
    this.signer = { id: this.coordinatorId, ed25519SecretKey: identity.ed25519SecretKey, nextSeq: () => this.nextSeq() };
    this.refusals = new RateLimiter(60, 1, this.now);
    const options = {
      clockSkewMs: opts.clockSkewMs,
      joinSettleMs: opts.joinSettleMs ?? 2000,
      phaseTimeoutMs: opts.phaseTimeoutMs ?? 120_000,
      quorumGraceMs: opts.quorumGraceMs ?? 60_000,
      dealerTimeoutMs: opts.dealerTimeoutMs ?? 30_000,
    };
    this.ctx = {
      db, audit, metrics, coordinatorId: this.coordinatorId, opts: options,
      now: this.now,
      log: (level, msg) => opts.log?.(level, msg),
      send: (siteId, type, studyId, round, body, m) => this.sendTo(siteId, type, studyId, round, body, m),
      online: (siteId) => this.isOnline(siteId),
      checkpoint: (studyId) => this.sendCheckpoint(studyId),
    };
    const received = (env: Envelope, detail?: string) => this.received(env, detail);
    this.keys = new StudyKeys(this.ctx, received);
    this.rounds = new Rounds(this.ctx, this.keys, received);
  }

  attach(t: SiteTransport): void {
    this.transport = t;
  }

  private log(level: 'info' | 'warn' | 'error', msg: string): void {
    this.ctx.log(level, msg);
  }

  private isOnline(siteId: string): boolean {
    return this.ready.has(siteId) && (this.transport?.isConnected(siteId) ?? false);
  }

  // ---------------------------------------------------------------- lead API

  /**
   * Creates a draft study from a lead's spec. minSites below 3 is refused with
   * TWF_E_TOO_FEW_CONTRIBUTORS: with two contributors each learns the other's update.
   */
  createStudy(spec: unknown): { studyId: string; draft: StudyDraft } {
    const ms = (spec as { minSites?: unknown } | null)?.minSites;
    if (typeof ms === 'number' && ms < MIN_CONTRIBUTORS) {
      throw new WireError('TWF_E_TOO_FEW_CONTRIBUTORS', `minSites ${ms}: at least ${MIN_CONTRIBUTORS} contributors are needed, or each could learn another's update from the aggregate`);
    }
    const p = StudySpecSchema.safeParse(spec);
    if (!p.success) throw new WireError('TWF_E_BAD_REQUEST', p.error.issues.slice(0, 5).map((i) => `${i.path.join('.') || '(body)'}: ${i.message}`).join('; '));
    const encryption = (p.data.encryption ?? DEFAULT_HE_PARAMS) as HeParams;
    try {
      checkHeParams(encryption);
    } catch (e) {
      throw new WireError('TWF_E_BAD_REQUEST', `encryption: ${(e as Error).message}`);
    }
    if (encryption.plainModulusBits > 50) throw new WireError('TWF_E_BAD_REQUEST', 'encryption.plainModulusBits: secure aggregation computes masks mod t exactly in float64; at most 50 bits');
    const studyId = `study-${randomUUID().slice(0, 8)}`;
    const draft = StudyDraftSchema.parse({
      ...p.data, studyId, encryption, coordinatorId: this.coordinatorId, createdAt: new Date(this.now()).toISOString(),
      updateLength: updateLength(p.data.model), secureAggregation: 'double-mask-v1',
    });
    this.db.transaction((tx) => {
      tx.insert(studies).values({ studyId, manifestJson: JSON.stringify(draft), manifestHash: '', state: 'draft', createdAtMs: this.now() }).run();
      this.audit.append({ actor: 'lead', action: 'study.created', studyId, digest: sha256Hex(JSON.stringify(draft)), detail: draft.title });
    });
    return { studyId, draft };
  }

  /** Checks a roster against the study's settings; returns its entries (keys from enrolment). */
  private buildRoster(draft: StudyDraft, siteIds: string[], keyDealers: string[]): { participants: RosterEntry[]; keyDealers: string[] } {
    if (new Set(siteIds).size !== siteIds.length) throw new WireError('TWF_E_BAD_REQUEST', 'a site is listed twice in the roster');
    const participants = siteIds.map((id) => {
      const s = siteRow(this.db, id);
      if (!s) throw new WireError('TWF_E_UNKNOWN_SITE', `${id} is not enrolled`);
      if (s.revokedAtMs !== null) throw new WireError('TWF_E_SITE_REVOKED', `${id} was revoked`);
      return { siteId: s.siteId, siteName: s.siteName, ed25519PublicKey: s.ed25519PublicKey, x25519PublicKey: s.x25519PublicKey };
    });
    const n = participants.length;
    if (n < MIN_CONTRIBUTORS) throw new WireError('TWF_E_TOO_FEW_CONTRIBUTORS', `the roster has ${n} sites; at least ${MIN_CONTRIBUTORS}`);
    if (n > 255) throw new WireError('TWF_E_BAD_REQUEST', `the roster has ${n} sites; secure aggregation shares secrets among at most 255`);
    if (draft.minSites > n) throw new WireError('TWF_E_TOO_FEW_CONTRIBUTORS', `minSites ${draft.minSites} is more than the ${n} sites of the roster`);
    const t = secaggThresholdFor(n);
    if (draft.minSites < t) throw new WireError('TWF_E_TOO_FEW_CONTRIBUTORS', `minSites ${draft.minSites} is below the secure-aggregation threshold t = ${t} of a ${n}-site roster (a majority, at least 3): raise minSites to ${t}`);
    const maxTotal = maxTotalSamples(draft.encryption as HeParams);
    if (n * draft.training.maxSamplesPerSite > maxTotal) {
      throw new WireError('TWF_E_BAD_REQUEST', `training.maxSamplesPerSite ${draft.training.maxSamplesPerSite} × ${n} sites exceeds ${maxTotal}, the most samples one encrypted sum can hold; lower it to ${Math.floor(maxTotal / n)}`);
    }
    for (const d of keyDealers) if (!siteIds.includes(d)) throw new WireError('TWF_E_BAD_REQUEST', `key dealer ${d} is not in the roster`);
    return { participants, keyDealers };
  }

  /**
   * Starts a draft: writes the roster (participants with their public keys, key-dealer order)
   * into the manifest the officers approve, then announces it to the roster only. A stopped
   * study resumes with its manifest unchanged.
   */
  startStudy(studyId: string, req: { sites?: string[]; keyDealers?: string[] } = {}): void {
    const st = studyRow(this.db, studyId);
    if (st.state === 'stopped') {
      this.db.transaction((tx) => {
        tx.update(studies).set({ state: 'running' }).where(eq(studies.studyId, studyId)).run();
        this.audit.append({ actor: 'lead', action: 'study.resumed', studyId, digest: st.manifestHash });
      });
      this.broadcastState(studyId, 'running');
      this.announceToRoster(studyId);
      void this.advance(studyId);
      return;
    }
    if (st.state !== 'draft') throw new WireError('TWF_E_STUDY_STATE', `study is ${st.state}`);
    const draft = draftOfRow(st);
    const siteIds = req.sites ?? this.db.select().from(sites).orderBy(asc(sites.enrolledAtMs)).all().filter((s) => s.revokedAtMs === null).map((s) => s.siteId);
    const roster = this.buildRoster(draft, siteIds, req.keyDealers ?? siteIds);
    const manifest = StudyManifestSchema.parse({ ...draft, manifestVersion: 1, ...roster });
    const hash = manifestHash(manifest);
    this.db.transaction((tx) => {
      const again = tx.select().from(studies).where(eq(studies.studyId, studyId)).get()!;
      if (again.state !== 'draft') throw new WireError('TWF_E_STUDY_STATE', `study is ${again.state}`);
      tx.update(studies).set({ state: 'running', manifestJson: JSON.stringify(manifest), manifestHash: hash }).where(eq(studies.studyId, studyId)).run();
      for (const p of roster.participants) tx.insert(studySites).values({ studyId, siteId: p.siteId, manifestHash: '' }).onConflictDoNothing().run();
      this.audit.append({ actor: 'lead', action: 'study.started', studyId, digest: hash, detail: `roster ${roster.participants.map((p) => `${p.siteId}=${siteFingerprint(p.ed25519PublicKey, p.x25519PublicKey)}`).join(',')}; dealers ${roster.keyDealers.join(',')}` });
    });
    this.announceToRoster(studyId);
    void this.advance(studyId);
  }

  /**
   * A new manifest version with sites added or removed. Every officer must approve it again
   * (until then no site is joined with it); the open round fails; a new study key is dealt.
   */
  changeRoster(studyId: string, req: { add?: string[]; remove?: string[] }): void {
    const st = studyRow(this.db, studyId);
    if (st.state !== 'running' && st.state !== 'stopped') throw new WireError('TWF_E_STUDY_STATE', `study is ${st.state}`);
    const m = manifestOfRow(st);
    const remove = new Set(req.remove ?? []);
    for (const r of remove) if (!m.participants.some((p) => p.siteId === r)) throw new WireError('TWF_E_BAD_REQUEST', `${r} is not in the roster`);
    const ids = [...m.participants.map((p) => p.siteId).filter((id) => !remove.has(id)), ...(req.add ?? []).filter((id) => !m.participants.some((p) => p.siteId === id))];
    const dealers = [...m.keyDealers.filter((d) => ids.includes(d)), ...ids.filter((id) => !m.keyDealers.includes(id))];
    const { manifestVersion: _v, participants: _p, keyDealers: _k, ...draftPart } = m;
    const roster = this.buildRoster(StudyDraftSchema.parse(draftPart), ids, dealers);
    const next = StudyManifestSchema.parse({ ...draftPart, manifestVersion: m.manifestVersion + 1, ...roster });
    const hash = manifestHash(next);
    const open = this.rounds.openRound(st);
    if (open) this.rounds.fail(studyId, open.round, `aborted: the roster changed (manifest version ${next.manifestVersion})`);
    this.db.transaction((tx) => {
      tx.update(studies).set({ manifestJson: JSON.stringify(next), manifestHash: hash }).where(eq(studies.studyId, studyId)).run();
      for (const p of roster.participants) tx.insert(studySites).values({ studyId, siteId: p.siteId, manifestHash: '' }).onConflictDoNothing().run();
      for (const r of remove) tx.update(studySites).set({ excluded: 'removed', excludedAtMs: this.now() }).where(and(eq(studySites.studyId, studyId), eq(studySites.siteId, r))).run();
      this.audit.append({ actor: 'lead', action: 'study.roster_changed', studyId, digest: hash, detail: `version ${next.manifestVersion}: added ${(req.add ?? []).join(',') || 'none'}, removed ${[...remove].join(',') || 'none'}; new approvals needed` });
    });
    this.announceToRoster(studyId);
    void this.advance(studyId);
  }

  stopStudy(studyId: string): void {
    const st = studyRow(this.db, studyId);
    if (st.state !== 'running') throw new WireError('TWF_E_STUDY_STATE', `study is ${st.state}`);
    const open = this.rounds.openRound(st);
    if (open) this.rounds.fail(studyId, open.round, 'the lead stopped the study');
    this.db.transaction((tx) => {
      tx.update(studies).set({ state: 'stopped' }).where(eq(studies.studyId, studyId)).run();
      this.audit.append({ actor: 'lead', action: 'study.stopped', studyId, round: st.currentRound });
    });
    this.broadcastState(studyId, 'stopped');
  }

  /** Fails the open round (audited); the study opens a fresh one when sites are ready. */
  abortRound(studyId: string, reason = 'no reason given'): { round: number } {
    const st = studyRow(this.db, studyId);
    const open = this.rounds.openRound(st);
    if (!open) throw new WireError('TWF_E_STUDY_STATE', `${studyId} has no open round`);
    this.audit.append({ actor: 'lead', action: 'round.aborted', studyId, round: open.round, detail: reason });
    this.rounds.fail(studyId, open.round, `aborted by the lead: ${reason}`);
    void this.advance(studyId);
    return { round: open.round };
  }

  /** Excludes a roster site from later rounds and key epochs (a new key is dealt without it). */
  evictSite(studyId: string, siteId: string, reason = 'no reason given'): void {
    const st = studyRow(this.db, studyId);
    const row = this.db.select().from(studySites).where(and(eq(studySites.studyId, studyId), eq(studySites.siteId, siteId))).get();
    if (!row) throw new WireError('TWF_E_NOT_FOUND', `${siteId} is not in the roster of ${studyId}`);
    if (row.excluded) throw new WireError('TWF_E_STUDY_STATE', `${siteId} is already ${row.excluded}`);
    this.exclude(st, siteId, 'evicted', `by the lead: ${reason}`);
    void this.advance(studyId);
  }

  private exclude(st: StudyRow, siteId: string, how: 'evicted' | 'withdrawn' | 'revoked', detail: string): void {
    this.db.transaction((tx) => {
      tx.update(studySites).set({ excluded: how, excludedAtMs: this.now() }).where(and(eq(studySites.studyId, st.studyId), eq(studySites.siteId, siteId))).run();
      this.audit.append({ actor: this.coordinatorId, action: `site.${how}`, studyId: st.studyId, peer: siteId, detail });
    });
    if (st.state !== 'draft') this.sendTo(siteId, 'study.state', st.studyId, null, { manifestHash: st.manifestHash, state: 'excluded' });
  }

  /** Revokes a site's enrolment: its connection is closed, it cannot connect again, it leaves every study. */
  revokeSite(siteId: string, reason = 'no reason given'): void {
    const s = siteRow(this.db, siteId);
    if (!s) throw new WireError('TWF_E_NOT_FOUND', `${siteId} is not enrolled`);
    if (s.revokedAtMs !== null) throw new WireError('TWF_E_STUDY_STATE', `${siteId} is already revoked`);
    this.db.transaction((tx) => {
      tx.update(sites).set({ revokedAtMs: this.now() }).where(eq(sites.siteId, siteId)).run();
      this.audit.append({ actor: 'lead', action: 'site.revoked', peer: siteId, detail: reason });
    });
    for (const row of this.db.select().from(studySites).where(eq(studySites.siteId, siteId)).all()) {
      if (!row.excluded) this.exclude(studyRow(this.db, row.studyId), siteId, 'revoked', reason);
    }
    this.ready.delete(siteId);
    this.transport?.disconnect(siteId);
    for (const st of this.db.select().from(studies).where(eq(studies.state, 'running')).all()) void this.advance(st.studyId);
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

  /**
   * Writes an enrolment refusal to the audit log, coalesced: the first refusal of a kind (code and
   * reason, per issued token; all unknown tokens share one kind) in a minute is a row, the rest
   * are counted and summed into the next row of that kind. A stranger cannot grow the audit log
   * by one row per junk request, and every refusal is still accounted for (and in
   * twinfed_enrolments_refused_total).
   */
  private auditEnrolmentRefusal(err: WireError, tokenHash: string, issued: boolean): void {
    this.metrics.enrolmentsRefused.inc({ code: err.code });
    const key = `${err.code}:${err.detail}:${issued ? tokenHash : 'unknown'}`;
    const now = this.now();
    const w = this.enrolmentRefusals.get(key);
    if (w && now - w.windowStartMs < 60_000) {
      w.suppressed++;
      return;
    }
    const more = w?.suppressed ? ` (+${w.suppressed} more like it in the minute before, not written one by one)` : '';
    this.audit.append({ actor: 'unknown', action: 'enrolment.refused', digest: tokenHash, detail: `${err.code}: ${err.detail}${more}` });
    if (this.enrolmentRefusals.size >= 1000) this.enrolmentRefusals.delete(this.enrolmentRefusals.keys().next().value!);
    this.enrolmentRefusals.set(key, { windowStartMs: now, suppressed: 0 });
  }

  /** Registers a site's public keys against a one-time token. A refusal is audited (outside the refused transaction). */
  enrol(req: { token: string; protocolVersion: string; ed25519PublicKey: string; x25519PublicKey: string }) {
    let issued = false;
    const refuse = (err: WireError): never => {
      this.auditEnrolmentRefusal(err, sha256Hex(req.token), issued);
      throw err;
    };
    if (!isCompatibleVersion(req.protocolVersion)) refuse(new WireError('TWF_E_PROTOCOL_VERSION', `site speaks ${req.protocolVersion}, coordinator ${PROTOCOL_VERSION}`));
    for (const k of [req.ed25519PublicKey, req.x25519PublicKey]) {
      if (fromB64(k).length !== 32) refuse(new WireError('TWF_E_BAD_REQUEST', 'public keys must be 32 bytes, base64'));
    }
    let refusal: WireError | null = null;
    const r = this.db.transaction((tx) => {
      const tok = tx.select().from(enrolmentTokens).where(eq(enrolmentTokens.tokenHash, sha256Hex(req.token))).get();
      issued = !!tok;
      if (!tok || tok.usedAtMs !== null || tok.expiresAtMs < this.now()) {
        refusal = new WireError('TWF_E_ENROLMENT_TOKEN', !tok ? 'unknown token' : tok.usedAtMs !== null ? 'already used' : 'expired');
        return null;
      }
      const siteId = `site-${randomUUID().slice(0, 8)}`;
      tx.insert(sites).values({ siteId, siteName: tok.siteName, ed25519PublicKey: req.ed25519PublicKey, x25519PublicKey: req.x25519PublicKey, enrolledAtMs: this.now() }).run();
      tx.update(enrolmentTokens).set({ usedAtMs: this.now(), siteId }).where(eq(enrolmentTokens.tokenHash, tok.tokenHash)).run();
      this.audit.append({ actor: siteId, action: 'site.enrolled', digest: sha256Hex(req.ed25519PublicKey + req.x25519PublicKey), detail: tok.siteName });
      return { siteId, siteName: tok.siteName, coordinatorId: this.coordinatorId, coordinatorPublicKey: toB64(this.identity.ed25519PublicKey), protocolVersion: PROTOCOL_VERSION };
    });
    if (!r) return refuse(refusal!);
    return r;
  }

  listSites() {
    return this.db.select().from(sites).orderBy(asc(sites.enrolledAtMs)).all().map((s) => ({
      siteId: s.siteId,
      siteName: s.siteName,
      enrolledAt: new Date(s.enrolledAtMs).toISOString(),
      connected: this.isOnline(s.siteId),
      lastSeenAt: s.lastSeenAtMs === null ? null : new Date(s.lastSeenAtMs).toISOString(),
      revokedAt: s.revokedAtMs === null ? null : new Date(s.revokedAtMs).toISOString(),
      ed25519PublicKey: s.ed25519PublicKey,
      x25519PublicKey: s.x25519PublicKey,
      fingerprint: siteFingerprint(s.ed25519PublicKey, s.x25519PublicKey),
    }));
  }

  listStudies() {
    return this.db.select().from(studies).orderBy(asc(studies.createdAtMs)).all().map((s) => ({ studyId: s.studyId, state: s.state, currentRound: s.currentRound, manifestHash: s.manifestHash, title: (JSON.parse(s.manifestJson) as StudyDraft).title }));
  }

  /** The manifest (with its hash) of a started study, or the draft of one not started yet. */
  manifestOf(studyId: string): { manifest: StudyManifest | StudyDraft; manifestHash: string; draft: boolean } {
    const st = studyRow(this.db, studyId);
    return st.state === 'draft' ? { manifest: draftOfRow(st), manifestHash: '', draft: true } : { manifest: manifestOfRow(st), manifestHash: st.manifestHash, draft: false };
  }

  studyStatus(studyId: string) {
    const st = studyRow(this.db, studyId);
    const draft = st.state === 'draft';
    const m = draft ? null : manifestOfRow(st);
    const d = draft ? draftOfRow(st) : m!;
    const rows = studySiteRows(this.db, studyId);
    const joined = draft ? [] : activeJoined(this.db, st).map((r) => r.siteId);
    return {
      studyId,
      title: d.title,
      state: st.state as 'draft' | 'running' | 'completed' | 'stopped',
      manifestHash: st.manifestHash,
      manifestVersion: m?.manifestVersion ?? 0,
      currentRound: st.currentRound,
      closedRounds: this.rounds.closedCount(studyId),
      rounds: d.rounds,
      participants: (m?.participants ?? []).map((p) => {
        const r = rows.find((x) => x.siteId === p.siteId);
        return { siteId: p.siteId, siteName: p.siteName, fingerprint: siteFingerprint(p.ed25519PublicKey, p.x25519PublicKey), joined: joined.includes(p.siteId), connected: this.isOnline(p.siteId), excluded: r?.excluded ?? null };
      }),
      joined,
      keyEpoch: st.keyEpoch,
      keyDealer: st.keyDealer,
      roundSummaries: this.rounds.summaries(studyId).map((r) => this.roundSummary(r)),
      baselineMetrics: this.metricsOf(studyId, 0),
    };
  }

  roundStatus(studyId: string, round: number) {
    const r = roundRow(this.db, studyId, round);
    if (!r) throw new WireError('TWF_E_NOT_FOUND', `study ${studyId} has no round ${round}`);
    return this.roundSummary(r);
  }

  private roundSummary(r: ReturnType<Rounds['summaries']>[number]) {
    const participants = parseList(r.participantsJson);
    const survivors = parseList(r.survivorsJson);
    const completed = r.survivorsJson ? survivors : [];
    return {
      round: r.round,
      state: r.state as 'open' | 'closed' | 'failed' | 'refused',
      phase: r.state === 'open' ? r.phase : r.state,
      keyEpoch: r.keyEpoch,
      baseVersion: r.baseVersion,
      threshold: r.threshold,
      keySet: parseList(r.keySetJson),
      survivors,
      failReason: r.failReason,
      openedAt: new Date(r.openedAtMs).toISOString(),
      closedAt: r.closedAtMs === null ? null : new Date(r.closedAtMs).toISOString(),
      deadlineAt: new Date(r.deadlineAtMs).toISOString(),
      participants,
      completed,
      stragglers: participants.filter((p) => !completed.includes(p)),
      totalSamples: r.totalSamples,
      bytesIn: r.bytesIn,
      aggregateMs: r.aggregateMs,
      metrics: this.metricsOf(r.studyId, r.round),
    };
  }

  /** Per-site evaluation of the global model after `round` aggregates (0 = initial model). */
  private metricsOf(studyId: string, round: number) {
    return this.db.select().from(siteMetrics).where(and(eq(siteMetrics.studyId, studyId), eq(siteMetrics.round, round))).orderBy(asc(siteMetrics.siteId)).all()
      .map((x) => ({ siteId: x.siteId, meanDice: x.meanDice, valPatients: x.valPatients, encryptMs: x.encryptMs, uploadBytes: x.uploadBytes }));
  }

  // ------------------------------------------------------------ connections

  /** POST /api/handshake: a single-use nonce the site signs to open its socket. */
  issueChallenge(siteId: string): { nonce: string; coordinatorId: string; expiresAtMs: number; lastSeqSeen: number } {
    const now = this.now();
    if (this.nonces.size >= MAX_NONCES) for (const [k, v] of this.nonces) if (v.expiresAtMs < now || this.nonces.size >= MAX_NONCES) this.nonces.delete(k);
    const nonce = randomBytes(24).toString('base64url');
    const expiresAtMs = now + NONCE_TTL_MS;
    this.nonces.set(nonce, { siteId, expiresAtMs });
    return { nonce, coordinatorId: this.coordinatorId, expiresAtMs, lastSeqSeen: siteRow(this.db, siteId)?.lastSeq ?? 0 };
  }

  /**
   * Checks a socket handshake: protocol version, a fresh nonce of ours (single use), an enrolled,
   * non-revoked site, and its Ed25519 signature over { coordinatorId, siteId, nonce }. Returns
   * the site id. Refusals are counted in metrics, not written to the audit log row by row.
   */
  authenticateHandshake(auth: unknown): string {
    try {
      const p = HandshakeAuthSchema.safeParse(auth);
      if (!p.success) {
        const v = (auth as { protocolVersion?: unknown } | null)?.protocolVersion;
        if (typeof v === 'string' && !isCompatibleVersion(v)) throw new WireError('TWF_E_PROTOCOL_VERSION', `site speaks ${v}, coordinator ${PROTOCOL_VERSION}`);
        throw new WireError('TWF_E_HANDSHAKE', 'auth needs siteId, protocolVersion, nonce and signature');
      }
      const a = p.data;
      if (!isCompatibleVersion(a.protocolVersion)) throw new WireError('TWF_E_PROTOCOL_VERSION', `site speaks ${a.protocolVersion}, coordinator ${PROTOCOL_VERSION}`);
      const n = this.nonces.get(a.nonce);
      this.nonces.delete(a.nonce);
      if (!n || n.siteId !== a.siteId || n.expiresAtMs < this.now()) throw new WireError('TWF_E_HANDSHAKE', 'unknown, used or expired nonce');
      const site = siteRow(this.db, a.siteId);
      if (!site) throw new WireError('TWF_E_UNKNOWN_SITE', 'not enrolled');
      if (!verifyStatement(HANDSHAKE_KIND, handshakeFields({ coordinatorId: this.coordinatorId, siteId: a.siteId, nonce: a.nonce }), a.signature, fromB64(site.ed25519PublicKey))) {
        throw new WireError('TWF_E_HANDSHAKE', 'signature does not verify with the site\'s enrolled key');
      }
      if (site.revokedAtMs !== null) throw new WireError('TWF_E_SITE_REVOKED', a.siteId);
      return a.siteId;
    } catch (e) {
      const we = toWireError(e);
      this.metrics.connectionsRefused.inc({ code: we.code });
      throw we;
    }
  }

  onConnected(siteId: string): void {
    this.ready.delete(siteId); // a new connection says hello again
    this.metrics.connectedSites.set(this.ready.size);
  }

  /** The site's connection closed; `unattributable` = messages refused on it before their signature could be checked. */
  onDisconnect(siteId: string, unattributable = 0): void {
    this.ready.delete(siteId);
    this.metrics.connectedSites.set(this.ready.size);
    this.audit.append({ actor: siteId, action: 'site.disconnected', ...(unattributable ? { detail: `${unattributable} unattributable messages refused on this connection` } : {}) });
  }

  // --------------------------------------------------------- site messages

  /**
   * Handles one envelope from an authenticated connection. Accepted messages are audited as
   * msg.received and answered with a signed receipt naming that audit entry; refusals of
   * messages whose signature verified are audited as msg.rejected; the rest (malformed, bad
   * signature) are only counted. A site that keeps sending refused messages is disconnected.
   */
  async handle(connSiteId: string, raw: unknown): Promise<Ack & { unattributable?: boolean }> {
    let env: Envelope | null = null;
    let sigOk = false;
    try {
      env = parseEnvelope(raw);
      const h = env.header;
      if (h.senderId !== connSiteId) throw new WireError('TWF_E_UNKNOWN_SITE', `envelope sender ${h.senderId} on the connection of ${connSiteId}`);
      const site = siteRow(this.db, h.senderId);
      if (!site) throw new WireError('TWF_E_UNKNOWN_SITE', h.senderId);
      verifyEnvelope(env, fromB64(site.ed25519PublicKey));
      sigOk = true;
      if (site.revokedAtMs !== null) throw new WireError('TWF_E_SITE_REVOKED', h.senderId);
      if (h.to !== this.coordinatorId) throw new WireError('TWF_E_WRONG_RECIPIENT', `addressed to ${h.to}`);
      if (!isCompatibleVersion(h.v)) throw new WireError('TWF_E_PROTOCOL_VERSION', h.v);
      if (h.seq <= site.lastSeq) throw new WireError('TWF_E_REPLAY', `seq ${h.seq} <= last accepted ${site.lastSeq}`);
      // Advance the sequence number first: a replay of this message is a replay even if it is refused below.
      this.db.update(sites).set({ lastSeq: h.seq, lastSeenAtMs: this.now() }).where(eq(sites.siteId, h.senderId)).run();
      if (Math.abs(h.tsMs - this.now()) > this.ctx.opts.clockSkewMs) throw new WireError('TWF_E_STALE_MESSAGE', `timestamp ${new Date(h.tsMs).toISOString()}`);
      if (h.type !== 'hello' && !this.ready.has(h.senderId)) throw new WireError('TWF_E_HELLO_FIRST', h.type);
      const r = await this.dispatch(env);
      this.metrics.messagesAccepted.inc({ type: h.type });
      this.metrics.bytesIn.inc(env.body.length);
      const receipt = this.receipt(env, r.entry);
      return { ok: true, ...(r.info ? { info: r.info } : {}), receipt };
    } catch (e) {
      let err = toWireError(e);
      const h = env?.header;
      if (err.code === 'TWF_E_INTERNAL') {
        const ref = randomBytes(4).toString('hex');
        this.log('error', `internal error [${ref}] handling ${h?.type ?? 'a message'} from ${connSiteId}: ${(e as Error).stack ?? String(e)}`);
        err = new WireError('TWF_E_INTERNAL', `reference ${ref} in the coordinator log`);
      }
      this.metrics.messagesRejected.inc({ code: err.code });
      const overBudget = !this.refusals.take(connSiteId);
      if (sigOk && h) {
        this.audit.append({
          actor: h.senderId, action: 'msg.rejected', msgType: h.type, seq: h.seq, studyId: h.studyId, round: h.round,
          digest: h.digest, sizeBytes: env!.body.length, detail: `${err.code}: ${err.detail}`,
        });
        this.sendTo(h.senderId, 'reject', h.studyId, h.round, { code: err.code, detail: err.detail, refType: h.type, refSeq: h.seq });
      }
      if (overBudget) {
        this.audit.append({ actor: connSiteId, action: 'site.rate_limited', detail: 'too many refused messages; connection closed' });
        this.transport?.disconnect(connSiteId);
      }
      return { ok: false, code: err.code, detail: err.detail, ...(sigOk ? {} : { unattributable: true }) };
    }
  }

  private async dispatch(env: Envelope): Promise<HandlerResult> {
    const h = env.header;
    switch (h.type) {
      case 'hello': return this.onHello(env);
      case 'study.join': return this.onJoin(env);
      case 'study.decline': return { entry: this.received(env, `declined: ${decodeBody(env, 'study.decline').code}`) };
      case 'study.withdraw': return this.onWithdraw(env);
      case 'keys.sealed': {
        const r = this.keys.onSealed(env);
        void this.advance(h.studyId!);
        return r;
      }
      case 'mask.setup': return this.stepAfter(h.studyId!, this.rounds.onSetup(env));
      case 'update.chunk': {
        const r = await this.rounds.onChunk(env);
        if (r.complete) await this.advance(h.studyId!);
        return r;
      }
      case 'mask.consistency': return this.stepAfter(h.studyId!, this.rounds.onConsistency(env));
      case 'mask.unmask': return this.stepAfter(h.studyId!, this.rounds.onUnmask(env));
      case 'metrics.report': return this.onMetrics(env);
      case 'aggregate.request': return this.rounds.onAggregateRequest(env, this.isJoined(requireStudyId(h.studyId), h.senderId));
      case 'aggregate.refused': {
        const r = this.rounds.onRefused(env);
        void this.advance(h.studyId!);
        return r;
      }
      default: throw new WireError('TWF_E_MALFORMED', `${h.type} is not a site message`);
    }
  }

  private stepAfter(studyId: string, r: HandlerResult): HandlerResult {
    void this.advance(studyId);
    return r;
  }

  /** msg.received audit entry of an accepted message (returned for its receipt). */
  private received(env: Envelope, detail?: string): AuditEntry {
    const h = env.header;
    return this.audit.append({ actor: h.senderId, action: 'msg.received', peer: this.coordinatorId, msgType: h.type, seq: h.seq, studyId: h.studyId, round: h.round, digest: h.digest, sizeBytes: env.body.length, detail: detail ?? null });
  }

  private receipt(env: Envelope, entry: AuditEntry) {
    const h = env.header;
    const r = { coordinatorId: this.coordinatorId, siteId: h.senderId, seq: h.seq, msgType: h.type, studyId: h.studyId, round: h.round, digest: h.digest, entryId: entry.id, entryHash: entry.hash };
    return { entryId: entry.id, entryHash: entry.hash, signature: signStatement(RECEIPT_KIND, receiptFields(r), this.identity.ed25519SecretKey) };
  }

  private onHello(env: Envelope): HandlerResult {
    const body = decodeBody(env, 'hello');
    const siteId = env.header.senderId;
    this.ready.add(siteId);
    this.metrics.connectedSites.set(this.ready.size);
    const entry = this.received(env, `backend=${body.backend}`);
    const site = siteRow(this.db, siteId)!;
    this.sendTo(siteId, 'welcome', null, null, { coordinatorId: this.coordinatorId, protocolVersion: PROTOCOL_VERSION, serverTimeMs: this.now(), lastSeqSeen: site.lastSeq });
    // Before any study traffic, so a site that connects once during the renewal window learns the next key.
    if (this.tlsRollover) this.sendTo(siteId, 'tls.rollover', null, null, tlsRolloverBody(this.coordinatorId, this.tlsRollover, this.identity.ed25519SecretKey, this.now()));
    for (const row of this.db.select().from(studySites).where(eq(studySites.siteId, siteId)).all()) {
      const st = studyRow(this.db, row.studyId);
      if (st.state === 'draft' || row.excluded) continue;
      this.announce(st.studyId, siteId);
      this.syncSite(st.studyId, siteId);
    }
    for (const row of this.db.select().from(studySites).where(eq(studySites.siteId, siteId)).all()) void this.advance(row.studyId);
    return { entry, info: { authenticated: true } };
  }

  private announce(studyId: string, siteId: string): void {
    const st = studyRow(this.db, studyId);
    this.sendTo(siteId, 'study.announce', studyId, null, { manifest: manifestOfRow(st), manifestHash: st.manifestHash, status: st.state });
  }

  private announceToRoster(studyId: string): void {
    const st = studyRow(this.db, studyId);
    for (const p of manifestOfRow(st).participants) {
      const row = this.db.select().from(studySites).where(and(eq(studySites.studyId, studyId), eq(studySites.siteId, p.siteId))).get();
      if (row?.excluded) continue;
      this.announce(studyId, p.siteId);
    }
  }

  private broadcastState(studyId: string, state: 'running' | 'stopped' | 'completed' | 'excluded'): void {
    const st = studyRow(this.db, studyId);
    for (const r of studySiteRows(this.db, studyId)) if (!r.excluded) this.sendTo(r.siteId, 'study.state', studyId, null, { manifestHash: st.manifestHash, state });
  }

  /** study.join: only roster sites, with the current manifest hash their officer approved, while the study runs. */
  private onJoin(env: Envelope): HandlerResult {
    const h = env.header;
    const body = decodeBody(env, 'study.join');
    const st = studyRow(this.db, requireStudyId(h.studyId));
    if (st.state === 'draft') throw new WireError('TWF_E_UNKNOWN_STUDY', st.studyId);
    if (st.state !== 'running') throw new WireError('TWF_E_STUDY_STATE', `study ${st.studyId} is ${st.state}`);
    const m = manifestOfRow(st);
    if (!m.participants.some((p) => p.siteId === h.senderId)) throw new WireError('TWF_E_NOT_PARTICIPANT', `${h.senderId} is not in the roster the officers approved; the lead must add it (a new manifest version every officer approves again)`);
    const row = this.db.select().from(studySites).where(and(eq(studySites.studyId, st.studyId), eq(studySites.siteId, h.senderId))).get();
    if (row?.excluded) throw new WireError('TWF_E_EVICTED', `${h.senderId} is ${row.excluded} from ${st.studyId}`);
    if (body.manifestHash !== st.manifestHash) throw new WireError('TWF_E_MANIFEST_MISMATCH', `site approved ${body.manifestHash.slice(0, 12)}, study is ${st.manifestHash.slice(0, 12)}`);
    const entry = this.db.transaction((tx) => {
      const prev = tx.select().from(studySites).where(and(eq(studySites.studyId, st.studyId), eq(studySites.siteId, h.senderId))).get();
      const rejoin = prev?.manifestHash === st.manifestHash;
      tx.update(studySites).set({ manifestHash: body.manifestHash, joinedAtMs: rejoin && prev?.joinedAtMs ? prev.joinedAtMs : this.now(), trainSamples: body.trainSlices, valPatients: body.valPatients })
        .where(and(eq(studySites.studyId, st.studyId), eq(studySites.siteId, h.senderId))).run();
      return this.received(env, `trainSamples=${body.trainSlices} valPatients=${body.valPatients}`);
    });
    this.syncSite(st.studyId, h.senderId);
    void this.advance(st.studyId);
    return { entry, info: { joined: true } };
  }

  /** study.withdraw: the site's officer withdrew the approval; it takes part in no round opened afterwards. */
  private onWithdraw(env: Envelope): HandlerResult {
    const h = env.header;
    const b = decodeBody(env, 'study.withdraw');
    const st = studyRow(this.db, requireStudyId(h.studyId));
    const row = this.db.select().from(studySites).where(and(eq(studySites.studyId, st.studyId), eq(studySites.siteId, h.senderId))).get();
    if (!row) throw new WireError('TWF_E_NOT_PARTICIPANT', `${h.senderId} is not in the roster of ${st.studyId}`);
    const entry = this.received(env, `withdrawn by ${b.officer}: ${b.reason}`);
    if (!row.excluded) this.exclude(st, h.senderId, 'withdrawn', `officer ${b.officer}: ${b.reason}`);
    void this.advance(st.studyId);
    return { entry };
  }

  private onMetrics(env: Envelope): HandlerResult {
    const h = env.header;
    const b = decodeBody(env, 'metrics.report');
    const studyId = requireStudyId(h.studyId);
    if (!this.isJoined(studyId, h.senderId)) throw new WireError('TWF_E_NOT_PARTICIPANT', `${h.senderId} has not joined ${studyId}`);
    const entry = this.db.transaction((tx) => {
      tx.insert(siteMetrics).values({ studyId, round: b.evaluatedRound, siteId: h.senderId, meanDice: b.meanDice, valPatients: b.valPatients, trainLoss: b.trainLoss, trainMs: b.trainMs, encryptMs: b.encryptMs, uploadBytes: b.uploadBytes, reportedAtMs: this.now() })
        .onConflictDoUpdate({ target: [siteMetrics.studyId, siteMetrics.round, siteMetrics.siteId], set: { meanDice: b.meanDice, valPatients: b.valPatients, trainLoss: b.trainLoss, trainMs: b.trainMs, encryptMs: b.encryptMs, uploadBytes: b.uploadBytes, reportedAtMs: this.now() } }).run();
      const task = b.metricName ? ` ${b.metricName}=${b.metricValue === null || b.metricValue === undefined ? 'suppressed' : b.metricValue.toFixed(4)}` : '';
      return this.received(env, `dice=${b.meanDice === null ? 'suppressed' : b.meanDice.toFixed(4)}${task} round=${b.evaluatedRound}`);
    });
    return { entry };
  }

  /** Brings one site up to date with a study: its key (or a pending key request), the open round, completion. */
  private syncSite(studyId: string, siteId: string): void {
    if (!this.isOnline(siteId)) return;
    const st = studyRow(this.db, studyId);
    if (st.state === 'draft') return;
    const m = manifestOfRow(st);
    if (st.state === 'completed') {
      this.sendTo(siteId, 'study.completed', studyId, null, { rounds: this.rounds.closedCount(studyId), finalVersion: this.rounds.lastClosed(studyId) });
      return;
    }
    if (st.state === 'stopped') {
      this.sendTo(siteId, 'study.state', studyId, null, { manifestHash: st.manifestHash, state: 'stopped' });
      return;
    }
    if (!this.isJoined(studyId, siteId)) return;
    this.keys.resendTo(st, m, siteId);
    this.keys.deliver(st, m, siteId);
    this.rounds.sync(st, siteId);
  }

  // ----------------------------------------------------- state transitions

  /**
   * Moves a running study forward: key epochs, opening a round, its phases, completion.
   * Serialised per study; every step re-reads state inside its transaction.
   */
  advance(studyId: string): Promise<void> {
    const prev = this.stepping.get(studyId) ?? Promise.resolve();
    const next = prev.then(() => this.advanceOnce(studyId)).catch((e) => this.log('error', `${studyId}: ${(e as Error).stack ?? String(e)}`));
    this.stepping.set(studyId, next);
    void next.then(() => {
      if (this.stepping.get(studyId) === next) this.stepping.delete(studyId);
    });
    return next;
  }

  private async advanceOnce(studyId: string): Promise<void> {
    let st = studyRow(this.db, studyId);
    if (st.state !== 'running') return;
    const m = manifestOfRow(st);
    this.keys.ensure(st, m);
    this.keys.deliver(st, m);
    await this.rounds.step(studyId);
    st = studyRow(this.db, studyId);
    if (st.state !== 'running' || this.rounds.openRound(st)) return;
    if (this.rounds.closedCount(studyId) >= m.rounds) return this.complete(studyId);
    this.rounds.maybeOpen(st, m);
    if (this.rounds.openRound(studyRow(this.db, studyId))) await this.rounds.step(studyId);
  }

  private complete(studyId: string): void {
    const st = studyRow(this.db, studyId);
    const finalVersion = this.rounds.lastClosed(studyId);
    this.db.transaction((tx) => {
      tx.update(studies).set({ state: 'completed' }).where(eq(studies.studyId, studyId)).run();
      this.audit.append({ actor: this.coordinatorId, action: 'study.completed', studyId, round: st.currentRound, detail: `final model version ${finalVersion}` });
    });
    for (const s of activeJoined(this.db, st)) this.sendTo(s.siteId, 'study.completed', studyId, null, { rounds: this.rounds.closedCount(studyId), finalVersion });
    this.sendCheckpoint(studyId);
  }

  /** Periodic check of deadlines (and anything a restart left pending). */
  tick(): void {
    for (const st of this.db.select().from(studies).where(eq(studies.state, 'running')).all()) void this.advance(st.studyId);
  }

  /** Resolves when no study is being advanced (tests). */
  async idle(): Promise<void> {
    while (this.stepping.size) await Promise.all([...this.stepping.values()]);
  }

  // ---------------------------------------------------------------- helpers

  private sendTo(siteId: string, type: CoordinatorMessageType, studyId: string | null, round: number | null, body: unknown, m?: Meta): boolean {
    if (!this.transport?.isConnected(siteId)) return false;
    const env = sealEnvelope(this.signer, { to: siteId, type, studyId, round, body, ...(m ? { meta: m } : {}), nowMs: this.now() });
    this.audit.append({ actor: this.coordinatorId, action: 'msg.sent', peer: siteId, msgType: type, seq: env.header.seq, studyId, round, digest: env.header.digest, sizeBytes: env.body.length });
    const ok = this.transport.send(siteId, env);
    if (ok) this.metrics.bytesOut.inc(env.body.length);
    return ok;
  }

  /** A signed checkpoint of the audit chain head, to every connected joined site of the study. */
  private sendCheckpoint(studyId: string): void {
    const st = studyRow(this.db, studyId);
    if (st.state === 'draft') return;
    for (const s of activeJoined(this.db, st)) {
      const head = this.audit.head();
      if (!head || !this.isOnline(s.siteId)) continue;
      const c = { coordinatorId: this.coordinatorId, entryId: head.id, entryHash: head.hash, tsMs: this.now() };
      this.sendTo(s.siteId, 'audit.checkpoint', studyId, null, { entryId: c.entryId, entryHash: c.entryHash, tsMs: c.tsMs, signature: signStatement(CHECKPOINT_KIND, checkpointFields(c), this.identity.ed25519SecretKey) });
    }
  }

  private nextSeq(): number {
    return this.db.transaction((tx) => {
      const row = tx.select().from(meta).where(eq(meta.key, 'seq')).get();
      const next = (row ? Number(row.value) : 0) + 1;
      tx.insert(meta).values({ key: 'seq', value: String(next) }).onConflictDoUpdate({ target: meta.key, set: { value: String(next) } }).run();
      return next;
    });
  }

  private isJoined(studyId: string, siteId: string): boolean {
    const st = studyRow(this.db, studyId);
    return activeJoined(this.db, st).some((r) => r.siteId === siteId);
  }

  /**
   * Signs and sends an arbitrary coordinator message. The protocol never needs this; the red-team
   * suite uses it to play a malicious coordinator operator (who holds the coordinator's key and
   * can send anything), so that the sites' own checks are what is tested.
   */
  sendAsCoordinator(siteId: string, type: CoordinatorMessageType, studyId: string | null, round: number | null, body: unknown, m?: Meta): boolean {
    return this.sendTo(siteId, type, studyId, round, body, m);
  }

  /** Refusals of a round's aggregate (for the lead). */
  refusalsOf(studyId: string, round: number) {
    return this.db.select().from(aggregateRefusals).where(and(eq(aggregateRefusals.studyId, studyId), eq(aggregateRefusals.round, round))).all();
  }
}


