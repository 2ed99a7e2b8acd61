/**
 * Synchronous PostgreSQL for the coordinator's synchronous store (store/index.ts: a transaction is
 * a synchronous callback, as with better-sqlite3). node-postgres runs in a worker thread
 * (pg-worker.ts); the main thread posts a statement and blocks in Atomics.wait on a shared flag
 * until the worker has the answer (the pattern of the synckit package). The main thread is
 * blocked for each round trip, as it is for each better-sqlite3 call, only longer (a loopback
 * round trip to the server instead of a library call): docs/scaling.md has the figures.
 *
 * One connection, used by one thread: every transaction runs on it, one after another, so
 * statements of different transactions never interleave (as with SQLite's single writer).
 */
import { Worker, MessageChannel, receiveMessageOnPort, type MessagePort } from 'node:worker_threads';
import { CoordinatorError } from '../errors.js';

export interface PgStatement {
  sql: string;
  params: unknown[];
}
export type PgRequest = { id: number; op: 'open' } | { id: number; op: 'close' } | { id: number; op: 'query'; statements: PgStatement[]; inTransaction: boolean };
export interface PgReply {
  id: number;
  ok: boolean;
  /** Rows of the last statement, each an array in select order (rowMode 'array'). */
  rows: unknown[][];
  rowCount: number;
  error?: { message: string; code?: string; detail?: string };
}
export interface PgWorkerData {
  url: string;
  migrationsFolder: string;
  connectTimeoutMs: number;
  flag: SharedArrayBuffer;
  port: MessagePort;
}

/** An error PostgreSQL reported for a statement (constraint violation, syntax, lost connection). */
export class PgStatementError extends Error {
  constructor(
    message: string,
    /** SQLSTATE, e.g. 23505 (unique violation). */
    readonly code: string | undefined,
  ) {
    super(message);
    this.name = 'PgStatementError';
  }
}

/** `postgres://user:secret@host/db` without the password, for messages and logs. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(unparseable URL)';
  }
}

export interface SyncPgOptions {
  url: string;
  migrationsFolder: string;
  /** How long one statement (or the connection and migrations at open) may take before the store gives up, ms. */
  statementTimeoutMs?: number;
  connectTimeoutMs?: number;
}

export class SyncPg {
  private readonly worker: Worker;
  private readonly port: MessagePort;
  private readonly flag: Int32Array;
  private nextId = 1;
  private dead: string | null = null;
  private readonly timeoutMs: number;
  private readonly where: string;
  /** Open transaction depth (0: none; above 1: savepoints). */
  depth = 0;
  /** Round trips to the worker so far (docs/scaling.md; tests). */
  roundTrips = 0;

  constructor(opts: SyncPgOptions) {
    this.timeoutMs = opts.statementTimeoutMs ?? 30_000;
    this.where = redactUrl(opts.url);
    const flag = new SharedArrayBuffer(4);
    this.flag = new Int32Array(flag);
    const { port1, port2 } = new MessageChannel();
    this.port = port1;
    const data: PgWorkerData = { url: opts.url, migrationsFolder: opts.migrationsFolder, connectTimeoutMs: opts.connectTimeoutMs ?? 10_000, flag, port: port2 };
    this.worker = new Worker(new URL('./pg-worker.js', import.meta.url), { workerData: data, transferList: [port2] });
    // The worker never keeps the process alive by itself: close() ends it, exit ends it too.
    this.worker.unref();
    this.port.unref();
    try {
      this.call({ id: 0, op: 'open' }, Math.max(this.timeoutMs, (opts.connectTimeoutMs ?? 10_000) + 30_000));
    } catch (e) {
      void this.worker.terminate();
      const why = e instanceof Error ? e.message : String(e);
      throw new CoordinatorError('TWF_E_DB', `PostgreSQL store ${this.where}: could not connect and migrate (${why}); check that the server runs, the URL, the user's rights on the database`, {
        cause: e,
      });
    }
  }

  /**
   * Runs statements in order (one round trip) and returns the last one's rows and row count.
   * `opensTransaction`: they start with BEGIN, so a dropped connection may be replaced first.
   */
  query(statements: PgStatement[], opensTransaction = false): { rows: unknown[][]; rowCount: number } {
    const r = this.call({ id: this.nextId++, op: 'query', statements, inTransaction: this.depth > 0 && !opensTransaction }, this.timeoutMs);
    return { rows: r.rows, rowCount: r.rowCount };
  }

  close(): void {
    if (this.dead) return;
    try {
      this.call({ id: this.nextId++, op: 'close' }, 5_000);
    } catch {
      // closing anyway
    }
    this.dead = 'closed';
    void this.worker.terminate();
  }

  private call(req: PgRequest, timeoutMs: number): PgReply {
    if (this.dead) throw new CoordinatorError('TWF_E_DB', `PostgreSQL store ${this.where} is ${this.dead}; restart the coordinator`);
    this.roundTrips++;
    this.port.postMessage(req);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      // The worker posts its reply, then bumps the counter: a reply is read first, and a wait on
      // the counter value seen before reading cannot miss a bump that came in between.
      const seen = Atomics.load(this.flag, 0);
      const m = receiveMessageOnPort(this.port)?.message as PgReply | undefined;
      if (!m) {
        const left = deadline - Date.now();
        if (left <= 0 || Atomics.wait(this.flag, 0, seen, left) === 'timed-out') {
          // The connection's state is unknown now (a statement may still run, a transaction be
          // half done): refuse every further call rather than guess.
          this.dead = `unusable: no answer within ${timeoutMs} ms`;
          void this.worker.terminate();
          throw new CoordinatorError('TWF_E_DB', `PostgreSQL store ${this.where}: no answer within ${timeoutMs} ms; the store is closed, restart the coordinator once the database answers`);
        }
        continue;
      }
      if (m.id !== req.id) continue;
      if (!m.ok) throw new PgStatementError(`PostgreSQL: ${m.error?.message ?? 'error'}${m.error?.detail ? ` (${m.error.detail})` : ''}`, m.error?.code);
      return m;
    }
  }
}
