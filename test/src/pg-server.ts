/**
 * A throwaway PostgreSQL server from the Debian binaries (apt-get install postgresql): initdb into
 * a temporary folder, postgres on a free loopback port, trust authentication, dropped at stop().
 * PostgreSQL refuses to run as root, so under root (CI) the server runs as the user `nobody`.
 * Missing binaries are an error naming the package, never a skip: .ci/run installs them.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';

export interface PgServer {
  /** postgres://twinfed@127.0.0.1:PORT/postgres */
  adminUrl: string;
  port: number;
  version: string;
  /** A new, empty database; its URL. */
  createDatabase(name: string): Promise<string>;
  stop(): Promise<void>;
}

/** The newest ROOT/N/bin holding initdb and postgres, ROOT being Debian's /usr/lib/postgresql (or $TWINFED_PG_BIN). */
export function findPgBin(root = '/usr/lib/postgresql', env = process.env.TWINFED_PG_BIN): string {
  if (env) {
    if (!existsSync(join(env, 'initdb'))) throw new Error(`TWINFED_PG_BIN=${env} holds no initdb`);
    return env;
  }
  const versions = existsSync(root)
    ? readdirSync(root)
        .filter((v) => existsSync(join(root, v, 'bin', 'initdb')) && existsSync(join(root, v, 'bin', 'postgres')))
        .sort((a, b) => Number(b) - Number(a))
    : [];
  if (!versions.length)
    throw new Error(
      `PostgreSQL server binaries not found (no ${root}/*/bin/initdb): install the Debian package with: apt-get install postgresql (.ci/run does), or point TWINFED_PG_BIN at a folder with initdb and postgres`,
    );
  return join(root, versions[0], 'bin');
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

/** Under root, the uid/gid of `nobody` (PostgreSQL will not run as root). */
function runAs(): { uid: number; gid: number } | null {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return null;
  const id = (flag: string) => Number(spawnSync('id', [flag, 'nobody'], { encoding: 'utf8' }).stdout.trim());
  const uid = id('-u');
  const gid = id('-g');
  if (!Number.isInteger(uid) || !Number.isInteger(gid) || uid === 0) throw new Error('running as root, and no user `nobody` to run PostgreSQL as');
  return { uid, gid };
}

/**
 * Starts a server. `durable`: fsync and synchronous commit on (as in production; for timing
 * figures); off by default, which makes the tests faster and changes nothing they check.
 */
export async function startPgServer(opts: { durable?: boolean } = {}): Promise<PgServer> {
  const bin = findPgBin();
  const user = runAs();
  const dir = mkdtempSync(join(tmpdir(), 'twinfed-pg-'));
  if (user) chownSync(dir, user.uid, user.gid);
  const data = join(dir, 'data');
  const as = user ? { uid: user.uid, gid: user.gid } : {};
  const init = spawnSync(join(bin, 'initdb'), ['-D', data, '-U', 'twinfed', '--auth=trust', '-E', 'UTF8', '--locale=C', '--no-instructions', ...(opts.durable ? [] : ['--no-sync'])], {
    encoding: 'utf8',
    ...as,
  });
  if (init.status !== 0) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`initdb failed (${init.status}): ${init.stderr || init.stdout}`);
  }
  const port = await freePort();
  const settings = ['-c', 'listen_addresses=127.0.0.1', '-c', `unix_socket_directories=${dir}`, '-c', 'max_connections=50', '-c', 'shared_buffers=32MB'];
  if (!opts.durable) settings.push('-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off');
  const proc: ChildProcess = spawn(join(bin, 'postgres'), ['-D', data, '-p', String(port), ...settings], { stdio: ['ignore', 'ignore', 'pipe'], ...as });
  let log = '';
  proc.stderr?.on('data', (b: Buffer) => {
    log = (log + b.toString('utf8')).slice(-4000);
  });
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  const adminUrl = `postgres://twinfed@127.0.0.1:${port}/postgres`;
  const stop = async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGINT'); // fast shutdown
      await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
    }
    rmSync(dir, { recursive: true, force: true });
  };
  // Ready when it accepts a connection (a few hundred ms).
  const deadline = Date.now() + 30_000;
  let version = '';
  for (;;) {
    if (proc.exitCode !== null) {
      await stop();
      throw new Error(`postgres exited (${proc.exitCode}) at start: ${log}`);
    }
    const c = new pg.Client({ connectionString: adminUrl });
    try {
      await c.connect();
      version = ((await c.query('show server_version')).rows[0] as { server_version: string }).server_version;
      await c.end();
      break;
    } catch (e) {
      await c.end().catch(() => undefined);
      if (Date.now() > deadline) {
        await stop();
        throw new Error(`postgres did not accept connections within 30 s: ${(e as Error).message}; ${log}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return {
    adminUrl,
    port,
    version,
    async createDatabase(name: string) {
      if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new Error(`database name ${name}: lowercase letters, digits and _ only`);
      const c = new pg.Client({ connectionString: adminUrl });
      await c.connect();
      try {
        await c.query(`create database ${name}`);
      } finally {
        await c.end();
      }
      return `postgres://twinfed@127.0.0.1:${port}/${name}`;
    },
    stop,
  };
}
