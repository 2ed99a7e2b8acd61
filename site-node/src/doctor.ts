import { existsSync, statSync, statfsSync } from 'node:fs';
import { join } from 'node:path';
import { count } from 'drizzle-orm';
import { fingerprint, fromB64, initSodium, loadIdentity, siteFingerprint } from '@twinfed/shared/crypto/index';
import { availableParallelism } from 'node:os';
import { selectBackend } from '@twinfed/shared/train/backend';
import { siteTrainingWorkers } from '@twinfed/shared/train/parallel';
import { webGpuStatus } from '@twinfed/shared/train/webgpu';
import { SITE_FILES, loadSiteConfig } from './config.js';
import { openSiteDb } from './db/index.js';
import { approvals, measurements, segSlices, studies } from './db/schema.js';
import { CoordinatorLink } from './net.js';
import { pendingApprovals } from './console/pending.js';

export interface DoctorCheck {
  name: string;
  ok: boolean;
  detail: string;
  /** A failed optional check is information, not an error. */
  optional?: boolean;
}

/**
 * `twinfed site doctor`: what hospital IT needs to know before running a
 * site — which compute backend will train and why, key files and their
 * permissions, local data, disk, and whether the coordinator answers.
 */
export async function runDoctor(dataDir: string, opts: { fetchTimeoutMs?: number } = {}): Promise<{ checks: DoctorCheck[]; backend: string }> {
  const checks: DoctorCheck[] = [];
  const choice = await selectBackend();
  checks.push({ name: 'compute backend', ok: true, detail: choice.reason.startsWith(`${choice.name}:`) ? choice.reason : `${choice.name}: ${choice.reason}` });
  for (const t of choice.tried) checks.push({ name: `  tried ${t.name}`, ok: t.ok, detail: t.why, optional: true });
  // Information only: Twinfed does not train on WebGPU; say whether an adapter is there and, if not, why.
  const gpu = await webGpuStatus();
  checks.push({
    name: '  webgpu (not used for training)',
    ok: gpu.available,
    optional: true,
    detail: gpu.available ? `${gpu.why}; training runs on ${choice.name} (WebGPU measurements: docs/gpu.md)` : gpu.why,
  });
  const cores = availableParallelism();
  try {
    const workers = siteTrainingWorkers();
    const set = (process.env.TWINFED_TRAIN_WORKERS ?? '').trim() !== '';
    checks.push({
      name: 'training threads',
      ok: true,
      detail:
        workers > 0
          ? `${workers} data-parallel worker threads on ${cores} cores (${set ? 'TWINFED_TRAIN_WORKERS' : 'default for a site alone on its machine: one per core; TWINFED_TRAIN_WORKERS=0 trains on one thread'})${workers > cores ? ': more workers than cores, each step will be slower' : ''}`
          : `1 (${set ? 'TWINFED_TRAIN_WORKERS=0' : `${cores} core`}${cores >= 2 ? '; unset TWINFED_TRAIN_WORKERS to train on one worker thread per core when this site has the machine to itself' : ''})`,
    });
  } catch (e) {
    checks.push({ name: 'training threads', ok: false, detail: (e as Error).message });
  }

  const cfgPath = join(dataDir, SITE_FILES.config);
  if (!existsSync(cfgPath)) {
    checks.push({ name: 'enrolment', ok: false, detail: `${cfgPath} missing: run twinfed site enrol --coordinator URL --token T --data-dir ${dataDir}` });
    return { checks, backend: choice.name };
  }
  const cfg = loadSiteConfig(dataDir);
  checks.push({ name: 'enrolment', ok: true, detail: `${cfg.siteId} (${cfg.siteName}) with ${cfg.coordinatorId}` });
  await initSodium();
  const idPath = join(dataDir, SITE_FILES.identity);
  try {
    const id = loadIdentity(idPath);
    const mode = (statSync(idPath).mode & 0o777).toString(8);
    checks.push({
      name: 'identity keys',
      ok: true,
      detail: `${idPath} mode ${mode}; fingerprint ${siteFingerprint(id.ed25519PublicKey, id.x25519PublicKey)} (Ed25519:X25519, as other sites' officers see this site in a study roster: read it to them out of band)`,
    });
  } catch (e) {
    checks.push({ name: 'identity keys', ok: false, detail: (e as Error).message });
  }
  checks.push({ name: 'pinned coordinator key', ok: true, detail: `fingerprint ${fingerprint(fromB64(cfg.coordinatorPublicKey))} (compare with the lead out of band)` });

  const db = openSiteDb(join(dataDir, SITE_FILES.db));
  try {
    const byS = db.select({ split: segSlices.split, n: count() }).from(segSlices).groupBy(segSlices.split).all();
    const n = (s: string) => byS.find((r) => r.split === s)?.n ?? 0;
    const measured = db.selectDistinct({ p: measurements.patientId }).from(measurements).all().length;
    const any = n('train') > 0 || measured > 0;
    checks.push({
      name: 'local data',
      ok: any,
      detail: `segmentation: ${n('train')} training and ${n('val')} validation patients; twins: ${measured} patients with measurements${any ? '' : ': run twinfed site import'}`,
    });
    const st = db.select().from(studies).all();
    const ap = db.select().from(approvals).all();
    checks.push({ name: 'studies', ok: true, detail: `${st.length} announced, ${ap.length} approvals`, optional: true });
    // Not a failure: the site runs; but the officer should know (twinfed site study show STUDY, or the console's Approvals page).
    const waiting = pendingApprovals(db);
    checks.push({
      name: 'pending approvals',
      ok: waiting.length === 0,
      optional: true,
      detail: waiting.length
        ? `${waiting.length} awaiting the privacy officer: ${waiting.map((w) => `${w.studyId} "${w.title}" (manifest ${w.manifestHash.slice(0, 12)})`).join(', ')}; review with twinfed site study show STUDY --data-dir ${dataDir}`
        : 'none',
    });
  } finally {
    db.$client.close();
  }
  try {
    const fs = statfsSync(dataDir);
    const freeGiB = (fs.bavail * fs.bsize) / 2 ** 30;
    checks.push({ name: 'disk', ok: freeGiB > 1, detail: `${freeGiB.toFixed(1)} GiB free in ${dataDir}` });
  } catch {
    /* statfs unsupported */
  }
  try {
    // The same link the node uses: pins and HTTPS_PROXY apply, so a TLS-inspecting proxy shows here.
    const link = new CoordinatorLink({ coordinatorUrl: cfg.coordinatorUrl, tlsPins: cfg.tlsPins });
    const tlsDetail = link.trust === 'pins' ? `pins ${link.pinned.join(', ')}` : link.trust === 'ca' ? 'certificate authorities and host name (no pin)' : 'none: plain http (loopback and demos only)';
    checks.push({ name: 'TLS', ok: true, detail: `${tlsDetail}${link.proxy ? `; through proxy ${link.proxy.protocol}//${link.proxy.host} (HTTPS_PROXY)` : ''}` });
    try {
      const res = await link.request('GET', '/healthz', { timeoutMs: opts.fetchTimeoutMs ?? 3000 });
      const j = (res.json ?? {}) as { coordinatorId?: string };
      const same = j.coordinatorId === cfg.coordinatorId;
      checks.push({
        name: 'coordinator',
        ok: res.status === 200 && same,
        detail: `${cfg.coordinatorUrl} answers as ${j.coordinatorId}${same ? '' : ` (expected ${cfg.coordinatorId}!)`}${link.presentedPin ? ` with TLS key ${link.presentedPin}` : ''}`,
      });
    } catch (e) {
      const pinRefused = (e as { code?: string }).code === 'TWF_E_TLS_PIN';
      checks.push({
        name: 'coordinator',
        ok: false,
        optional: !pinRefused,
        detail: pinRefused ? (e as Error).message : `${cfg.coordinatorUrl} unreachable now (${(e as Error).message}); the site reconnects by itself`,
      });
    }
  } catch (e) {
    checks.push({ name: 'TLS', ok: false, detail: (e as Error).message });
  }
  return { checks, backend: choice.name };
}
