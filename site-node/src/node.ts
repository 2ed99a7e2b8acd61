import { and, asc, desc, eq } from 'drizzle-orm';
import { join } from 'node:path';
import { io, type Socket } from 'socket.io-client';
import {
  BODY_SCHEMAS, PROTOCOL_VERSION, StudyManifestSchema, WireError, manifestHash, packFrames, sha256Hex, unpackFrames,
  type Ack, type BodyOf, type ClientToServerEvents, type Envelope, type RoundAggregateMetaT, type ServerToClientEvents,
  type SiteMessageType, type StudyManifest,
} from '@twinfed/protocols';
import { AuditLog } from '@twinfed/shared/audit/index';
import {
  decodeBody, decodeMeta, fromB64, initSodium, loadIdentity, openSealed, parseEnvelope, sealEnvelope, sealTo, toB64, verifyEnvelope,
  type Identity, type Signer,
} from '@twinfed/shared/crypto/index';
import {
  createHeContext, decryptAverage, encryptWeightedUpdate, generateSecretKey, heParamsDigest, type HeParams,
} from '@twinfed/shared/he/index';
import { SITE_FILES, loadSiteConfig, type SiteConfig } from './config.js';
import { writeModelDir } from './model-files.js';
import { openSiteDb, type SiteDb } from './db/index.js';
import { approvals, meta, models, roundWork, studies, studyKeys } from './db/schema.js';
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
  /** A round's aggregate was decrypted and applied; `meanDice` evaluated on local validation patients. */
  onApplied?: (e: { studyId: string; round: number; meanDice: number | null; decryptMs: number; metric?: { name: string; value: number | null } }) => void;
  onUploaded?: (r: RoundReport) => void;
  onRejected?: (e: { code: string; detail: string; refType: string | null }) => void;
  onCompleted?: (e: { studyId: string; rounds: number; modelDir: string }) => void;
  onLog?: (level: 'info' | 'warn' | 'error', msg: string) => void;
}

export interface SiteNodeOptions {
  dataDir: string;
  trainer: LocalTrainer;
  events?: SiteEvents;
  /** Poll interval for officer approvals made from another process (ms). */
  approvalPollMs?: number;
}

/**
 * A hospital's site node: dials out to the coordinator, verifies every
 * coordinator message against the key pinned at enrolment, trains only on
 * studies its officer approved (bound to the manifest hash), and sends out
 * nothing but signed protocol envelopes: encrypted updates, sealed keys, and
 * aggregate metrics.
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
  /** Work waiting for missed aggregates to be applied, per study. */
  private readonly pending = new Map<string, { version: number; then: () => Promise<void> }>();
  private closed = false;

  private constructor(private readonly opts: SiteNodeOptions) {
    this.config = loadSiteConfig(opts.dataDir);
    this.identity = loadIdentity(join(opts.dataDir, SITE_FILES.identity));
    this.coordinatorKey = fromB64(this.config.coordinatorPublicKey);
    this.db = openSiteDb(join(opts.dataDir, SITE_FILES.db));
    this.audit = new AuditLog(this.db, this.config.siteId, this.identity.ed25519SecretKey, this.identity.ed25519PublicKey);
    this.signer = { id: this.config.siteId, ed25519SecretKey: this.identity.ed25519SecretKey, nextSeq: () => this.bumpMeta('seq') };
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

  /** Dials out to the coordinator (reconnecting forever) and keeps the site in sync. */
  connect(): void {
    this.socket = io(this.config.coordinatorUrl, {
      auth: { siteId: this.config.siteId, protocolVersion: PROTOCOL_VERSION },
      transports: ['websocket'],
      reconnection: true,
      reconnectionDelay: 500,
      reconnectionDelayMax: 5000,
    });
    this.socket.on('connect', () => {
      this.log('info', `connected to ${this.config.coordinatorUrl}`);
      void this.send('hello', null, null, {
        siteName: this.config.siteName,
        backend: this.opts.trainer.backend,
        approved: this.db.select().from(approvals).all().map((a) => ({ studyId: a.studyId, manifestHash: a.manifestHash })),
      });
    });
    this.socket.on('connect_error', (err: Error & { data?: { code?: string; detail?: string } }) => {
      const code = err.data?.code ?? 'TWF_E_CONNECT';
      this.log('warn', `connection refused: ${err.message}`);
      this.audit.append({ actor: this.config.siteId, action: 'connect.failed', peer: this.config.coordinatorId, detail: `${code}: ${err.data?.detail ?? err.message}` });
      this.opts.events?.onRejected?.({ code, detail: err.data?.detail ?? err.message, refType: 'connect' });
      if (code === 'TWF_E_PROTOCOL_VERSION' || code === 'TWF_E_UNKNOWN_SITE') this.socket?.disconnect(); // retrying cannot help
    });
    this.socket.on('disconnect', (reason) => this.log('warn', `disconnected: ${reason}`));
    this.socket.on('envelope', (raw) => {
      this.queue = this.queue.then(() => this.onEnvelope(raw)).catch((e) => this.log('error', `handling a coordinator message: ${(e as Error).stack ?? e}`));
    });
    this.pollTimer = setInterval(() => this.enqueue(() => this.joinApproved()), this.opts.approvalPollMs ?? 1000);
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.pollTimer) clearInterval(this.pollTimer);
    this.socket?.disconnect();
    await this.queue.catch(() => undefined);
    this.db.$client.close();
  }

  private enqueue(fn: () => Promise<void> | void): void {
    this.queue = this.queue.then(fn).catch((e) => this.log('error', (e as Error).stack ?? String(e)));
  }

  /** Sends one signed envelope; only protocol message types with schema-valid bodies can leave the site. */
  private async send(type: SiteMessageType, studyId: string | null, round: number | null, body: unknown, meta?: Record<string, string | number | boolean>): Promise<Ack> {
    const schema = BODY_SCHEMAS[type];
    if (schema) schema.parse(body); // nothing but the protocol's message types may leave
    else if (!(body instanceof Uint8Array)) throw new TypeError(`${type} carries ciphertext bytes`);
    const s = this.socket;
    if (!s?.connected) return { ok: false, code: 'TWF_E_DISCONNECTED', detail: 'not connected' };
    const env = sealEnvelope(this.signer, { type, studyId, round, body, ...(meta ? { meta } : {}) });
    // Logged before it leaves: a message lost in transit shows up in `audit compare` as sent-not-received.
    this.audit.append({ actor: this.config.siteId, action: 'msg.sent', peer: this.config.coordinatorId, msgType: type, seq: env.header.seq, studyId, round, digest: env.header.digest, sizeBytes: env.body.length });
    const ack = await new Promise<Ack>((resolve) => {
      s.timeout(60_000).emit('envelope', env, (err: Error | null, a?: Ack) => resolve(err || !a ? { ok: false, code: 'TWF_E_TIMEOUT', detail: err?.message ?? 'no ack' } : a));
    });
    if (!ack.ok) {
      this.log('warn', `${type} refused: ${ack.code} ${ack.detail}`);
      this.opts.events?.onRejected?.({ code: ack.code, detail: ack.detail, refType: type });
    }
    return ack;
  }

  private async onEnvelope(raw: unknown): Promise<void> {
    let env: Envelope;
    try {
      env = parseEnvelope(raw);
      if (env.header.senderId !== this.config.coordinatorId) throw new WireError('TWF_E_UNKNOWN_SITE', `sender ${env.header.senderId} is not the pinned coordinator`);
      verifyEnvelope(env, this.coordinatorKey);
      const last = Number(this.getMeta('coordinatorSeq') ?? '0');
      if (env.header.seq <= last) throw new WireError('TWF_E_REPLAY', `coordinator seq ${env.header.seq} <= ${last}`);
      this.setMeta('coordinatorSeq', String(env.header.seq));
    } catch (e) {
      const we = e instanceof WireError ? e : new WireError('TWF_E_MALFORMED', String(e));
      this.audit.append({ actor: 'unknown', action: 'msg.rejected', detail: `${we.code}: ${we.detail}` });
      this.log('warn', `refused a coordinator message: ${we.message}`);
      return;
    }
    const h = env.header;
    this.audit.append({ actor: h.senderId, action: 'msg.received', peer: this.config.siteId, msgType: h.type, seq: h.seq, studyId: h.studyId, round: h.round, digest: h.digest, sizeBytes: env.body.length });
    try {
      switch (h.type) {
        case 'welcome': this.log('info', `welcomed by ${decodeBody(env, 'welcome').coordinatorId}`); break;
        case 'study.announce': await this.onAnnounce(decodeBody(env, 'study.announce')); break;
        case 'keys.request': await this.onKeysRequest(h.studyId!, decodeBody(env, 'keys.request')); break;
        case 'keys.deliver': this.onKeysDeliver(h.studyId!, decodeBody(env, 'keys.deliver')); break;
        case 'round.start': await this.onRoundStart(h.studyId!, h.round!, decodeBody(env, 'round.start')); break;
        case 'round.aggregate': await this.onAggregate(env); break;
        case 'study.completed': await this.onCompleted(h.studyId!, decodeBody(env, 'study.completed')); break;
        case 'reject': {
          const r = decodeBody(env, 'reject');
          this.log('warn', `coordinator refused ${r.refType} seq ${r.refSeq}: ${r.code} ${r.detail}`);
          break;
        }
        default: this.log('warn', `unexpected ${h.type}`);
      }
    } catch (e) {
      const code = e instanceof WireError ? e.code : 'TWF_E_INTERNAL';
      this.audit.append({ actor: this.config.siteId, action: 'msg.failed', msgType: h.type, studyId: h.studyId, round: h.round, detail: `${code}: ${(e as Error).message}` });
      this.log('error', `${h.type}: ${(e as Error).message}`);
    }
  }

  // ------------------------------------------------------------- approvals

  /**
   * The officer's approval, bound to the manifest hash. Called by
   * `twinfed site approve` (possibly from another process on the same file).
   */
  static approve(db: SiteDb, audit: AuditLog, studyId: string, officer: string, expectedHash?: string): { manifest: StudyManifest; manifestHash: string } {
    const st = db.select().from(studies).where(eq(studies.studyId, studyId)).get();
    if (!st) throw new WireError('TWF_E_UNKNOWN_STUDY', `${studyId} has not been announced to this site`);
    const manifest = StudyManifestSchema.parse(JSON.parse(st.manifestJson));
    const hash = manifestHash(manifest);
    if (hash !== st.manifestHash) throw new WireError('TWF_E_MANIFEST_MISMATCH', 'stored manifest does not match its hash');
    if (expectedHash && expectedHash !== hash) throw new WireError('TWF_E_MANIFEST_MISMATCH', `manifest is ${hash}, officer reviewed ${expectedHash}`);
    db.transaction((tx) => {
      tx.insert(approvals).values({ studyId, manifestHash: hash, officer, approvedAtMs: Date.now() }).onConflictDoNothing().run();
      tx.update(studies).set({ status: 'approved' }).where(eq(studies.studyId, studyId)).run();
      audit.append({ actor: officer, action: 'study.approved', studyId, digest: hash, detail: manifest.title });
    });
    return { manifest, manifestHash: hash };
  }

  /** Announced studies with their approval state, for `twinfed site studies`. */
  static listStudies(db: SiteDb): { studyId: string; title: string; status: string; manifestHash: string; approvedBy: string | null }[] {
    return db.select().from(studies).all().map((st) => {
      const ap = db.select().from(approvals).where(and(eq(approvals.studyId, st.studyId), eq(approvals.manifestHash, st.manifestHash))).get();
      return { studyId: st.studyId, title: (JSON.parse(st.manifestJson) as StudyManifest).title, status: st.status, manifestHash: st.manifestHash, approvedBy: ap?.officer ?? null };
    });
  }

  private isApproved(studyId: string, hash: string): boolean {
    return !!this.db.select().from(approvals).where(and(eq(approvals.studyId, studyId), eq(approvals.manifestHash, hash))).get();
  }

  private async onAnnounce(b: BodyOf['study.announce']): Promise<void> {
    const m = b.manifest;
    const hash = manifestHash(m);
    if (hash !== b.manifestHash) throw new WireError('TWF_E_MANIFEST_MISMATCH', 'announced hash does not match the manifest');
    const prev = this.db.select().from(studies).where(eq(studies.studyId, m.studyId)).get();
    if (!prev) {
      this.db.insert(studies).values({ studyId: m.studyId, manifestJson: JSON.stringify(m), manifestHash: hash, status: 'pending', announcedAtMs: Date.now() }).run();
      this.audit.append({ actor: this.config.coordinatorId, action: 'study.announced', studyId: m.studyId, digest: hash, detail: m.title });
    } else if (prev.manifestHash !== hash) {
      // A changed manifest needs a new approval: the old one does not carry over.
      this.db.update(studies).set({ manifestJson: JSON.stringify(m), manifestHash: hash, status: 'pending' }).where(eq(studies.studyId, m.studyId)).run();
      this.audit.append({ actor: this.config.coordinatorId, action: 'study.manifest_changed', studyId: m.studyId, digest: hash, detail: `was ${prev.manifestHash}` });
    }
    await this.joinApproved();
  }

  /** Joins every announced study its officer approved; declines (once per manifest) those not approved. */
  private async joinApproved(): Promise<void> {
    if (!this.socket?.connected || this.closed) return;
    for (const st of this.db.select().from(studies).all()) {
      if (st.status === 'completed') continue;
      const manifest = StudyManifestSchema.parse(JSON.parse(st.manifestJson));
      if (!this.isApproved(st.studyId, st.manifestHash)) {
        if (st.declinedHash !== st.manifestHash) {
          this.db.update(studies).set({ declinedHash: st.manifestHash }).where(eq(studies.studyId, st.studyId)).run();
          this.audit.append({ actor: this.config.siteId, action: 'study.awaiting_approval', studyId: st.studyId, digest: st.manifestHash, detail: 'TWF_E_STUDY_NOT_APPROVED' });
          await this.send('study.decline', st.studyId, null, { manifestHash: st.manifestHash, code: 'TWF_E_STUDY_NOT_APPROVED', reason: 'awaiting the privacy officer\'s approval' });
        }
        continue;
      }
      if (st.status === 'joined') continue;
      const data = this.opts.trainer.dataSummary(manifest);
      const need = manifest.task === 'segmentation' ? { n: manifest.data.minTrainSlices, what: 'training slices' } : { n: manifest.data.minTrainPatients, what: 'training patients' };
      if (data.trainSlices < need.n) {
        if (st.declinedHash !== st.manifestHash) {
          this.db.update(studies).set({ declinedHash: st.manifestHash }).where(eq(studies.studyId, st.studyId)).run();
          await this.send('study.decline', st.studyId, null, { manifestHash: st.manifestHash, code: 'TWF_E_NO_DATA', reason: `${data.trainSlices} ${need.what} < ${need.n}` });
        }
        continue;
      }
      const baseline = await this.ensureInitialModel(manifest);
      const ack = await this.send('study.join', st.studyId, null, { manifestHash: st.manifestHash, ...data });
      if (!ack.ok) continue;
      this.db.update(studies).set({ status: 'joined' }).where(eq(studies.studyId, st.studyId)).run();
      // Round 0: how the seeded initial model does here, the baseline every round is compared with.
      if (baseline) await this.reportMetrics(st.studyId, 0, baseline, null);
    }
  }

  /** Version 0 of the global model: the seeded initialisation all sites share; its Dice is the baseline. */
  private async ensureInitialModel(manifest: StudyManifest): Promise<LocalEvalResult | null> {
    if (this.latestModel(manifest.studyId)) return null;
    const w = this.opts.trainer.initialWeights(manifest);
    const ev = await this.opts.trainer.evaluate(manifest, w);
    this.storeModel(manifest.studyId, 0, w, ev.meanDice);
    return ev;
  }

  // ------------------------------------------------------------------ keys

  private async onKeysRequest(studyId: string, b: BodyOf['keys.request']): Promise<void> {
    const st = this.requireApprovedStudy(studyId);
    const manifest = StudyManifestSchema.parse(JSON.parse(st.manifestJson));
    const params = manifest.encryption as HeParams;
    if (heParamsDigest(b.encryption as HeParams) !== heParamsDigest(params)) throw new WireError('TWF_E_MANIFEST_MISMATCH', 'key request for other encryption parameters');
    let key = this.db.select().from(studyKeys).where(eq(studyKeys.studyId, studyId)).get();
    if (!key) {
      const ctx = await createHeContext(params);
      const sk = generateSecretKey(ctx);
      this.db.insert(studyKeys).values({ studyId, secretKey: Buffer.from(sk), dealerSiteId: this.config.siteId, heParamsDigest: heParamsDigest(params), receivedAtMs: Date.now() }).run();
      this.audit.append({ actor: this.config.siteId, action: 'keys.generated', studyId, digest: heParamsDigest(params), detail: 'SEAL secret key created at this site (key dealer)' });
      key = this.db.select().from(studyKeys).where(eq(studyKeys.studyId, studyId)).get()!;
    }
    // Seal the key to each recipient's X25519 key: the coordinator relays bytes it cannot open.
    const recipients = b.recipients.map((r) => ({ siteId: r.siteId, sealedKey: toB64(sealTo(fromB64(r.x25519PublicKey), new Uint8Array(key!.secretKey))) }));
    this.audit.append({ actor: this.config.siteId, action: 'keys.sealed', studyId, detail: `for ${recipients.map((r) => r.siteId).join(',')}` });
    await this.send('keys.sealed', studyId, null, { heParamsDigest: key.heParamsDigest, recipients });
  }

  private onKeysDeliver(studyId: string, b: BodyOf['keys.deliver']): void {
    this.requireApprovedStudy(studyId);
    const have = this.db.select().from(studyKeys).where(eq(studyKeys.studyId, studyId)).get();
    if (have) return;
    const sk = openSealed(fromB64(b.sealedKey), this.identity);
    this.db.insert(studyKeys).values({ studyId, secretKey: Buffer.from(sk), dealerSiteId: b.dealerSiteId, heParamsDigest: b.heParamsDigest, receivedAtMs: Date.now() }).run();
    this.audit.append({ actor: b.dealerSiteId, action: 'keys.received', studyId, digest: b.heParamsDigest, detail: 'sealed study key opened' });
  }

  // ---------------------------------------------------------------- rounds

  private async onRoundStart(studyId: string, round: number, b: BodyOf['round.start']): Promise<void> {
    const st = this.db.select().from(studies).where(eq(studies.studyId, studyId)).get();
    if (!st || !this.isApproved(studyId, st.manifestHash)) {
      // Training touches local data only for an approved manifest.
      this.audit.append({ actor: this.config.siteId, action: 'training.refused', studyId, round, detail: 'TWF_E_STUDY_NOT_APPROVED' });
      this.opts.events?.onRejected?.({ code: 'TWF_E_STUDY_NOT_APPROVED', detail: studyId, refType: 'round.start' });
      return;
    }
    const manifest = StudyManifestSchema.parse(JSON.parse(st.manifestJson));
    const key = this.db.select().from(studyKeys).where(eq(studyKeys.studyId, studyId)).get();
    if (!key) throw new WireError('TWF_E_NOT_PARTICIPANT', 'study key not received yet');
    if (!(await this.caughtUp(studyId, b.modelVersion, () => this.onRoundStart(studyId, round, b)))) return;
    let work = this.db.select().from(roundWork).where(and(eq(roundWork.studyId, studyId), eq(roundWork.round, round))).get();
    if (!work) {
      const base = this.modelAt(studyId, b.modelVersion);
      if (!base) throw new WireError('TWF_E_WRONG_ROUND', `no global model version ${b.modelVersion}`);
      this.audit.append({ actor: this.config.siteId, action: 'training.started', studyId, round, digest: sha256Hex(new Uint8Array(base.buffer, base.byteOffset, base.byteLength)) });
      const tr = await this.opts.trainer.train(manifest, base, round);
      const delta = new Float32Array(tr.weights.length);
      for (let i = 0; i < delta.length; i++) delta[i] = tr.weights[i] - base[i];
      const ctx = await createHeContext(manifest.encryption as HeParams);
      const enc = encryptWeightedUpdate(ctx, new Uint8Array(key.secretKey), delta, tr.nSamples, manifest.training.clipBound);
      this.db.insert(roundWork).values({
        studyId, round, ciphertexts: Buffer.from(packFrames(enc.ciphertexts)), nSamples: tr.nSamples, length: delta.length,
        trainLoss: tr.loss, trainMs: tr.ms, encryptMs: enc.encryptMs, uploadBytes: enc.bytes,
      }).run();
      this.audit.append({ actor: this.config.siteId, action: 'update.encrypted', studyId, round, detail: `n=${tr.nSamples} loss=${tr.loss.toFixed(4)} ${enc.ciphertexts.length} ciphertexts ${enc.bytes} bytes` });
      work = this.db.select().from(roundWork).where(and(eq(roundWork.studyId, studyId), eq(roundWork.round, round))).get()!;
    }
    await this.upload(studyId, round, work, new Set(b.alreadyReceived), manifest);
  }

  private async upload(studyId: string, round: number, work: typeof roundWork.$inferSelect, skip: Set<number>, manifest: StudyManifest): Promise<void> {
    const cts = unpackFrames(new Uint8Array(work.ciphertexts));
    const digest = heParamsDigest(manifest.encryption as HeParams);
    for (let i = 0; i < cts.length; i++) {
      if (skip.has(i)) continue;
      const ack = await this.send('update.chunk', studyId, round, cts[i], { index: i, count: cts.length, nSamples: work.nSamples, length: work.length, heParamsDigest: digest });
      if (!ack.ok) {
        if (ack.code === 'TWF_E_DUPLICATE_CHUNK') continue;
        return; // disconnected or refused: the coordinator re-sends round.start on reconnect
      }
    }
    this.db.update(roundWork).set({ uploadedAtMs: Date.now() }).where(and(eq(roundWork.studyId, studyId), eq(roundWork.round, round))).run();
    this.opts.events?.onUploaded?.({ studyId, round, nSamples: work.nSamples, trainLoss: work.trainLoss ?? NaN, trainMs: work.trainMs ?? NaN, encryptMs: work.encryptMs ?? NaN, uploadBytes: work.uploadBytes, chunks: cts.length });
  }

  /**
   * True when the local model is at `version`; otherwise asks for the missing
   * aggregates (e.g. the site was offline) and returns false: `then` runs once
   * they have been applied.
   */
  private async caughtUp(studyId: string, version: number, then: () => Promise<void>): Promise<boolean> {
    const have = this.latestModel(studyId)?.version ?? 0;
    if (have >= version) return true;
    this.pending.set(studyId, { version, then });
    await this.send('aggregate.request', studyId, null, { fromRound: have + 1 });
    return false;
  }

  private async onAggregate(env: Envelope): Promise<void> {
    const h = env.header;
    const studyId = h.studyId!;
    const round = h.round!;
    const m = decodeMeta<RoundAggregateMetaT>(env);
    const latest = this.latestModel(studyId);
    const version = latest?.version ?? 0;
    if (round <= version) return; // already applied
    if (round !== version + 1) {
      await this.send('aggregate.request', studyId, null, { fromRound: version + 1 });
      return;
    }
    const st = this.requireApprovedStudy(studyId);
    const manifest = StudyManifestSchema.parse(JSON.parse(st.manifestJson));
    const params = manifest.encryption as HeParams;
    if (m.heParamsDigest !== heParamsDigest(params)) throw new WireError('TWF_E_UPDATE_SHAPE', 'aggregate for other encryption parameters');
    const key = this.db.select().from(studyKeys).where(eq(studyKeys.studyId, studyId)).get();
    if (!key) throw new WireError('TWF_E_NOT_PARTICIPANT', 'no study key');
    const ctx = await createHeContext(params);
    const t0 = performance.now();
    const avg = decryptAverage(ctx, new Uint8Array(key.secretKey), unpackFrames(env.body), m.length, m.totalSamples, manifest.training.clipBound);
    const decryptMs = performance.now() - t0;
    const base = new Float32Array(new Uint8Array(latest!.weights).buffer.slice(0));
    if (avg.length !== base.length) throw new WireError('TWF_E_UPDATE_SHAPE', `aggregate length ${avg.length} != model ${base.length}`);
    // FedAvg server step with learning rate 1 (McMahan et al. 2017): w_{r} = w_{r-1} + sum_i n_i delta_i / sum_i n_i.
    for (let i = 0; i < base.length; i++) base[i] += avg[i];
    const ev = await this.opts.trainer.evaluate(manifest, base);
    this.storeModel(studyId, round, base, ev.meanDice);
    this.audit.append({ actor: this.config.siteId, action: 'aggregate.applied', studyId, round, digest: h.digest, detail: `sites=${m.sites} totalSamples=${m.totalSamples}` });
    const work = this.db.select().from(roundWork).where(and(eq(roundWork.studyId, studyId), eq(roundWork.round, round))).get();
    await this.reportMetrics(studyId, round, ev, work ?? null);
    this.opts.events?.onApplied?.({ studyId, round, meanDice: ev.meanDice, decryptMs, ...(ev.metric ? { metric: ev.metric } : {}) });
    const p = this.pending.get(studyId);
    if (p && round >= p.version) {
      this.pending.delete(studyId);
      await p.then();
    }
  }

  private async reportMetrics(studyId: string, round: number, ev: LocalEvalResult, work: typeof roundWork.$inferSelect | null): Promise<void> {
    // Small-count suppression: a metric over fewer than minReportPatients patients is not reported.
    const { valPatients } = ev;
    const suppress = valPatients < this.config.minReportPatients;
    await this.send('metrics.report', studyId, round, {
      evaluatedRound: round,
      meanDice: suppress ? null : ev.meanDice,
      valPatients,
      ...(ev.metric ? { metricName: ev.metric.name, metricValue: suppress ? null : ev.metric.value } : {}),
      trainLoss: work?.trainLoss ?? null,
      trainMs: work?.trainMs ?? null,
      encryptMs: work?.encryptMs ?? null,
      uploadBytes: work?.uploadBytes ?? null,
    });
  }

  private async onCompleted(studyId: string, b: BodyOf['study.completed']): Promise<void> {
    const st = this.db.select().from(studies).where(eq(studies.studyId, studyId)).get();
    if (!st || st.status === 'completed') return;
    if (!(await this.caughtUp(studyId, b.rounds, () => this.onCompleted(studyId, b)))) return;
    const latest = this.latestModel(studyId);
    const modelDir = join(this.opts.dataDir, SITE_FILES.models, studyId);
    if (latest) {
      const manifest = StudyManifestSchema.parse(JSON.parse(st.manifestJson));
      this.exportModel(manifest, latest, modelDir);
    }
    this.db.update(studies).set({ status: 'completed' }).where(eq(studies.studyId, studyId)).run();
    this.audit.append({ actor: this.config.siteId, action: 'study.completed', studyId, round: b.rounds, digest: latest?.digest ?? null });
    this.opts.events?.onCompleted?.({ studyId, rounds: b.rounds, modelDir });
  }

  /** Writes the global model with its provenance (manifest hash, rounds, weight digest). */
  exportModel(manifest: StudyManifest, m: typeof models.$inferSelect, dir: string): void {
    writeModelDir(dir, {
      studyId: manifest.studyId,
      title: manifest.title,
      manifestHash: manifestHash(manifest),
      model: manifest.model,
      version: m.version,
      meanDiceAtSite: m.meanDice,
      ...(manifest.task === 'response' ? { split: { splitSalt: manifest.data.splitSalt, trainPercent: manifest.data.trainPercent, minMeasurements: manifest.data.minMeasurements } } : {}),
      decryptedAt: this.config.siteId,
      createdAt: new Date(m.createdAtMs).toISOString(),
    }, new Float32Array(new Uint8Array(m.weights).buffer.slice(0)));
  }

  // --------------------------------------------------------------- helpers

  latestModel(studyId: string) {
    return this.db.select().from(models).where(eq(models.studyId, studyId)).orderBy(desc(models.version)).limit(1).get();
  }

  modelAt(studyId: string, version: number): Float32Array | null {
    const m = this.db.select().from(models).where(and(eq(models.studyId, studyId), eq(models.version, version))).get();
    return m ? new Float32Array(new Uint8Array(m.weights).buffer.slice(0)) : null;
  }

  modelHistory(studyId: string) {
    return this.db.select({ version: models.version, meanDice: models.meanDice, digest: models.digest }).from(models).where(eq(models.studyId, studyId)).orderBy(asc(models.version)).all();
  }

  private storeModel(studyId: string, version: number, w: Float32Array, meanDice: number | null): void {
    const bytes = Buffer.from(w.buffer, w.byteOffset, w.byteLength);
    this.db.insert(models).values({ studyId, version, weights: bytes, digest: sha256Hex(bytes), createdAtMs: Date.now(), meanDice }).onConflictDoNothing().run();
  }

  private requireApprovedStudy(studyId: string) {
    const st = this.db.select().from(studies).where(eq(studies.studyId, studyId)).get();
    if (!st) throw new WireError('TWF_E_UNKNOWN_STUDY', studyId);
    if (!this.isApproved(studyId, st.manifestHash)) {
      this.audit.append({ actor: this.config.siteId, action: 'training.refused', studyId, detail: 'TWF_E_STUDY_NOT_APPROVED' });
      throw new WireError('TWF_E_STUDY_NOT_APPROVED', studyId);
    }
    return st;
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
