import { cpSync, existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { SegmentationSpec } from '@twinfed/protocols';
import { formatCompare, formatVerify } from './commands/audit.js';
import {
  DemoProcesses,
  approveWhenAnnounced,
  checkSiteCaps,
  demoPatientDp,
  demoStrategy,
  describeDp,
  finalModelDir,
  importProgress,
  lastLine,
  formatSitePrivacy,
  readSitePrivacy,
  run,
  serveDemo,
  siteIdOf,
  sleep,
  trainedLine,
  verifyDemoAudits,
  demoSiteDp,
  type DemoDpChoice,
  type DemoDpLevel,
  type DemoStrategyName,
} from './demo-kit.js';
export { DEFAULT_STS_DIR } from './paths.js';
import { DEFAULT_STS_DIR } from './paths.js';

/** Three hospitals with disjoint patients; the last ~quarter of each site's patients is its validation set. */
export const DEMO_SITES = [
  { name: 'Hospital A', patients: range(1, 12), val: [4, 8, 12] },
  { name: 'Hospital B', patients: range(13, 24), val: [16, 20, 24] },
  { name: 'Hospital C', patients: range(25, 35), val: [28, 32, 35] },
].map((s) => ({ name: s.name, patients: s.patients.map(sts), val: s.val.map(sts) }));

function range(a: number, b: number): number[] {
  return Array.from({ length: b - a + 1 }, (_, i) => a + i);
}
function sts(i: number): string {
  return `STS_${String(i).padStart(3, '0')}`;
}

/**
 * Patient-level DP of `npm run demo -- --epsilon E`. Each demo site has 8-9 training patients, so
 * samplingRate 0.5 puts ~4 patients in a DP-SGD step (a smaller q would leave steps with none);
 * epochsPerRound stays 2, i.e. 4 steps per round, 20 over the default 5 rounds. clipNorm 1 bounds
 * one patient's gradient (all its slices); Adam normalises the step, so C sets the noise relative to
 * the clipped signal rather than the step size. With d = 29k weights, the noise on a step's mean
 * gradient has norm ≈ σ·C·√d / (q·P) — tens of times the signal (docs/privacy.md): at this scale
 * the demo shows what DP costs, not a useful private model.
 */
export const DEMO_DP: DemoDpChoice = { samplingRate: 0.5, clipNorm: 1, epochsPerRound: 2 };

/**
 * Site-level DP of `npm run demo -- --epsilon E --dp-level site`: the L2 bound of a site's whole
 * round update. A round of ~30 Adam steps at learning rate 3e-3 moves each of the 29k weights by up
 * to ~0.1, an update norm of a few units; 5 clips little of an honest update (the site logs the
 * norm before clipping).
 */
export const DEMO_SITE_DP_CLIP_NORM = 5;

/** The demo study: the 2D U-Net on 48x48 PET slices, encrypted FedAvg (or `strategy`), optionally patient-level DP at `epsilon`. */
export function demoStudySpec(rounds: number, o: { strategy?: DemoStrategyName; epsilon?: number; dpLevel?: DemoDpLevel } = {}): SegmentationSpec {
  const spec: SegmentationSpec = {
    title: 'Soft-tissue sarcoma PET tumour segmentation (demo)',
    task: 'segmentation',
    model: { arch: 'unet2d', inChannels: 1, nClasses: 2, base: 8, depth: 2, size: 48, initSeed: 7 },
    training: { epochsPerRound: 2, batchSize: 16, learningRate: 3e-3, clipBound: 1, seed: 11 },
    data: { modality: 'PET', labels: ['background', 'tumour'], minTrainSlices: 10 },
    rounds,
    // Secure aggregation: t = max(3, floor(n/2)+1) of the roster; with three sites every site must
    // contribute (a 4-site consortium would survive one dropout).
    minSites: 3,
    roundDeadlineS: 180,
  };
  if (o.strategy) spec.strategy = demoStrategy(o.strategy, 'segmentation');
  if (o.epsilon !== undefined && o.dpLevel === 'site') {
    spec.dp = demoSiteDp(o.epsilon, rounds, DEMO_SITE_DP_CLIP_NORM);
  } else if (o.epsilon !== undefined) {
    spec.training.epochsPerRound = DEMO_DP.epochsPerRound;
    spec.dp = demoPatientDp(o.epsilon, rounds, DEMO_DP);
    // DP-SGD steps sample whole patients; a deadline sized for plain epochs may be short
    spec.roundDeadlineS = 600;
  }
  return spec;
}

interface RunOpts {
  rounds: number;
  outDir: string;
  dataDir?: string;
  /** Upper bound for the whole federated study, seconds. */
  timeoutS?: number;
  /** Aggregation strategy (default: none in the spec, i.e. FedAvg). */
  strategy?: DemoStrategyName;
  /** DP budget (delta 1e-5); absent: no DP. */
  epsilon?: number;
  /** What `epsilon` protects: a patient (DP-SGD, default) or a whole site (distributed discrete Gaussian). */
  dpLevel?: DemoDpLevel;
  /** After the study, keep the coordinator and sites running with their consoles until Ctrl-C (serveDemo). */
  serve?: boolean;
}

type MetricT = { siteId: string; metrics: { name: string; value: number | null }[]; valPatients: number; encryptMs: number | null; uploadBytes: number | null };
/** The site's Dice (the demo is a segmentation study), null when suppressed or not reported. */
const diceOf = (m: MetricT): number | null => m.metrics.find((x) => x.name === 'meanDice')?.value ?? null;
interface StudyStatusT {
  state: string;
  baselineMetrics: MetricT[];
  currentRound: number;
  joined: string[];
  roundSummaries: {
    round: number;
    state: string;
    completed: string[];
    keySet: string[];
    survivors: string[];
    threshold: number;
    failReason: string | null;
    aggregateMs: number;
    bytesIn: number;
    totalSamples: number;
    metrics: MetricT[];
  }[];
}

const fmt = (x: number | null | undefined, d = 3) => (x === null || x === undefined || Number.isNaN(x) ? '  n/a' : x.toFixed(d));

/**
 * `npm run demo`: a coordinator and three site nodes as separate processes on
 * loopback, each with its own SQLite file and disjoint patients; enrolment,
 * officer approval, key set-up, encrypted rounds, audit verification.
 */
export async function runDemo(opts: RunOpts): Promise<boolean> {
  const t0 = Date.now();
  const dataDir = opts.dataDir ?? DEFAULT_STS_DIR;
  if (!existsSync(dataDir)) throw new Error(`TWF_E_NOT_FOUND: STS data folder ${dataDir} is missing`);
  const out = opts.outDir;
  for (const d of ['coordinator', 'site-a', 'site-b', 'site-c', 'model']) rmSync(join(out, d), { recursive: true, force: true });
  mkdirSync(out, { recursive: true });
  const procs = new DemoProcesses();
  const say = (s: string) => console.log(`[${((Date.now() - t0) / 1000).toFixed(0).padStart(3)} s] ${s}`);

  try {
    const { url, lead, adminToken } = await procs.startCoordinator(join(out, 'coordinator'));
    say(`coordinator on ${url} (data in ${join(out, 'coordinator')})`);
    say('enrolling the three hospitals with one-time tokens; each imports its own patients into its own SQLite file...');

    const siteDirs = DEMO_SITES.map((_, i) => join(out, `site-${'abc'[i]}`));
    await Promise.all(
      DEMO_SITES.map(async (s, i) => {
        const { token } = await lead.call<{ token: string }>('POST', '/api/enrolment-tokens', { siteName: s.name });
        await run(['site', 'enrol', '--data-dir', siteDirs[i], '--coordinator', url, '--token', token], `enrol ${s.name}`);
        const rep = JSON.parse(
          lastLine(
            await run(
              ['site', 'import', dataDir, '--data-dir', siteDirs[i], '--patients', s.patients.join(','), '--val', s.val.join(','), '--json'],
              `import ${s.name}`,
              importProgress(s.name, s.patients.length, say),
            ),
          ),
        ) as {
          rows: { status: string; seg?: { split: string; nSlices: number } }[];
        };
        const ok = rep.rows.filter((r) => r.status === 'imported' && r.seg);
        say(
          `${s.name}: enrolled, imported ${ok.length} patients (${ok.filter((r) => r.seg!.split === 'train').length} train / ${ok.filter((r) => r.seg!.split === 'val').length} validation, ${ok.reduce((a, r) => a + r.seg!.nSlices, 0)} slices)`,
        );
      }),
    );

    if (opts.epsilon !== undefined)
      checkSiteCaps(
        siteDirs,
        DEMO_SITES.map((s) => s.name),
        opts.epsilon,
      );
    const spec = demoStudySpec(opts.rounds, { strategy: opts.strategy, epsilon: opts.epsilon, dpLevel: opts.dpLevel });
    if (spec.strategy) say(`strategy ${JSON.stringify(spec.strategy)}`);
    if (spec.dp) say(describeDp(spec.dp, spec.training, spec.rounds));
    const created = await lead.call<{ studyId: string }>('POST', '/api/studies', spec);
    const started = await lead.call<{ manifestHash: string; participants: { siteId: string; siteName: string; fingerprint: string }[] }>('POST', `/api/studies/${created.studyId}/start`);
    const study = { studyId: created.studyId, manifestHash: started.manifestHash };
    say(
      `study ${study.studyId} started; its manifest ${study.manifestHash.slice(0, 16)}… lists the roster officers approve: ${started.participants.map((p) => `${p.siteName} (${p.fingerprint.slice(0, 8)}…)`).join(', ')}`,
    );
    say(
      'secure aggregation: each update is masked (pairwise + self masks, Bonawitz et al. 2017) inside its encryption; threshold 3 of 3, so this 3-site demo cannot survive a dropout (a round with a missing site fails cleanly; 4+ sites tolerate dropouts)',
    );

    const sitesInfo: { name: string; siteId: string; backend: string }[] = [];
    DEMO_SITES.forEach((s, i) => {
      const info = { name: s.name, siteId: siteIdOf(siteDirs[i]), backend: '?' };
      sitesInfo.push(info);
      procs.startSite(siteDirs[i], s.name, say, {
        onEvent: (e) => {
          const line = trainedLine(s.name, e);
          if (line) say(line);
        },
        onStderr: (d) => {
          const m = /backend (\w+) \((.*)\)/.exec(d);
          if (m) {
            info.backend = m[1];
            say(`${s.name} (${info.siteId}) running; ${m[2]}`);
          }
        },
      });
    });

    say("waiting for the study's announcement to reach each site and for each site's privacy officer to approve its manifest...");
    await approveWhenAnnounced(
      siteDirs,
      study.studyId,
      DEMO_SITES.map((s) => `Privacy officer, ${s.name}`),
    );
    say("privacy officers approved the manifest (roster included) at all three sites; sites join; the first key dealer of the roster seals the study key to the roster's keys and signs the handout");

    const nameOf = (id: string) => sitesInfo.find((s) => s.siteId === id)?.name ?? id;
    const byName = <T extends { siteId: string }>(ms: T[]) => [...ms].sort((a, b) => nameOf(a.siteId).localeCompare(nameOf(b.siteId)));
    const printed = new Set<number>();
    const deadline = Date.now() + (opts.timeoutS ?? 900) * 1000;
    let status: StudyStatusT;
    let announced = 0;
    console.log('\nround  sites  dropped  upload bytes  encrypt ms  aggregate ms  Dice per site (validation patients)                mean Dice');
    for (;;) {
      status = await lead.call<StudyStatusT>('GET', `/api/studies/${study.studyId}`);
      if (status.state === 'running' && status.currentRound > announced) {
        announced = status.currentRound;
        say(`round ${announced} of ${spec.rounds}: each site trains the global model on its own patients (${spec.training.epochsPerRound} epochs)...`);
      }
      const r0 = roundZero(status);
      if (r0 && !printed.has(0)) {
        printed.add(0);
        console.log(
          `${'0'.padStart(5)}  ${'-'.padStart(5)}  ${'-'.padStart(7)}  ${'-'.padStart(12)}  ${'-'.padStart(10)}  ${'-'.padStart(12)}  ${byName(r0)
            .map((m) => `${nameOf(m.siteId).slice(-1)} ${fmt(diceOf(m))} (${m.valPatients})`)
            .join('   ')
            .padEnd(50)} ${fmt(meanDice(r0))}`,
        );
      }
      for (const r of status.roundSummaries) {
        if (printed.has(r.round)) continue;
        if (r.state === 'failed') {
          printed.add(r.round);
          console.log(`${String(r.round).padStart(5)}  failed: ${r.failReason} (nothing aggregated, no update exposed)`);
          continue;
        }
        if (r.state !== 'closed' || r.metrics.length < r.completed.length) continue;
        printed.add(r.round);
        const up = r.metrics.reduce((a, m) => a + (m.uploadBytes ?? 0), 0);
        const enc = r.metrics.filter((m) => m.encryptMs !== null);
        console.log(
          `${String(r.round).padStart(5)}  ${`${r.survivors.length}/${r.keySet.length}`.padStart(5)}  ${String(r.keySet.length - r.survivors.length).padStart(7)}  ${String(up).padStart(12)}  ${fmt(enc.reduce((a, m) => a + m.encryptMs!, 0) / Math.max(1, enc.length), 0).padStart(10)}  ${fmt(r.aggregateMs, 0).padStart(12)}  ${byName(
            r.metrics,
          )
            .map((m) => `${nameOf(m.siteId).slice(-1)} ${fmt(diceOf(m))} (${m.valPatients})`)
            .join('   ')
            .padEnd(50)} ${fmt(meanDice(r.metrics))}`,
        );
      }
      if (status.state === 'completed' && status.roundSummaries.every((r) => printed.has(r.round))) break;
      if (Date.now() > deadline) throw new Error(`study did not complete within ${opts.timeoutS ?? 900} s (state ${status.state}, round ${status.currentRound})`);
      await sleep(1000);
    }

    // Wait until the first site has written the final model, then stop everything.
    const modelSrc = await finalModelDir(siteDirs[0], study.studyId);
    await procs.stopAndWait();
    cpSync(modelSrc, join(out, 'model'), { recursive: true });

    console.log('\naudit logs');
    const { verdicts, compares, ok: auditVerified } = await verifyDemoAudits(join(out, 'coordinator', 'coordinator.db'), siteDirs);
    for (const v of verdicts) console.log(formatVerify(v));
    for (const c of compares) console.log(formatCompare(c));

    const closed = status.roundSummaries.filter((r) => r.state === 'closed');
    const r0 = roundZero(status) ?? [];
    const initialDice = meanDice(r0);
    const finalDice = meanDice(closed[closed.length - 1]?.metrics ?? []);
    const privacy = sitesInfo.map((si, i) => readSitePrivacy(siteDirs[i], si.name, study.studyId, spec.dp?.epsilon ?? null));
    const report = {
      studyId: study.studyId,
      manifestHash: study.manifestHash,
      coordinatorUrl: url,
      sites: sitesInfo,
      rounds: closed.map((r) => ({
        round: r.round,
        sites: r.completed.map(nameOf),
        contributors: r.survivors.length,
        dropped: r.keySet.filter((k) => !r.survivors.includes(k)).map(nameOf),
        threshold: r.threshold,
        meanDice: meanDice(r.metrics),
        uploadBytes: r.metrics.reduce((a, m) => a + (m.uploadBytes ?? 0), 0),
        encryptMs: r.metrics.reduce((a, m) => a + (m.encryptMs ?? 0), 0) / Math.max(1, r.metrics.length),
        aggregateMs: r.aggregateMs,
        perSite: r.metrics.map((m) => ({ site: nameOf(m.siteId), dice: diceOf(m), valPatients: m.valPatients, uploadBytes: m.uploadBytes, encryptMs: m.encryptMs })),
      })),
      initialDice,
      finalDice,
      /** The task metric per round: validation Dice pooled over sites (round 0 = the seeded initial model). */
      metricPerRound: [{ round: 0, metric: 'dice', value: initialDice }, ...closed.map((r) => ({ round: r.round, metric: 'dice', value: meanDice(r.metrics) }))],
      strategy: spec.strategy ?? { name: 'fedavg' },
      dp: spec.dp ?? null,
      privacy,
      auditVerified,
      audit: { verify: verdicts, compare: compares },
      model: join(out, 'model'),
      elapsedS: (Date.now() - t0) / 1000,
    };
    writeFileSync(join(out, 'report.json'), JSON.stringify(report, null, 2) + '\n');
    console.log(`\nglobal model Dice on the sites' validation patients: round 0 ${fmt(initialDice)} -> round ${closed.length} ${fmt(finalDice)}`);
    console.log(
      `secure aggregation: ${closed.length} rounds, each the sum of ${closed.map((r) => r.survivors.length).join('/')} masked updates; dropouts: ${closed.reduce((a, r) => a + r.keySet.length - r.survivors.length, 0)} (a dropped site's masks would be removed with t shares of its keys; every update was masked inside its encryption, so no single update could be read, not even by a site holding the study key)`,
    );
    if (spec.dp || privacy.some((p) => p.epsilonSpent !== null)) for (const p of privacy) console.log(`privacy: ${formatSitePrivacy(p)}`);
    console.log(`audit: ${auditVerified ? 'all chains intact and cross-checked' : 'PROBLEMS FOUND (see above)'}`);
    console.log(`report ${join(out, 'report.json')}, final model ${join(out, 'model')} (as decrypted at ${sitesInfo[0].name}); ${report.elapsedS.toFixed(0)} s`);
    // Under DP at this scale the noise may well cost the Dice gain (DEMO_DP): success is then a clean, audited run.
    const ok = spec.dp ? auditVerified && closed.length === spec.rounds : auditVerified && finalDice !== null && initialDice !== null && finalDice > initialDice;
    if (opts.serve)
      await serveDemo({
        coordinator: { dataDir: join(out, 'coordinator'), url, adminToken },
        sites: DEMO_SITES.map((s, i) => ({ name: s.name, dataDir: siteDirs[i] })),
        studyId: study.studyId,
        say,
      });
    return ok;
  } finally {
    procs.dispose();
  }
}

/** Validation Dice pooled over sites, weighted by each site's number of validation patients. */
function meanDice(ms: MetricT[]): number | null {
  const ok = ms.filter((m) => diceOf(m) !== null && m.valPatients > 0);
  const n = ok.reduce((a, m) => a + m.valPatients, 0);
  return n === 0 ? null : ok.reduce((a, m) => a + diceOf(m)! * m.valPatients, 0) / n;
}

/** Round 0 (the seeded initial model every site starts from), once all three sites reported it. */
function roundZero(s: StudyStatusT) {
  return s.baselineMetrics.length >= 3 ? s.baselineMetrics : null;
}
