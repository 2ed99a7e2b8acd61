import { randomBytes, randomUUID } from 'node:crypto';
import {
  CHECKPOINT_KIND,
  RECEIPT_KIND,
  checkpointFields,
  receiptFields,
  PROTOCOL_VERSION,
  StudyDraftSchema,
  StudyManifestSchema,
  WireError,
  isCompatibleVersion,
  manifestHash,
  quorumOf,
  sha256Hex,
  type Ack,
  type CoordinatorMessageType,
  type Envelope,
  type RosterEntry,
  type StudyDraft,
  type StudyManifest,
} from '@twinfed/protocols';
import type { AuditEntry, AuditLog } from '@twinfed/shared/audit/index';
import { fromB64, siteFingerprint, parseEnvelope, sealEnvelope, signStatement, verifyEnvelope, type Identity, type Signer } from '@twinfed/shared/crypto/index';
import { DEFAULT_HE_PARAMS, type HeParams } from '@twinfed/shared/he/index';
import { activeJoined, activeRoster, budgetLeft, draftOfRow, manifestOfRow, studyRow, toWireError, type EngineContext, type EngineOptions, type Meta, type StudyRow } from './context.js';
import { HANDLERS, type HandlerDeps } from './handlers/index.js';
import { Handshakes } from './handshake.js';
import { StudyKeys } from './keys.js';
import type { CoordinatorMetrics } from './metrics.js';
import { RateLimiter } from '@twinfed/shared/rate-limit';
import { nextAction, type StudySnapshot } from './round-policy.js';
import { GroupCommit } from './group-commit.js';
import { Rounds } from './rounds.js';
import { SumPool } from './sums/pool.js';
import type { Exclusion, StudyState } from './states.js';
import type { CoordinatorStore, SiteRow } from './store/index.js';
import { buildRoster, changedRoster, parseStudySpec, studyDraft, validateHeParams } from './study-rules.js';
import { tlsRolloverBody } from './tls.js';
import * as views from './views.js';

export type { EngineOptions } from './context.js';
type Outgoing = Parameters<EngineContext['sendMany']>[0][number];

/**
 * The store with `before(tx)` run at the start of every transaction opened through it (nested
 * ones included; their own `tx` argument is the plain store).
 */
function withTransactionHook(store: CoordinatorStore, before: (tx: CoordinatorStore) => void): CoordinatorStore {
  const bound = new Map<PropertyKey, unknown>();
  return new Proxy(store, {
    get(target, prop) {
      if (prop === 'transaction')
        return <T>(fn: (tx: CoordinatorStore) => T): T =>
          target.transaction((tx) => {
            before(tx);
            return fn(tx);
          });
      let v = bound.get(prop);
      if (v === undefined) {
        const raw = Reflect.get(target, prop, target) as unknown;
        v = typeof raw === 'function' ? (raw as (...a: unknown[]) => unknown).bind(target) : raw;
        if (typeof raw === 'function') bound.set(prop, v);
      }
      return v;
    },
  });
}

/** How the engine reaches connected sites; the socket.io layer implements it. */
export interface SiteTransport {
  send(siteId: string, env: Envelope): boolean;
  isConnected(siteId: string): boolean;
  /** Closes the site's connection (revoked, rate-limited). */
  disconnect(siteId: string): void;
}

/**
 * The coordinator: lead API, connections, and one handler per site message type. Round life
 * cycle in rounds.ts (+ the pure round-policy.ts), study-key epochs in keys.ts, the rules a study
 * must satisfy in study-rules.ts, what the lead reads in views.ts, enrolment and handshake nonces
 * in handshake.ts (methods of the same names here delegate to those). Every state change
 * is a SQLite transaction that re-reads what it depends on, so a coordinator killed at any instant
 * restarts consistent. The engine holds no secret key: it validates, adds and relays ciphertexts.
 */
export class CoordinatorEngine {
  readonly coordinatorId: string;
  private transport: SiteTransport | null = null;
  /** Sites whose authenticated connection said hello. */
  private readonly ready = new Set<string>();
  /** Per-site budget of refused messages: a site that keeps sending refused messages is disconnected. */
  private readonly refusals: RateLimiter;
  private readonly signer: Signer;
  private readonly ctx: EngineContext;
  readonly keys: StudyKeys;
  readonly rounds: Rounds;
  /** Enrolment and handshake nonces: how a site gets in (handshake.ts). */
  private readonly handshakes: Handshakes;
  private readonly stepping = new Map<string, Promise<void>>();
  /** Per study, the advance run that is queued and has not started (calls meanwhile join it). */
  private readonly queued = new Map<string, Promise<void>>();
  private readonly now: () => number;
  private readonly tlsRollover: EngineOptions['tlsRollover'];
  private readonly onChange: NonNullable<EngineOptions['onChange']> | null;

  private readonly deps: HandlerDeps;
  /** Running sums on worker threads (sums/pool.ts). */
  readonly sums: SumPool;
  /** One commit for the per-message writes that arrive together (group-commit.ts). */
  readonly commits: GroupCommit;

  private readonly store: CoordinatorStore;
  /** The envelope whose sequence number the next transaction writes (the handler's own, while it runs). */
  private seqPending: Envelope | null = null;

  constructor(
    baseStore: CoordinatorStore,
    readonly audit: AuditLog,
    readonly identity: Identity,
    private readonly metrics: CoordinatorMetrics,
    opts: EngineOptions,
  ) {
    this.coordinatorId = audit.ownerId;
    this.store = withTransactionHook(baseStore, (tx) => {
      const env = this.seqPending;
      this.seqPending = null;
      if (env) this.advanceSeq(tx, env);
    });
    this.now = opts.now ?? Date.now;
    this.tlsRollover = opts.tlsRollover;
    this.onChange = opts.onChange ?? null;
    this.signer = { id: this.coordinatorId, ed25519SecretKey: identity.ed25519SecretKey, nextSeq: () => this.nextSeq() };
    this.refusals = new RateLimiter(60, 1, this.now);
    const options = {
      clockSkewMs: opts.clockSkewMs,
      joinSettleMs: opts.joinSettleMs ?? 2000,
      phaseTimeoutMs: opts.phaseTimeoutMs ?? 120_000,
      quorumGraceMs: opts.quorumGraceMs ?? 60_000,
      dealerTimeoutMs: opts.dealerTimeoutMs ?? 30_000,
      catchUpRounds: Math.max(2, opts.catchUpRounds ?? 20),
      uploadMsPerMParams: opts.uploadMsPerMParams ?? 1000,
    };
    const log = (level: 'info' | 'warn' | 'error', msg: string) => opts.log?.(level, msg);
    this.sums = new SumPool(opts.benchPlaintext ? 'plaintext' : 'he', opts.aggregationWorkers, log, opts.chunkDir ?? null);
    this.commits = new GroupCommit(baseStore, (n) => {
      metrics.groupCommits.inc();
      metrics.groupCommitRequests.inc(n);
    });
    if (opts.benchPlaintext) log('warn', 'BENCH PLAINTEXT MODE: chunks are summed as float32 plaintext, nothing is encrypted; for the aggregation benchmark only');
    this.ctx = {
      store: this.store,
      audit,
      metrics,
      coordinatorId: this.coordinatorId,
      opts: options,
      now: this.now,
      log,
      sums: this.sums,
      commits: this.commits,
      advanceSeq: (tx, env) => this.advanceSeq(tx, env),
      send: (siteId, type, studyId, round, body, m, digest) => this.sendTo(siteId, type, studyId, round, body, m, digest),
      sendMany: (list) => this.sendMany(list),
      online: (siteId) => this.isOnline(siteId),
      checkpoint: (studyId) => this.sendCheckpoint(studyId),
    };
    const received = (env: Envelope, detail?: string) => this.received(env, detail);
    this.keys = new StudyKeys(this.ctx, received);
    this.rounds = new Rounds(this.ctx, this.keys, received);
    this.rounds.sweepChunks();
    this.handshakes = new Handshakes(this.ctx, identity.ed25519PublicKey);
    this.deps = {
      ctx: this.ctx,
      keys: this.keys,
      rounds: this.rounds,
      received,
      greet: (siteId) => this.greet(siteId),
      announce: (studyId, siteId) => this.announce(studyId, siteId),
      syncSite: (studyId, siteId) => this.syncSite(studyId, siteId),
      exclude: (st, siteId, how, detail) => this.exclude(st, siteId, how, detail),
      isJoined: (studyId, siteId) => this.isJoined(studyId, siteId),
      advance: (studyId) => this.advance(studyId),
    };
  }

  attach(t: SiteTransport): void {
    this.transport = t;
  }

  /** Stops the aggregation workers (their sums are rebuilt from the stored chunks by the next engine). */
  async close(): Promise<void> {
    await this.sums.close();
  }

  private log(level: 'info' | 'warn' | 'error', msg: string): void {
    this.ctx.log(level, msg);
  }

  private isOnline(siteId: string): boolean {
    return this.ready.has(siteId) && (this.transport?.isConnected(siteId) ?? false);
  }

  // ---------------------------------------------------------------- lead API

  /**
   * Creates a draft study from a lead's spec, checked by study-rules.ts: minSites below 3 is
   * refused with TWF_E_TOO_FEW_CONTRIBUTORS (with two contributors each learns the other's update),
   * a non-linear strategy with TWF_E_STRATEGY_NOT_LINEAR, an overspending DP sigma with
   * TWF_E_DP_PARAMS, encryption parameters the HE layer rejects with TWF_E_HE_PARAMS.
   */
  async createStudy(spec: unknown): Promise<{ studyId: string; draft: StudyDraft }> {
    const parsed = parseStudySpec(spec);
    const encryption = (parsed.encryption ?? DEFAULT_HE_PARAMS) as HeParams;
    await validateHeParams(encryption);
    const studyId = `study-${randomUUID().slice(0, 8)}`;
    const draft = studyDraft(parsed, encryption, { studyId, coordinatorId: this.coordinatorId, createdAtMs: this.now() });
    this.store.transaction((tx) => {
      tx.insertStudy({ studyId, manifestJson: JSON.stringify(draft), manifestHash: '', state: 'draft', createdAtMs: this.now() });
      this.audit.append({ actor: 'lead', action: 'study.created', studyId, digest: sha256Hex(JSON.stringify(draft)), detail: draft.title });
    });
    return { studyId, draft };
  }

  /** Checks a roster against the study's settings (study-rules.ts buildRoster, given the listed sites' rows). */
  private buildRoster(draft: StudyDraft, siteIds: string[], keyDealers: string[]): { participants: RosterEntry[]; keyDealers: string[] } {
    const rows = new Map<string, SiteRow>();
    for (const id of siteIds) {
      const s = this.store.site(id);
      if (s) rows.set(id, s);
    }
    return buildRoster(draft, siteIds, keyDealers, rows);
  }

  /**
   * Starts a draft: writes the roster (participants with their public keys, key-dealer order)
   * into the manifest the officers approve, then announces it to the roster only. A stopped
   * study resumes with its manifest unchanged.
   */
  startStudy(studyId: string, req: { sites?: string[]; keyDealers?: string[] } = {}): void {
    const st = studyRow(this.store, studyId);
    if (st.state === 'stopped') {
      this.store.transaction((tx) => {
        if (studyRow(tx, studyId).state !== 'stopped') throw new WireError('TWF_E_STUDY_STATE', `study ${studyId} is no longer stopped`);
        tx.updateStudy(studyId, { state: 'running', stopReason: null });
        this.audit.append({ actor: 'lead', action: 'study.resumed', studyId, digest: st.manifestHash });
      });
      this.broadcastState(studyId, 'running');
      this.announceToRoster(studyId);
      this.changed(studyId);
      void this.advance(studyId);
      return;
    }
    if (st.state !== 'draft') throw new WireError('TWF_E_STUDY_STATE', `study is ${st.state}`);
    const draft = draftOfRow(st);
    const siteIds =
      req.sites ??
      this.store
        .sites()
        .filter((s) => s.revokedAtMs === null)
        .map((s) => s.siteId);
    const roster = this.buildRoster(draft, siteIds, req.keyDealers ?? siteIds);
    const manifest = StudyManifestSchema.parse({ ...draft, manifestVersion: 1, ...roster });
    const hash = manifestHash(manifest);
    this.store.transaction((tx) => {
      const again = studyRow(tx, studyId);
      if (again.state !== 'draft') throw new WireError('TWF_E_STUDY_STATE', `study is ${again.state}`);
      tx.updateStudy(studyId, { state: 'running', manifestJson: JSON.stringify(manifest), manifestHash: hash });
      for (const p of roster.participants) tx.addStudySite(studyId, p.siteId);
      this.audit.append({
        actor: 'lead',
        action: 'study.started',
        studyId,
        digest: hash,
        detail: `roster ${roster.participants.map((p) => `${p.siteId}=${siteFingerprint(p.ed25519PublicKey, p.x25519PublicKey)}`).join(',')}; dealers ${roster.keyDealers.join(',')}`,
      });
    });
    this.announceToRoster(studyId);
    this.changed(studyId);
    void this.advance(studyId);
  }

  /**
   * A new manifest version with sites added or removed. Every officer must approve it again
   * (until then no site is joined with it); the open round fails; a new study key is dealt.
   */
  changeRoster(studyId: string, req: { add?: string[]; remove?: string[] }): void {
    const st = studyRow(this.store, studyId);
    if (st.state !== 'running' && st.state !== 'stopped') throw new WireError('TWF_E_STUDY_STATE', `study is ${st.state}`);
    const m = manifestOfRow(st);
    const { remove, siteIds, keyDealers, draftPart } = changedRoster(m, req);
    const roster = this.buildRoster(StudyDraftSchema.parse(draftPart), siteIds, keyDealers);
    const next = StudyManifestSchema.parse({ ...draftPart, manifestVersion: m.manifestVersion + 1, ...roster });
    const hash = manifestHash(next);
    const open = this.rounds.openRound(st);
    if (open) this.rounds.fail(studyId, open.round, `aborted: the roster changed (manifest version ${next.manifestVersion})`);
    this.store.transaction((tx) => {
      if (studyRow(tx, studyId).manifestHash !== st.manifestHash) throw new WireError('TWF_E_STUDY_STATE', `the roster of ${studyId} changed meanwhile; retry`);
      tx.updateStudy(studyId, { manifestJson: JSON.stringify(next), manifestHash: hash });
      for (const p of roster.participants) tx.addStudySite(studyId, p.siteId);
      for (const r of remove) tx.updateStudySite(studyId, r, { excluded: 'removed', excludedAtMs: this.now() });
      this.audit.append({
        actor: 'lead',
        action: 'study.roster_changed',
        studyId,
        digest: hash,
        detail: `version ${next.manifestVersion}: added ${(req.add ?? []).join(',') || 'none'}, removed ${[...remove].join(',') || 'none'}; new approvals needed`,
      });
    });
    this.announceToRoster(studyId);
    this.changed(studyId);
    void this.advance(studyId);
  }

  /**
   * Deletes a draft (audited with the digest of what was deleted). A started study is refused: its
   * manifest was announced to the roster and approvals refer to its hash; stop it instead.
   */
  deleteDraft(studyId: string): { studyId: string; deleted: true; title: string } {
    return this.store.transaction((tx) => {
      const st = studyRow(tx, studyId);
      if (st.state !== 'draft')
        throw new WireError('TWF_E_STUDY_STATE', `study ${studyId} is ${st.state}: only a draft (never started) can be deleted; a running study is stopped with twinfed lead stop`);
      const title = draftOfRow(st).title;
      if (!tx.deleteDraft(studyId)) throw new WireError('TWF_E_STUDY_STATE', `study ${studyId} is no longer a draft`);
      this.audit.append({ actor: 'lead', action: 'study.deleted', studyId, digest: sha256Hex(st.manifestJson), detail: title });
      return { studyId, deleted: true as const, title };
    });
  }

  stopStudy(studyId: string): void {
    const st = studyRow(this.store, studyId);
    if (st.state !== 'running') throw new WireError('TWF_E_STUDY_STATE', `study is ${st.state}`);
    this.stop(studyId, 'lead', 'the lead stopped the study');
  }

  /** Stops a running study (the open round fails first), audited with its reason; the sites are told. */
  private stop(studyId: string, actor: string, reason: string): void {
    const st = studyRow(this.store, studyId);
    const open = this.rounds.openRound(st);
    if (open) this.rounds.fail(studyId, open.round, reason);
    const stopped = this.store.transaction((tx) => {
      const again = studyRow(tx, studyId);
      if (again.state !== 'running') return false;
      tx.updateStudy(studyId, { state: 'stopped', stopReason: reason });
      this.audit.append({ actor, action: 'study.stopped', studyId, round: again.currentRound, detail: reason });
      return true;
    });
    if (stopped) this.broadcastState(studyId, 'stopped');
    this.changed(studyId);
  }

  /** Fails the open round (audited); the study opens a fresh one when sites are ready. */
  abortRound(studyId: string, reason = 'no reason given'): { round: number } {
    const st = studyRow(this.store, studyId);
    const open = this.rounds.openRound(st);
    if (!open) throw new WireError('TWF_E_STUDY_STATE', `${studyId} has no open round`);
    this.audit.append({ actor: 'lead', action: 'round.aborted', studyId, round: open.round, detail: reason });
    this.rounds.fail(studyId, open.round, `aborted by the lead: ${reason}`);
    this.changed(studyId);
    void this.advance(studyId);
    return { round: open.round };
  }

  /** Excludes a roster site from later rounds and key epochs (a new key is dealt without it). */
  evictSite(studyId: string, siteId: string, reason = 'no reason given'): void {
    const st = studyRow(this.store, studyId);
    const row = this.store.studySite(studyId, siteId);
    if (!row) throw new WireError('TWF_E_NOT_FOUND', `${siteId} is not in the roster of ${studyId}`);
    if (row.excluded) throw new WireError('TWF_E_STUDY_STATE', `${siteId} is already ${row.excluded}`);
    this.exclude(st, siteId, 'evicted', `by the lead: ${reason}`);
    void this.advance(studyId);
  }

  private exclude(st: StudyRow, siteId: string, how: Exclusion, detail: string): void {
    this.store.transaction((tx) => {
      tx.updateStudySite(st.studyId, siteId, { excluded: how, excludedAtMs: this.now() });
      this.audit.append({ actor: this.coordinatorId, action: `site.${how}`, studyId: st.studyId, peer: siteId, detail });
    });
    if (st.state !== 'draft') this.sendTo(siteId, 'study.state', st.studyId, null, { manifestHash: st.manifestHash, state: 'excluded' });
    this.changed(st.studyId);
  }

  /** Revokes a site's enrolment: its connection is closed, it cannot connect again, it leaves every study. */
  revokeSite(siteId: string, reason = 'no reason given'): void {
    const s = this.store.site(siteId);
    if (!s) throw new WireError('TWF_E_NOT_FOUND', `${siteId} is not enrolled`);
    if (s.revokedAtMs !== null) throw new WireError('TWF_E_STUDY_STATE', `${siteId} is already revoked`);
    this.store.transaction((tx) => {
      tx.revokeSite(siteId, this.now());
      this.audit.append({ actor: 'lead', action: 'site.revoked', peer: siteId, detail: reason });
    });
    for (const row of this.store.studiesOfSite(siteId)) {
      if (!row.excluded) this.exclude(studyRow(this.store, row.studyId), siteId, 'revoked', reason);
    }
    this.ready.delete(siteId);
    this.transport?.disconnect(siteId);
    for (const st of this.store.studies('running')) void this.advance(st.studyId);
  }

  issueEnrolmentToken(siteName: string, expiresInS: number): { token: string; siteName: string; expiresAt: string } {
    return this.handshakes.issueEnrolmentToken(siteName, expiresInS);
  }

  /** Registers a site's public keys against a one-time token (handshake.ts; refusals audited coalesced). */
  enrol(req: { token: string; protocolVersion: string; ed25519PublicKey: string; x25519PublicKey: string }) {
    return this.handshakes.enrol(req);
  }

  // ------------------------------------------------------------------ views (views.ts)

  listSites() {
    return views.listSites(this.ctx);
  }

  listStudies() {
    return views.listStudies(this.ctx);
  }

  /** The manifest (with its hash) of a started study, or the draft of one not started yet. */
  manifestOf(studyId: string): { manifest: StudyManifest | StudyDraft; manifestHash: string; draft: boolean } {
    return views.manifestOf(this.ctx, studyId);
  }

  studyStatus(studyId: string) {
    return views.studyStatus(this.ctx, this.rounds, studyId);
  }

  roundStatus(studyId: string, round: number) {
    return views.roundStatus(this.ctx, studyId, round);
  }

  /** Refusals of a round's aggregate (for the lead). */
  refusalsOf(studyId: string, round: number) {
    return views.refusalsOf(this.ctx, studyId, round);
  }

  // ------------------------------------------------------------ connections

  /** POST /api/handshake: a single-use nonce the site signs to open its socket (handshake.ts). */
  issueChallenge(siteId: string): { nonce: string; coordinatorId: string; expiresAtMs: number; lastSeqSeen: number } {
    return this.handshakes.issueChallenge(siteId);
  }

  /**
   * Checks a socket handshake (handshake.ts): protocol version, a fresh nonce of ours, an
   * enrolled, non-revoked site and its signature. Returns the site id; refusals are counted.
   */
  authenticateHandshake(auth: unknown): string {
    return this.handshakes.authenticate(auth);
  }

  onConnected(siteId: string): void {
    this.ready.delete(siteId); // a new connection says hello again
    this.metrics.connectedSites.set(this.ready.size);
    this.changedSite(siteId);
  }

  /** The site's connection closed; `unattributable` = messages refused on it before their signature could be checked. */
  onDisconnect(siteId: string, unattributable = 0): void {
    this.ready.delete(siteId);
    this.metrics.connectedSites.set(this.ready.size);
    this.audit.append({ actor: siteId, action: 'site.disconnected', ...(unattributable ? { detail: `${unattributable} unattributable messages refused on this connection` } : {}) });
    this.changedSite(siteId);
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
    /** Past the replay check: its sequence number must be committed, accepted or refused. */
    let seqChecked = false;
    try {
      env = parseEnvelope(raw);
      const h = env.header;
      if (h.senderId !== connSiteId) throw new WireError('TWF_E_UNKNOWN_SITE', `envelope sender ${h.senderId} on the connection of ${connSiteId}`);
      const site = this.store.site(h.senderId);
      if (!site) throw new WireError('TWF_E_UNKNOWN_SITE', h.senderId);
      verifyEnvelope(env, fromB64(site.ed25519PublicKey));
      sigOk = true;
      if (site.revokedAtMs !== null) throw new WireError('TWF_E_SITE_REVOKED', h.senderId);
      if (h.to !== this.coordinatorId) throw new WireError('TWF_E_WRONG_RECIPIENT', `addressed to ${h.to}`);
      if (!isCompatibleVersion(h.v)) throw new WireError('TWF_E_PROTOCOL_VERSION', h.v);
      if (h.seq <= site.lastSeq) throw new WireError('TWF_E_REPLAY', `seq ${h.seq} <= last accepted ${site.lastSeq}`);
      // The sequence number is committed with the message's first transaction: an update.chunk's
      // with the chunk (Rounds.storeChunk), any other's with whatever transaction its handler
      // opens first (the pending number is written at the start of the next transaction opened
      // while the handler runs synchronously); else, or when the message is refused, on its own
      // below. So a replay is a replay even of a refused message, the number is committed before
      // the message is acknowledged or anything is sent because of it, and a message costs one
      // commit, not two (a tiny round: 12 fewer fsyncs).
      seqChecked = true;
      const e = env;
      if (Math.abs(h.tsMs - this.now()) > this.ctx.opts.clockSkewMs) throw new WireError('TWF_E_STALE_MESSAGE', `timestamp ${new Date(h.tsMs).toISOString()}`);
      if (h.type !== 'hello' && !this.ready.has(h.senderId)) throw new WireError('TWF_E_HELLO_FIRST', h.type);
      let dispatched: ReturnType<typeof this.dispatch>;
      this.seqPending = h.type === 'update.chunk' ? null : env;
      try {
        dispatched = this.dispatch(env);
      } finally {
        this.seqPending = null;
      }
      const r = await dispatched;
      if (this.store.site(h.senderId)!.lastSeq < h.seq) await this.commits.run((tx) => this.advanceSeq(tx, e));
      this.metrics.messagesAccepted.inc({ type: h.type });
      this.metrics.bytesIn.inc(env.body.length);
      const receipt = this.receipt(env, r.entry);
      if (h.studyId) this.changed(h.studyId);
      else this.changedSite(h.senderId);
      return { ok: true, ...(r.info ? { info: r.info } : {}), receipt };
    } catch (e) {
      let err = toWireError(e);
      const h = env?.header;
      if (err.code === 'TWF_E_INTERNAL') {
        const ref = randomBytes(4).toString('hex');
        this.log('error', `internal error [${ref}] handling ${h?.type ?? 'a message'} from ${connSiteId}: ${(e as Error).stack ?? String(e)}`);
        err = new WireError('TWF_E_INTERNAL', `reference ${ref} in the coordinator log`);
      }
      if (seqChecked && env) {
        const e = env;
        // Already committed with the handler's transaction (refused after it): TWF_E_REPLAY, nothing to do.
        await this.commits.run((tx) => this.advanceSeq(tx, e)).catch(() => undefined);
      }
      this.metrics.messagesRejected.inc({ code: err.code });
      const overBudget = !this.refusals.take(connSiteId);
      if (sigOk && h) {
        this.audit.append({
          actor: h.senderId,
          action: 'msg.rejected',
          msgType: h.type,
          seq: h.seq,
          studyId: h.studyId,
          round: h.round,
          digest: h.digest,
          sizeBytes: env!.body.length,
          detail: `${err.code}: ${err.detail}`,
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

  /** Records an accepted envelope's sequence number, in `tx`; TWF_E_REPLAY if it is not above the last one. */
  private advanceSeq(tx: CoordinatorStore, env: Envelope): void {
    const h = env.header;
    const last = tx.site(h.senderId)!.lastSeq;
    if (h.seq <= last) throw new WireError('TWF_E_REPLAY', `seq ${h.seq} <= last accepted ${last}`);
    tx.setSiteSeq(h.senderId, h.seq, this.now());
  }

  /** Runs the handler of an authenticated envelope's type (coordinator/src/handlers); one seam for every site message. */
  private async dispatch(env: Envelope): Promise<NonNullable<Awaited<ReturnType<(typeof HANDLERS)[keyof typeof HANDLERS]>>>> {
    const r = await HANDLERS[env.header.type as keyof typeof HANDLERS]?.(this.deps, env);
    if (!r) throw new WireError('TWF_E_MALFORMED', `${env.header.type} is not a site message`);
    return r;
  }

  /** msg.received audit entry of an accepted message (returned for its receipt). */
  private received(env: Envelope, detail?: string): AuditEntry {
    const h = env.header;
    return this.audit.append({
      actor: h.senderId,
      action: 'msg.received',
      peer: this.coordinatorId,
      msgType: h.type,
      seq: h.seq,
      studyId: h.studyId,
      round: h.round,
      digest: h.digest,
      sizeBytes: env.body.length,
      detail: detail ?? null,
    });
  }

  private receipt(env: Envelope, entry: AuditEntry) {
    const h = env.header;
    const r = { coordinatorId: this.coordinatorId, siteId: h.senderId, seq: h.seq, msgType: h.type, studyId: h.studyId, round: h.round, digest: h.digest, entryId: entry.id, entryHash: entry.hash };
    return { entryId: entry.id, entryHash: entry.hash, signature: signStatement(RECEIPT_KIND, receiptFields(r), this.identity.ed25519SecretKey) };
  }

  /** Welcome (and TLS rollover notice) for a site that said hello on its authenticated connection. */
  private greet(siteId: string): void {
    this.ready.add(siteId);
    this.metrics.connectedSites.set(this.ready.size);
    const site = this.store.site(siteId)!;
    this.sendTo(siteId, 'welcome', null, null, { coordinatorId: this.coordinatorId, protocolVersion: PROTOCOL_VERSION, serverTimeMs: this.now(), lastSeqSeen: site.lastSeq });
    // Before any study traffic, so a site that connects once during the renewal window learns the next key.
    if (this.tlsRollover) this.sendTo(siteId, 'tls.rollover', null, null, tlsRolloverBody(this.coordinatorId, this.tlsRollover, this.identity.ed25519SecretKey, this.now()));
  }

  private announce(studyId: string, siteId: string): void {
    const st = studyRow(this.store, studyId);
    this.sendTo(siteId, 'study.announce', studyId, null, { manifest: manifestOfRow(st), manifestHash: st.manifestHash, status: st.state });
  }

  private announceToRoster(studyId: string): void {
    const st = studyRow(this.store, studyId);
    for (const p of manifestOfRow(st).participants) {
      const row = this.store.studySite(studyId, p.siteId);
      if (row?.excluded) continue;
      this.announce(studyId, p.siteId);
    }
  }

  private broadcastState(studyId: string, state: Exclude<StudyState, 'draft'>): void {
    const st = studyRow(this.store, studyId);
    for (const r of this.store.studySites(studyId)) if (!r.excluded) this.sendTo(r.siteId, 'study.state', studyId, null, { manifestHash: st.manifestHash, state });
  }

  /** Brings one site up to date with a study: its key (or a pending key request), the open round, completion. */
  private syncSite(studyId: string, siteId: string): void {
    if (!this.isOnline(siteId)) return;
    const st = studyRow(this.store, studyId);
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
    // A run that has not started yet will read everything this call would: join it. (Without
    // this, a main thread busy with 100 uploading sites queued a full snapshot per tick and per
    // message, each re-reading the roster, the keys and the round.)
    const waiting = this.queued.get(studyId);
    if (waiting) return waiting;
    const prev = this.stepping.get(studyId) ?? Promise.resolve();
    const next = prev
      .then(async () => {
        this.queued.delete(studyId);
        // The audit head moves with every state change: a tick that changed nothing notifies nobody.
        const before = this.onChange ? this.audit.headLink()?.id : undefined;
        await this.advanceOnce(studyId);
        if (this.onChange && this.audit.headLink()?.id !== before) this.changed(studyId);
      })
      .catch((e) => this.log('error', `${studyId}: ${(e as Error).stack ?? String(e)}`));
    this.stepping.set(studyId, next);
    this.queued.set(studyId, next);
    void next.then(() => {
      if (this.stepping.get(studyId) === next) this.stepping.delete(studyId);
    });
    return next;
  }

  /** What nextAction() reads, from the store and the connection table. */
  private snapshot(st: StudyRow, m: StudyManifest): StudySnapshot {
    const key = this.keys.state(st, m);
    const rows = this.store.studySites(st.studyId);
    const joined = activeJoined(this.store, st, rows);
    const ready = new Set(joined.filter((j) => j.dpExhaustedAtMs === null && this.isOnline(j.siteId)).map((j) => j.siteId));
    const roster = new Set(activeRoster(this.store, st, m, rows));
    return {
      state: st.state,
      roundsPlanned: m.rounds,
      closedRounds: this.rounds.closedCount(st.studyId),
      openRound: this.rounds.roundSnapshot(this.store, st, m),
      quorum: quorumOf(m),
      budgetLeft: budgetLeft(this.store, st, m, rows),
      exhausted: rows.filter((r) => r.dpExhaustedAtMs !== null && roster.has(r.siteId)).map((r) => r.siteId),
      key,
      nextDealer: this.keys.nextDealer(st, m),
      dealerTimeoutMs: this.ctx.opts.dealerTimeoutMs,
      candidates: m.participants.map((p) => p.siteId).filter((id) => ready.has(id)),
      lastJoinAtMs: Math.max(0, ...joined.map((j) => j.joinedAtMs ?? 0)),
      lastFailedAtMs: st.lastFailedAtMs,
      joinSettleMs: this.ctx.opts.joinSettleMs,
    };
  }

  /** Applies nextAction() until it says wait (bounded: each action changes what the next snapshot reads). */
  private async advanceOnce(studyId: string): Promise<void> {
    for (let guard = 0; guard < 16; guard++) {
      const st = studyRow(this.store, studyId);
      if (st.state !== 'running') return;
      const m = manifestOfRow(st);
      this.keys.deliver(st, m);
      const a = nextAction(this.snapshot(st, m), this.now());
      switch (a.kind) {
        case 'wait':
          return;
        case 'request-keys':
          this.keys.requestEpoch(st, m, a.dealer);
          break;
        case 'replace-dealer':
          this.keys.replaceDealer(st, m, a.dealer);
          break;
        case 'round':
          if (!(await this.rounds.step(studyId))) return;
          break;
        case 'complete':
          return this.complete(studyId);
        case 'stop':
          return this.stop(studyId, this.coordinatorId, a.reason);
        case 'open':
          this.rounds.open(st, m, a.participants, this.keys.latest(studyId)!.epoch);
          break;
      }
    }
  }

  private complete(studyId: string): void {
    const st = studyRow(this.store, studyId);
    const finalVersion = this.rounds.lastClosed(studyId);
    this.store.transaction((tx) => {
      tx.updateStudy(studyId, { state: 'completed' });
      this.audit.append({ actor: this.coordinatorId, action: 'study.completed', studyId, round: st.currentRound, detail: `final model version ${finalVersion}` });
    });
    for (const s of activeJoined(this.store, st)) this.sendTo(s.siteId, 'study.completed', studyId, null, { rounds: this.rounds.closedCount(studyId), finalVersion });
    this.sendCheckpoint(studyId);
  }

  /** Periodic check of deadlines (and anything a restart left pending). */
  tick(): void {
    for (const st of this.store.studies('running')) void this.advance(st.studyId);
  }

  /** Resolves when no study is being advanced (tests). */
  async idle(): Promise<void> {
    while (this.stepping.size) await Promise.all([...this.stepping.values()]);
  }

  // ---------------------------------------------------------------- helpers

  private sendTo(siteId: string, type: CoordinatorMessageType, studyId: string | null, round: number | null, body: unknown, m?: Meta, bodyDigest?: string): boolean {
    return this.sendMany([{ siteId, type, studyId, round, body, ...(m ? { meta: m } : {}), ...(bodyDigest ? { digest: bodyDigest } : {}) }])[0];
  }

  /**
   * Signs, audits and sends several envelopes with one commit: each one's sequence number and
   * msg.sent entry are committed before any of them leaves (a message out whose sequence number a
   * crash could hand out again would be refused as a replay by its site), and the messages of one
   * step (a phase's message to every site) share one fsync instead of one each. A `body` given as
   * a function is built inside the transaction, in order (a checkpoint names the entry before it).
   */
  private sendMany(list: Outgoing[]): boolean[] {
    const todo = list.map((o) => (this.transport?.isConnected(o.siteId) ? o : null));
    if (!todo.some(Boolean)) return list.map(() => false);
    const envs = this.store.transaction(() =>
      todo.map((o) => {
        if (!o) return null;
        const body = typeof o.body === 'function' ? (o.body as () => unknown)() : o.body;
        const e = sealEnvelope(this.signer, {
          to: o.siteId,
          type: o.type,
          studyId: o.studyId,
          round: o.round,
          body,
          ...(o.meta ? { meta: o.meta } : {}),
          nowMs: this.now(),
          ...(o.digest ? { bodyDigest: o.digest } : {}),
        });
        this.audit.append({
          actor: this.coordinatorId,
          action: 'msg.sent',
          peer: o.siteId,
          msgType: o.type,
          seq: e.header.seq,
          studyId: o.studyId,
          round: o.round,
          digest: e.header.digest,
          sizeBytes: e.body.length,
        });
        return e;
      }),
    );
    return todo.map((o, i) => {
      if (!o) return false;
      const ok = this.transport!.send(o.siteId, envs[i]!);
      if (ok) this.metrics.bytesOut.inc(envs[i]!.body.length);
      return ok;
    });
  }

  /** A signed checkpoint of the audit chain head, to every connected joined site of the study (each names the entry before its own message). */
  private sendCheckpoint(studyId: string): void {
    const st = studyRow(this.store, studyId);
    if (st.state === 'draft') return;
    const body = () => {
      const head = this.audit.head()!;
      const c = { coordinatorId: this.coordinatorId, entryId: head.id, entryHash: head.hash, tsMs: this.now() };
      return { entryId: c.entryId, entryHash: c.entryHash, tsMs: c.tsMs, signature: signStatement(CHECKPOINT_KIND, checkpointFields(c), this.identity.ed25519SecretKey) };
    };
    if (!this.audit.headLink()) return;
    this.sendMany(
      activeJoined(this.store, st)
        .filter((s) => this.isOnline(s.siteId))
        .map((s) => ({ siteId: s.siteId, type: 'audit.checkpoint' as const, studyId, round: null, body })),
    );
  }

  /** Tells the console (EngineOptions.onChange) that a study's view changed; never lets it break the engine. */
  private changed(studyId: string): void {
    if (!this.onChange) return;
    try {
      this.onChange(studyId);
    } catch (e) {
      this.log('warn', `onChange(${studyId}): ${(e as Error).message}`);
    }
  }

  /** onChange for every study the site is on the roster of (connection state, hello). */
  private changedSite(siteId: string): void {
    if (!this.onChange) return;
    for (const row of this.store.studiesOfSite(siteId)) this.changed(row.studyId);
  }

  private nextSeq(): number {
    return this.store.nextSeq();
  }

  private isJoined(studyId: string, siteId: string): boolean {
    const st = studyRow(this.store, studyId);
    return activeJoined(this.store, st).some((r) => r.siteId === siteId);
  }

  /**
   * Signs and sends an arbitrary coordinator message. The protocol never needs this; the red-team
   * suite uses it to play a malicious coordinator operator (who holds the coordinator's key and
   * can send anything), so that the sites' own checks are what is tested.
   */
  sendAsCoordinator(siteId: string, type: CoordinatorMessageType, studyId: string | null, round: number | null, body: unknown, m?: Meta): boolean {
    return this.sendTo(siteId, type, studyId, round, body, m);
  }
}
