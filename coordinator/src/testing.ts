/**
 * Test helpers for fast engine tests: an in-memory SQLite store, a fake transport (no sockets),
 * a fake clock, and sites that speak the raw protocol with the real HE and secure-aggregation
 * code (adapted from test/src/raw-protocol.ts). Not part of the coordinator's runtime.
 */
import { createHash } from 'node:crypto';
import {
  KEY_HANDOUT_KIND,
  MASK_SURVIVORS_KIND,
  PROTOCOL_VERSION,
  canonicalJson,
  keyHandoutFields,
  maskSurvivorsFields,
  type Ack,
  type BodyOf,
  type Envelope,
  type MessageType,
  type StudyManifest,
} from '@twinfed/protocols';
import { AuditLog } from '@twinfed/shared/audit/index';
import { fingerprint, fromB64, generateIdentity, initSodium, openSealed, sealEnvelope, sealTo, signStatement, toB64, type Identity } from '@twinfed/shared/crypto/index';
import { createHeContext, encryptSlots, generateSecretKey, heParamsDigest, packLanes, quantizeToZt, type HeContext, type HeParams } from '@twinfed/shared/he/index';
import { buildMaskSetup, maskInput, openShares, type RoundSecrets } from '@twinfed/shared/secagg/index';
import { openMemoryCoordinatorDb, type CoordinatorDb } from './db/index.js';
import { CoordinatorEngine, type SiteTransport } from './engine.js';
import { createCoordinatorMetrics } from './metrics.js';
import { SqliteStore } from './store/sqlite.js';

export const SPEC = {
  title: 'engine-test',
  task: 'segmentation',
  model: { arch: 'unet2d', inChannels: 1, nClasses: 2, base: 4, depth: 1, size: 16, initSeed: 1 },
  training: { epochsPerRound: 1, batchSize: 4, learningRate: 0.01, clipBound: 1, seed: 1 },
  data: { modality: 'PET', labels: ['background', 'tumour'] },
  rounds: 2,
  minSites: 3,
  roundDeadlineS: 30,
};

const json = <T>(env: Envelope) => JSON.parse(Buffer.from(env.body).toString('utf8')) as T;

/** Delivers coordinator envelopes into per-site inboxes. */
export class FakeTransport implements SiteTransport {
  readonly inbox = new Map<string, Envelope[]>();
  readonly connected = new Set<string>();
  send(siteId: string, env: Envelope): boolean {
    if (!this.connected.has(siteId)) return false;
    (this.inbox.get(siteId) ?? this.inbox.set(siteId, []).get(siteId)!).push(env);
    return true;
  }
  isConnected(siteId: string): boolean {
    return this.connected.has(siteId);
  }
  disconnect(siteId: string): void {
    this.connected.delete(siteId);
  }
}

/** Engine options a Lab test may set: the catch-up window, the aggregation workers, a chunk-log folder (default: chunks in their rows). */
export type LabOptions = { catchUpRounds?: number; aggregationWorkers?: number; chunkDir?: string };

/** A coordinator on an in-memory database with a fake clock; `restart()` builds a new engine on the same database. */
export class Lab {
  clock = { nowMs: 1_700_000_000_000 };
  readonly transport = new FakeTransport();
  engine!: CoordinatorEngine;
  readonly identity: Identity = generateIdentity();
  readonly db: CoordinatorDb;
  readonly logs: string[] = [];

  /** Engine options a test sets (e.g. the catch-up window); used by every restart. */
  options: LabOptions = {};

  /** `db`: a coordinator database to run on (default: a fresh in-memory one). */
  constructor(db?: CoordinatorDb) {
    this.db = db ?? openMemoryCoordinatorDb();
  }

  static async create(options: LabOptions = {}, db?: CoordinatorDb): Promise<Lab> {
    await initSodium();
    const lab = new Lab(db);
    lab.options = options;
    lab.restart();
    return lab;
  }

  restart(): CoordinatorEngine {
    // The old engine's aggregation workers go with it (their sums are lost, as in a crash).
    void this.engine?.close();
    const id = `coordinator-${fingerprint(this.identity.ed25519PublicKey)}`;
    const audit = new AuditLog(this.db, id, this.identity.ed25519SecretKey, this.identity.ed25519PublicKey);
    this.engine = new CoordinatorEngine(new SqliteStore(this.db), audit, this.identity, createCoordinatorMetrics(), {
      clockSkewMs: 60_000,
      joinSettleMs: 0,
      phaseTimeoutMs: 10_000,
      quorumGraceMs: 5_000,
      dealerTimeoutMs: 5_000,
      ...this.options,
      now: () => this.clock.nowMs,
      log: (level, msg) => this.logs.push(`${level}: ${msg}`),
    });
    this.engine.attach(this.transport);
    this.transport.connected.clear();
    return this.engine;
  }

  /** Moves the fake clock and lets the engine act on its deadlines. */
  async advance(ms: number): Promise<void> {
    this.clock.nowMs += ms;
    this.engine.tick();
    await this.engine.idle();
  }

  async site(name: string): Promise<FakeSite> {
    const id = generateIdentity();
    const { token } = this.engine.issueEnrolmentToken(name, 600);
    const r = this.engine.enrol({ token, protocolVersion: PROTOCOL_VERSION, ed25519PublicKey: toB64(id.ed25519PublicKey), x25519PublicKey: toB64(id.x25519PublicKey) });
    return new FakeSite(this, r.siteId, id);
  }

  /** Creates and starts a study with these sites; every site connects, approves and joins; the first deals the key. */
  async study(sites: FakeSite[], over: Record<string, unknown> = {}): Promise<string> {
    const { studyId } = await this.engine.createStudy({ ...SPEC, ...over });
    this.engine.startStudy(studyId, { sites: sites.map((s) => s.siteId) });
    for (const s of sites) await s.connect();
    await this.engine.idle();
    for (const s of sites) await s.approveAndJoin(studyId);
    await this.engine.idle();
    await sites[0].deal();
    for (const s of sites.slice(1)) s.acceptKey();
    await this.engine.idle();
    return studyId;
  }
}

interface SiteRound {
  start: BodyOf['round.start'];
  secrets: RoundSecrets;
  shares: Map<string, { b: Uint8Array; s: Uint8Array }>;
  cts?: Uint8Array[];
}

/** A site speaking the raw protocol through the fake transport. */
export class FakeSite {
  private seq = 0;
  manifest!: StudyManifest;
  manifestHash = '';
  he!: HeContext;
  readonly keys = new Map<number, Uint8Array>();
  readonly rounds = new Map<number, SiteRound>();

  constructor(
    readonly lab: Lab,
    readonly siteId: string,
    readonly identity: Identity,
  ) {}

  get inbox(): Envelope[] {
    return this.lab.transport.inbox.get(this.siteId) ?? [];
  }

  /** Removes and returns the oldest message of a type (throws when there is none). */
  take(type: MessageType): Envelope {
    const i = this.inbox.findIndex((e) => e.header.type === type);
    if (i < 0) throw new Error(`${this.siteId}: no ${type} in the inbox (${this.inbox.map((e) => e.header.type).join(',') || 'empty'})`);
    return this.inbox.splice(i, 1)[0];
  }

  has(type: MessageType): boolean {
    return this.inbox.some((e) => e.header.type === type);
  }

  async send(type: MessageType, studyId: string | null, round: number | null, body: unknown, meta?: Record<string, string | number | boolean>): Promise<Ack> {
    const env = sealEnvelope(
      { id: this.siteId, ed25519SecretKey: this.identity.ed25519SecretKey, nextSeq: () => ++this.seq },
      { to: this.lab.engine.coordinatorId, type, studyId, round, body, ...(meta ? { meta } : {}), nowMs: this.lab.clock.nowMs },
    );
    const ack = await this.lab.engine.handle(this.siteId, env);
    await this.lab.engine.idle();
    return ack as Ack;
  }

  async connect(): Promise<void> {
    this.lab.transport.connected.add(this.siteId);
    this.lab.engine.onConnected(this.siteId);
    const ack = await this.send('hello', null, null, { siteName: this.siteId, backend: 'test', approved: [] });
    if (!ack.ok) throw new Error(`hello refused: ${ack.code}`);
  }

  disconnect(): void {
    this.lab.transport.connected.delete(this.siteId);
    this.lab.engine.onDisconnect(this.siteId);
  }

  /** Takes the latest announcement and joins with it. */
  async approveAndJoin(studyId: string, trainSamples = 100): Promise<Ack> {
    let a: BodyOf['study.announce'] | null = null;
    while (this.has('study.announce')) a = json<BodyOf['study.announce']>(this.take('study.announce'));
    if (a) {
      this.manifest = a.manifest;
      this.manifestHash = a.manifestHash;
      this.he = await createHeContext(this.manifest.encryption as HeParams);
    }
    return this.send('study.join', studyId, null, { manifestHash: this.manifestHash, trainSamples, valPatients: 3 });
  }

  async deal(): Promise<Ack> {
    const req = json<BodyOf['keys.request']>(this.take('keys.request'));
    const sk = generateSecretKey(this.he);
    this.keys.set(req.epoch, sk);
    const keyCommitment = createHash('sha256')
      .update('twinfed.study-key.v1\n')
      .update(canonicalJson({ studyId: this.manifest.studyId, epoch: req.epoch, manifestHash: this.manifestHash }))
      .update('\n')
      .update(sk)
      .digest('hex');
    const recipients = [...req.recipients].sort();
    const roster = new Map(this.manifest.participants.map((p) => [p.siteId, p]));
    const signature = signStatement(
      KEY_HANDOUT_KIND,
      keyHandoutFields({ studyId: this.manifest.studyId, manifestHash: this.manifestHash, epoch: req.epoch, dealerSiteId: this.siteId, recipients, keyCommitment }),
      this.identity.ed25519SecretKey,
    );
    return this.send('keys.sealed', this.manifest.studyId, null, {
      epoch: req.epoch,
      manifestHash: this.manifestHash,
      heParamsDigest: heParamsDigest(this.manifest.encryption as HeParams),
      keyCommitment,
      signature,
      recipients: recipients.map((r) => ({ siteId: r, sealedKey: toB64(sealTo(fromB64(roster.get(r)!.x25519PublicKey), sk)) })),
    });
  }

  acceptKey(): number {
    const b = json<BodyOf['keys.deliver']>(this.take('keys.deliver'));
    this.keys.set(b.epoch, openSealed(fromB64(b.sealedKey), this.identity));
    return b.epoch;
  }

  ctx(round: number) {
    return { studyId: this.manifest.studyId, manifestHash: this.manifestHash, round };
  }

  /** Takes round.start and sends an honest mask set-up. */
  async setup(): Promise<{ round: number; ack: Ack }> {
    const env = this.take('round.start');
    const round = env.header.round!;
    const start = json<BodyOf['round.start']>(env);
    const ctx = this.ctx(round);
    const roster = new Map(this.manifest.participants.map((p) => [p.siteId, p]));
    const { body: setup, secrets, own } = await buildMaskSetup(ctx, this.siteId, start.participants, start.threshold, (p) => fromB64(roster.get(p)!.x25519PublicKey), this.identity);
    this.rounds.set(round, { start, secrets, shares: new Map([[this.siteId, { b: own.bShare, s: own.sShare }]]) });
    return { round, ack: await this.send('mask.setup', this.manifest.studyId, round, setup) };
  }

  /** Takes mask.peers, masks and encrypts a small update; returns the chunk envelopes' inputs without sending. */
  prepare(round: number, n = 10): { body: Uint8Array; meta: Record<string, string | number | boolean> }[] {
    const peers = json<BodyOf['mask.peers']>(this.take('mask.peers'));
    const st = this.rounds.get(round)!;
    const roster = new Map(this.manifest.participants.map((p) => [p.siteId, p]));
    for (const e of peers.keySet) {
      if (e.siteId === this.siteId || !e.box) continue;
      const sh = openShares(this.ctx(round), e.siteId, this.siteId, e.box, this.identity.x25519SecretKey, fromB64(roster.get(e.siteId)!.x25519PublicKey));
      st.shares.set(e.siteId, { b: sh.bShare, s: sh.sShare });
    }
    const delta = new Float32Array(this.manifest.updateLength).fill(0.01);
    const q = quantizeToZt(delta, n, this.manifest.training.clipBound, this.manifest.encryption.precisionBits, this.he.plainModulus);
    const y = maskInput(
      this.ctx(round),
      this.he.plainModulus,
      this.siteId,
      st.secrets,
      packLanes(this.he, q.values),
      peers.keySet.filter((e) => e.siteId !== this.siteId).map((e) => ({ siteId: e.siteId, sPk: fromB64(e.sPk) })),
    );
    st.cts = encryptSlots(this.he, this.keys.get(st.start.keyEpoch)!, y).ciphertexts;
    return st.cts.map((body, index) => ({
      body,
      meta: { index, count: st.cts!.length, nSamples: n, length: this.manifest.updateLength, keyEpoch: st.start.keyEpoch, heParamsDigest: heParamsDigest(this.manifest.encryption as HeParams) },
    }));
  }

  async upload(round: number, n = 10): Promise<Ack[]> {
    const acks: Ack[] = [];
    for (const c of this.prepare(round, n)) acks.push(await this.send('update.chunk', this.manifest.studyId, round, c.body, c.meta));
    return acks;
  }

  async sign(round: number): Promise<Ack> {
    const b = json<BodyOf['mask.survivors']>(this.take('mask.survivors'));
    const signature = signStatement(MASK_SURVIVORS_KIND, maskSurvivorsFields(this.ctx(round), b.keySet, b.survivors), this.identity.ed25519SecretKey);
    return this.send('mask.consistency', this.manifest.studyId, round, { signature });
  }

  async reveal(round: number): Promise<Ack> {
    const b = json<BodyOf['mask.reveal']>(this.take('mask.reveal'));
    const st = this.rounds.get(round)!;
    const dropped = b.keySet.filter((s) => !b.survivors.includes(s));
    return this.send('mask.unmask', this.manifest.studyId, round, {
      bShares: b.survivors.map((of) => ({ of, share: toB64(st.shares.get(of)!.b) })),
      sShares: dropped.map((of) => ({ of, share: toB64(st.shares.get(of)!.s) })),
    });
  }
}

/** Runs one honest round with `sites` (all already holding round.start); returns the round number. */
export async function honestRound(sites: FakeSite[]): Promise<number> {
  let round = 0;
  for (const s of sites) round = (await s.setup()).round;
  for (const s of sites) await s.upload(round);
  for (const s of sites) await s.sign(round);
  for (const s of sites) await s.reveal(round);
  return round;
}
