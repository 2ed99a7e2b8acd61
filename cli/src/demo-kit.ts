/**
 * What both demos (`npm run demo`, `npm run demo:response`) do the same way: start a
 * coordinator and site processes on loopback, have each site's privacy officer approve
 * the announced manifest, and verify every audit log at the end.
 */
import Database from 'better-sqlite3';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { LeadClient } from './http.js';
import { compareAuditDbs, verifyAuditDb } from './commands/audit.js';

export { BIN, REPO } from './paths.js';
import { BIN } from './paths.js';

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => (typeof a === 'object' && a ? res(a.port) : rej(new Error('no port'))));
    });
  });
}

/** Runs `twinfed ARGS` to completion; resolves with its stdout, rejects with its stderr. */
export function run(args: string[], label: string): Promise<string> {
  return new Promise((res, rej) => {
    const p = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (err += d));
    p.on('exit', (code) => (code === 0 ? res(out) : rej(new Error(`${label} failed (exit ${code}): ${err || out}`))));
  });
}

/** One event line of `twinfed site run --json-events`. */
export interface SiteEvent {
  event: string;
  level?: string;
  msg?: string;
  code?: string;
  detail?: string;
  round?: number;
  metric?: { value: number | null };
}

/** The demo's child processes; `stopAll` is also called on process exit. */
export class DemoProcesses {
  readonly children: ChildProcess[] = [];
  readonly stopAll = () => this.children.forEach((c) => c.exitCode === null && c.kill('SIGTERM'));
  constructor() {
    process.on('exit', this.stopAll);
  }

  /** Starts `twinfed coordinator start` on a free loopback port and waits for /healthz. */
  async startCoordinator(dataDir: string): Promise<{ url: string; lead: LeadClient }> {
    const adminToken = randomBytes(18).toString('base64url');
    const url = `http://127.0.0.1:${await freePort()}`;
    this.children.push(spawn(process.execPath, [BIN, 'coordinator', 'start', '--data-dir', dataDir, '--port', new URL(url).port, '--admin-token', adminToken, '--log-level', 'warn', '--tick-ms', '500'], { stdio: ['ignore', 'ignore', 'inherit'] }));
    const lead = new LeadClient(url, adminToken);
    for (let i = 0; ; i++) {
      try {
        await lead.call('GET', '/healthz');
        return { url, lead };
      } catch {
        if (i > 100) throw new Error('coordinator did not start');
        await sleep(200);
      }
    }
  }

  /**
   * Starts `twinfed site run --json-events` for a site folder. Errors and refusals are
   * reported through `say`; every event goes to `onEvent`, every stderr chunk to `onStderr`.
   */
  startSite(dataDir: string, name: string, say: (s: string) => void, hooks: { onEvent?: (e: SiteEvent) => void; onStderr?: (s: string) => void } = {}): ChildProcess {
    const p = spawn(process.execPath, [BIN, 'site', 'run', '--data-dir', dataDir, '--json-events'], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.children.push(p);
    let buf = '';
    p.stdout!.on('data', (d) => {
      buf += d;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        let e: SiteEvent;
        try {
          e = JSON.parse(line) as SiteEvent;
        } catch {
          continue; // not an event line
        }
        if (e.event === 'log' && e.level === 'error') say(`${name}: ERROR ${e.msg}`);
        if (e.event === 'rejected' && e.code !== 'TWF_E_STUDY_NOT_APPROVED') say(`${name}: refused ${e.code} ${e.detail}`);
        hooks.onEvent?.(e);
      }
    });
    if (hooks.onStderr) p.stderr!.on('data', (d) => hooks.onStderr!(String(d)));
    else p.stderr!.resume();
    return p;
  }

  /** Stops every child and waits until they have exited. */
  async stopAndWait(): Promise<void> {
    this.stopAll();
    await Promise.all(this.children.filter((c) => c.exitCode === null).map((c) => new Promise<void>((r) => c.on('exit', () => r()))));
  }

  dispose(): void {
    this.stopAll();
    process.off('exit', this.stopAll);
  }
}

/** Each site's privacy officer approves the study once it has been announced there (hash read from the site's own database). */
export async function approveWhenAnnounced(siteDirs: string[], studyId: string, officers: string[]): Promise<void> {
  await Promise.all(siteDirs.map(async (dir, i) => {
    for (;;) {
      const db = existsSync(join(dir, 'site.db')) ? new Database(join(dir, 'site.db'), { readonly: true, fileMustExist: true }) : null;
      const row = db?.prepare('select manifest_hash from studies where study_id = ?').get(studyId) as { manifest_hash: string } | undefined;
      db?.close();
      if (row) {
        await run(['site', 'approve', studyId, '--data-dir', dir, '--officer', officers[i], '--hash', row.manifest_hash], 'approve');
        return;
      }
      await sleep(300);
    }
  }));
}

/** The site id a site folder was enrolled as. */
export function siteIdOf(siteDir: string): string {
  return (JSON.parse(readFileSync(join(siteDir, 'site.json'), 'utf8')) as { siteId: string }).siteId;
}

/** Waits (up to 20 s) until a site has written a study's final model; returns its folder. */
export async function finalModelDir(siteDir: string, studyId: string): Promise<string> {
  const dir = join(siteDir, 'models', studyId);
  for (let i = 0; i < 100 && !existsSync(join(dir, 'model.json')); i++) await sleep(200);
  return dir;
}

/**
 * Verifies the coordinator's and every site's audit chain, each with the key its
 * counterpart pinned (not the key it records itself), and cross-checks each site's
 * log against the coordinator's.
 */
export async function verifyDemoAudits(coordDb: string, siteDirs: string[]) {
  const coordKey = (JSON.parse(readFileSync(join(siteDirs[0], 'site.json'), 'utf8')) as { coordinatorPublicKey: string }).coordinatorPublicKey;
  const cdb = new Database(coordDb, { readonly: true });
  const siteKeys = new Map((cdb.prepare('select site_id, ed25519_public_key from sites').all() as { site_id: string; ed25519_public_key: string }[]).map((r) => [r.site_id, r.ed25519_public_key]));
  cdb.close();
  const verdicts = [await verifyAuditDb(coordDb, coordKey)];
  for (const dir of siteDirs) verdicts.push(await verifyAuditDb(join(dir, 'site.db'), siteKeys.get(siteIdOf(dir))));
  const compares = [];
  for (const dir of siteDirs) compares.push(await compareAuditDbs(join(dir, 'site.db'), coordDb, { coordinatorKey: coordKey, siteKey: siteKeys.get(siteIdOf(dir)) }));
  return { verdicts, compares, ok: verdicts.every((v) => v.ok) && compares.every((c) => c.ok) };
}
