/**
 * What both demos (`npm run demo`, `npm run demo:response`) do the same way: start a
 * coordinator and site processes on loopback, have each site's privacy officer approve
 * the announced manifest, and verify every audit log at the end.
 */
import Database from '@twinfed/shared/db/driver';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import type { DpConfig, StrategyConfig } from '@twinfed/protocols';
import { dpStepsPerRound, noiseMultiplierFor, projectStudyEpsilon } from '@twinfed/shared/dp/accountant';
import { LeadClient } from './http.js';
import { compareAuditDbs, verifyAuditDb } from './commands/audit.js';

export { BIN, REPO } from './paths.js';
import { BIN } from './paths.js';

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The last non-empty line of a command's output (the summary line of NDJSON output such as `site import --json`). */
export const lastLine = (out: string): string => out.trimEnd().split('\n').pop() ?? '';

export async function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => (typeof a === 'object' && a ? res(a.port) : rej(new Error('no port'))));
    });
  });
}

/** Runs `twinfed ARGS` to completion; resolves with its stdout, rejects with its stderr. `onLine` hears each stdout line as it comes. */
export function run(args: string[], label: string, onLine?: (line: string) => void): Promise<string> {
  return new Promise((res, rej) => {
    const p = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    let seen = 0;
    p.stdout.on('data', (d) => {
      out += d;
      if (!onLine) return;
      let nl: number;
      while ((nl = out.indexOf('\n', seen)) >= 0) {
        onLine(out.slice(seen, nl));
        seen = nl + 1;
      }
    });
    p.stderr.on('data', (d) => (err += d));
    p.on('exit', (code) => (code === 0 ? res(out) : rej(new Error(`${label} failed (exit ${code}): ${err || out}`))));
  });
}

/**
 * An `onLine` for `run(['site', 'import', ..., '--json'])`: says every `every` patients imported at a
 * site (the demos' imports take a minute on a small machine), not the last (the caller's summary says it).
 */
export function importProgress(site: string, expected: number, say: (s: string) => void, every = 4): (line: string) => void {
  let n = 0;
  return (line) => {
    let row: { type?: string; status?: string };
    try {
      row = JSON.parse(line) as { type?: string; status?: string };
    } catch {
      return;
    }
    if (row.type !== 'file' || (row.status !== 'imported' && row.status !== 'unchanged')) return;
    n++;
    if (n % every === 0 && n < expected) say(`${site}: ${n} of ${expected} patients imported...`);
  };
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

  /**
   * Starts `twinfed coordinator start` on a free loopback port (or `again.url`, with its token, to
   * restart the same coordinator where its sites expect it) and waits for /healthz.
   */
  async startCoordinator(dataDir: string, again?: { url: string; adminToken: string }): Promise<{ url: string; lead: LeadClient; adminToken: string }> {
    const adminToken = again?.adminToken ?? randomBytes(18).toString('base64url');
    const url = again?.url ?? `http://127.0.0.1:${await freePort()}`;
    this.children.push(
      spawn(process.execPath, [BIN, 'coordinator', 'start', '--data-dir', dataDir, '--port', new URL(url).port, '--admin-token', adminToken, '--log-level', 'warn', '--tick-ms', '500'], {
        stdio: ['ignore', 'ignore', 'inherit'],
      }),
    );
    const lead = new LeadClient(url, adminToken);
    for (let i = 0; ; i++) {
      try {
        await lead.call('GET', '/healthz');
        return { url, lead, adminToken };
      } catch {
        if (i > 100) throw new Error('coordinator did not start');
        await sleep(200);
      }
    }
  }

  /**
   * Starts `twinfed site run --json-events` for a site folder, its console on a free loopback port
   * (three sites share this machine, so none may take the default 7401). Errors and refusals are
   * reported through `say`; every event goes to `onEvent`, every stderr chunk to `onStderr`,
   * every whole line of either stream to `onLine`.
   */
  startSite(dataDir: string, name: string, say: (s: string) => void, hooks: { onEvent?: (e: SiteEvent) => void; onStderr?: (s: string) => void; onLine?: (line: string) => void } = {}): ChildProcess {
    // Three sites share this machine, so none is alone: each trains on its calling thread unless
    // the user set TWINFED_TRAIN_WORKERS (a lone site defaults to one worker thread per core).
    const env = { ...process.env, TWINFED_TRAIN_WORKERS: process.env.TWINFED_TRAIN_WORKERS ?? '0' };
    const p = spawn(process.execPath, [BIN, 'site', 'run', '--data-dir', dataDir, '--json-events', '--console-port', '0'], { stdio: ['ignore', 'pipe', 'pipe'], env });
    this.children.push(p);
    let buf = '';
    p.stdout!.on('data', (d) => {
      buf += d;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        hooks.onLine?.(line);
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
    let errBuf = '';
    p.stderr!.on('data', (d) => {
      hooks.onStderr?.(String(d));
      if (!hooks.onLine) return;
      errBuf += d;
      let nl: number;
      while ((nl = errBuf.indexOf('\n')) >= 0) {
        hooks.onLine(errBuf.slice(0, nl));
        errBuf = errBuf.slice(nl + 1);
      }
    });
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

/** One event line of `site run --json-events` for a finished epoch of local training (SiteEvents.onTrainProgress). */
export interface TrainProgressEvent extends SiteEvent {
  event: 'train-progress';
  round: number;
  epoch: number;
  epochs: number;
  loss: number;
  elapsedMs: number;
}

/**
 * The demo's line when a site finishes a round's local training: only for training that took a
 * while (>= 1 s; the response model trains in milliseconds, where a line per site and round is noise).
 */
export function trainedLine(site: string, e: SiteEvent | TrainProgressEvent): string | null {
  if (e.event !== 'train-progress') return null;
  const p = e as TrainProgressEvent;
  if (p.epoch !== p.epochs || p.elapsedMs < 1000) return null;
  return `round ${p.round}: ${site} trained ${p.epochs} epoch(s) on its own data, loss ${p.loss.toFixed(3)} (${(p.elapsedMs / 1000).toFixed(0)} s); masking, encrypting and uploading its update`;
}

/** Each site's privacy officer approves the study once it has been announced there (hash read from the site's own database). */
export async function approveWhenAnnounced(siteDirs: string[], studyId: string, officers: string[]): Promise<void> {
  await Promise.all(
    siteDirs.map(async (dir, i) => {
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
    }),
  );
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

// ------------------------------------------------- strategy and privacy options of both demos

/** Strategies a demo can run (the linear ones of protocols StrategySchema). */
export const DEMO_STRATEGIES = ['fedavg', 'fedprox', 'fedavgm', 'fedadam', 'fedyogi', 'fedadagrad'] as const;
export type DemoStrategyName = (typeof DEMO_STRATEGIES)[number];

/**
 * The strategy a demo writes into its spec, every parameter spelled out so the officer sees it.
 * The values are starting points from the papers, not tuned on these data:
 *  - FedProx mu = 0.01: the middle of the grid {0.001, 0.01, 0.1, 1} of Li et al. (MLSys 2020, Sec. 5).
 *  - FedAvgM: server lr 1, momentum 0.9 (Hsu, Qi & Brown 2019, the setting of their Fig. 4-5).
 *  - FedAdam / FedYogi / FedAdagrad: beta1 0.9, beta2 0.99, tau 1e-3 as in Reddi et al. (ICLR 2021,
 *    Alg. 2 and the defaults of their appendix grids); the server learning rate is a GUESS in the
 *    range their tuned values fall in (10^-2 .. 10^-1.5 for the adaptive methods, appendix tables):
 *    0.01 for the U-Net, 0.03 for the response model (0.1 for FedAdagrad, whose effective step
 *    shrinks as its sum of squares grows).
 */
export function demoStrategy(name: DemoStrategyName, task: 'segmentation' | 'response'): StrategyConfig {
  const adaptiveLr = task === 'segmentation' ? 0.01 : 0.03;
  switch (name) {
    case 'fedavg':
      return { name };
    case 'fedprox':
      return { name, mu: 0.01 };
    case 'fedavgm':
      return { name, serverLearningRate: 1, momentum: 0.9 };
    case 'fedadam':
    case 'fedyogi':
      return { name, serverLearningRate: adaptiveLr, beta1: 0.9, beta2: 0.99, tau: 1e-3 };
    case 'fedadagrad':
      return { name, serverLearningRate: task === 'segmentation' ? 0.03 : 0.1, beta1: 0, tau: 1e-3 };
  }
}

/** Patient-level DP parameters a demo uses besides epsilon (see each demo's spec for why). */
export interface DemoDpChoice {
  samplingRate: number;
  clipNorm: number;
  epochsPerRound: number;
}

/**
 * The patient-level DP block of a demo spec: delta 1e-5 and the noise multiplier derived with the
 * RDP accountant (smallest sigma, 3 digits, rounded up, meeting epsilon over all the study's
 * DP-SGD steps), written into the spec so the manifest the officer approves names it.
 */
export function demoPatientDp(epsilon: number, rounds: number, c: DemoDpChoice): PatientDpConfig {
  const delta = 1e-5;
  const steps = rounds * dpStepsPerRound(c.epochsPerRound, c.samplingRate);
  const noiseMultiplier = noiseMultiplierFor({ samplingRate: c.samplingRate, steps, delta, epsilon });
  return { level: 'patient', epsilon, delta, noiseMultiplier, clipNorm: c.clipNorm, samplingRate: c.samplingRate };
}
type PatientDpConfig = Extract<DpConfig, { level: 'patient' }>;

/** Which DP unit a demo's `--epsilon` protects (`--dp-level`): a patient (default) or a whole site. */
export type DemoDpLevel = 'patient' | 'site';

/**
 * The site-level DP block of a demo spec (distributed discrete Gaussian, Kairouz et al. 2021): one
 * composition per round at sampling rate 1, so sigma is derived over `rounds` compositions;
 * `clipNorm` bounds a site's whole update (L2). For contrast with patient-level DP at 3 sites.
 */
export function demoSiteDp(epsilon: number, rounds: number, clipNorm: number): Extract<DpConfig, { level: 'site' }> {
  const delta = 1e-5;
  return { level: 'site', epsilon, delta, noiseMultiplier: noiseMultiplierFor({ samplingRate: 1, steps: rounds, delta, epsilon }), clipNorm };
}

/** One line for the demo's log: the DP block and what the accountant projects for the whole study. */
export function describeDp(dp: DpConfig, training: { epochsPerRound: number }, rounds: number): string {
  const p = projectStudyEpsilon({ dp, training, rounds });
  const where = dp.level === 'patient' ? `patient-level DP-SGD, sampling rate ${dp.samplingRate}, clip norm ${dp.clipNorm}` : `site-level DP, clip norm ${dp.clipNorm}`;
  return `${where}, noise multiplier ${p.noiseMultiplier} (RDP accountant): epsilon ${p.epsilon.toFixed(2)} <= ${dp.epsilon} at delta ${dp.delta.toExponential()} over ${p.steps} compositions`;
}

/** What one site spent on a study, from its privacy ledger, against its two budgets. */
export interface SitePrivacy {
  site: string;
  /** Epsilon of this study on the dataset after its last recorded round (latest dp_ledger row), at the manifest's delta; null without rows. */
  epsilonSpent: number | null;
  /** Epsilon of all studies on that dataset (at the site's delta); null without rows. */
  epsilonDataset: number | null;
  datasetKey: string | null;
  roundsRecorded: number;
  /** The manifest's dp.epsilon (null without DP). */
  studyBudget: number | null;
  /** site.json privacy.maxEpsilon: the site's cap per dataset across studies. */
  siteMaxEpsilon: number | null;
}

/** The site's cap from its site.json (`privacy.maxEpsilon`; null when the file predates the privacy policy). */
export function siteMaxEpsilon(siteDir: string): number | null {
  const c = JSON.parse(readFileSync(join(siteDir, 'site.json'), 'utf8')) as { privacy?: { maxEpsilon?: number } };
  return c.privacy?.maxEpsilon ?? null;
}

/**
 * Reads a site's privacy ledger (site-node/src/db/schema.ts `dp_ledger`) after a run: the latest
 * row per dataset for this study. Empty (nulls) when the site recorded no DP rounds or its
 * database has no ledger table.
 */
export function readSitePrivacy(siteDir: string, site: string, studyId: string, studyBudget: number | null): SitePrivacy {
  const out: SitePrivacy = { site, epsilonSpent: null, epsilonDataset: null, datasetKey: null, roundsRecorded: 0, studyBudget, siteMaxEpsilon: siteMaxEpsilon(siteDir) };
  const db = new Database(join(siteDir, 'site.db'), { readonly: true, fileMustExist: true });
  try {
    const rows = db.prepare('select dataset_key, round, epsilon_study, epsilon_dataset from dp_ledger where study_id = ? order by id').all(studyId) as {
      dataset_key: string;
      round: number;
      epsilon_study: number;
      epsilon_dataset: number;
    }[];
    out.roundsRecorded = rows.length;
    const last = rows[rows.length - 1];
    if (last) {
      // one dataset per demo site; with several, report the one that spent most
      const latest = new Map(rows.map((r) => [r.dataset_key, r]));
      const top = [...latest.values()].sort((a, b) => b.epsilon_study - a.epsilon_study)[0]!;
      out.epsilonSpent = top.epsilon_study;
      out.epsilonDataset = top.epsilon_dataset;
      out.datasetKey = top.dataset_key;
    }
  } catch (e) {
    if (!/no such table/.test((e as Error).message)) throw e;
  } finally {
    db.close();
  }
  return out;
}

/** One log line per site for the end of a demo. */
export function formatSitePrivacy(p: SitePrivacy): string {
  const cap = p.siteMaxEpsilon === null ? 'no site cap in site.json' : `site cap ${p.siteMaxEpsilon} per dataset`;
  if (p.epsilonSpent === null) return `${p.site}: no privacy-ledger rows for this study (${p.studyBudget === null ? 'no DP in the manifest' : 'the site recorded no DP round'}); ${cap}`;
  return `${p.site}: epsilon spent ${p.epsilonSpent.toFixed(2)} of the study's ${p.studyBudget ?? 'n/a'} over ${p.roundsRecorded} rounds on ${p.datasetKey}; all studies on it ${p.epsilonDataset!.toFixed(2)}, ${cap}`;
}

/** Refuses up front an epsilon the sites' own caps would refuse round by round (TWF_E_DP_BUDGET). */
export function checkSiteCaps(siteDirs: string[], names: string[], epsilon: number): void {
  siteDirs.forEach((d, i) => {
    const cap = siteMaxEpsilon(d);
    if (cap !== null && epsilon > cap)
      throw new Error(
        `TWF_E_DP_PARAMS: --epsilon ${epsilon} is above ${names[i]}'s privacy.maxEpsilon ${cap} (site.json); its officer's cap would refuse rounds with TWF_E_DP_BUDGET; use --epsilon <= ${cap}`,
      );
  });
}

// ------------------------------------------------------------------ demo --serve

/**
 * The line `twinfed site run` prints when its console listens:
 * `console: http://127.0.0.1:PORT/ (token: DATA_DIR/console.token)`; found anywhere in a line (a
 * plain stderr line or the msg of a JSON log event). Null for any other line.
 */
export function parseConsoleLine(line: string): { url: string; tokenFile: string } | null {
  const m = /console: (https?:\/\/[^\s"]+) \(token: ([^)"]+)\)/.exec(line);
  return m ? { url: m[1], tokenFile: m[2].trim() } : null;
}

/** A token file's content, or why it cannot be shown. */
function readToken(file: string): string {
  try {
    return readFileSync(file, 'utf8').trim();
  } catch (e) {
    return `(cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`;
  }
}

export interface ServeOpts {
  coordinator: { dataDir: string; url: string; adminToken: string };
  sites: { name: string; dataDir: string }[];
  studyId: string;
  say: (s: string) => void;
  /** How long to wait for the sites' console lines (default 15 s). */
  consoleWaitMs?: number;
}

/**
 * `demo --serve`: after the study (and its audit check, on stopped processes), starts the same
 * coordinator (same URL and lead token, so the enrolled sites find it) and the sites again, prints
 * where to look (the coordinator console at its URL, each site's console with its token) and keeps
 * them running until Ctrl-C (SIGINT) or SIGTERM, then stops every process and resolves.
 */
export async function serveDemo(o: ServeOpts): Promise<void> {
  const procs = new DemoProcesses();
  let stopping = false;
  try {
    await procs.startCoordinator(o.coordinator.dataDir, { url: o.coordinator.url, adminToken: o.coordinator.adminToken });
    const consoles = new Map<string, { url: string; tokenFile: string }>();
    o.sites.forEach((s) => {
      const p = procs.startSite(s.dataDir, s.name, o.say, {
        onLine: (line) => {
          const c = parseConsoleLine(line);
          if (c && !consoles.has(s.name)) consoles.set(s.name, c);
        },
      });
      p.on('exit', (code, signal) => {
        if (!stopping) o.say(`${s.name}: its site node exited (${signal ?? `exit ${code}`}); the others keep running`);
      });
    });
    const waitUntil = Date.now() + (o.consoleWaitMs ?? 15_000);
    while (consoles.size < o.sites.length && Date.now() < waitUntil) await sleep(200);
    const w = Math.max(...o.sites.map((s) => s.name.length), 'coordinator'.length) + ' console'.length;
    const lines = [
      '',
      'Twinfed keeps running so you can look at what just happened (Ctrl-C stops everything):',
      `  ${'coordinator console'.padEnd(w)}  ${o.coordinator.url}/  sign in with the lead token ${o.coordinator.adminToken}`,
      ...o.sites.map((s) => {
        const c = consoles.get(s.name);
        return c
          ? `  ${`${s.name} console`.padEnd(w)}  ${c.url}  token ${readToken(c.tokenFile)} (from ${c.tokenFile})`
          : `  ${`${s.name} console`.padEnd(w)}  none: its site node printed no console line (site data in ${s.dataDir})`;
      }),
      `  lead commands: TWINFED_COORDINATOR_URL=${o.coordinator.url} TWINFED_ADMIN_TOKEN=${o.coordinator.adminToken} npx twinfed lead status ${o.studyId} --watch`,
      `  site commands: npx twinfed site studies --data-dir ${o.sites[0]?.dataDir ?? 'SITE_DIR'}`,
    ];
    console.log(lines.join('\n'));
    await new Promise<void>((resolve) => {
      const done = (sig: string) => {
        stopping = true;
        process.off('SIGINT', onInt);
        process.off('SIGTERM', onTerm);
        o.say(`${sig}: stopping the coordinator and the sites`);
        resolve();
      };
      const onInt = () => done('SIGINT');
      const onTerm = () => done('SIGTERM');
      process.on('SIGINT', onInt);
      process.on('SIGTERM', onTerm);
    });
    stopping = true;
    await procs.stopAndWait();
  } finally {
    stopping = true;
    procs.dispose();
  }
}
