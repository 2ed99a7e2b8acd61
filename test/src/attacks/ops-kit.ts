/**
 * Plumbing for the operations attacks (operations.ts): the CLI and the coordinator as child
 * processes, site nodes that close cleanly, a malicious coordinator operator's own envelopes,
 * and what the attacks measure (metrics, file trees, table counts).
 */
import Database from '@twinfed/shared/db/driver';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Envelope } from '@twinfed/protocols';
import type { Coordinator } from '@twinfed/coordinator';
import { SiteNode, createUNetTrainer, importPath, openSiteStore, type SiteEvents } from '@twinfed/site-node';
import { loadIdentity, type Signer } from '@twinfed/shared/crypto/index';
import { ADMIN_TOKEN, STS_DIR, enrolNewSite, waitFor } from '../harness.js';

export const BIN = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../../cli/dist/bin.js');

export interface CliRun {
  code: number | null;
  out: string;
  err: string;
  seconds: number;
  /** Peak resident memory of the whole CLI process (process.resourceUsage().maxRSS at exit), MiB. */
  maxRssMiB: number | null;
}

/**
 * Runs `twinfed ARGS` as a child process (asynchronously: an in-process coordinator keeps
 * serving it). A preload written into `dir` prints the process's maxRSS at exit, also on
 * process.exit(), so the memory figure is the CLI's own, not the suite's.
 */
export function twinfed(dir: string, args: string[], timeoutMs = 60_000): Promise<CliRun> {
  const preload = join(dir, 'maxrss-preload.mjs');
  if (!existsSync(preload)) writeFileSync(preload, "process.on('exit', () => process.stderr.write(`\\nTWINFED_MAXRSS_KIB ${process.resourceUsage().maxRSS}\\n`));\n");
  const t0 = performance.now();
  return new Promise((res) => {
    const p = spawn(process.execPath, ['--import', preload, BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (b: Buffer) => (out += b.toString()));
    p.stderr.on('data', (b: Buffer) => (err += b.toString()));
    const timer = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.on('close', (code) => {
      clearTimeout(timer);
      const m = /\nTWINFED_MAXRSS_KIB (\d+)\n/.exec(err);
      res({ code, out, err: err.replace(/\nTWINFED_MAXRSS_KIB \d+\n/, ''), seconds: (performance.now() - t0) / 1000, maxRssMiB: m ? Number(m[1]) / 1024 : null });
    });
  });
}

export async function freePort(): Promise<number> {
  return new Promise((res) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => res(p));
    });
  });
}

/** `twinfed coordinator start` as its own process (SIGTERM closes it the way an operator's restart does). */
export function coordinatorProcess(dataDir: string, port: number): { proc: ChildProcess; url: string; up: Promise<void>; stop(signal?: NodeJS.Signals): Promise<void> } {
  const proc = spawn(process.execPath, [BIN, 'coordinator', 'start', '--data-dir', dataDir, '--port', String(port), '--admin-token', ADMIN_TOKEN, '--log-level', 'silent', '--tick-ms', '100'], {
    stdio: 'ignore',
  });
  const url = `http://127.0.0.1:${port}`;
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  return {
    proc,
    url,
    up: waitFor(async () => (await fetch(new URL('/healthz', url)).catch(() => null))?.ok, 'coordinator process up', 20_000, 50).then(() => undefined),
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      await exited;
    },
  };
}

export interface OpenSite {
  node: SiteNode;
  dir: string;
  /** Closes the node and the trainer's database connection (idempotent). */
  close(): Promise<void>;
}

/** Opens the site node of an enrolled folder with the real U-Net trainer (wasm). */
export async function openSite(dir: string, events: SiteEvents = {}): Promise<OpenSite> {
  const store = await openSiteStore(dir);
  const trainer = await createUNetTrainer(store.db, { backend: 'wasm', workers: 0 });
  const node = await SiteNode.open({ dataDir: dir, trainer, approvalPollMs: 100, events });
  let closed: Promise<void> | null = null;
  return {
    node,
    dir,
    close: () =>
      (closed ??= node
        .close()
        .catch(() => undefined)
        .finally(() => store.close())),
  };
}

/** Enrols a folder with a fresh token and opens its node; `patients` (real STS PET, 16x16) are imported first. */
export async function enrolledSite(url: string, dir: string, name: string, data?: { patients: string[]; val: string[] }, events: SiteEvents = {}): Promise<OpenSite> {
  await enrolNewSite(url, dir, name);
  if (data) {
    const store = await openSiteStore(dir);
    try {
      const rep = await importPath(store.db, store.audit, STS_DIR, { patients: data.patients, val: data.val, size: 16, refit: false, radiomics: false });
      if (rep.rows.filter((r) => r.status === 'imported').length !== data.patients.length) throw new Error(`import: ${JSON.stringify(rep.rows.filter((r) => r.status !== 'skipped'))}`);
    } finally {
      store.close();
    }
  }
  return openSite(dir, events);
}

/** Waits until the coordinator shows every one of `siteIds` connected (authenticated and said hello). */
export function connectedAt(c: Coordinator, siteIds: string[], timeoutMs = 20_000): Promise<boolean> {
  return waitFor(() => siteIds.every((id) => c.engine.listSites().find((s) => s.siteId === id)?.connected), `${siteIds.join(', ')} connected`, timeoutMs, 50);
}

/** The coordinator's server-side socket of a site (what its own transport sends on). */
export function serverSocket(c: Coordinator, siteId: string) {
  for (const s of c.io.of('/').sockets.values()) if ((s.data as { siteId?: string }).siteId === siteId && s.connected) return s;
  return null;
}

/**
 * What a malicious coordinator operator holds: the coordinator's identity file (its signing key)
 * and its database (its sequence counter). Envelopes signed with this are indistinguishable from
 * the coordinator's own; the sequence number is taken from the same counter the engine uses, so
 * later honest messages stay in order.
 */
export function operatorSigner(c: Coordinator): Signer {
  const identity = loadIdentity(join(c.config.dataDir, 'coordinator-identity.json'));
  const take = c.db.$client.prepare("insert into meta (key, value) values ('seq', '1') on conflict (key) do update set value = cast(value as integer) + 1 returning value");
  return { id: c.engine.coordinatorId, ed25519SecretKey: identity.ed25519SecretKey, nextSeq: () => Number((take.get() as { value: string }).value) };
}

/** Puts an envelope on a site's live connection, as the coordinator's transport would (false when the site is not connected). */
export function emitToSite(c: Coordinator, siteId: string, env: Envelope): boolean {
  const s = serverSocket(c, siteId);
  if (!s) return false;
  s.emit('envelope', env);
  return true;
}

/** Prometheus text as { 'name{labels}': value }. */
export async function metrics(url: string): Promise<Map<string, number>> {
  const text = await (await fetch(new URL('/metrics', url))).text();
  const m = new Map<string, number>();
  for (const line of text.split('\n')) {
    const x = /^([a-z_]+(?:\{[^}]*\})?) ([0-9.e+-]+)$/.exec(line);
    if (x) m.set(x[1], Number(x[2]));
  }
  return m;
}

/** Sum of a metric over its label sets (`name` or `name{` prefix match). */
export function metricSum(m: Map<string, number>, name: string): number {
  let s = 0;
  for (const [k, v] of m) if (k === name || k.startsWith(`${name}{`)) s += v;
  return s;
}

/** Every file and folder under `dir`, relative, sorted. */
export function tree(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d)) {
      const p = join(d, e);
      out.push(relative(dir, p));
      if (statSync(p).isDirectory()) walk(p);
    }
  };
  walk(dir);
  return out.sort();
}

/** Bytes of an SQLite database with its WAL. */
export function dbBytes(path: string): number {
  return [path, `${path}-wal`].reduce((s, p) => s + (existsSync(p) ? statSync(p).size : 0), 0);
}

/** Row counts of every table of an SQLite file (read-only). */
export function tableCounts(path: string, except: string[] = []): Record<string, number> {
  const db = new Database(path, { readonly: true });
  try {
    const names = (db.prepare("select name from sqlite_master where type = 'table' and name not like 'sqlite_%'").all() as { name: string }[]).map((r) => r.name).filter((n) => !except.includes(n));
    return Object.fromEntries(names.map((n) => [n, (db.prepare(`select count(*) n from "${n}"`).get() as { n: number }).n]));
  } finally {
    db.close();
  }
}

/** Runs `fn` over `items` with at most `k` at a time. */
export async function pool<T, R>(items: T[], k: number, fn: (x: T, i: number) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(k, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await fn(items[i], i);
      }
    }),
  );
  return out;
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
