/**
 * npm run bench:scaling — what limits one coordinator machine (docs/scaling.md has the figures).
 *
 *   he       ciphertext adds on one core: validateCiphertext + addCiphertexts (the upload path),
 *            default parameters (N = 4096 slots, one 60-bit prime; a seeded 32 KB upload chunk);
 *   sqlite   the coordinator's SQLite file (WAL, synchronous = FULL): 32 KB chunk rows one
 *            transaction each, and the store statements of one upload-chunk transaction;
 *   pg       the same on the PostgreSQL store (a throwaway server from the Debian binaries, fsync
 *            on), plus one read's round trip;
 *   sockets  authenticated socket.io connections held by one coordinator process (its memory per
 *            connection, handshakes per second, idle CPU with pings).
 *
 * `node test/dist/bench/coordinator-limits.js [he] [sqlite] [pg] [sockets] [--sockets N] [--json]`
 * (no section: all). Figures depend on the machine; run it on the coordinator's.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { buildCoordinator } from '@twinfed/coordinator';
import { openCoordinatorDb } from '@twinfed/coordinator/db/index';
import type { CoordinatorStore } from '@twinfed/coordinator/store/index';
import { PgStore, openPgConnection, pgAuditBackend } from '@twinfed/coordinator/store/postgres';
import { SqliteStore } from '@twinfed/coordinator/store/sqlite';
import { AuditLog, sqliteAuditBackend, type AuditBackend } from '@twinfed/shared/audit/index';
import { generateIdentity, initSodium } from '@twinfed/shared/crypto/index';
import { DEFAULT_HE_PARAMS, addCiphertexts, createHeContext, encryptWeightedUpdate, generateSecretKey, validateCiphertext } from '@twinfed/shared/he/index';
import { ADMIN_TOKEN, RawSite, enrolNewSite, tempDir } from '../harness.js';
import { startPgServer } from '../pg-server.js';

const args = process.argv.slice(2);
const json = args.includes('--json');
const nSockets = Number(args[args.indexOf('--sockets') + 1] ?? 0) || 1000;
const wanted = ['he', 'sqlite', 'pg', 'sockets'].filter((s) => args.includes(s));
const sections = wanted.length ? wanted : ['he', 'sqlite', 'pg', 'sockets'];
const results: Record<string, Record<string, number | string>> = {};
const say = (s: string) => {
  if (!json) console.log(s);
};
const round = (x: number, d = 2) => Number(x.toFixed(d));

/** Median of `reps` timings of fn (ms). */
function timeMs(fn: () => void, reps: number): number {
  const t: number[] = [];
  for (let i = 0; i < reps; i++) {
    const s = performance.now();
    fn();
    t.push(performance.now() - s);
  }
  return t.sort((a, b) => a - b)[Math.floor(t.length / 2)];
}

async function heSection(): Promise<void> {
  const ctx = await createHeContext(DEFAULT_HE_PARAMS);
  const sk = generateSecretKey(ctx);
  const delta = new Float32Array(ctx.slotCount).map((_, i) => Math.sin(i) * 0.01);
  const chunk = encryptWeightedUpdate(ctx, sk, delta, 10, 1).ciphertexts[0];
  let acc: Uint8Array | null = addCiphertexts(ctx, null, chunk);
  for (let i = 0; i < 20; i++) acc = addCiphertexts(ctx, acc, chunk); // warm up
  // The best of 5 batches of 100: other processes on the machine only ever make it slower.
  let ms = Infinity;
  for (let b = 0; b < 5; b++) {
    const t0 = performance.now();
    for (let i = 0; i < 100; i++) {
      validateCiphertext(ctx, chunk);
      acc = addCiphertexts(ctx, acc, chunk);
    }
    ms = Math.min(ms, (performance.now() - t0) / 100);
  }
  results.he = {
    uploadChunkBytes: chunk.length,
    aggregateBytes: acc.length,
    msPerValidateAndAdd: round(ms, 3),
    addsPerS: Math.round(1000 / ms),
    parametersPerS: Math.round((1000 / ms) * ctx.slotCount),
  };
  say(
    `he: validate+add of a ${chunk.length}-byte chunk into a ${acc.length}-byte sum: ${ms.toFixed(3)} ms -> ${Math.round(1000 / ms)} adds/s, ${round(((1000 / ms) * ctx.slotCount) / 1e6)} M parameters/s on one core`,
  );
}

/**
 * The store statements of one accepted upload chunk (rounds.ts onChunk) without the HE add: 6
 * reads, 4 writes and the audit entry (a read and a write), in one transaction.
 */
function chunkTransaction(store: CoordinatorStore, audit: AuditLog, k: number, ct: Buffer, sum: Buffer): void {
  store.transaction((tx) => {
    tx.study('s1');
    tx.round('s1', 1);
    tx.studySite('s1', 'a');
    tx.update('s1', 1, 'a');
    tx.hasChunk('s1', 1, 'a', k);
    tx.insertChunk({ studyId: 's1', round: 1, siteId: 'a', index: k, ct, digest: 'd' });
    tx.accumulator('s1', 1, k % 4);
    tx.putAccumulator({ studyId: 's1', round: 1, index: k % 4, ct: sum, contributions: k });
    tx.setUpdate('s1', 1, 'a', { received: k });
    tx.updateRound('s1', 1, { bytesIn: k * ct.length });
    audit.append({ actor: 'a', action: 'msg.received', studyId: 's1', round: 1, digest: 'd', sizeBytes: ct.length });
  });
}

function storeFigures(name: string, store: CoordinatorStore, auditBackend: AuditBackend, id: ReturnType<typeof generateIdentity>, roundTrips?: () => number): Record<string, number> {
  const audit = new AuditLog(auditBackend, 'coordinator-bench', id.ed25519SecretKey, id.ed25519PublicKey);
  store.insertStudy({ studyId: 's1', manifestJson: '{}', manifestHash: 'h', state: 'running', createdAtMs: Date.now() });
  store.addStudySite('s1', 'a');
  store.insertRound({ studyId: 's1', round: 1, state: 'open', openedAtMs: Date.now(), deadlineAtMs: Date.now(), participantsJson: '[]' });
  store.insertUpdate({ studyId: 's1', round: 1, siteId: 'a', state: 'receiving', count: 1e6, nSamples: 1, length: 1, startedAtMs: Date.now() });
  const ct = randomBytes(32_962);
  const sum = randomBytes(65_649);
  // 32 KB rows, one transaction each (a chunk row as uploaded)
  let k = 0;
  const rows = 300;
  const t0 = performance.now();
  for (let i = 0; i < rows; i++) store.transaction((tx) => tx.insertChunk({ studyId: 's1', round: 2, siteId: 'a', index: k++, ct, digest: 'd' }));
  const rowMs = (performance.now() - t0) / rows;
  const read = timeMs(() => void store.study('s1'), 300);
  let j = 0;
  const txMs = timeMs(() => chunkTransaction(store, audit, j++, ct, sum), 200);
  const rt0 = roundTrips?.() ?? 0;
  chunkTransaction(store, audit, j++, ct, sum);
  const r = {
    ...(roundTrips ? { roundTripsPerChunkTransaction: roundTrips() - rt0 } : {}),
    ms32kRowCommit: round(rowMs, 3),
    rows32kPerS: Math.round(1000 / rowMs),
    mbPerS: round((ct.length * (1000 / rowMs)) / 1e6, 1),
    msOneRead: round(read, 3),
    msChunkTransaction: round(txMs, 3),
    chunkTransactionsPerS: Math.round(1000 / txMs),
  };
  say(
    `${name}: 32 KB row + commit ${r.ms32kRowCommit} ms (${r.rows32kPerS} rows/s, ${r.mbPerS} MB/s); one read ${r.msOneRead} ms; upload-chunk transaction (12 statements + commit) ${r.msChunkTransaction} ms (${r.chunkTransactionsPerS}/s)`,
  );
  return r;
}

async function sqliteSection(): Promise<void> {
  await initSodium();
  const tmp = tempDir('bench-sqlite');
  try {
    const db = openCoordinatorDb(join(tmp.dir, 'coordinator.db'));
    results.sqlite = storeFigures('sqlite (WAL, synchronous=FULL)', new SqliteStore(db), sqliteAuditBackend(db), generateIdentity());
    db.$client.close();
  } finally {
    tmp.cleanup();
  }
}

async function pgSection(): Promise<void> {
  await initSodium();
  const server = await startPgServer({ durable: true });
  try {
    const conn = openPgConnection(await server.createDatabase('bench'));
    results.pg = {
      server: server.version,
      ...storeFigures(`postgresql ${server.version} (fsync on, loopback TCP)`, new PgStore(conn), pgAuditBackend(conn), generateIdentity(), () => conn.pg.roundTrips),
    };
    // What the worker bridge adds: SELECT 1 through it, and awaited on a client in this thread.
    results.pg.msSelect1Bridge = round(
      timeMs(() => void conn.pg.query([{ sql: 'select 1', params: [] }]), 500),
      3,
    );
    conn.close();
    const direct = new pg.Client({ connectionString: server.adminUrl });
    await direct.connect();
    const t: number[] = [];
    for (let i = 0; i < 500; i++) {
      const s0 = performance.now();
      await direct.query('select 1');
      t.push(performance.now() - s0);
    }
    await direct.end();
    results.pg.msSelect1Async = round(t.sort((a, b) => a - b)[250], 3);
    say(
      `postgresql: select 1 through the worker bridge ${results.pg.msSelect1Bridge} ms, awaited on an async client ${results.pg.msSelect1Async} ms; ${results.pg.roundTripsPerChunkTransaction} round trips per upload-chunk transaction`,
    );
  } finally {
    await server.stop();
  }
}

// ------------------------------------------------------------------ sockets

/** Child mode: a coordinator without the pre-auth rate limit (every client is 127.0.0.1); prints its URL, then memory and CPU on request. */
async function serve(dir: string): Promise<void> {
  const c = await buildCoordinator({ dataDir: dir, port: 0, adminToken: ADMIN_TOKEN, logLevel: 'silent', preAuthRateLimit: { burst: 1e9, perS: 1e9 } });
  const url = await c.listen();
  console.log(JSON.stringify({ url }));
  const gc = (globalThis as { gc?: () => void }).gc;
  for await (const line of createInterface({ input: process.stdin })) {
    if (line === 'stats') {
      gc?.();
      const m = process.memoryUsage();
      const cpu = process.cpuUsage();
      console.log(JSON.stringify({ rss: m.rss, heapUsed: m.heapUsed, cpuMs: (cpu.user + cpu.system) / 1000, sockets: c.io.engine.clientsCount }));
    }
  }
  await c.close();
}

async function socketsSection(): Promise<void> {
  await initSodium();
  const tmp = tempDir('bench-sockets');
  const child = spawn(process.execPath, ['--expose-gc', fileURLToPath(import.meta.url), '--serve', join(tmp.dir, 'c')], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const next = async () => JSON.parse(((await lines.next()).value as string) ?? 'null') as Record<string, number> & { url: string };
  const stats = async () => {
    child.stdin.write('stats\n');
    return next();
  };
  const sites: RawSite[] = [];
  try {
    const { url } = await next();
    const dirs: string[] = [];
    let t = performance.now();
    for (let i = 0; i < nSockets; i++) {
      const d = join(tmp.dir, `s${i}`);
      mkdirSync(d);
      await enrolNewSite(url, d, `Site ${i}`);
      dirs.push(d);
    }
    const enrolS = (performance.now() - t) / 1000;
    const base = await stats();
    t = performance.now();
    for (let i = 0; i < dirs.length; i += 50) {
      const batch = await Promise.all(dirs.slice(i, i + 50).map((d) => RawSite.create(url, d)));
      await Promise.all(batch.map((s) => s.connected()));
      sites.push(...batch);
    }
    const connectS = (performance.now() - t) / 1000;
    await new Promise((r) => setTimeout(r, 2000));
    const held = await stats();
    await new Promise((r) => setTimeout(r, 30_000)); // three ping intervals
    const idle = await stats();
    results.sockets = {
      connections: held.sockets,
      enrolPerS: round(nSockets / enrolS, 1),
      handshakesPerS: round(nSockets / connectS, 1),
      rssKiBPerConnection: round((held.rss - base.rss) / 1024 / nSockets, 1),
      heapKiBPerConnection: round((held.heapUsed - base.heapUsed) / 1024 / nSockets, 1),
      idleCpuPercent: round(((idle.cpuMs - held.cpuMs) / 30_000) * 100, 2),
    };
    say(
      `sockets: ${held.sockets} authenticated connections; ${results.sockets.handshakesPerS} handshakes/s (client in the same machine); ${results.sockets.rssKiBPerConnection} KiB RSS, ${results.sockets.heapKiBPerConnection} KiB heap per connection; idle CPU ${results.sockets.idleCpuPercent}% of a core (pings every 10 s)`,
    );
  } finally {
    for (const s of sites) s.socket.disconnect();
    child.stdin.end();
    child.kill();
    tmp.cleanup();
  }
}

if (args[0] === '--serve') {
  await serve(args[1]);
} else {
  say(`node ${process.version}, ${new Date().toISOString()}`);
  if (sections.includes('he')) await heSection();
  if (sections.includes('sqlite')) await sqliteSection();
  if (sections.includes('pg')) await pgSection();
  if (sections.includes('sockets')) await socketsSection();
  if (json) console.log(JSON.stringify({ node: process.version, ...results }));
  process.exit(0);
}
