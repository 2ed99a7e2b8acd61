import Database from 'better-sqlite3';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { responseStudySpec } from '@twinfed/shared/response/index';
import { LeadClient } from './http.js';
import { BIN, REPO, freePort, run, sleep } from './demo.js';
import { compareAuditDbs, verifyAuditDb } from './commands/audit.js';
import { compareResponse, formatResponseCompare } from './commands/response.js';

/** The project's copy of the Laleh et al. 2022 Study1-3 tables (CC BY 4.0, see the folder's licence file). */
export const DEFAULT_LALEH_DIR = join(REPO, 'fixtures', 'growth-laleh2022');

const STUDIES = ['Study1', 'Study2', 'Study3'];
const fmt = (x: number | null | undefined) => (x === null || x === undefined ? '  n/a' : x.toFixed(3));

interface StatusT {
  state: string;
  currentRound: number;
  roundSummaries: { round: number; state: string; completed: string[]; aggregateMs: number; metrics: { siteId: string; uploadBytes: number | null; encryptMs: number | null }[] }[];
}

/**
 * `npm run demo:response`: a coordinator and three site processes on loopback, one per trial
 * (Study1-3 of Laleh et al. 2022, imported with `twinfed site import --format laleh`), an
 * encrypted federated study of the response model, the global model saved under OUT/model, then
 * `response compare` against local-only and centralised training on the same patient split.
 */
export async function runResponseDemo(opts: { rounds: number; outDir: string; dataDir: string; timeoutS?: number }): Promise<boolean> {
  const t0 = Date.now();
  const out = opts.outDir;
  for (const s of STUDIES) if (!existsSync(join(opts.dataDir, `${s}.csv`))) throw new Error(`TWF_E_NOT_FOUND: ${join(opts.dataDir, `${s}.csv`)} is missing (the demo needs Study1-3.csv of Laleh et al. 2022)`);
  for (const d of ['coordinator', 'site-1', 'site-2', 'site-3', 'model', 'compare']) rmSync(join(out, d), { recursive: true, force: true });
  mkdirSync(out, { recursive: true });
  const adminToken = randomBytes(18).toString('base64url');
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const children: ChildProcess[] = [];
  const stopAll = () => children.forEach((c) => c.exitCode === null && c.kill('SIGTERM'));
  process.on('exit', stopAll);
  const say = (s: string) => console.log(`[${((Date.now() - t0) / 1000).toFixed(0).padStart(3)} s] ${s}`);
  try {
    say(`coordinator on ${url}`);
    children.push(spawn(process.execPath, [BIN, 'coordinator', 'start', '--data-dir', join(out, 'coordinator'), '--port', String(port), '--admin-token', adminToken, '--log-level', 'warn', '--tick-ms', '500'], { stdio: ['ignore', 'ignore', 'inherit'] }));
    const lead = new LeadClient(url, adminToken);
    for (let i = 0; ; i++) {
      try {
        await lead.call('GET', '/healthz');
        break;
      } catch {
        if (i > 100) throw new Error('coordinator did not start');
        await sleep(200);
      }
    }
    const siteDirs = STUDIES.map((_, i) => join(out, `site-${i + 1}`));
    await Promise.all(STUDIES.map(async (s, i) => {
      const { token } = await lead.call<{ token: string }>('POST', '/api/enrolment-tokens', { siteName: s });
      await run(['site', 'enrol', '--data-dir', siteDirs[i], '--coordinator', url, '--token', token], `enrol ${s}`);
      const rep = JSON.parse(await run(['site', 'import', join(opts.dataDir, `${s}.csv`), '--format', 'laleh', '--no-refit', '--data-dir', siteDirs[i], '--json'], `import ${s}`)) as { rows: { status: string; detail: string }[] };
      say(`${s}: enrolled, imported ${join(opts.dataDir, `${s}.csv`)}: ${rep.rows.map((r) => `${r.status} (${r.detail})`).join('; ')}`);
    }));

    const spec = responseStudySpec(opts.rounds);
    const study = await lead.call<{ studyId: string; manifestHash: string }>('POST', '/api/studies', spec);
    say(`study ${study.studyId} (task response, softmax regression, ${spec.model.arms.length} arm columns) created, manifest ${study.manifestHash.slice(0, 16)}…`);
    await lead.call('POST', `/api/studies/${study.studyId}/start`);

    // Each site's held-out macro AUC per round, from its 'applied' events (the coordinator keeps Dice columns only).
    const auc = new Map<number, (number | null)[]>();
    const siteIds: string[] = [];
    STUDIES.forEach((s, i) => {
      siteIds.push((JSON.parse(readFileSync(join(siteDirs[i], 'site.json'), 'utf8')) as { siteId: string }).siteId);
      const p = spawn(process.execPath, [BIN, 'site', 'run', '--data-dir', siteDirs[i], '--json-events'], { stdio: ['ignore', 'pipe', 'pipe'] });
      children.push(p);
      let buf = '';
      p.stdout!.on('data', (d) => {
        buf += d;
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          try {
            const e = JSON.parse(line) as { event: string; level?: string; msg?: string; code?: string; detail?: string; round?: number; metric?: { value: number | null } };
            if (e.event === 'log' && e.level === 'error') say(`${s}: ERROR ${e.msg}`);
            if (e.event === 'rejected' && e.code !== 'TWF_E_STUDY_NOT_APPROVED') say(`${s}: refused ${e.code} ${e.detail}`);
            if (e.event === 'applied' && e.round !== undefined) {
              const row = auc.get(e.round) ?? [null, null, null];
              row[i] = e.metric?.value ?? null;
              auc.set(e.round, row);
            }
          } catch { /* not an event line */ }
        }
      });
      p.stderr!.resume();
    });
    await Promise.all(siteDirs.map(async (dir, i) => {
      for (;;) {
        const db = existsSync(join(dir, 'site.db')) ? new Database(join(dir, 'site.db'), { readonly: true, fileMustExist: true }) : null;
        const row = db?.prepare('select manifest_hash from studies where study_id = ?').get(study.studyId) as { manifest_hash: string } | undefined;
        db?.close();
        if (row) {
          await run(['site', 'approve', study.studyId, '--data-dir', dir, '--officer', `Privacy officer, ${STUDIES[i]}`, '--hash', row.manifest_hash], 'approve');
          return;
        }
        await sleep(300);
      }
    }));
    say('privacy officers approved the manifest at all three sites');

    console.log('\nround  sites  upload bytes  encrypt ms  held-out macro AUC per site (Study1 Study2 Study3)');
    const printed = new Set<number>();
    const deadline = Date.now() + (opts.timeoutS ?? 600) * 1000;
    let status: StatusT;
    for (;;) {
      status = await lead.call<StatusT>('GET', `/api/studies/${study.studyId}`);
      for (const r of status.roundSummaries) {
        const a = auc.get(r.round);
        if (printed.has(r.round) || r.state !== 'closed' || !a || a.some((x) => x === null)) continue;
        printed.add(r.round);
        const up = r.metrics.reduce((s, m) => s + (m.uploadBytes ?? 0), 0);
        const enc = r.metrics.filter((m) => m.encryptMs !== null);
        console.log(`${String(r.round).padStart(5)}  ${String(r.completed.length).padStart(5)}  ${String(up).padStart(12)}  ${(enc.reduce((s, m) => s + m.encryptMs!, 0) / Math.max(1, enc.length)).toFixed(0).padStart(10)}  ${a.map(fmt).join('  ')}`);
      }
      if (status.state === 'completed' && status.roundSummaries.every((r) => printed.has(r.round))) break;
      if (Date.now() > deadline) throw new Error(`study did not complete within ${opts.timeoutS ?? 600} s (state ${status.state}, round ${status.currentRound})`);
      await sleep(500);
    }
    const modelSrc = join(siteDirs[0], 'models', study.studyId);
    for (let i = 0; i < 100 && !existsSync(join(modelSrc, 'model.json')); i++) await sleep(200);
    stopAll();
    await Promise.all(children.map((c) => (c.exitCode !== null ? null : new Promise((r) => c.on('exit', r)))));
    cpSync(modelSrc, join(out, 'model'), { recursive: true });
    say(`global model (decrypted at Study1) saved in ${join(out, 'model')}`);

    const coordDb = join(out, 'coordinator', 'coordinator.db');
    // Each log is verified with the key its counterpart pinned, not the key it records itself.
    const coordKey = (JSON.parse(readFileSync(join(siteDirs[0], 'site.json'), 'utf8')) as { coordinatorPublicKey: string }).coordinatorPublicKey;
    const cdb = new Database(coordDb, { readonly: true });
    const siteKeys = new Map((cdb.prepare('select site_id, ed25519_public_key from sites').all() as { site_id: string; ed25519_public_key: string }[]).map((r) => [r.site_id, r.ed25519_public_key]));
    cdb.close();
    const verdicts = [await verifyAuditDb(coordDb, coordKey)];
    for (let i = 0; i < siteDirs.length; i++) verdicts.push(await verifyAuditDb(join(siteDirs[i], 'site.db'), siteKeys.get(siteIds[i])));
    const compares = [];
    for (const dir of siteDirs) compares.push(await compareAuditDbs(join(dir, 'site.db'), coordDb));
    const auditOk = verdicts.every((v) => v.ok) && compares.every((c) => c.ok);
    say(`audit: ${auditOk ? 'all four chains intact, site logs match the coordinator' : 'PROBLEMS FOUND (twinfed audit verify / compare)'}`);

    console.log('\nfederated (the model above) vs local-only vs centralised, same patient split:');
    const report = compareResponse({ dataDir: opts.dataDir, outDir: join(out, 'compare'), rounds: opts.rounds, federatedModel: join(out, 'model'), log: say });
    console.log(formatResponseCompare(report));
    const elapsedS = (Date.now() - t0) / 1000;
    writeFileSync(join(out, 'report.json'), JSON.stringify({ studyId: study.studyId, manifestHash: study.manifestHash, siteIds, aucPerRound: Object.fromEntries(auc), auditOk, compare: report, model: join(out, 'model'), elapsedS }, null, 2) + '\n');
    say(`report ${join(out, 'report.json')}; ${elapsedS.toFixed(0)} s`);
    const fed = report.rows.find((r) => r.regime === 'federated' && r.evaluatedOn === 'pooled');
    return auditOk && fed?.auc !== null && fed?.auc !== undefined && fed.auc > 0.5;
  } finally {
    stopAll();
    process.off('exit', stopAll);
  }
}
