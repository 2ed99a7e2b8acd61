import { cpSync, existsSync, mkdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { responseStudySpec } from '@twinfed/shared/response/index';
import type { ResponseSpec } from '@twinfed/protocols';
import {
  DemoProcesses,
  approveWhenAnnounced,
  checkSiteCaps,
  demoPatientDp,
  demoStrategy,
  describeDp,
  finalModelDir,
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
import { compareResponse, formatResponseCompare } from './commands/response.js';

export { DEFAULT_LALEH_DIR } from './paths.js';

const STUDIES = ['Study1', 'Study2', 'Study3'];
const fmt = (x: number | null | undefined) => (x === null || x === undefined ? '  n/a' : x.toFixed(3));

/**
 * Patient-level DP of `npm run demo:response -- --epsilon E`. The trials have ~32 / ~62 / ~175
 * training patients (70 % of 46 / 89 / 250 usable), so samplingRate 0.25 gives ~8 patients per
 * DP-SGD step at the smallest site. Each step costs privacy, so the 20 full-batch epochs per round
 * of the plain study (1,600 steps over 20 rounds at q = 0.25, sigma 6.45 for epsilon 8) become 5
 * (400 steps, sigma 3.32 for epsilon 8). clipNorm 1.5 bounds one patient's gradient of the
 * softmax loss (60 weights): the median per-patient gradient norm on Study1-3 is 1.6 at the seeded
 * initial model and 1.4 at a trained one (p90 2.4 / 2.0), and clipping near the median is the
 * usual choice (Abadi et al. 2016, Sec. 5). The noise on a step's mean gradient is then
 * sigma·C/(q·P) per weight: ≈ 0.6 at Study1 (P ≈ 32) and ≈ 0.1 at Study3 for epsilon 8.
 */
export const RESPONSE_DEMO_DP: DemoDpChoice = { samplingRate: 0.25, clipNorm: 1.5, epochsPerRound: 5 };

/**
 * Site-level DP of `npm run demo:response -- --epsilon E --dp-level site`: the L2 bound of a site's
 * whole round update, near the median unclipped site-update norm (0.49) that `npm run bench:dp`
 * measures on these trials.
 */
export const RESPONSE_SITE_DP_CLIP_NORM = 0.5;

/** The response demo's spec: responseStudySpec plus the chosen strategy and patient-level DP. */
export function responseDemoSpec(rounds: number, o: { strategy?: DemoStrategyName; epsilon?: number; dpLevel?: DemoDpLevel } = {}): ResponseSpec {
  const spec = responseStudySpec(rounds);
  if (o.strategy) spec.strategy = demoStrategy(o.strategy, 'response');
  if (o.epsilon !== undefined && o.dpLevel === 'site') {
    spec.dp = demoSiteDp(o.epsilon, rounds, RESPONSE_SITE_DP_CLIP_NORM);
  } else if (o.epsilon !== undefined) {
    spec.training.epochsPerRound = RESPONSE_DEMO_DP.epochsPerRound;
    spec.dp = demoPatientDp(o.epsilon, rounds, RESPONSE_DEMO_DP);
  }
  return spec;
}

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
export async function runResponseDemo(opts: {
  rounds: number;
  outDir: string;
  dataDir: string;
  timeoutS?: number;
  strategy?: DemoStrategyName;
  epsilon?: number;
  dpLevel?: DemoDpLevel;
  /** After the study, keep the coordinator and sites running with their consoles until Ctrl-C (serveDemo). */
  serve?: boolean;
}): Promise<boolean> {
  const t0 = Date.now();
  const out = opts.outDir;
  for (const s of STUDIES)
    if (!existsSync(join(opts.dataDir, `${s}.csv`))) throw new Error(`TWF_E_NOT_FOUND: ${join(opts.dataDir, `${s}.csv`)} is missing (the demo needs Study1-3.csv of Laleh et al. 2022)`);
  for (const d of ['coordinator', 'site-1', 'site-2', 'site-3', 'model', 'compare']) rmSync(join(out, d), { recursive: true, force: true });
  mkdirSync(out, { recursive: true });
  const procs = new DemoProcesses();
  const say = (s: string) => console.log(`[${((Date.now() - t0) / 1000).toFixed(0).padStart(3)} s] ${s}`);
  try {
    const { url, lead, adminToken } = await procs.startCoordinator(join(out, 'coordinator'));
    say(`coordinator on ${url}`);
    say('enrolling the three trial sites with one-time tokens; each imports its own table into its own SQLite file...');
    const siteDirs = STUDIES.map((_, i) => join(out, `site-${i + 1}`));
    await Promise.all(
      STUDIES.map(async (s, i) => {
        const { token } = await lead.call<{ token: string }>('POST', '/api/enrolment-tokens', { siteName: s });
        await run(['site', 'enrol', '--data-dir', siteDirs[i], '--coordinator', url, '--token', token], `enrol ${s}`);
        const rep = JSON.parse(lastLine(await run(['site', 'import', join(opts.dataDir, `${s}.csv`), '--format', 'laleh', '--no-refit', '--data-dir', siteDirs[i], '--json'], `import ${s}`))) as {
          rows: { status: string; detail: string }[];
        };
        say(`${s}: enrolled, imported ${join(opts.dataDir, `${s}.csv`)}: ${rep.rows.map((r) => `${r.status} (${r.detail})`).join('; ')}`);
      }),
    );

    if (opts.epsilon !== undefined) checkSiteCaps(siteDirs, STUDIES, opts.epsilon);
    const spec = responseDemoSpec(opts.rounds, { strategy: opts.strategy, epsilon: opts.epsilon, dpLevel: opts.dpLevel });
    if (spec.strategy) say(`strategy ${JSON.stringify(spec.strategy)}`);
    if (spec.dp) say(describeDp(spec.dp, spec.training, spec.rounds));
    const created = await lead.call<{ studyId: string }>('POST', '/api/studies', spec);
    const started = await lead.call<{ manifestHash: string }>('POST', `/api/studies/${created.studyId}/start`);
    const study = { studyId: created.studyId, manifestHash: started.manifestHash };
    say(
      `study ${study.studyId} (task response, softmax regression, ${spec.model.arms.length} arm columns) started, manifest ${study.manifestHash.slice(0, 16)}… (roster of 3, secure aggregation threshold 3)`,
    );

    // Each site's held-out macro AUC per round, from its 'applied' events (the coordinator keeps Dice columns only).
    const auc = new Map<number, (number | null)[]>();
    const siteIds = siteDirs.map(siteIdOf);
    STUDIES.forEach((s, i) => {
      procs.startSite(siteDirs[i], s, say, {
        onEvent: (e) => {
          const line = trainedLine(s, e);
          if (line) say(line);
          if (e.event === 'applied' && e.round !== undefined) {
            const row = auc.get(e.round) ?? [null, null, null];
            row[i] = e.metric?.value ?? null;
            auc.set(e.round, row);
          }
        },
      });
    });
    say("sites running; waiting for the study's announcement to reach each site and for each site's privacy officer to approve its manifest...");
    await approveWhenAnnounced(
      siteDirs,
      study.studyId,
      STUDIES.map((s) => `Privacy officer, ${s}`),
    );
    say('privacy officers approved the manifest at all three sites; the first key dealer seals the study key to the roster, then the rounds run (a few seconds each)');

    console.log('\nround  sites  upload bytes  encrypt ms  held-out macro AUC per site (Study1 Study2 Study3)');
    const printed = new Set<number>();
    // A few seconds a round: long soaks (--rounds 300) get time in proportion.
    const timeoutS = opts.timeoutS ?? Math.max(600, opts.rounds * 10);
    const deadline = Date.now() + timeoutS * 1000;
    let status: StatusT;
    for (;;) {
      status = await lead.call<StatusT>('GET', `/api/studies/${study.studyId}`);
      for (const r of status.roundSummaries) {
        const a = auc.get(r.round);
        if (printed.has(r.round) || r.state !== 'closed' || !a || a.some((x) => x === null)) continue;
        printed.add(r.round);
        const up = r.metrics.reduce((s, m) => s + (m.uploadBytes ?? 0), 0);
        const enc = r.metrics.filter((m) => m.encryptMs !== null);
        console.log(
          `${String(r.round).padStart(5)}  ${String(r.completed.length).padStart(5)}  ${String(up).padStart(12)}  ${(enc.reduce((s, m) => s + m.encryptMs!, 0) / Math.max(1, enc.length)).toFixed(0).padStart(10)}  ${a.map(fmt).join('  ')}`,
        );
      }
      if (status.state === 'completed' && status.roundSummaries.every((r) => printed.has(r.round))) break;
      if (Date.now() > deadline) throw new Error(`study did not complete within ${timeoutS} s (state ${status.state}, round ${status.currentRound})`);
      await sleep(500);
    }
    const modelSrc = await finalModelDir(siteDirs[0], study.studyId);
    await procs.stopAndWait();
    cpSync(modelSrc, join(out, 'model'), { recursive: true });
    say(`global model (decrypted at Study1) saved in ${join(out, 'model')}`);
    // The coordinator's disk after it closed (database and any write-ahead log left): with the
    // catch-up window it grows by the audit and round rows, not by every round's aggregate.
    const dbFile = join(out, 'coordinator', 'coordinator.db');
    const coordinatorDbBytes = [dbFile, `${dbFile}-wal`].reduce((n, f) => n + (existsSync(f) ? statSync(f).size : 0), 0);
    say(`coordinator database: ${coordinatorDbBytes} bytes, ${Math.round(coordinatorDbBytes / opts.rounds)} per round`);

    const { ok: auditOk } = await verifyDemoAudits(join(out, 'coordinator', 'coordinator.db'), siteDirs);
    say(`audit: ${auditOk ? 'all four chains intact, site logs match the coordinator' : 'PROBLEMS FOUND (twinfed audit verify / compare)'}`);

    console.log('\nfederated (the model above) vs local-only vs centralised, same patient split:');
    const report = compareResponse({ dataDir: opts.dataDir, outDir: join(out, 'compare'), rounds: opts.rounds, federatedModel: join(out, 'model'), log: say });
    console.log(formatResponseCompare(report));
    const privacy = STUDIES.map((s, i) => readSitePrivacy(siteDirs[i], s, study.studyId, spec.dp?.epsilon ?? null));
    if (spec.dp || privacy.some((p) => p.epsilonSpent !== null)) for (const p of privacy) say(`privacy: ${formatSitePrivacy(p)}`);
    const elapsedS = (Date.now() - t0) / 1000;
    // The task metric per round: held-out macro AUC, the mean over the three sites (per site in aucPerRound).
    const metricPerRound = [...auc.entries()]
      .sort((a, b) => a[0] - b[0])
      .map(([round, a]) => {
        const ok = a.filter((x): x is number => x !== null);
        return { round, metric: 'macroAuc', value: ok.length ? ok.reduce((x, y) => x + y, 0) / ok.length : null };
      });
    writeFileSync(
      join(out, 'report.json'),
      JSON.stringify(
        {
          studyId: study.studyId,
          manifestHash: study.manifestHash,
          siteIds,
          aucPerRound: Object.fromEntries(auc),
          metricPerRound,
          strategy: spec.strategy ?? { name: 'fedavg' },
          dp: spec.dp ?? null,
          privacy,
          auditOk,
          compare: report,
          model: join(out, 'model'),
          coordinatorDbBytes,
          coordinatorDbBytesPerRound: Math.round(coordinatorDbBytes / opts.rounds),
          elapsedS,
        },
        null,
        2,
      ) + '\n',
    );
    say(`report ${join(out, 'report.json')}; ${elapsedS.toFixed(0)} s`);
    const fed = report.rows.find((r) => r.regime === 'federated' && r.evaluatedOn === 'pooled');
    // Under DP the noise may cost the AUC (RESPONSE_DEMO_DP): success is then a clean, audited run.
    const ok = spec.dp ? auditOk : auditOk && fed?.auc !== null && fed?.auc !== undefined && fed.auc > 0.5;
    if (opts.serve)
      await serveDemo({
        coordinator: { dataDir: join(out, 'coordinator'), url, adminToken },
        sites: STUDIES.map((s, i) => ({ name: s, dataDir: siteDirs[i] })),
        studyId: study.studyId,
        say,
      });
    return ok;
  } finally {
    procs.dispose();
  }
}
