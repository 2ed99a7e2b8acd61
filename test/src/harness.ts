import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { io, type Socket } from 'socket.io-client';
import {
  HANDSHAKE_KIND,
  PROTOCOL_VERSION,
  handshakeFields,
  type Ack,
  type ClientToServerEvents,
  type Envelope,
  type MessageType,
  type ServerToClientEvents,
  type SegmentationSpec,
  type StudyManifest,
  type StudySpec,
} from '@twinfed/protocols';
import { buildCoordinator, type Coordinator } from '@twinfed/coordinator';
import { CoordinatorLink, SITE_FILES, SiteNode, createUNetTrainer, enrolSite, importPath, loadSiteConfig, openSiteStore, type LocalTrainer, type SiteEvents } from '@twinfed/site-node';
import { fileURLToPath } from 'node:url';
import { resolve } from 'node:path';
import { initSodium, loadIdentity, parseEnvelope, sealEnvelope, signStatement, type Identity } from '@twinfed/shared/crypto/index';

/** The project's copy of the STS PET data. */
export const STS_DIR = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../examples/sts-pet');

export const ADMIN_TOKEN = 'test-admin-token-0123456789';

export function tempDir(prefix: string): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), `twinfed-${prefix}-`));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** TLS pin of each https:// coordinator the tests started (by origin): lead calls and enrolments pin it. */
const TLS_PINS = new Map<string, string>();

export async function startCoordinator(dataDir: string, extra: Record<string, unknown> = {}): Promise<{ c: Coordinator; url: string }> {
  const c = await buildCoordinator({ dataDir, port: 0, adminToken: ADMIN_TOKEN, logLevel: process.env.TWINFED_TEST_LOG ? 'info' : 'silent', tickMs: 100, ...extra });
  const url = await c.listen();
  if (c.tls) TLS_PINS.set(new URL(url).origin, c.tls.pin);
  return { c, url };
}

export async function lead<T = unknown>(url: string, method: 'GET' | 'POST', path: string, body?: unknown): Promise<{ status: number; json: T }> {
  const pin = TLS_PINS.get(new URL(url).origin);
  if (pin) {
    // A self-signed coordinator: the lead pins it like a site does (never through a test's HTTPS_PROXY).
    const link = new CoordinatorLink({ coordinatorUrl: url, tlsPins: [pin], env: {} });
    const r = await link.request(method, path, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` }, ...(body !== undefined ? { body } : {}) });
    return { status: r.status, json: r.json as T };
  }
  const res = await fetch(new URL(path, url), {
    method,
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  return { status: res.status, json: (text ? JSON.parse(text) : null) as T };
}

/** Enrols a site folder with a fresh one-time token (the real enrolment path). */
export async function enrolNewSite(url: string, dir: string, name: string) {
  const tok = await lead<{ token: string }>(url, 'POST', '/api/enrolment-tokens', { siteName: name });
  const pin = TLS_PINS.get(new URL(url).origin);
  return enrolSite({ dataDir: dir, coordinatorUrl: url, token: tok.json.token, ...(pin ? { tls: { pin } } : {}) });
}

/**
 * Creates a draft study and starts it with a roster (default: every enrolled site), as a lead
 * would; returns the manifest officers approve and its hash.
 */
export async function createAndStart(
  url: string,
  spec: StudySpec,
  body: { sites?: string[]; keyDealers?: string[] } = {},
): Promise<{ studyId: string; manifest: StudyManifest; manifestHash: string }> {
  const created = await lead<{ studyId: string }>(url, 'POST', '/api/studies', spec);
  if (created.status !== 201) throw new Error(`create: ${created.status} ${JSON.stringify(created.json)}`);
  const started = await lead<{ manifestHash: string }>(url, 'POST', `/api/studies/${created.json.studyId}/start`, body);
  if (started.status !== 200) throw new Error(`start: ${started.status} ${JSON.stringify(started.json)}`);
  const m = await lead<{ manifest: StudyManifest; manifestHash: string }>(url, 'GET', `/api/studies/${created.json.studyId}/manifest`);
  return { studyId: created.json.studyId, manifest: m.json.manifest, manifestHash: m.json.manifestHash };
}

/**
 * Connects the site nodes, waits until each has been announced the study, and approves its manifest
 * at every site as that site's officer would (`site approve --hash`), bound to the manifest hash.
 */
export async function connectAndApprove(nodes: SiteNode[], study: { studyId: string; manifestHash: string }, officer: (i: number) => string = (i) => `officer ${i + 1}`): Promise<void> {
  for (const n of nodes) n.connect();
  await waitFor(() => nodes.every((n) => SiteNode.listStudies(n.db).some((s) => s.studyId === study.studyId)) || null, 'announcements', 20_000);
  nodes.forEach((n, i) => SiteNode.approve(n.db, n.audit, study.studyId, officer(i), study.manifestHash));
}

/** A tiny segmentation study (fast on CPU) for protocol tests. */
export function tinySpec(over: Partial<SegmentationSpec> = {}): SegmentationSpec {
  return {
    title: 'test study',
    task: 'segmentation',
    model: { arch: 'unet2d', inChannels: 1, nClasses: 2, base: 4, depth: 1, size: 16, initSeed: 3 },
    training: { epochsPerRound: 1, batchSize: 8, learningRate: 1e-2, clipBound: 1, seed: 5 },
    data: { modality: 'PET', labels: ['background', 'tumour'], minTrainSlices: 1 },
    rounds: 2,
    minSites: 3,
    roundDeadlineS: 30,
    ...over,
  };
}

export interface RawSiteOptions {
  protocolVersion?: string;
  /** Connect claiming another site's id (with our key: the signature will not verify). */
  siteId?: string;
  /** Sign the handshake with this Ed25519 secret key instead of the site's own. */
  signWith?: Uint8Array;
  /** Use this nonce instead of fetching one (e.g. a replayed or made-up nonce). */
  nonce?: string;
  /** Send only { siteId, protocolVersion }: the 1.x handshake, which knowing an id was enough for. */
  bareAuth?: boolean;
  /** Largest message this site accepts, bytes (the WebSocket client's maxPayload; ws defaults to 100 MiB). */
  maxPayloadBytes?: number;
}

/**
 * A hand-driven site: a real socket.io connection opened with the real signed handshake (nonce
 * from POST /api/handshake), real signatures, with full control over what is sent — to play an
 * attacker or a faulty site.
 */
export class RawSite {
  readonly socket: Socket<ServerToClientEvents, ClientToServerEvents>;
  readonly inbox: Envelope[] = [];
  readonly siteId: string;
  readonly coordinatorId: string;
  readonly identity: Identity;
  seq = 0;

  private constructor(
    url: string,
    readonly dataDir: string,
    auth: object,
    siteId: string,
    coordinatorId: string,
    identity: Identity,
    maxPayloadBytes?: number,
  ) {
    this.siteId = siteId;
    this.coordinatorId = coordinatorId;
    this.identity = identity;
    this.socket = io(url, { auth, transports: ['websocket'], reconnection: false, ...((maxPayloadBytes ? { maxPayload: maxPayloadBytes } : {}) as object) });
    this.refusal = new Promise((res) => this.socket.once('connect_error', (e: Error & { data?: { code?: string } }) => res({ message: e.message, code: e.data?.code })));
    this.socket.on('envelope', (raw) => {
      const env = parseEnvelope(raw);
      const w = this.waiters.findIndex((x) => x.type === env.header.type);
      if (w < 0) return void this.inbox.push(env);
      const [waiter] = this.waiters.splice(w, 1);
      waiter.resolve(env);
    });
  }

  /** Callers of next() waiting for a type not in the inbox yet, oldest first (answered on arrival, not by polling). */
  private readonly waiters: { type: MessageType; resolve: (env: Envelope) => void }[] = [];

  static async create(url: string, dataDir: string, opts: RawSiteOptions = {}): Promise<RawSite> {
    await initSodium();
    const cfg = loadSiteConfig(dataDir);
    const identity = loadIdentity(join(dataDir, SITE_FILES.identity));
    const siteId = opts.siteId ?? cfg.siteId;
    const protocolVersion = opts.protocolVersion ?? PROTOCOL_VERSION;
    let auth: object = { siteId, protocolVersion };
    let seq = 0;
    if (!opts.bareAuth) {
      const ch = await fetch(new URL('/api/handshake', url), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ siteId }) });
      const j = (await ch.json()) as { nonce: string; lastSeqSeen: number };
      seq = j.lastSeqSeen ?? 0;
      const nonce = opts.nonce ?? j.nonce;
      const signature = signStatement(HANDSHAKE_KIND, handshakeFields({ coordinatorId: cfg.coordinatorId, siteId, nonce }), opts.signWith ?? identity.ed25519SecretKey);
      auth = { siteId, protocolVersion, nonce, signature };
    }
    const s = new RawSite(url, dataDir, auth, siteId, cfg.coordinatorId, identity, opts.maxPayloadBytes);
    s.seq = seq;
    return s;
  }

  connected(): Promise<void> {
    return new Promise((res, rej) => {
      if (this.socket.connected) return res();
      this.socket.once('connect', () => res());
      this.socket.once('connect_error', (e) => rej(e));
    });
  }

  private refusal: Promise<{ message: string; code?: string }> | null = null;

  /** Resolves with the coordinator's refusal of the handshake (listening from the start, so an early refusal is not missed). */
  refused(): Promise<{ message: string; code?: string }> {
    return this.refusal!;
  }

  envelope(
    type: MessageType,
    studyId: string | null,
    round: number | null,
    body: unknown,
    meta?: Record<string, string | number | boolean>,
    opts: { secretKey?: Uint8Array; nowMs?: number; to?: string } = {},
  ): Envelope {
    return sealEnvelope(
      { id: this.siteId, ed25519SecretKey: opts.secretKey ?? this.identity.ed25519SecretKey, nextSeq: () => ++this.seq },
      { to: opts.to ?? this.coordinatorId, type, studyId, round, body, ...(meta ? { meta } : {}), ...(opts.nowMs ? { nowMs: opts.nowMs } : {}) },
    );
  }

  emit(env: unknown): Promise<Ack> {
    return new Promise((res) => this.socket.emit('envelope', env as Envelope, (a: Ack) => res(a)));
  }

  send(type: MessageType, studyId: string | null, round: number | null, body: unknown, meta?: Record<string, string | number | boolean>): Promise<Ack> {
    return this.emit(this.envelope(type, studyId, round, body, meta));
  }

  hello(): Promise<Ack> {
    return this.send('hello', null, null, { siteName: 'raw', backend: 'none', approved: [] });
  }

  /** The oldest message of `type` in the inbox, or the next to arrive (within timeoutMs). */
  next(type: MessageType, timeoutMs = 10_000): Promise<Envelope> {
    const i = this.inbox.findIndex((e) => e.header.type === type);
    if (i >= 0) return Promise.resolve(this.inbox.splice(i, 1)[0]);
    return new Promise((resolve, reject) => {
      const waiter = {
        type,
        resolve: (env: Envelope) => {
          clearTimeout(timer);
          resolve(env);
        },
      };
      const timer = setTimeout(() => {
        const k = this.waiters.indexOf(waiter);
        if (k >= 0) this.waiters.splice(k, 1);
        reject(new Error(`no ${type} within ${timeoutMs} ms (inbox: ${this.inbox.map((e) => e.header.type).join(',')})`));
      }, timeoutMs);
      this.waiters.push(waiter);
    });
  }

  close(): void {
    this.socket.disconnect();
  }
}

export async function waitFor<T>(fn: () => T | Promise<T>, what: string, timeoutMs = 60_000, everyMs = 100): Promise<NonNullable<T>> {
  const t0 = Date.now();
  for (;;) {
    const v = await fn();
    if (v) return v as NonNullable<T>;
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** Plaintext updates a site computed, per round (recorded by a spy around the real trainer). */
export type DeltaLog = Map<number, { delta: Float32Array; n: number }>;

/**
 * A real site node: enrolled with a one-time token, real PET patients imported
 * into its own SQLite file at 16x16, the real U-Net trainer (wasm), with a spy
 * that records each round's plaintext update for the test to compare against.
 */
export async function realSite(url: string, dir: string, name: string, patients: string[], val: string[], events?: SiteEvents): Promise<{ node: SiteNode; deltas: DeltaLog }> {
  await enrolNewSite(url, dir, name);
  const { db, audit } = await openSiteStore(dir);
  const rep = await importPath(db, audit, STS_DIR, { patients, val, size: 16, refit: false, radiomics: false });
  const done = rep.rows.filter((r) => r.status === 'imported');
  if (done.length !== patients.length) throw new Error(`import: ${JSON.stringify(rep.rows.filter((r) => r.status !== 'skipped'))}`);
  const { trainer, deltas } = recordingTrainer(await createUNetTrainer(db, { backend: 'wasm', workers: 0 }));
  const debug = process.env.TWINFED_TEST_LOG ? { onLog: (level: string, msg: string) => console.error(`[${name}] ${level}: ${msg}`) } : {};
  return { node: await SiteNode.open({ dataDir: dir, trainer, approvalPollMs: 100, events: { ...debug, ...(events ?? {}) } }), deltas };
}

/** Wraps a real trainer with a spy that records each round's plaintext update (weights after - before) and sample count. */
export function recordingTrainer(real: LocalTrainer): { trainer: LocalTrainer; deltas: DeltaLog } {
  const deltas: DeltaLog = new Map();
  const trainer: LocalTrainer = {
    backend: real.backend,
    dataSummary: (m) => real.dataSummary(m),
    initialWeights: (m) => real.initialWeights(m),
    evaluate: (m, w) => real.evaluate(m, w),
    async train(m, w, round, onProgress) {
      const r = await real.train(m, w, round, onProgress);
      deltas.set(round, { delta: r.weights.map((x, k) => x - w[k]), n: r.nSamples });
      return r;
    },
  };
  return { trainer, deltas };
}

/** Largest |applied change - plaintext weighted average of the contributors' updates| for one round. */
export function aggregateError(before: Float32Array, applied: Float32Array, contributions: { delta: Float32Array; n: number }[]): number {
  const N = contributions.reduce((s, p) => s + p.n, 0);
  let maxErr = 0;
  for (let k = 0; k < before.length; k++) {
    const expected = contributions.reduce((s, p) => s + p.n * p.delta[k], 0) / N;
    maxErr = Math.max(maxErr, Math.abs(applied[k] - before[k] - expected));
  }
  return maxErr;
}
