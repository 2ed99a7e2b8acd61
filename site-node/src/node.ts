import { and, asc, desc, eq } from 'drizzle-orm';
import { join } from 'node:path';
import { io, type Socket } from 'socket.io-client';
import {
  BODY_SCHEMAS,
  CHECKPOINT_KIND,
  HANDSHAKE_KIND,
  PROTOCOL_VERSION,
  RECEIPT_KIND,
  StudyManifestSchema,
  TwinfedError,
  WireError,
  checkpointFields,
  handshakeFields,
  isSafeId,
  manifestHash,
  receiptFields,
  sha256Hex,
  type Ack,
  type BodyOf,
  type ClientToServerEvents,
  type Envelope,
  type ServerToClientEvents,
  type SiteMessageType,
  type StudyManifest,
} from '@twinfed/protocols';
import { AuditLog } from '@twinfed/shared/audit/index';
import {
  decodeBody,
  fromB64,
  siteFingerprint,
  initSodium,
  loadIdentity,
  parseEnvelope,
  sealEnvelope,
  signStatement,
  verifyEnvelope,
  verifyStatement,
  type Identity,
  type Signer,
} from '@twinfed/shared/crypto/index';
import { SITE_FILES, loadSiteConfig, type SiteConfig } from './config.js';
import { NO_STATE_HASH, StrategyError, parseState, serialiseState, type StrategyState } from '@twinfed/shared/strategy/index';
import { SiteError } from './errors.js';
import { writeModelDir } from './model-files.js';
import { openSiteDb, type SiteDb } from './db/index.js';
import { approvals, auditCheckpoints, meta, models, receipts, strategyState, studies } from './db/schema.js';
import { acceptStudyKey, dealStudyKey } from './keys.js';
import { fetchHandshakeChallenge, linkErrorOf } from './net.js';
import { SiteTls } from './tls-trust.js';
import { SiteRounds, type RoundStepEvent, type RoundWorkRow, type SiteRoundHost } from './site-rounds.js';
import type { LocalEvalResult, LocalTrainer } from './trainer.js';

/** What the site reports about each round it took part in (for the demo, logs and tests). */
export interface RoundReport {
  studyId: string;
  round: number;
  nSamples: number;
  trainLoss: number;
  trainMs: number;
  encryptMs: number;
  uploadBytes: number;
  chunks: number;
}

export interface SiteEvents {
  /** A round's aggregate was decrypted, unmasked, checked and applied; `meanDice` evaluated on local validation patients. */
  onApplied?: (e: { studyId: string; round: number; meanDice: number | null; decryptMs: number; contributors: number; dropped: string[]; metric?: { name: string; value: number | null } }) => void;
  onUploaded?: (r: RoundReport) => void;
  onRejected?: (e: { code: string; detail: string; refType: string | null }) => void;
  /** The site refused a round's aggregate (out of bounds, too few contributors, bad shares). */
  onRefusedAggregate?: (e: { studyId: string; round: number; code: string; detail: string }) => void;
  onCompleted?: (e: { studyId: string; rounds: number; modelDir: string }) => void;
  /** A secure-aggregation step this site completed (setup sent, uploaded, signed, revealed). */
  onStep?: (e: RoundStepEvent) => void;
  /** An epoch of this site's local training finished (studyId, round, epoch of epochs, loss, elapsedMs). */
  onTrainProgress?: SiteRoundHost['events']['onTrainProgress'];
  /** The coordinator refused this site for good (revoked, unknown, other protocol): reconnecting cannot help. */
  onFatal?: (e: { code: string; detail: string }) => void;
  onLog?: (level: 'info' | 'warn' | 'error', msg: string) => void;
  /** A study's manifest arrived (new or changed) and waits for the privacy officer's approval. */
  onAwaitingApproval?: (e: { studyId: string; title: string; manifestHash: string; changed: boolean }) => void;
}

export interface SiteNodeOptions {
  dataDir: string;
  trainer: LocalTrainer;
  events?: SiteEvents;
  /** Poll interval for officer approvals made from another process (ms). */
  approvalPollMs?: number;
}

/** Codes after which reconnecting cannot help: the site stops and says why. */
const FATAL_CONNECT_CODES = new Set(['TWF_E_PROTOCOL_VERSION', 'TWF_E_UNKNOWN_SITE', 'TWF_E_SITE_REVOKED']);
/** A sequence jump larger than this at resync is refused (a coordinator cannot push a site's counter to the end of the range). */
const MAX_SEQ_RESYNC_JUMP = 1_000_000_000;

/**
 * A hospital's site node: dials out to the coordinator with a signed handshake, verifies every
 * coordinator message (pinned key, addressed to this site, fresh, in sequence), trains only on
 * studies its officer approved (bound to the manifest hash, which includes the roster), and
 * sends out nothing but signed protocol envelopes: masked encrypted updates, sealed keys for
 * roster sites, secure-aggregation shares and aggregate metrics. It keeps the coordinator's
 * signed receipts and audit checkpoints for `twinfed audit compare`.
 */
export class SiteNode {
  readonly config: SiteConfig;
  readonly db: SiteDb;
  readonly audit: AuditLog;
  private readonly identity: Identity;
  private readonly coordinatorKey: Uint8Array;
  private socket: Socket<ServerToClientEvents, ClientToServerEvents> | null = null;
  private queue: Promise<void> = Promise.resolve();
  private readonly signer: Signer;
  private pollTimer: NodeJS.Timeout | null = null;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private reconnectDelayMs = 1000;
  /** Work waiting for missed aggregates to be applied, per study. */
  private readonly pending = new Map<string, { version: number; then: () => Promise<void> }>();
  /** Next join attempt per study after a refused join (exponential backoff, never a storm). */
  private readonly joinBackoff = new Map<string, { atMs: number; delayMs: number }>();
  private closed = false;
  private readonly rounds: SiteRounds;
  /** TLS pins, proxy and the link every connection to the coordinator goes through. */
  private readonly tls: SiteTls;

  private constructor(private readonly opts: SiteNodeOptions) {
    this.config = loadSiteConfig(opts.dataDir);
    this.identity = loadIdentity(join(opts.dataDir, SITE_FILES.identity));
    this.coordinatorKey = fromB64(this.config.coordinatorPublicKey);
    this.db = openSiteDb(join(opts.dataDir, SITE_FILES.db));
    this.audit = new AuditLog(this.db, this.config.siteId, this.identity.ed25519SecretKey, this.identity.ed25519PublicKey);
    this.signer = { id: this.config.siteId, ed25519SecretKey: this.identity.ed25519SecretKey, nextSeq: () => this.bumpMeta('seq') };
    const ev = opts.events ?? {};
    this.tls = new SiteTls({
      dataDir: opts.dataDir,
      config: this.config,
      audit: this.audit,
      coordinatorKey: this.coordinatorKey,
      log: (level, msg) => this.log(level, msg),
      closed: () => this.closed,
    });
    this.rounds = new SiteRounds({
      db: this.db,
      audit: this.audit,
      identity: this.identity,
      siteId: this.config.siteId,
      trainer: opts.trainer,
      privacy: this.config.privacy,
      send: (type, studyId, round, body, m) => this.send(type, studyId, round, body, m),
      manifest: (studyId, forNewRound) => this.participatingManifest(studyId, forNewRound),
      modelAt: (studyId, v) => this.modelAt(studyId, v),
      storeModel: (studyId, v, w, d, st) => this.storeModel(studyId, v, w, d, st),
      strategyStateAt: (studyId, v) => this.strategyStateAt(studyId, v),
      caughtUp: (studyId, v, then) => this.caughtUp(studyId, v, then),
      reportMetrics: (studyId, round, e, w) => this.reportMetrics(studyId, round, e, w),
      log: (level, msg) => this.log(level, msg),
      events: {
        onUploaded: (r) => ev.onUploaded?.(r),
        onApplied: (e) => {
          ev.onApplied?.(e);
          void this.afterApplied(e.studyId, e.round);
        },
        onRefusedAggregate: (e) => ev.onRefusedAggregate?.(e),
        onStep: (e) => ev.onStep?.(e),
        onTrainProgress: (e) => ev.onTrainProgress?.(e),
      },
    });
  }

  static async open(opts: SiteNodeOptions): Promise<SiteNode> {
    await initSodium();
    return new SiteNode(opts);
  }

  get siteId(): string {
    return this.config.siteId;
  }

  private log(level: 'info' | 'warn' | 'error', msg: string): void {
    this.opts.events?.onLog?.(level, msg);
  }

  // ------------------------------------------------------------ connection

  /**
   * Dials out to the coordinator and keeps the site in sync. Each connection attempt fetches a
   * fresh nonce and signs it (a site id alone opens nothing). After a server-side disconnect
   * (coordinator restart, replaced connection) the site reconnects with backoff by itself.
   */
  connect(): void {
    this.closed = false;
    this.socket = io(this.config.coordinatorUrl, {
      ...this.tls.link.socketOptions(),
      auth: (cb: (auth: object) => void) => {
        this.handshakeAuth().then(cb, (e: Error) => {
          this.log('warn', `handshake: ${e.message}`);
          cb({ siteId: this.config.siteId, protocolVersion: PROTOCOL_VERSION }); // refused by the coordinator: retried with backoff
        });
      },
      transports: ['websocket'],
      // Handed to the ws WebSocket by engine.io-client (not in socket.io-client's option types).
      ...({ maxPayload: this.config.maxMessageBytes } as object),
      reconnection: true,
      reconnectionDelay: 500,
      reconnectionDelayMax: 10_000,
    });
    this.socket.on('connect', () => {
      this.reconnectDelayMs = 1000;
      this.log('info', `connected to ${this.config.coordinatorUrl}`);
      void this.send('hello', null, null, {
        siteName: this.config.siteName,
        backend: this.opts.trainer.backend,
        approved: this.db
          .select()
          .from(approvals)
          .all()
          .filter((a) => a.withdrawnAtMs === null)
          .map((a) => ({ studyId: a.studyId, manifestHash: a.manifestHash })),
      });
    });
    this.socket.on('connect_error', (err: Error & { data?: { code?: string; detail?: string } }) => {
      const mine = linkErrorOf(err); // refused by this site's own checks: TWF_E_TLS_PIN, TWF_E_TLS, TWF_E_PROXY
      const code = err.data?.code ?? mine?.code ?? 'TWF_E_CONNECT';
      this.log(mine ? 'error' : 'warn', `connection refused: ${mine?.message ?? err.message}`);
      this.opts.events?.onRejected?.({ code, detail: err.data?.detail ?? mine?.message ?? err.message, refType: 'connect' });
      if (FATAL_CONNECT_CODES.has(code)) {
        this.audit.append({ actor: this.config.siteId, action: 'connect.failed', peer: this.config.coordinatorId, detail: `${code}: ${err.data?.detail ?? err.message}` });
        this.socket?.disconnect(); // retrying cannot help
        this.opts.events?.onFatal?.({ code, detail: err.data?.detail ?? err.message });
      }
    });
    this.socket.on('disconnect', (reason) => {
      this.log('warn', `disconnected: ${reason}`);
      // socket.io does not reconnect after a server-side disconnect; a site must, or a coordinator
      // restart would leave it offline while `site run` keeps running.
      if (reason === 'io server disconnect' && !this.closed) this.scheduleReconnect();
    });
    this.socket.on('envelope', (raw) => {
      this.queue = this.queue.then(() => this.onEnvelope(raw)).catch((e) => this.log('error', `handling a coordinator message: ${(e as Error).stack ?? e}`));
    });
    this.pollTimer = setInterval(() => this.enqueue(() => this.pollStudies()), this.opts.approvalPollMs ?? 1000);
  }

  private scheduleReconnect(): void {
    if (this.reconnectTimer) return;
    const delay = this.reconnectDelayMs * (0.75 + Math.random() / 2);
    this.reconnectDelayMs = Math.min(this.reconnectDelayMs * 2, 30_000);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      if (!this.closed && this.socket && !this.socket.connected) this.socket.connect();
    }, delay);
  }

  /** Fetches a nonce, resynchronises the sequence counter after a restore from backup, signs. */
  private async handshakeAuth(): Promise<object> {
    const ch = await fetchHandshakeChallenge(this.tls.link, this.config.siteId);
    if (ch.coordinatorId !== this.config.coordinatorId) throw new Error(`the server is ${ch.coordinatorId}, this site enrolled with ${this.config.coordinatorId}`);
    const local = Number(this.getMeta('seq') ?? '0');
    if (ch.lastSeqSeen > local) {
      if (ch.lastSeqSeen - local > MAX_SEQ_RESYNC_JUMP) throw new Error(`the coordinator claims seq ${ch.lastSeqSeen}, far above ours (${local}); not resynchronising`);
      // A site restored from a backup: the coordinator already accepted higher sequence numbers.
      this.setMeta('seq', String(ch.lastSeqSeen));
      this.audit.append({ actor: this.config.siteId, action: 'seq.resync', peer: this.config.coordinatorId, detail: JSON.stringify({ from: local, to: ch.lastSeqSeen }) });
      this.log('warn', `sequence counter resynchronised from ${local} to ${ch.lastSeqSeen} (site restored from a backup?)`);
    }
    const signature = signStatement(HANDSHAKE_KIND, handshakeFields({ coordinatorId: this.config.coordinatorId, siteId: this.config.siteId, nonce: ch.nonce }), this.identity.ed25519SecretKey);
    return { siteId: this.config.siteId, protocolVersion: PROTOCOL_VERSION, nonce: ch.nonce, signature };
  }

  get connected(): boolean {
    return this.socket?.connected ?? false;
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.pollTimer) clearInterval(this.pollTimer);
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.socket?.disconnect();
    await this.queue.catch(() => undefined);
    await this.opts.trainer.close?.();
    this.db.$client.close();
  }

  private enqueue(fn: () => Promise<void> | void): void {
    this.queue = this.queue.then(fn).catch((e) => this.log('error', (e as Error).stack ?? String(e)));
  }

  /**
   * Sends one signed envelope; only protocol message types with schema-valid bodies can leave the
   * site. Logged before it leaves; a message without acknowledgement is logged `msg.unacked`; an
   * accepted one comes back with the coordinator's signed receipt, which is checked and kept.
   */
  private async send(type: SiteMessageType, studyId: string | null, round: number | null, body: unknown, m?: Record<string, string | number | boolean>): Promise<Ack> {
    const schema = BODY_SCHEMAS[type];
    if (schema)
      schema.parse(body); // nothing but the protocol's message types may leave
    else if (!(body instanceof Uint8Array)) throw new TypeError(`${type} carries ciphertext bytes`);
    const s = this.socket;
    if (!s?.connected) return { ok: false, code: 'TWF_E_DISCONNECTED', detail: 'not connected' };
    const env = sealEnvelope(this.signer, { to: this.config.coordinatorId, type, studyId, round, body, ...(m ? { meta: m } : {}) });
    this.audit.append({
      actor: this.config.siteId,
      action: 'msg.sent',
      peer: this.config.coordinatorId,
      msgType: type,
      seq: env.header.seq,
      studyId,
      round,
      digest: env.header.digest,
      sizeBytes: env.body.length,
    });
    const ack = await new Promise<Ack>((resolve) => {
      s.timeout(120_000).emit('envelope', env, (err: Error | null, a?: Ack) => resolve(err || !a ? { ok: false, code: 'TWF_E_TIMEOUT', detail: err?.message ?? 'no ack' } : a));
    });
    if (!ack.ok && (ack.code === 'TWF_E_TIMEOUT' || ack.code === 'TWF_E_DISCONNECTED')) {
      this.audit.append({ actor: this.config.siteId, action: 'msg.unacked', peer: this.config.coordinatorId, msgType: type, seq: env.header.seq, studyId, round, detail: ack.detail });
    } else if (ack.ok) {
      this.keepReceipt(env, ack);
    } else {
      this.log('warn', `${type} refused: ${ack.code} ${ack.detail}`);
      this.opts.events?.onRejected?.({ code: ack.code, detail: ack.detail, refType: type });
    }
    return ack;
  }

  private keepReceipt(env: Envelope, ack: Extract<Ack, { ok: true }>): void {
    const h = env.header;
    const r = ack.receipt;
    const fields =
      r &&
      receiptFields({
        coordinatorId: this.config.coordinatorId,
        siteId: this.config.siteId,
        seq: h.seq,
        msgType: h.type,
        studyId: h.studyId,
        round: h.round,
        digest: h.digest,
        entryId: r.entryId,
        entryHash: r.entryHash,
      });
    if (!r || !verifyStatement(RECEIPT_KIND, fields!, r.signature, this.coordinatorKey)) {
      this.audit.append({
        actor: this.config.coordinatorId,
        action: 'receipt.invalid',
        msgType: h.type,
        seq: h.seq,
        studyId: h.studyId,
        round: h.round,
        detail: r ? 'signature does not verify with the pinned coordinator key' : 'accepted without a receipt',
      });
      return;
    }
    this.db
      .insert(receipts)
      .values({
        seq: h.seq,
        msgType: h.type,
        studyId: h.studyId,
        round: h.round,
        digest: h.digest,
        entryId: r.entryId,
        entryHash: r.entryHash,
        coordinatorId: this.config.coordinatorId,
        signature: r.signature,
        receivedAtMs: Date.now(),
      })
      .onConflictDoNothing()
      .run();
  }

  /** Verifies a coordinator envelope: pinned sender key, addressed to us, in sequence, fresh. */
  private async onEnvelope(raw: unknown): Promise<void> {
    let env: Envelope;
    try {
      env = parseEnvelope(raw);
      if (env.header.senderId !== this.config.coordinatorId) throw new WireError('TWF_E_UNKNOWN_SITE', `sender ${env.header.senderId} is not the pinned coordinator`);
      verifyEnvelope(env, this.coordinatorKey);
      if (env.header.to !== this.config.siteId) throw new WireError('TWF_E_WRONG_RECIPIENT', `addressed to ${env.header.to}`);
      const last = Number(this.getMeta('coordinatorSeq') ?? '0');
      if (env.header.seq <= last) throw new WireError('TWF_E_REPLAY', `coordinator seq ${env.header.seq} <= ${last}`);
      if (Math.abs(env.header.tsMs - Date.now()) > this.config.clockSkewMs)
        throw new WireError(
          'TWF_E_STALE_MESSAGE',
          `coordinator timestamp ${new Date(env.header.tsMs).toISOString()} is outside ±${Math.round(this.config.clockSkewMs / 1000)} s of this site's clock (check NTP)`,
        );
      this.setMeta('coordinatorSeq', String(env.header.seq));
    } catch (e) {
      const we = e instanceof WireError ? e : new WireError('TWF_E_MALFORMED', String(e));
      this.audit.append({ actor: 'unknown', action: 'msg.rejected', detail: `${we.code}: ${we.detail}` });
      this.log('warn', `refused a coordinator message: ${we.message}`);
      return;
    }
    const h = env.header;
    if (h.studyId !== null && !isSafeId(h.studyId)) return; // the schema already refuses these; never let one near a path
    this.audit.append({
      actor: h.senderId,
      action: 'msg.received',
      peer: this.config.siteId,
      msgType: h.type,
      seq: h.seq,
      studyId: h.studyId,
      round: h.round,
      digest: h.digest,
      sizeBytes: env.body.length,
    });
    try {
      switch (h.type) {
        case 'welcome':
          this.log('info', `welcomed by ${decodeBody(env, 'welcome').coordinatorId}`);
          break;
        case 'study.announce':
          await this.onAnnounce(decodeBody(env, 'study.announce'));
          break;
        case 'study.state':
          this.onStudyState(h.studyId!, decodeBody(env, 'study.state'));
          break;
        case 'keys.request':
          await this.onKeysRequest(h.studyId!, decodeBody(env, 'keys.request'));
          break;
        case 'keys.deliver':
          this.onKeysDeliver(h.studyId!, decodeBody(env, 'keys.deliver'));
          break;
        case 'round.start':
          await this.rounds.onStart(h.studyId!, h.round!, decodeBody(env, 'round.start'));
          break;
        case 'mask.peers':
          await this.rounds.onPeers(h.studyId!, h.round!, decodeBody(env, 'mask.peers'));
          break;
        case 'mask.survivors':
          await this.rounds.onSurvivors(h.studyId!, h.round!, decodeBody(env, 'mask.survivors'));
          break;
        case 'mask.reveal':
          await this.rounds.onReveal(h.studyId!, h.round!, decodeBody(env, 'mask.reveal'));
          break;
        case 'round.aggregate':
          await this.rounds.onAggregate(env);
          break;
        case 'round.failed':
          this.rounds.onFailed(h.studyId!, h.round!, decodeBody(env, 'round.failed'));
          break;
        case 'audit.checkpoint':
          this.onCheckpoint(decodeBody(env, 'audit.checkpoint'));
          break;
        case 'tls.rollover':
          this.tls.onRollover(decodeBody(env, 'tls.rollover'));
          break;
        case 'study.completed':
          await this.onCompleted(h.studyId!, decodeBody(env, 'study.completed'));
          break;
        case 'reject': {
          const r = decodeBody(env, 'reject');
          this.log('warn', `coordinator refused ${r.refType} seq ${r.refSeq}: ${r.code} ${r.detail}`);
          break;
        }
        default:
          this.log('warn', `unexpected ${h.type}`);
      }
    } catch (e) {
      // Any catalogued error keeps its code (e.g. the strategy layer's TWF_E_STRATEGY_STATE); only the unexpected is TWF_E_INTERNAL.
      const code = e instanceof TwinfedError ? (e as TwinfedError<string>).code : 'TWF_E_INTERNAL';
      this.audit.append({ actor: this.config.siteId, action: 'msg.failed', msgType: h.type, studyId: h.studyId, round: h.round, detail: `${code}: ${(e as Error).message}` });
      this.log(code === 'TWF_E_INTERNAL' ? 'error' : 'warn', `${h.type}: ${(e as Error).message}`);
    }
  }

  private onCheckpoint(b: BodyOf['audit.checkpoint']): void {
    const c = { coordinatorId: this.config.coordinatorId, entryId: b.entryId, entryHash: b.entryHash, tsMs: b.tsMs };
    if (!verifyStatement(CHECKPOINT_KIND, checkpointFields(c), b.signature, this.coordinatorKey))
      throw new WireError('TWF_E_BAD_SIGNATURE', 'audit checkpoint not signed with the pinned coordinator key');
    this.db
      .insert(auditCheckpoints)
      .values({ ...c, signature: b.signature, receivedAtMs: Date.now() })
      .onConflictDoNothing()
      .run();
  }

  // ------------------------------------------------------------- approvals

  /**
   * The officer's approval, bound to the manifest hash — which covers the roster: the sites, their
   * keys and the key-dealer order. Called by `twinfed site approve` (possibly from another process
   * on the same file). A wrong hash is refused with the hash to check against, not "changed".
   */
  static approve(db: SiteDb, audit: AuditLog, studyId: string, officer: string, expectedHash?: string): { manifest: StudyManifest; manifestHash: string } {
    const st = db.select().from(studies).where(eq(studies.studyId, studyId)).get();
    if (!st) throw new WireError('TWF_E_UNKNOWN_STUDY', `${studyId} has not been announced to this site`);
    const manifest = StudyManifestSchema.parse(JSON.parse(st.manifestJson));
    const hash = manifestHash(manifest);
    if (hash !== st.manifestHash) throw new WireError('TWF_E_MANIFEST_MISMATCH', 'stored manifest does not match its hash');
    if (expectedHash && expectedHash !== hash) {
      throw new SiteError('TWF_E_APPROVAL_HASH', `${studyId}: the hash given begins ${expectedHash.slice(0, 16)}; review the manifest before approving`);
    }
    if (st.status === 'completed' || st.status === 'excluded') throw new WireError('TWF_E_STUDY_STATE', `${studyId} is ${st.status}`);
    db.transaction((tx) => {
      tx.insert(approvals)
        .values({ studyId, manifestHash: hash, officer, approvedAtMs: Date.now() })
        .onConflictDoUpdate({ target: [approvals.studyId, approvals.manifestHash], set: { officer, approvedAtMs: Date.now(), withdrawnAtMs: null, withdrawnBy: null } })
        .run();
      if (st.status === 'pending' || st.status === 'withdrawn') tx.update(studies).set({ status: 'approved' }).where(eq(studies.studyId, studyId)).run();
      audit.append({
        actor: officer,
        action: 'study.approved',
        studyId,
        digest: hash,
        detail: `${manifest.title}; roster ${manifest.participants.map((p) => `${p.siteId}=${siteFingerprint(p.ed25519PublicKey, p.x25519PublicKey)}`).join(',')}`,
      });
    });
    return { manifest, manifestHash: hash };
  }

  /** The officer withdraws the approval: the site sends study.withdraw, finishes the round it is in, and takes part in no later round. */
  static withdraw(db: SiteDb, audit: AuditLog, studyId: string, officer: string, reason: string): { manifestHash: string } {
    const st = db.select().from(studies).where(eq(studies.studyId, studyId)).get();
    if (!st) throw new WireError('TWF_E_UNKNOWN_STUDY', `${studyId} has not been announced to this site`);
    const ap = db
      .select()
      .from(approvals)
      .where(and(eq(approvals.studyId, studyId), eq(approvals.manifestHash, st.manifestHash)))
      .get();
    if (!ap || ap.withdrawnAtMs !== null) throw new WireError('TWF_E_STUDY_NOT_APPROVED', `${studyId} has no approval to withdraw`);
    db.transaction((tx) => {
      tx.update(approvals)
        .set({ withdrawnAtMs: Date.now(), withdrawnBy: officer, note: reason })
        .where(and(eq(approvals.studyId, studyId), eq(approvals.manifestHash, st.manifestHash)))
        .run();
      tx.update(studies).set({ status: 'withdrawn' }).where(eq(studies.studyId, studyId)).run();
      audit.append({ actor: officer, action: 'study.withdrawn', studyId, digest: st.manifestHash, detail: reason });
    });
    return { manifestHash: st.manifestHash };
  }

  /** Announced studies with their approval state and roster, for `twinfed site studies`. */
  static listStudies(db: SiteDb) {
    return db
      .select()
      .from(studies)
      .all()
      .map((st) => {
        const ap = db
          .select()
          .from(approvals)
          .where(and(eq(approvals.studyId, st.studyId), eq(approvals.manifestHash, st.manifestHash)))
          .get();
        const m = StudyManifestSchema.safeParse(JSON.parse(st.manifestJson));
        return {
          studyId: st.studyId,
          title: m.success ? m.data.title : '(unreadable manifest)',
          status: st.status,
          manifestHash: st.manifestHash,
          approvedBy: ap && ap.withdrawnAtMs === null ? ap.officer : null,
          manifest: m.success ? m.data : null,
        };
      });
  }

  private isApproved(studyId: string, hash: string): boolean {
    const a = this.db
      .select()
      .from(approvals)
      .where(and(eq(approvals.studyId, studyId), eq(approvals.manifestHash, hash)))
      .get();
    return !!a && a.withdrawnAtMs === null;
  }

  /**
   * The manifest this site takes part under. For a new round it must be approved and not
   * withdrawn; a round already under way is finished under the approval it started with.
   */
  private participatingManifest(studyId: string, forNewRound: boolean): { manifest: StudyManifest; hash: string } {
    const st = this.db.select().from(studies).where(eq(studies.studyId, studyId)).get();
    if (!st) throw new WireError('TWF_E_UNKNOWN_STUDY', studyId);
    const a = this.db
      .select()
      .from(approvals)
      .where(and(eq(approvals.studyId, studyId), eq(approvals.manifestHash, st.manifestHash)))
      .get();
    const ok = !!a && (a.withdrawnAtMs === null || !forNewRound) && st.status !== 'excluded';
    if (!ok) {
      this.audit.append({ actor: this.config.siteId, action: 'training.refused', studyId, detail: `TWF_E_STUDY_NOT_APPROVED${a?.withdrawnAtMs ? ' (approval withdrawn)' : ''}` });
      this.opts.events?.onRejected?.({ code: 'TWF_E_STUDY_NOT_APPROVED', detail: studyId, refType: 'round.start' });
      throw new WireError('TWF_E_STUDY_NOT_APPROVED', studyId);
    }
    return { manifest: StudyManifestSchema.parse(JSON.parse(st.manifestJson)), hash: st.manifestHash };
  }

  private async onAnnounce(b: BodyOf['study.announce']): Promise<void> {
    const m = b.manifest;
    const hash = manifestHash(m);
    if (hash !== b.manifestHash) throw new WireError('TWF_E_MANIFEST_MISMATCH', 'announced hash does not match the manifest');
    if (m.coordinatorId !== this.config.coordinatorId) throw new WireError('TWF_E_MANIFEST_MISMATCH', `manifest of coordinator ${m.coordinatorId}`);
    if (!m.participants.some((p) => p.siteId === this.config.siteId)) throw new WireError('TWF_E_NOT_PARTICIPANT', `${m.studyId}: this site is not in the roster`);
    const me = m.participants.find((p) => p.siteId === this.config.siteId)!;
    if (
      !Buffer.from(fromB64(me.ed25519PublicKey)).equals(Buffer.from(this.identity.ed25519PublicKey)) ||
      !Buffer.from(fromB64(me.x25519PublicKey)).equals(Buffer.from(this.identity.x25519PublicKey))
    ) {
      throw new WireError('TWF_E_MANIFEST_MISMATCH', `${m.studyId}: the roster lists other keys for this site than its own`);
    }
    const prev = this.db.select().from(studies).where(eq(studies.studyId, m.studyId)).get();
    if (!prev) {
      this.db
        .insert(studies)
        .values({ studyId: m.studyId, manifestJson: JSON.stringify(m), manifestHash: hash, status: 'pending', announcedAtMs: Date.now() })
        .run();
      this.audit.append({
        actor: this.config.coordinatorId,
        action: 'study.announced',
        studyId: m.studyId,
        digest: hash,
        detail: `${m.title} (manifest version ${m.manifestVersion}, ${m.participants.length} sites)`,
      });
      this.awaitingApproval(m, hash, false);
    } else if (prev.manifestHash !== hash) {
      // A changed manifest (e.g. a roster change) needs a new approval: the old one does not carry over.
      this.db
        .update(studies)
        .set({ manifestJson: JSON.stringify(m), manifestHash: hash, status: 'pending' })
        .where(eq(studies.studyId, m.studyId))
        .run();
      this.audit.append({ actor: this.config.coordinatorId, action: 'study.manifest_changed', studyId: m.studyId, digest: hash, detail: `version ${m.manifestVersion}; was ${prev.manifestHash}` });
      this.awaitingApproval(m, hash, true);
    } else if (b.status === 'running' && prev.status === 'stopped') {
      this.db
        .update(studies)
        .set({ status: this.isApproved(m.studyId, hash) ? 'approved' : 'pending' })
        .where(eq(studies.studyId, m.studyId))
        .run();
    }
    this.joinBackoff.delete(m.studyId);
    await this.pollStudies();
  }

  /** Tells whoever runs the node (the `site run` log, the console) that the officer has a manifest to review. */
  private awaitingApproval(m: StudyManifest, hash: string, changed: boolean): void {
    this.log('warn', `study ${m.studyId} "${m.title}" awaits the privacy officer's approval (manifest ${hash.slice(0, 16)}${changed ? ', changed' : ''}): twinfed site study show ${m.studyId}`);
    this.opts.events?.onAwaitingApproval?.({ studyId: m.studyId, title: m.title, manifestHash: hash, changed });
  }

  private onStudyState(studyId: string, b: BodyOf['study.state']): void {
    const st = this.db.select().from(studies).where(eq(studies.studyId, studyId)).get();
    if (!st || st.manifestHash !== b.manifestHash) return;
    const next = b.state === 'running' ? (this.isApproved(studyId, st.manifestHash) ? 'approved' : 'pending') : b.state === 'stopped' ? 'stopped' : b.state === 'excluded' ? 'excluded' : st.status;
    if (next !== st.status && st.status !== 'completed') {
      this.db.update(studies).set({ status: next }).where(eq(studies.studyId, studyId)).run();
      this.audit.append({ actor: this.config.coordinatorId, action: 'study.state', studyId, digest: b.manifestHash, detail: `${st.status} -> ${next}` });
    }
  }

  /**
   * Joins every announced study its officer approved (once; a refused join is retried with
   * exponential backoff, never in a loop), declines once per manifest those not approved, and
   * tells the coordinator about a withdrawn approval.
   */
  private async pollStudies(): Promise<void> {
    if (!this.socket?.connected || this.closed) return;
    for (const st of this.db.select().from(studies).all()) {
      if (['completed', 'stopped', 'excluded', 'joined', 'legacy', 'stranded'].includes(st.status)) continue;
      const manifest = StudyManifestSchema.parse(JSON.parse(st.manifestJson));
      if (st.status === 'withdrawn') {
        if (this.getMeta(`withdrawn:${st.studyId}`) !== st.manifestHash) {
          const ap = this.db
            .select()
            .from(approvals)
            .where(and(eq(approvals.studyId, st.studyId), eq(approvals.manifestHash, st.manifestHash)))
            .get();
          const ack = await this.send('study.withdraw', st.studyId, null, { manifestHash: st.manifestHash, officer: ap?.withdrawnBy ?? 'officer', reason: ap?.note ?? 'approval withdrawn' });
          if (ack.ok || ack.code === 'TWF_E_NOT_PARTICIPANT') this.setMeta(`withdrawn:${st.studyId}`, st.manifestHash);
        }
        continue;
      }
      if (!this.isApproved(st.studyId, st.manifestHash)) {
        if (st.declinedHash !== st.manifestHash) {
          this.db.update(studies).set({ declinedHash: st.manifestHash }).where(eq(studies.studyId, st.studyId)).run();
          this.audit.append({ actor: this.config.siteId, action: 'study.awaiting_approval', studyId: st.studyId, digest: st.manifestHash, detail: 'TWF_E_STUDY_NOT_APPROVED' });
          await this.send('study.decline', st.studyId, null, { manifestHash: st.manifestHash, code: 'TWF_E_STUDY_NOT_APPROVED', reason: "awaiting the privacy officer's approval" });
        }
        continue;
      }
      const back = this.joinBackoff.get(st.studyId);
      if (back && Date.now() < back.atMs) continue;
      const weights = this.opts.trainer.initialWeights(manifest);
      if (weights.length !== manifest.updateLength) {
        this.refuseJoin(st.studyId, st.manifestHash, 'TWF_E_UPDATE_SHAPE', `this site's model has ${weights.length} parameters; the manifest says ${manifest.updateLength}`);
        continue;
      }
      const data = this.opts.trainer.dataSummary(manifest);
      const need =
        manifest.task === 'segmentation'
          ? { n: manifest.data.minTrainSlices, what: 'training slices' }
          : manifest.task === 'twin-prior'
            ? { n: manifest.data.minPatients, what: `patients with at least ${manifest.data.minMeasurements} measurements (minimum-patient rule)` }
            : { n: manifest.data.minTrainPatients, what: 'training patients' };
      if (data.trainSlices < need.n) {
        this.refuseJoin(st.studyId, st.manifestHash, 'TWF_E_NO_DATA', `${data.trainSlices} ${need.what} < ${need.n}`);
        continue;
      }
      const baseline = await this.ensureInitialModel(manifest);
      const ack = await this.send('study.join', st.studyId, null, { manifestHash: st.manifestHash, trainSamples: data.trainSlices, valPatients: data.valPatients });
      if (!ack.ok) {
        if (ack.code === 'TWF_E_STUDY_STATE') this.setStatus(st.studyId, 'stopped', `join refused: ${ack.detail}`);
        else if (ack.code === 'TWF_E_NOT_PARTICIPANT' || ack.code === 'TWF_E_EVICTED') this.setStatus(st.studyId, 'excluded', `join refused: ${ack.code} ${ack.detail}`);
        else {
          const delayMs = Math.min((back?.delayMs ?? 2500) * 2, 300_000);
          this.joinBackoff.set(st.studyId, { atMs: Date.now() + delayMs, delayMs });
        }
        continue;
      }
      this.joinBackoff.delete(st.studyId);
      this.db.update(studies).set({ status: 'joined' }).where(eq(studies.studyId, st.studyId)).run();
      // Round 0: how the seeded initial model does here, the baseline every round is compared with.
      if (baseline) await this.reportMetrics(st.studyId, 0, baseline, null);
    }
  }

  private refuseJoin(studyId: string, hash: string, code: 'TWF_E_NO_DATA' | 'TWF_E_UPDATE_SHAPE', reason: string): void {
    // Once per manifest and reason: the "awaiting approval" decline sent before the officer approved
    // must not silence this one, or the coordinator would keep the wrong reason and the site no record.
    const key = `declined:${studyId}:${code}`;
    if (this.getMeta(key) === hash) return;
    this.setMeta(key, hash);
    this.db.update(studies).set({ declinedHash: hash }).where(eq(studies.studyId, studyId)).run();
    this.audit.append({ actor: this.config.siteId, action: 'study.declined', studyId, digest: hash, detail: `${code}: ${reason}` });
    void this.send('study.decline', studyId, null, { manifestHash: hash, code, reason });
  }

  private setStatus(studyId: string, status: string, detail: string): void {
    this.db.update(studies).set({ status }).where(eq(studies.studyId, studyId)).run();
    this.audit.append({ actor: this.config.siteId, action: 'study.state', studyId, detail: `-> ${status}: ${detail}` });
  }

  /** Version 0 of the global model: the seeded initialisation all sites share; its Dice is the baseline. */
  private async ensureInitialModel(manifest: StudyManifest): Promise<LocalEvalResult | null> {
    if (this.modelAt(manifest.studyId, 0)) return null;
    const w = this.opts.trainer.initialWeights(manifest);
    const ev = await this.opts.trainer.evaluate(manifest, w);
    this.storeModel(manifest.studyId, 0, w, ev.meanDice);
    return ev;
  }

  // ------------------------------------------------------------------ keys

  private async onKeysRequest(studyId: string, b: BodyOf['keys.request']): Promise<void> {
    const { manifest, hash } = this.participatingManifest(studyId, true);
    const body = await dealStudyKey(this.db, this.audit, this.identity, this.config.siteId, manifest, hash, b);
    await this.send('keys.sealed', studyId, null, body);
  }

  private onKeysDeliver(studyId: string, b: BodyOf['keys.deliver']): void {
    const { manifest, hash } = this.participatingManifest(studyId, false);
    acceptStudyKey(this.db, this.audit, this.identity, this.config.siteId, manifest, hash, b);
  }

  // ---------------------------------------------------------------- rounds

  /**
   * True when the model `version` is here; otherwise asks for the missing aggregates (e.g. the
   * site was offline) and returns false: `then` runs once they have been applied. 'pruned' when
   * the coordinator no longer holds one of them (TWF_E_AGGREGATE_PRUNED: this site fell further
   * behind than its catch-up window): the study is `stranded` here, its last model kept; nothing
   * but a restore of this data folder from within the window lets the site train in it again.
   */
  private async caughtUp(studyId: string, version: number, then: () => Promise<void>): Promise<boolean | 'pruned'> {
    if (this.modelAt(studyId, version)) return true;
    this.pending.set(studyId, { version, then });
    const have = this.latestModel(studyId)?.version ?? 0;
    const ack = await this.send('aggregate.request', studyId, null, { fromRound: have + 1 });
    if (ack.ok || ack.code !== 'TWF_E_AGGREGATE_PRUNED') return false;
    this.pending.delete(studyId);
    const st = this.db.select().from(studies).where(eq(studies.studyId, studyId)).get();
    if (st && st.status !== 'stranded' && st.status !== 'completed') {
      this.setStatus(studyId, 'stranded', `TWF_E_AGGREGATE_PRUNED: this site holds model version ${have}, needs ${version}; ${ack.detail}`);
      this.log(
        'error',
        `${studyId}: stranded at model version ${have}: the coordinator pruned the aggregates needed to reach version ${version} (TWF_E_AGGREGATE_PRUNED); this site declines the study's rounds`,
      );
    }
    return 'pruned';
  }

  private async afterApplied(studyId: string, round: number): Promise<void> {
    const p = this.pending.get(studyId);
    if (p && this.modelAt(studyId, p.version)) {
      this.pending.delete(studyId);
      this.enqueue(() => p.then());
    } else if (p && round >= p.version) {
      this.pending.delete(studyId);
    }
  }

  private async reportMetrics(studyId: string, round: number, ev: LocalEvalResult, work: RoundWorkRow | null): Promise<void> {
    // Small-count suppression: a metric over fewer than minReportPatients patients is not reported.
    const { valPatients } = ev;
    const suppress = valPatients < this.config.minReportPatients;
    await this.send('metrics.report', studyId, round, {
      evaluatedRound: round,
      metrics: [...(ev.metric ? [] : [{ name: 'meanDice', value: suppress ? null : ev.meanDice }]), ...(ev.metric ? [{ name: ev.metric.name, value: suppress ? null : ev.metric.value }] : [])],
      valPatients,
      trainLoss: work?.trainLoss ?? null,
      trainMs: work?.trainMs ?? null,
      encryptMs: work?.encryptMs ?? null,
      uploadBytes: work?.uploadBytes ?? null,
    });
  }

  private async onCompleted(studyId: string, b: BodyOf['study.completed']): Promise<void> {
    const st = this.db.select().from(studies).where(eq(studies.studyId, studyId)).get();
    if (!st || st.status === 'completed') return;
    if ((await this.caughtUp(studyId, b.finalVersion, () => this.onCompleted(studyId, b))) !== true) return;
    const final = this.db
      .select()
      .from(models)
      .where(and(eq(models.studyId, studyId), eq(models.version, b.finalVersion)))
      .get();
    const modelDir = join(this.opts.dataDir, SITE_FILES.models, studyId);
    if (final && isSafeId(studyId)) this.exportModel(StudyManifestSchema.parse(JSON.parse(st.manifestJson)), final, modelDir);
    this.db.update(studies).set({ status: 'completed' }).where(eq(studies.studyId, studyId)).run();
    this.audit.append({
      actor: this.config.siteId,
      action: 'study.completed',
      studyId,
      round: b.finalVersion,
      digest: final?.digest ?? null,
      detail: `${b.rounds} rounds; final model version ${b.finalVersion}`,
    });
    this.opts.events?.onCompleted?.({ studyId, rounds: b.rounds, modelDir });
  }

  /** Writes the global model with its provenance (manifest hash, rounds, weight digest). */
  exportModel(manifest: StudyManifest, m: typeof models.$inferSelect, dir: string): void {
    writeModelDir(
      dir,
      {
        studyId: manifest.studyId,
        title: manifest.title,
        manifestHash: manifestHash(manifest),
        model: manifest.model,
        version: m.version,
        meanDiceAtSite: m.meanDice,
        ...(manifest.task === 'response' ? { split: { splitSalt: manifest.data.splitSalt, trainPercent: manifest.data.trainPercent, minMeasurements: manifest.data.minMeasurements } } : {}),
        decryptedAt: this.config.siteId,
        createdAt: new Date(m.createdAtMs).toISOString(),
      },
      new Float32Array(new Uint8Array(m.weights).buffer.slice(0)),
    );
  }

  // --------------------------------------------------------------- helpers

  latestModel(studyId: string) {
    return this.db.select().from(models).where(eq(models.studyId, studyId)).orderBy(desc(models.version)).limit(1).get();
  }

  modelAt(studyId: string, version: number): Float32Array | null {
    const m = this.db
      .select()
      .from(models)
      .where(and(eq(models.studyId, studyId), eq(models.version, version)))
      .get();
    return m ? new Float32Array(new Uint8Array(m.weights).buffer.slice(0)) : null;
  }

  modelHistory(studyId: string) {
    return this.db.select({ version: models.version, meanDice: models.meanDice, digest: models.digest }).from(models).where(eq(models.studyId, studyId)).orderBy(asc(models.version)).all();
  }

  /**
   * Model `version` and the strategy state reached with it, in one transaction: a site never holds
   * a model without the state the next aggregate needs. Returns the model digest and state hash.
   */
  private storeModel(studyId: string, version: number, w: Float32Array, meanDice: number | null, state: StrategyState | null = null): { digest: string; stateHash: string } {
    const bytes = Buffer.from(w.buffer, w.byteOffset, w.byteLength);
    const digest = sha256Hex(bytes);
    const stateBytes = state ? Buffer.from(serialiseState(state)) : null;
    const stateHash = stateBytes ? sha256Hex(stateBytes) : NO_STATE_HASH;
    const now = Date.now();
    this.db.transaction((tx) => {
      tx.insert(models).values({ studyId, version, weights: bytes, digest, createdAtMs: now, meanDice }).onConflictDoNothing().run();
      if (stateBytes) tx.insert(strategyState).values({ studyId, version, state: stateBytes, stateHash, createdAtMs: now }).onConflictDoNothing().run();
    });
    return { digest, stateHash };
  }

  /** The strategy state stored with model `version` (null: none, as at version 0 and for FedAvg/FedProx). */
  strategyStateAt(studyId: string, version: number): StrategyState | null {
    const row = this.db
      .select()
      .from(strategyState)
      .where(and(eq(strategyState.studyId, studyId), eq(strategyState.version, version)))
      .get();
    if (!row) return null;
    const bytes = new Uint8Array(row.state);
    if (sha256Hex(bytes) !== row.stateHash) throw new StrategyError('TWF_E_STRATEGY_STATE', `${studyId}: the strategy state of version ${version} does not match its hash`);
    // The row's own hash only catches a partial edit: a state replaced with its hash recomputed (an
    // older state, another study's) must also match the hash this site wrote into its signed,
    // hash-chained audit log when it applied that version.
    const applied = this.db.$client.prepare("select detail from audit_log where action = 'aggregate.applied' and study_id = ? and round = ? order by id limit 1").get(studyId, version) as
      { detail: string | null } | undefined;
    const audited = /(?:^| )state=(\S+)/.exec(applied?.detail ?? '')?.[1];
    if (audited !== undefined && audited !== row.stateHash)
      throw new StrategyError('TWF_E_STRATEGY_STATE', `${studyId}: the strategy state of version ${version} is not the one this site audited when it applied that version`);
    return parseState(bytes);
  }

  /** SHA-256 of the strategy state stored with model `version`, or 'none' (for audits and comparisons across sites). */
  stateHashAt(studyId: string, version: number): string {
    return (
      this.db
        .select({ h: strategyState.stateHash })
        .from(strategyState)
        .where(and(eq(strategyState.studyId, studyId), eq(strategyState.version, version)))
        .get()?.h ?? NO_STATE_HASH
    );
  }

  private getMeta(key: string): string | undefined {
    return this.db.select().from(meta).where(eq(meta.key, key)).get()?.value;
  }

  private setMeta(key: string, value: string): void {
    this.db.insert(meta).values({ key, value }).onConflictDoUpdate({ target: meta.key, set: { value } }).run();
  }

  private bumpMeta(key: string): number {
    return this.db.transaction(() => {
      const next = Number(this.getMeta(key) ?? '0') + 1;
      this.setMeta(key, String(next));
      return next;
    });
  }
}
