import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { twinPriorStudySpec } from '@twinfed/shared/twin/index';
import { approveWhenAnnounced, DemoProcesses, lastLine, run, siteIdOf, sleep, trainedLine, verifyDemoAudits } from './demo-kit.js';
import { evaluateTwinCsv } from './commands/twin.js';

export { DEFAULT_LALEH_DIR } from './paths.js';

const STUDIES = ['Study1', 'Study2', 'Study3'];
const f3 = (x: number | undefined) => (x === undefined || Number.isNaN(x) ? '  n/a' : x.toFixed(3));

/** One row of the demo's table: a trial's sparse patients scored with the federated prior, the trial's own prior, none. */
export interface TwinDemoRow {
  study: string;
  sparsePatients: number;
  progressionEvents: number;
  mae: { federated: number; local: number; none: number; locf: number };
  auc: { federated: number; local: number; none: number };
}

/**
 * `npm run demo:twin`: a coordinator and three site processes on loopback, one per trial
 * (Study1-3 of Laleh et al. 2022, imported with `twinfed site import --format laleh`), a
 * 'twin-prior' study with secure aggregation and BFV encryption: each site fits its patients'
 * growth models and uploads the fixed-point sufficient statistics; the sites decrypt the sum and
 * store the population prior (versioned, with provenance). The prior is written to
 * OUT/prior.json (a `twinfed twin evaluate --prior` file); then, per trial, the sparse patients
 * (2-3 fitted points) are scored with it, with the trial's own leave-one-out prior and with none
 * (shared/src/twin/evaluate.ts), and the audit chains are verified.
 */
export async function runTwinDemo(opts: { outDir: string; dataDir: string; timeoutS?: number }): Promise<boolean> {
  const t0 = Date.now();
  const out = opts.outDir;
  for (const s of STUDIES)
    if (!existsSync(join(opts.dataDir, `${s}.csv`))) throw new Error(`TWF_E_NOT_FOUND: ${join(opts.dataDir, `${s}.csv`)} is missing (the demo needs Study1-3.csv of Laleh et al. 2022)`);
  for (const d of ['coordinator', 'site-1', 'site-2', 'site-3']) rmSync(join(out, d), { recursive: true, force: true });
  mkdirSync(out, { recursive: true });
  const procs = new DemoProcesses();
  const say = (s: string) => console.log(`[${((Date.now() - t0) / 1000).toFixed(0).padStart(3)} s] ${s}`);
  try {
    const { url, lead } = await procs.startCoordinator(join(out, 'coordinator'));
    say(`coordinator on ${url}`);
    const siteDirs = STUDIES.map((_, i) => join(out, `site-${i + 1}`));
    await Promise.all(
      STUDIES.map(async (s, i) => {
        const { token } = await lead.call<{ token: string }>('POST', '/api/enrolment-tokens', { siteName: s });
        await run(['site', 'enrol', '--data-dir', siteDirs[i], '--coordinator', url, '--token', token], `enrol ${s}`);
        const rep = JSON.parse(lastLine(await run(['site', 'import', join(opts.dataDir, `${s}.csv`), '--format', 'laleh', '--no-refit', '--data-dir', siteDirs[i], '--json'], `import ${s}`))) as {
          rows: { status: string; detail: string }[];
        };
        say(`${s}: enrolled, imported: ${rep.rows.map((r) => `${r.status} (${r.detail})`).join('; ')}`);
      }),
    );
    const spec = twinPriorStudySpec();
    const created = await lead.call<{ studyId: string }>('POST', '/api/studies', spec);
    const started = await lead.call<{ manifestHash: string }>('POST', `/api/studies/${created.studyId}/start`);
    const studyId = created.studyId;
    say(
      `study ${studyId} (task twin-prior: ${spec.model.models.join(', ')}; patients with >= ${spec.data.minMeasurements} measurements, >= ${spec.data.minPatients} per site) started, manifest ${started.manifestHash.slice(0, 16)}…`,
    );
    const patients: (number | null)[] = [null, null, null];
    STUDIES.forEach((s, i) =>
      procs.startSite(siteDirs[i], s, say, {
        onEvent: (e) => {
          const line = trainedLine(s, e);
          if (line) say(line);
          if (e.event === 'applied') patients[i] = e.metric?.value ?? null;
        },
      }),
    );
    say("sites running; waiting for each site's privacy officer to approve the manifest...");
    await approveWhenAnnounced(
      siteDirs,
      studyId,
      STUDIES.map((s) => `Privacy officer, ${s}`),
    );
    say('approved at all three sites; each site fits its patients and uploads its encrypted, masked statistics');
    const deadline = Date.now() + (opts.timeoutS ?? 600) * 1000;
    for (;;) {
      const st = await lead.call<{ state: string }>('GET', `/api/studies/${studyId}`);
      if (st.state === 'completed' && patients.every((p) => p !== null)) break;
      if (Date.now() > deadline) throw new Error(`study did not complete in time (state ${st.state})`);
      await sleep(500);
    }
    await procs.stopAndWait();

    // Every site holds the same decrypted prior; write it as the evaluate command's --prior file.
    const { openSiteStore, readFederatedPrior } = await import('@twinfed/site-node');
    const records = [];
    for (const d of siteDirs) {
      const st = await openSiteStore(d);
      try {
        records.push(readFederatedPrior(st.db));
      } finally {
        st.close();
      }
    }
    const rec = records[0];
    if (!rec || records.some((r) => !r || JSON.stringify(r.models) !== JSON.stringify(rec.models))) throw new Error('the three sites do not hold the same federated prior');
    const priorFile = join(out, 'prior.json');
    writeFileSync(priorFile, JSON.stringify(rec, null, 1) + '\n');
    say(
      `federated prior v${rec.version} (study ${rec.studyId}, round ${rec.round}): ${rec.patients} patients at ${rec.contributingSites} sites, identical at every site; written to ${priorFile} (error bound ${rec.errorBoundU.toExponential(2)} in box units)`,
    );
    for (const [m, s] of Object.entries(rec.models))
      say(`  ${m.padEnd(19)} mean z = [${s.sum.map((v) => (v / s.n).toFixed(3)).join(', ')}] (${s.paramNames.join(', ')}), pooled residual variance ${(s.rss / Math.max(s.dof, 1)).toExponential(2)}`);

    const { ok: auditOk } = await verifyDemoAudits(join(out, 'coordinator', 'coordinator.db'), siteDirs);
    say(`audit: ${auditOk ? 'all four chains intact, site logs match the coordinator' : 'PROBLEMS FOUND (twinfed audit verify / compare)'}`);

    say("scoring each trial's sparse patients (2-3 fitted points, next visit held out) with the federated prior, the trial's own leave-one-out prior, and none...");
    const rows: TwinDemoRow[] = STUDIES.map((s) => {
      const { result } = evaluateTwinCsv(join(opts.dataDir, `${s}.csv`), 'laleh', 1, { priorFile });
      const sp = result.sparse!;
      return {
        study: s,
        sparsePatients: sp.n,
        progressionEvents: sp.progression.events,
        mae: { federated: sp.maeWithPrior, local: sp.maeLocalPrior, none: sp.maeNoPrior, locf: sp.maeLocf },
        auc: { federated: sp.progression.aucWithPrior, local: sp.progression.aucLocalPrior, none: sp.progression.aucNoPrior },
      };
    });
    console.log(`\nsparse patients: MAE of the next visit (volume / patient's max) and progression AUC (point forecast diameter / nadir), AICc-selected model per patient`);
    console.log('study    n  events | MAE federated  local   none   LOCF | AUC federated  local   none');
    for (const r of rows)
      console.log(
        `${r.study}  ${String(r.sparsePatients).padStart(3)}  ${String(r.progressionEvents).padStart(6)} |        ${f3(r.mae.federated)}  ${f3(r.mae.local)}  ${f3(r.mae.none)}  ${f3(r.mae.locf)} |        ${f3(r.auc.federated)}  ${f3(r.auc.local)}  ${f3(r.auc.none)}`,
      );
    console.log(`(the federated prior includes the scored trial's own patients' full series; the local prior leaves the scored patient out)\n`);
    const elapsedS = (Date.now() - t0) / 1000;
    writeFileSync(
      join(out, 'report.json'),
      JSON.stringify({ studyId, manifestHash: started.manifestHash, siteIds: siteDirs.map(siteIdOf), prior: { ...rec, models: undefined }, priorFile, rows, auditOk, elapsedS }, null, 2) + '\n',
    );
    say(`report ${join(out, 'report.json')}; ${elapsedS.toFixed(0)} s`);
    return auditOk;
  } finally {
    procs.dispose();
  }
}
