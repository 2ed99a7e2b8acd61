import { existsSync, lstatSync, readdirSync, statSync, statfsSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { facts, html, notice, table } from '@twinfed/shared/web/index';
import { SITE_FILES } from '../config.js';
import { runDoctor } from '../doctor.js';
import type { SiteConsoleContext } from './server.js';

const when = (ms: number | null | undefined) => (ms ? new Date(ms).toISOString().replace('T', ' ').slice(0, 19) + ' UTC' : 'never');

export function bytesInWords(b: number): string {
  const u = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = b;
  while (v >= 1024 && i < u.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${b} bytes` : `${v.toFixed(v >= 100 ? 0 : 1)} ${u[i]}`;
}

/** Bytes under a folder (symbolic links not followed, so a link cannot make the page walk the disk). */
function folderBytes(dir: string, budget = { files: 100_000 }): number {
  if (!existsSync(dir)) return 0;
  let total = 0;
  for (const d of readdirSync(dir, { withFileTypes: true })) {
    if (--budget.files < 0) break;
    const p = join(dir, d.name);
    if (d.isDirectory()) total += folderBytes(p, budget);
    else if (d.isFile()) total += lstatSync(p).size;
  }
  return total;
}

/** Disk use of the site's data folder: the database (with its write-ahead log), the exported models, the rest, and what is free. */
export function diskUse(dataDir: string): { dbBytes: number; modelsBytes: number; totalBytes: number; freeBytes: number | null } {
  const db = join(dataDir, SITE_FILES.db);
  const dbBytes = [db, `${db}-wal`, `${db}-shm`].reduce((a, f) => a + (existsSync(f) ? statSync(f).size : 0), 0);
  const modelsBytes = folderBytes(join(dataDir, SITE_FILES.models));
  let freeBytes: number | null = null;
  try {
    const fs = statfsSync(dataDir);
    freeBytes = fs.bavail * fs.bsize;
  } catch {
    /* statfs unsupported */
  }
  return { dbBytes, modelsBytes, totalBytes: folderBytes(dataDir), freeBytes };
}

/** Hospital IT: connection, disk, imports, and the doctor's checks. */
export function registerItPages(app: FastifyInstance, ctx: SiteConsoleContext): void {
  app.get('/it', async (req, reply) => {
    const cfg = ctx.config;
    const last = ctx.db.$client.prepare("select max(ts_ms) t from audit_log where action = 'msg.received' and actor = ?").get(cfg.coordinatorId) as { t: number | null };
    const disk = diskUse(ctx.dataDir);
    const trust = cfg.coordinatorUrl.startsWith('https:')
      ? cfg.tlsPins.length
        ? `pinned keys (any other TLS key is refused, whatever its certificate):`
        : 'certificate authorities and host name (no pin)'
      : 'none: plain http (loopback and demos only)';
    const files = ctx.db.$client
      .prepare(
        "select f.path, f.kind, f.patient_id p, f.imported_at_ms t, (select detail from audit_log a where a.action = 'data.imported' and a.digest = f.digest order by a.id desc limit 1) d from imported_files f order by f.imported_at_ms desc limit 200",
      )
      .all() as { path: string; kind: string; p: string | null; t: number; d: string | null }[];
    const nFiles = (ctx.db.$client.prepare('select count(*) n from imported_files').get() as { n: number }).n;
    const body = html`<section aria-labelledby="conn">
        <h2 id="conn">Connection to the coordinator</h2>
        ${facts([
          ['Connected', ctx.node ? (ctx.node.connected ? 'yes' : 'no (the node reconnects by itself; see the doctor below)') : 'no node in this process (twinfed site console)'],
          ['Last contact', when(last.t)],
          ['Coordinator', `${cfg.coordinatorId} at ${cfg.coordinatorUrl}`],
          [
            'TLS',
            html`${trust}${
              cfg.tlsPins.length
                ? html`<ul class="plain">
                    ${cfg.tlsPins.map((p) => html`<li><code>${p}</code></li>`)}
                  </ul>`
                : null
            }`,
          ],
        ])}
      </section>
      <section aria-labelledby="disk">
        <h2 id="disk">Disk use of ${ctx.dataDir}</h2>
        ${facts([
          ['Database (site.db with its log)', bytesInWords(disk.dbBytes)],
          ['Exported models (models/)', bytesInWords(disk.modelsBytes)],
          ['Whole data folder', bytesInWords(disk.totalBytes)],
          ['Free on this disk', disk.freeBytes === null ? 'unknown' : bytesInWords(disk.freeBytes)],
        ])}
        ${disk.freeBytes !== null && disk.freeBytes < 2 ** 30 ? notice('error', 'Less than 1 GiB free: imports and training will fail; free space or move the data folder.') : null}
      </section>
      <section aria-labelledby="imports">
        <h2 id="imports">Imports</h2>
        <p>${nFiles} files and series imported (newest 200 shown). Files that failed or were skipped are listed by <code>twinfed site import</code> when it runs and are not stored.</p>
        ${table(
          'Imported files',
          ['Imported', 'File or series', 'Kind', 'Patient', 'Report'],
          files.map((f) => [when(f.t), f.path, f.kind, f.p ?? '-', f.d ?? '']),
          { id: 'imports', empty: 'Nothing imported yet: twinfed site import PATH --data-dir DIR' },
        )}
      </section>
      <p><a href="/it/doctor">Run the doctor</a>: compute backend, cores, keys, data counts, disk, TLS and whether the coordinator answers (takes a few seconds).</p>`;
    return reply.type('text/html; charset=utf-8').send(ctx.page(req, { title: 'Hospital IT', body }));
  });

  app.get('/it/doctor', async (req, reply) => {
    const r = await runDoctor(ctx.dataDir, { fetchTimeoutMs: 2000 });
    const body = html`<p>Compute backend: <strong>${r.backend}</strong>. The same checks as <code>twinfed site doctor</code>.</p>
      ${table(
        'Doctor checks',
        ['Result', 'Check', 'Detail'],
        r.checks.map((c) => [c.ok ? 'ok' : c.optional ? 'info' : html`<strong class="bad">FAIL</strong>`, c.name.trim(), c.detail]),
        { id: 'doctor' },
      )}`;
    return reply.type('text/html; charset=utf-8').send(ctx.page(req, { title: 'Doctor', body }));
  });
}
