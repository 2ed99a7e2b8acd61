import Fastify, { type FastifyInstance } from 'fastify';
import { mkdirSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { Server as IoServer, type Socket } from 'socket.io';
import { WireError, type ClientToServerEvents, type Envelope, type ServerToClientEvents } from '@twinfed/protocols';
import { EventHub } from '@twinfed/shared/web/index';
import { fingerprint, generateIdentity, initSodium, loadIdentity, saveIdentity, type Identity } from '@twinfed/shared/crypto/index';
import { parseCoordinatorConfig, type CoordinatorConfig, type CoordinatorConfigInput } from './config.js';
import type { CoordinatorDb } from './db/index.js';
import { CoordinatorEngine } from './engine.js';
import { createCoordinatorMetrics, type CoordinatorMetrics } from './metrics.js';
import { RateLimiter } from '@twinfed/shared/rate-limit';
import type { CoordinatorStore } from './store/index.js';
import { openCoordinatorStore } from './store/open.js';
import { registerRestRoutes } from './rest.js';
import { registerConsole, studyTopic } from './console/index.js';
import { loadCoordinatorTls, type TlsPins } from './tls.js';

export interface Coordinator {
  config: CoordinatorConfig;
  app: FastifyInstance;
  io: IoServer<ClientToServerEvents, ServerToClientEvents>;
  engine: CoordinatorEngine;
  /** Where the state is kept (store/index.ts): SQLite by default, PostgreSQL with config.storeUrl. */
  store: CoordinatorStore;
  /** The SQLite database (tests read it directly); throws when the state is in PostgreSQL (config.storeUrl). */
  readonly db: CoordinatorDb;
  metrics: CoordinatorMetrics;
  /** The TLS pins served now and next, when the coordinator serves HTTPS itself (config.tls); else null. */
  tls: TlsPins | null;
  /** Starts listening; resolves to the base URL (http://host:port, or https:// with config.tls). */
  listen(): Promise<string>;
  close(): Promise<void>;
}

/** Loads the coordinator's identity from its data folder, creating it on first start (mode 0600). */
export function loadOrCreateIdentity(dataDir: string, file: string): Identity {
  const p = join(dataDir, file);
  if (existsSync(p)) return loadIdentity(p);
  const id = generateIdentity();
  saveIdentity(p, id);
  return id;
}

/**
 * Builds a coordinator: REST API for leads (fastify), socket.io endpoint that
 * site nodes dial out to, state in SQLite (or PostgreSQL: config.storeUrl), Prometheus metrics. Tests call this
 * in-process; `twinfed coordinator start` wraps it.
 */
export async function buildCoordinator(input: CoordinatorConfigInput): Promise<Coordinator> {
  const config = parseCoordinatorConfig(input);
  const tls = config.tls ? loadCoordinatorTls(config.tls) : null;
  await initSodium();
  mkdirSync(config.dataDir, { recursive: true });
  const identity = loadOrCreateIdentity(config.dataDir, 'coordinator-identity.json');
  const coordinatorId = `coordinator-${fingerprint(identity.ed25519PublicKey)}`;
  const opened = await openCoordinatorStore(config, coordinatorId, identity);
  const { store, audit } = opened;
  const metrics = createCoordinatorMetrics();
  const levels = ['silent', 'error', 'warn', 'info', 'debug'];
  const log = (level: 'info' | 'warn' | 'error', msg: string) => {
    if (levels.indexOf(level) <= levels.indexOf(config.logLevel)) console.error(`[coordinator] ${level}: ${msg}`);
  };
  // The console's live views subscribe to a topic per study; the engine publishes a bare hint.
  const hub = new EventHub<{ studyId: string }>();
  const engine = new CoordinatorEngine(store, audit, identity, metrics, {
    clockSkewMs: config.clockSkewMs,
    joinSettleMs: config.joinSettleMs,
    log,
    phaseTimeoutMs: config.phaseTimeoutS * 1000,
    quorumGraceMs: config.quorumGraceS * 1000,
    dealerTimeoutMs: config.dealerTimeoutS * 1000,
    catchUpRounds: config.catchUpRounds,
    uploadMsPerMParams: config.uploadMsPerMParams,
    ...(config.aggregationWorkers !== undefined ? { aggregationWorkers: config.aggregationWorkers } : {}),
    benchPlaintext: config.benchPlaintext,
    chunkDir: join(config.dataDir, 'chunks'),
    onChange: (studyId) => hub.publish(studyTopic(studyId), { studyId }),
    ...(tls?.nextPin ? { tlsRollover: { pin: tls.pin, nextPin: tls.nextPin } } : {}),
  });
  // One budget per client address for everything before authentication (nonces, sockets, enrolment).
  const preAuth = new RateLimiter(config.preAuthRateLimit.burst, config.preAuthRateLimit.perS);

  // With TLS, REST and the socket.io WebSocket share one HTTPS server on the same port.
  const app = (tls ? Fastify({ logger: false, bodyLimit: 1 << 20, https: { cert: tls.cert, key: tls.key } }) : Fastify({ logger: false, bodyLimit: 1 << 20 })) as FastifyInstance;
  registerRestRoutes(app, engine, metrics, config, preAuth, tls && { pin: tls.pin, nextPin: tls.nextPin });
  // The web console for the lead and the auditor, on the same port (coordinator/src/console).
  void app.register(registerConsole({ engine, store, config, hub, secure: tls !== null }));

  const io = new IoServer<ClientToServerEvents, ServerToClientEvents>(app.server, {
    maxHttpBufferSize: config.maxMessageBytes,
    pingInterval: 10_000,
    pingTimeout: config.heartbeatTimeoutS * 1000,
    serveClient: false,
  });
  const sockets = new Map<string, Socket<ClientToServerEvents, ServerToClientEvents>>();
  engine.attach({
    send(siteId: string, env: Envelope) {
      const s = sockets.get(siteId);
      if (!s?.connected) return false;
      s.emit('envelope', env);
      return true;
    },
    isConnected: (siteId) => sockets.get(siteId)?.connected ?? false,
    disconnect: (siteId) => sockets.get(siteId)?.disconnect(true),
  });

  // A socket is accepted only with a signed handshake (engine.authenticateHandshake): a site id
  // alone neither connects nor pushes the real site off its connection. Refusals are counted in
  // metrics, never written to the audit log one by one.
  io.use((socket, next) => {
    try {
      if (!preAuth.take(socket.handshake.address || 'unknown')) {
        metrics.requestsRateLimited.inc({ route: 'socket' });
        throw new WireError('TWF_E_RATE_LIMITED', 'too many connection attempts from this address');
      }
      (socket.data as { siteId?: string }).siteId = engine.authenticateHandshake(socket.handshake.auth);
      next();
    } catch (e) {
      const we = e instanceof WireError ? e : new WireError('TWF_E_INTERNAL', '');
      const err = new Error(we.message) as Error & { data?: unknown };
      err.data = { code: we.code, detail: we.detail };
      next(err);
    }
  });

  io.on('connection', (socket) => {
    const siteId = (socket.data as { siteId: string }).siteId;
    const previous = sockets.get(siteId);
    sockets.set(siteId, socket);
    // The newer authenticated connection wins (a site that reconnects before its old socket timed out).
    if (previous && previous.id !== socket.id) previous.disconnect(true);
    engine.onConnected(siteId);
    log('info', `site ${siteId} connected`);
    let unattributable = 0;
    // Messages of one site are handled one at a time, in order.
    let chain: Promise<unknown> = Promise.resolve();
    socket.on('envelope', (raw, ack) => {
      chain = chain.then(async () => {
        const { unattributable: u, ...a } = await engine.handle(siteId, raw);
        if (u) unattributable++;
        if (typeof ack === 'function') ack(a);
      });
    });
    socket.on('disconnect', () => {
      if (sockets.get(siteId) === socket) {
        sockets.delete(siteId);
        engine.onDisconnect(siteId, unattributable);
      }
      log('info', `site ${siteId} disconnected`);
    });
  });

  let timer: NodeJS.Timeout | null = null;
  return {
    config,
    app,
    io,
    engine,
    store,
    get db(): CoordinatorDb {
      if (!opened.db) throw new Error(`this coordinator keeps its state in PostgreSQL (${opened.where}), not in a SQLite file`);
      return opened.db;
    },
    metrics,
    tls: tls && { pin: tls.pin, nextPin: tls.nextPin },
    async listen() {
      await app.listen({ host: config.host, port: config.port });
      const addr = app.server.address();
      const port = typeof addr === 'object' && addr ? addr.port : config.port;
      timer = setInterval(() => engine.tick(), config.tickMs);
      engine.tick();
      const url = `${tls ? 'https' : 'http'}://${config.host}:${port}`;
      log('info', `listening on ${url} as ${coordinatorId}; state in ${opened.where}`);
      if (tls) log('info', `TLS pin ${tls.pin}${tls.nextPin ? `; next pin ${tls.nextPin} (sent to each site, signed, after hello)` : ''}`);
      return url;
    },
    async close() {
      if (timer) clearInterval(timer);
      io.disconnectSockets(true);
      // io.close's own promise settles before the HTTP server has closed; its callback does not.
      await new Promise<void>((r) => void io.close(() => r()));
      await app.close().catch(() => undefined);
      await engine.close();
      opened.close();
    },
  };
}
