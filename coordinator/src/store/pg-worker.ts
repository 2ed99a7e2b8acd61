/**
 * The PostgreSQL side of SyncPg (pg-sync.ts), in a worker thread: one node-postgres connection,
 * the drizzle migrations at start, then one statement per request. Each reply is posted on the
 * port, then the shared counter is bumped and notified so the main thread, blocked in Atomics.wait,
 * wakes and reads it (receiveMessageOnPort).
 */
import { parentPort, workerData, type MessagePort } from 'node:worker_threads';
import pg from 'pg';
import { drizzle } from 'drizzle-orm/node-postgres';
import { migrate } from 'drizzle-orm/node-postgres/migrator';
import type { PgReply, PgRequest, PgWorkerData } from './pg-sync.js';

const data = workerData as PgWorkerData;
const port: MessagePort = data.port;
const flag = new Int32Array(data.flag);
if (!parentPort) throw new Error('pg-worker.js runs as a worker thread (SyncPg)');

let client: pg.Client | null = null;
let broken: Error | null = null;

async function connect(): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: data.url, connectionTimeoutMillis: data.connectTimeoutMs, application_name: 'twinfed-coordinator' });
  // A dropped connection (server restart) is noticed here; the next statement outside a
  // transaction reconnects, one inside a transaction fails (its transaction is gone).
  c.on('error', (e) => {
    broken = e;
  });
  await c.connect();
  broken = null;
  return c;
}

function reply(r: PgReply): void {
  port.postMessage(r);
  Atomics.add(flag, 0, 1);
  Atomics.notify(flag, 0);
}

function errorOf(e: unknown): PgReply['error'] {
  const x = e as { message?: string; code?: string; detail?: string };
  return { message: x?.message ?? String(e), ...(x?.code ? { code: x.code } : {}), ...(x?.detail ? { detail: x.detail } : {}) };
}

async function handle(req: PgRequest): Promise<PgReply> {
  if (req.op === 'open') {
    client = await connect();
    await migrate(drizzle(client), { migrationsFolder: data.migrationsFolder });
    return { id: req.id, ok: true, rows: [], rowCount: 0 };
  }
  if (req.op === 'close') {
    await client?.end().catch(() => undefined);
    client = null;
    return { id: req.id, ok: true, rows: [], rowCount: 0 };
  }
  if (!client || broken) {
    if (req.inTransaction) throw new Error(`connection to PostgreSQL lost inside a transaction: ${broken?.message ?? 'closed'}`);
    await client?.end().catch(() => undefined);
    client = await connect();
  }
  let rows: unknown[][] = [];
  let rowCount = 0;
  for (const s of req.statements) {
    const r = await client.query({ text: s.sql, values: s.params, rowMode: 'array' });
    rows = r.rows as unknown[][];
    rowCount = r.rowCount ?? 0;
  }
  return { id: req.id, ok: true, rows, rowCount };
}

port.on('message', (req: PgRequest) => {
  handle(req).then(reply, (e: unknown) => reply({ id: req.id, ok: false, rows: [], rowCount: 0, error: errorOf(e) }));
});
