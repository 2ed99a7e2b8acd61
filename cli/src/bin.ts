#!/usr/bin/env node
import { Command, InvalidArgumentError, Option } from 'commander';
import { readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { DEFAULT_IMPORT_LIMITS, type ImportLimits } from '@twinfed/shared/imaging/limits';
import { DEFAULT_LALEH_DIR, DEFAULT_STS_DIR } from './paths.js';
import { missingSite } from './site-dir.js';

// Every command loads its implementation with a dynamic import() in its action, so a command loads
// only what its role needs: `coordinator start` never loads TensorFlow.js, the imaging readers or
// the trainers (test/src/coordinator-closure.test.ts checks it), and `--help` loads nothing heavy.
// Only light modules (commander, option defaults) are imported statically here.
import { registerPrivacyCommands } from './commands/privacy.js';
import { addDemoOptions, type DemoCommonFlags } from './demo-cli.js';

const program = new Command();
program.name('twinfed').description('Twinfed: federated learning for cancer digital twins (coordinator, site node, audit).').version('0.1.0');

/** Runs a command; prints `CODE: message` and exits 1 on failure. */
function action<A extends unknown[]>(fn: (...a: A) => Promise<void> | void) {
  return async (...a: A) => {
    try {
      await fn(...a);
    } catch (e) {
      console.error((e as Error).message);
      process.exit(1);
    }
  };
}
const print = (json: boolean, value: unknown, text: () => string) => console.log(json ? JSON.stringify(value) : text());
/** Parser of a `--max-...` import limit: a positive number (0 too where it means "off"). */
const limitArg =
  (zeroIsOff = false) =>
  (v: string): number => {
    const n = Number(v);
    if (!(n > 0) && !(zeroIsOff && n === 0)) throw new InvalidArgumentError(zeroIsOff ? 'expected a number >= 0 (0: off)' : 'expected a positive number');
    return n;
  };
/** Parser of --console-port: 0..65535 (0: a free port). */
const consolePortArg = (v: string): number => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError('expected a port number 0..65535 (0: a free port)');
  return n;
};
interface LimitFlags {
  maxVoxels?: number;
  maxDecompressedMib?: number;
  maxCompressionRatio?: number;
  maxContourPoints?: number;
  maxMaskVoxels?: number;
}
/** ImportLimits from the `--max-...` flags given (the rest keep their defaults). */
function importLimitsFrom(o: LimitFlags): Partial<ImportLimits> {
  const l: Partial<ImportLimits> = {};
  if (o.maxVoxels !== undefined) l.maxVoxels = o.maxVoxels;
  if (o.maxDecompressedMib !== undefined) l.maxDecompressedBytes = Math.round(o.maxDecompressedMib * 2 ** 20);
  if (o.maxCompressionRatio !== undefined) l.maxCompressionRatio = o.maxCompressionRatio;
  if (o.maxContourPoints !== undefined) l.maxContourPoints = o.maxContourPoints;
  if (o.maxMaskVoxels !== undefined) l.maxMaskVoxels = o.maxMaskVoxels;
  return l;
}

// ------------------------------------------------------------- coordinator
const coord = program.command('coordinator').description('Run the coordinator (aggregates ciphertexts; holds no secret key)');
coord
  .command('start')
  .description('Start the coordinator: REST API for leads, socket.io endpoint for site nodes, /metrics')
  .option('--data-dir <dir>', 'folder for coordinator.db and the coordinator identity', './twinfed-coordinator')
  .addOption(
    new Option('--store <url>', 'keep the state and audit log in PostgreSQL (postgres://user:password@host:port/db; the database must exist) instead of coordinator.db; see docs/scaling.md').env(
      'TWINFED_COORDINATOR_STORE_URL',
    ),
  )
  .option('--host <host>', 'listen address', '127.0.0.1')
  .option('--port <port>', 'listen port', (v) => Number(v), 7400)
  .addOption(new Option('--admin-token <token>', 'bearer token for the lead API (min 16 chars)').env('TWINFED_ADMIN_TOKEN').makeOptionMandatory())
  .option('--tick-ms <ms>', 'deadline check interval', (v) => Number(v), 1000)
  .option('--log-level <level>', 'silent|error|warn|info|debug', 'info')
  .option('--tls-cert <file>', 'serve HTTPS and WSS with this PEM certificate (default: plain HTTP, e.g. behind a TLS proxy)')
  .option('--tls-key <file>', 'PEM private key of --tls-cert')
  .option('--tls-next-cert <file>', 'certificate of the next key: its pin is sent to every site, signed, so a renewal does not lock them out')
  .option('--aggregation-workers <n>', 'worker threads that add ciphertexts (0: on the main thread; default: cores - 1, 1..8)', (v) => Number(v))
  .option('--phase-timeout-s <s>', 'deadline of each secure-aggregation phase after setup, seconds (default 120)', (v) => Number(v))
  .option('--upload-ms-per-mparams <ms>', 'extra upload-phase time per million parameters per site, ms (default 1000)', (v) => Number(v))
  .option('--heartbeat-timeout-s <s>', 'close a connection whose heartbeat is this late; an aggregate must reach a site within 10 s + this (default 30)', (v) => Number(v))
  .option('--pre-auth-burst <n>', 'per-address burst of unauthenticated requests: enrolments, handshake nonces, sockets (default 120)', (v) => Number(v))
  .option('--pre-auth-per-s <n>', 'per-address refill of that budget per second (default 4)', (v) => Number(v))
  .addOption(new Option('--bench-plaintext', 'BENCH ONLY: sum unencrypted float32 chunks (needs TWINFED_BENCH_PLAINTEXT=updates-are-not-encrypted)').hideHelp())
  .action(
    action(
      async (o: {
        dataDir: string;
        store?: string;
        host: string;
        port: number;
        adminToken: string;
        tickMs: number;
        logLevel: 'info';
        tlsCert?: string;
        tlsKey?: string;
        tlsNextCert?: string;
        aggregationWorkers?: number;
        phaseTimeoutS?: number;
        uploadMsPerMparams?: number;
        heartbeatTimeoutS?: number;
        preAuthBurst?: number;
        preAuthPerS?: number;
        benchPlaintext?: boolean;
      }) => {
        if (!o.tlsCert !== !o.tlsKey || (o.tlsNextCert && !o.tlsCert)) throw new InvalidArgumentError('--tls-cert and --tls-key go together; --tls-next-cert needs them');
        const tls = o.tlsCert && o.tlsKey ? { certFile: resolve(o.tlsCert), keyFile: resolve(o.tlsKey), ...(o.tlsNextCert ? { nextCertFile: resolve(o.tlsNextCert) } : {}) } : undefined;
        const { buildCoordinator } = await import('@twinfed/coordinator');
        const c = await buildCoordinator({
          dataDir: resolve(o.dataDir),
          ...(o.store ? { storeUrl: o.store } : {}),
          host: o.host,
          port: o.port,
          adminToken: o.adminToken,
          ...(process.env.TWINFED_AUDITOR_TOKEN ? { auditorToken: process.env.TWINFED_AUDITOR_TOKEN } : {}),
          tickMs: o.tickMs,
          logLevel: o.logLevel,
          ...(tls ? { tls } : {}),
          ...(o.aggregationWorkers !== undefined ? { aggregationWorkers: o.aggregationWorkers } : {}),
          ...(o.phaseTimeoutS !== undefined ? { phaseTimeoutS: o.phaseTimeoutS } : {}),
          ...(o.uploadMsPerMparams !== undefined ? { uploadMsPerMParams: o.uploadMsPerMparams } : {}),
          ...(o.heartbeatTimeoutS !== undefined ? { heartbeatTimeoutS: o.heartbeatTimeoutS } : {}),
          ...(o.preAuthBurst !== undefined || o.preAuthPerS !== undefined ? { preAuthRateLimit: { burst: o.preAuthBurst ?? 120, perS: o.preAuthPerS ?? 4 } } : {}),
          ...(o.benchPlaintext ? { benchPlaintext: true } : {}),
        });
        const url = await c.listen();
        console.log(`coordinator ${c.engine.coordinatorId} listening on ${url}`);
        if (c.tls)
          console.log(
            `TLS pin ${c.tls.pin}  (give it to each site out of band: twinfed site enrol --tls-pin ${c.tls.pin})${c.tls.nextPin ? `\nnext TLS pin ${c.tls.nextPin}  (announced to sites, signed, after hello)` : ''}`,
          );
        // A signal handler cannot await: close, then exit 0, or 1 when closing failed (no unhandled rejection).
        const stop = () => {
          c.close().then(
            () => process.exit(0),
            (e: unknown) => {
              console.error(`close failed: ${(e as Error).message}`);
              process.exit(1);
            },
          );
        };
        process.on('SIGINT', stop);
        process.on('SIGTERM', stop);
      },
    ),
  );

// -------------------------------------------------------------------- lead
const lead = program.command('lead').description('Consortium lead commands (REST client of the coordinator)');
const leadOpts = (c: Command) =>
  c
    .addOption(new Option('--coordinator <url>', 'coordinator URL (default http://127.0.0.1:7400)').env('TWINFED_COORDINATOR_URL'))
    .addOption(new Option('--url <url>', 'older name of --coordinator').hideHelp())
    .addOption(new Option('--admin-token <token>', 'lead API token').env('TWINFED_ADMIN_TOKEN').makeOptionMandatory())
    .option('--json', 'print JSON');
leadOpts(lead.command('token <siteName>').description('Issue a one-time enrolment token for a site')).action(
  action(async (siteName: string, o: { url?: string; coordinator?: string; adminToken: string; json?: boolean }) => {
    const { LeadClient, coordinatorUrl } = await import('./http.js');
    const r = await new LeadClient(coordinatorUrl(o), o.adminToken).call<{ token: string; expiresAt: string }>('POST', '/api/enrolment-tokens', { siteName });
    print(!!o.json, r, () => `token for ${siteName} (valid until ${r.expiresAt}):\n${r.token}`);
  }),
);
leadOpts(
  lead
    .command('create-study <specFile>')
    .description('Create a draft study from a JSON spec (checked here first: unknown keys with a suggestion, JSON errors at file:line:column); its roster is fixed at start')
    .addHelpText(
      'after',
      '\nExample specs (valid, commented in examples/specs/README.md):\n  examples/specs/segmentation.json  U-Net segmentation, FedAvg\n  examples/specs/response.json      treatment-response model\n  examples/specs/segmentation-dp.json  with patient-level differential privacy\n  examples/specs/segmentation-fedprox.json  with FedProx\n  examples/specs/twin-prior.json    federated population prior of growth parameters\nCheck a spec without a coordinator: twinfed spec check FILE',
    ),
).action(
  action(async (file: string, o: { url?: string; coordinator?: string; adminToken: string; json?: boolean }) => {
    const { loadValidSpec } = await import('./commands/spec.js');
    const spec = loadValidSpec(file);
    const { LeadClient, coordinatorUrl } = await import('./http.js');
    const r = await new LeadClient(coordinatorUrl(o), o.adminToken).call<{ studyId: string }>('POST', '/api/studies', spec);
    print(!!o.json, r, () => `created draft ${r.studyId}\nstart it to fix the roster: twinfed lead start ${r.studyId} [--sites A,B,C]; or delete it: twinfed lead delete ${r.studyId}`);
  }),
);
leadOpts(lead.command('start <studyId>').description('Start a draft: the roster (default every enrolled site) and key-dealer order go into the manifest officers approve; or resume a stopped study'))
  .option('--sites <ids>', 'comma-separated site ids of the roster (default: every enrolled, non-revoked site)')
  .option('--dealers <ids>', 'comma-separated key-dealer order (default: roster order)')
  .action(
    action(async (id: string, o: { url?: string; coordinator?: string; adminToken: string; json?: boolean; sites?: string; dealers?: string }) => {
      const body = { ...(o.sites ? { sites: o.sites.split(',') } : {}), ...(o.dealers ? { keyDealers: o.dealers.split(',') } : {}) };
      const { LeadClient, coordinatorUrl } = await import('./http.js');
      const r = await new LeadClient(coordinatorUrl(o), o.adminToken).call<{ state: string; manifestHash: string; participants: { siteId: string; siteName: string; fingerprint: string }[] }>(
        'POST',
        `/api/studies/${id}/start`,
        body,
      );
      print(!!o.json, r, () =>
        [
          `${id}: ${r.state}; manifest ${r.manifestHash}`,
          'roster (officers compare these fingerprints with each site out of band):',
          ...r.participants.map((p) => `  ${p.siteId}  ${p.siteName}  ${p.fingerprint}`),
        ].join('\n'),
      );
    }),
  );
leadOpts(lead.command('stop <studyId>').description('Stop a running study (its open round fails)')).action(
  action(async (id: string, o: { url?: string; coordinator?: string; adminToken: string; json?: boolean }) => {
    const { LeadClient, coordinatorUrl } = await import('./http.js');
    const r = await new LeadClient(coordinatorUrl(o), o.adminToken).call<{ state: string }>('POST', `/api/studies/${id}/stop`);
    print(!!o.json, r, () => `${id}: ${r.state}`);
  }),
);
leadOpts(lead.command('roster <studyId>').description('Add or remove roster sites: a new manifest version every officer must approve again'))
  .option('--add <ids>', 'comma-separated site ids to add')
  .option('--remove <ids>', 'comma-separated site ids to remove')
  .action(
    action(async (id: string, o: { url?: string; coordinator?: string; adminToken: string; json?: boolean; add?: string; remove?: string }) => {
      const { LeadClient, coordinatorUrl } = await import('./http.js');
      const r = await new LeadClient(coordinatorUrl(o), o.adminToken).call<{ manifestVersion: number; manifestHash: string }>('POST', `/api/studies/${id}/roster`, {
        add: o.add?.split(',') ?? [],
        remove: o.remove?.split(',') ?? [],
      });
      print(!!o.json, r, () => `${id}: manifest version ${r.manifestVersion} (${r.manifestHash}); every site's officer must approve it again`);
    }),
  );
leadOpts(lead.command('abort <studyId>').description('Abort the open round (it fails, audited; a fresh round opens when sites are ready)'))
  .option('--reason <text>', 'why (audited)')
  .action(
    action(async (id: string, o: { url?: string; coordinator?: string; adminToken: string; json?: boolean; reason?: string }) => {
      const { LeadClient, coordinatorUrl } = await import('./http.js');
      const r = await new LeadClient(coordinatorUrl(o), o.adminToken).call<{ round: number }>('POST', `/api/studies/${id}/rounds/current/abort`, o.reason ? { reason: o.reason } : {});
      print(!!o.json, r, () => `${id}: round ${r.round} aborted`);
    }),
  );
leadOpts(lead.command('evict <studyId> <siteId>').description('Evict a participant: no further rounds, a new study key without it'))
  .option('--reason <text>', 'why (audited)')
  .action(
    action(async (id: string, siteId: string, o: { url?: string; coordinator?: string; adminToken: string; json?: boolean; reason?: string }) => {
      const { LeadClient, coordinatorUrl } = await import('./http.js');
      const r = await new LeadClient(coordinatorUrl(o), o.adminToken).call('POST', `/api/studies/${id}/sites/${siteId}/evict`, o.reason ? { reason: o.reason } : {});
      print(!!o.json, r, () => `${siteId} evicted from ${id}; a new study key is dealt to the remaining sites`);
    }),
  );
leadOpts(lead.command('revoke <siteId>').description("Revoke a site's enrolment: disconnected, refused at connect, excluded from every study"))
  .option('--reason <text>', 'why (audited)')
  .action(
    action(async (siteId: string, o: { url?: string; coordinator?: string; adminToken: string; json?: boolean; reason?: string }) => {
      const { LeadClient, coordinatorUrl } = await import('./http.js');
      const r = await new LeadClient(coordinatorUrl(o), o.adminToken).call('POST', `/api/sites/${siteId}/revoke`, o.reason ? { reason: o.reason } : {});
      print(!!o.json, r, () => `${siteId} revoked`);
    }),
  );
leadOpts(lead.command('studies').description('Studies: id, state, rounds closed/needed, sites joined/roster, created, title')).action(
  action(async (o: { url?: string; coordinator?: string; adminToken: string; json?: boolean }) => {
    const { LeadClient, coordinatorUrl } = await import('./http.js');
    const { formatStudies, listStudies } = await import('./commands/lead.js');
    const r = await listStudies(new LeadClient(coordinatorUrl(o), o.adminToken));
    print(!!o.json, r, () => formatStudies(r));
  }),
);
leadOpts(lead.command('status <studyId>').description("Study status by site name: each site's progress in the open round, who has not approved yet, an ETA from past rounds"))
  .option('--watch', 'redraw every 2 s until the study completes or stops (Ctrl-C to quit); with --json one JSON line per change')
  .action(
    action(async (id: string, o: { url?: string; coordinator?: string; adminToken: string; json?: boolean; watch?: boolean }) => {
      const { LeadClient, coordinatorUrl } = await import('./http.js');
      const { formatLeadStatus, leadStatus, watchStatus } = await import('./commands/lead.js');
      const client = new LeadClient(coordinatorUrl(o), o.adminToken);
      if (o.watch) {
        await watchStatus(client, id, { json: !!o.json });
        return;
      }
      const v = await leadStatus(client, id);
      print(!!o.json, v, () => formatLeadStatus(v));
    }),
  );
leadOpts(lead.command('delete <studyId>').description('Delete a draft study (audited); a started study is refused: stop it instead')).action(
  action(async (id: string, o: { url?: string; coordinator?: string; adminToken: string; json?: boolean }) => {
    const { LeadClient, coordinatorUrl } = await import('./http.js');
    const { deleteDraft } = await import('./commands/lead.js');
    const r = await deleteDraft(new LeadClient(coordinatorUrl(o), o.adminToken), id);
    print(!!o.json, r, () => `deleted draft ${r.studyId} ("${r.title}")`);
  }),
);
leadOpts(lead.command('sites').description('Enrolled sites')).action(
  action(async (o: { url?: string; coordinator?: string; adminToken: string; json?: boolean }) => {
    const { LeadClient, coordinatorUrl } = await import('./http.js');
    const r = await new LeadClient(coordinatorUrl(o), o.adminToken).call<
      { siteId: string; siteName: string; connected: boolean; revokedAt: string | null; fingerprint: string; lastSeenAt: string | null }[]
    >('GET', '/api/sites');
    print(!!o.json, r, () =>
      r.map((s) => `${s.siteId}  ${s.siteName}  ${s.revokedAt ? 'revoked' : s.connected ? 'connected' : 'offline'}  ${s.fingerprint}${s.lastSeenAt ? `  last seen ${s.lastSeenAt}` : ''}`).join('\n'),
    );
  }),
);

// -------------------------------------------------------------------- site
const site = program.command('site').description('Hospital site node commands');
// Every site command but enrol (which creates the folder) and doctor (which reports it as a check)
// needs an enrolled site: say so plainly instead of a raw SQLite error, and create no site.db.
site.hook('preAction', (_site, cmd) => {
  const problem = cmd.name() === 'enrol' || cmd.name() === 'doctor' ? null : missingSite(cmd.opts<{ dataDir?: string }>().dataDir);
  if (problem) {
    console.error(problem);
    process.exit(1);
  }
});
const dataDirOpt = (c: Command) => c.option('--data-dir <dir>', 'site data folder (site.json, identity.json, site.db)', './twinfed-site');
dataDirOpt(site.command('enrol').description('Create identity keys and register them with the coordinator using a one-time token'))
  .requiredOption('--coordinator <url>', 'coordinator URL')
  .requiredOption('--token <token>', 'one-time enrolment token from the lead')
  .option('--tls-pin <pin>', "the coordinator's TLS pin from the lead (sha256/BASE64); another key is refused before the token is sent")
  .option('--tls-ca', 'do not pin: trust certificate authorities and the host name (a coordinator behind a reverse proxy with a public certificate)')
  .action(
    action(async (o: { dataDir: string; coordinator: string; token: string; tlsPin?: string; tlsCa?: boolean }) => {
      if (o.tlsPin && o.tlsCa) throw new InvalidArgumentError('--tls-pin and --tls-ca exclude each other');
      const { SITE_FILES, enrolSite } = await import('@twinfed/site-node');
      const c = await enrolSite({ dataDir: resolve(o.dataDir), coordinatorUrl: o.coordinator, token: o.token, tls: o.tlsPin ? { pin: o.tlsPin } : o.tlsCa ? 'ca' : 'first-use' });
      console.log(`enrolled as ${c.siteId} (${c.siteName}) with ${c.coordinatorId}; keys in ${join(o.dataDir, SITE_FILES.identity)} (mode 0600)`);
      if (c.tlsPins.length)
        console.log(
          o.tlsPin
            ? `TLS key pinned: ${c.tlsPins[0]} (as given)`
            : `TLS key pinned on first use: ${c.tlsPins[0]}\ncompare it with the pin the consortium lead gives you out of band; if they differ, delete ${resolve(o.dataDir)} and ask IT about TLS inspection`,
        );
    }),
  );
dataDirOpt(site.command('import <path>').description('Import NIfTI, NRRD, DICOM series (+RTSTRUCT) and measurement CSVs into the site; each file in one transaction; twins refit'))
  .option('--patients <ids>', 'comma-separated patient ids to import (default: all)')
  .option('--val <ids>', 'patients held out for validation in segmentation studies (default: 1 in 4 by id hash)')
  .option('--size <px>', 'segmentation slice edge in pixels', (v) => Number(v), 48)
  .option('--format <name>', 'built-in CSV mapping (laleh)')
  .option('--mapping <file>', 'CSV mapping file (JSON, see docs/twin.md)')
  .option('--patient <id>', 'patient id for image files that carry none (NIfTI, NRRD)')
  .option('--day <n>', 'day of those images relative to treatment start', (v) => Number(v))
  .option('--no-refit', 'do not recalibrate the twins of patients whose measurements changed (faster bulk import)')
  .option('--no-radiomics', 'do not compute IBSI radiomics features of imported masks (docs/radiomics.md)')
  .option('--max-voxels <n>', `refuse a volume of more voxels (TWF_E_IMPORT_TOO_LARGE; default ${DEFAULT_IMPORT_LIMITS.maxVoxels} = 2^28)`, limitArg())
  .option('--max-decompressed-mib <n>', `refuse a file whose data decompresses to more MiB (default ${DEFAULT_IMPORT_LIMITS.maxDecompressedBytes / 2 ** 20})`, limitArg())
  .option(
    '--max-compression-ratio <r>',
    `refuse gzip/deflate data inflating more than r:1 past the first ${DEFAULT_IMPORT_LIMITS.compressionRatioFloorBytes / 2 ** 20} MiB (default ${DEFAULT_IMPORT_LIMITS.maxCompressionRatio}; 0: off)`,
    limitArg(true),
  )
  .option('--max-contour-points <n>', `refuse an RTSTRUCT with more contour points (default ${DEFAULT_IMPORT_LIMITS.maxContourPoints} = 2^24)`, limitArg())
  .option('--max-mask-voxels <n>', `refuse RTSTRUCTs whose ROIs x series voxels exceed this (default ${DEFAULT_IMPORT_LIMITS.maxMaskVoxels} = 2^30)`, limitArg())
  .option('--json', 'print one JSON line per file as it is done, then a summary line with the whole report (NDJSON)')
  .action(
    action(
      async (
        path: string,
        o: LimitFlags & {
          dataDir: string;
          patients?: string;
          val?: string;
          size: number;
          format?: string;
          mapping?: string;
          patient?: string;
          day?: number;
          refit: boolean;
          radiomics: boolean;
          json?: boolean;
        },
      ) => {
        const { BUILTIN_MAPPINGS, CsvMappingSchema, importPath, openSiteStore } = await import('@twinfed/site-node');
        const fmt = await import('./import-progress.js');
        const mapping = o.mapping ? CsvMappingSchema.parse(JSON.parse(readFileSync(o.mapping, 'utf8'))) : o.format ? BUILTIN_MAPPINGS[o.format] : undefined;
        if (o.format && !mapping) throw new Error(`TWF_E_BAD_REQUEST: unknown --format ${o.format} (built in: ${Object.keys(BUILTIN_MAPPINGS).join(', ')})`);
        const store = await openSiteStore(resolve(o.dataDir));
        if (!o.json) console.error(`importing ${resolve(path)} into ${resolve(o.dataDir)}...`);
        // Each file's line is printed as soon as it is done (NDJSON with --json), the counts at the end.
        const report = await importPath(store.db, store.audit, path, {
          patients: o.patients?.split(','),
          val: o.val?.split(','),
          size: o.size,
          ...(mapping ? { mapping } : {}),
          ...(o.patient ? { patient: o.patient } : {}),
          ...(o.day !== undefined ? { day: o.day } : {}),
          refit: o.refit,
          radiomics: o.radiomics,
          limits: importLimitsFrom(o),
          onRow: (r, i, n) => console.log(o.json ? fmt.importRowJson(r, i, n) : fmt.importRowLine(r, i, n)),
          onRefit: (r, i, n) => {
            if (o.json) return;
            if (i === 1) console.error(`refitting the twins of ${n} patient(s) whose measurements changed...`);
            const line = fmt.refitLine(r);
            if (line) console.log(line);
          },
        }).finally(store.close);
        console.log(o.json ? fmt.importSummaryJson(report) : fmt.importSummaryLine(report));
        if (report.rows.some((r) => r.status === 'failed')) process.exitCode = 3;
      },
    ),
  );
dataDirOpt(site.command('studies').description('Studies announced to this site and their approval state'))
  .option('--show <studyId>', 'the manifest in human terms: participants and their key fingerprints, what leaves the site, the hash to approve')
  .option('--json', 'print JSON')
  .action(
    action(async (o: { dataDir: string; show?: string; json?: boolean }) => {
      const { SITE_FILES, SiteNode, budgetView, formatBudget, loadSiteConfig, openSiteDb } = await import('@twinfed/site-node');
      const { formatManifestForOfficer } = await import('./commands/manifest-view.js');
      const dir = resolve(o.dataDir);
      const db = openSiteDb(join(dir, SITE_FILES.db));
      const rows = SiteNode.listStudies(db);
      const shown = o.show ? rows.find((x) => x.studyId === o.show) : undefined;
      const cfg = shown ? loadSiteConfig(dir) : null;
      // The officer sees the projected epsilon of the whole study and this site's ledger before approving.
      const budget = shown?.manifest && cfg ? budgetView(db, shown.manifest, cfg.privacy) : null;
      db.$client.close();
      if (o.show) {
        const r = shown;
        if (!r || !r.manifest) throw new Error(`TWF_E_UNKNOWN_STUDY: ${o.show} has not been announced to this site`);
        const text = `${await formatManifestForOfficer(r.manifest, r.manifestHash, cfg!.siteId, formatBudget(budget!, r.manifest, cfg!.privacy))}\n  status          ${r.status}${r.approvedBy ? ` (approved by ${r.approvedBy})` : ''}`;
        if (o.json) {
          print(true, { ...r, privacy: budget }, () => text);
          return;
        }
        print(!!o.json, r, () => text);
        return;
      }
      print(
        !!o.json,
        rows.map(({ manifest: _m, ...x }) => x),
        () =>
          rows.map((r) => `${r.studyId}  ${r.status.padEnd(9)} ${r.title}\n  manifest ${r.manifestHash}  (details: twinfed site studies --show ${r.studyId})`).join('\n') || 'no studies announced yet',
      );
    }),
  );
dataDirOpt(site.command('approve <studyId>').description('Privacy officer: approve a study; the approval is bound to the manifest hash (which covers the roster)'))
  .requiredOption('--officer <name>', 'name of the approving privacy officer')
  .option('--hash <sha256>', 'the manifest hash the officer reviewed (refuses if the manifest differs)')
  .action(
    action(async (studyId: string, o: { dataDir: string; officer: string; hash?: string }) => {
      const { SiteNode, openSiteStore } = await import('@twinfed/site-node');
      const store = await openSiteStore(resolve(o.dataDir));
      let r;
      try {
        r = SiteNode.approve(store.db, store.audit, studyId, o.officer, o.hash);
      } finally {
        store.close();
      }
      console.log(
        `approved ${studyId} "${r.manifest.title}" by ${o.officer}\nmanifest hash ${r.manifestHash}\nroster: ${r.manifest.participants.map((p) => p.siteId).join(', ')}\n(a changed manifest, e.g. another roster, needs a new approval)`,
      );
    }),
  );
dataDirOpt(site.command('withdraw <studyId>').description('Privacy officer: withdraw the approval; the site leaves after the round it is in (audited at both ends)'))
  .requiredOption('--officer <name>', 'name of the privacy officer')
  .option('--reason <text>', 'why', 'approval withdrawn by the privacy officer')
  .action(
    action(async (studyId: string, o: { dataDir: string; officer: string; reason: string }) => {
      const { SiteNode, openSiteStore } = await import('@twinfed/site-node');
      const store = await openSiteStore(resolve(o.dataDir));
      try {
        SiteNode.withdraw(store.db, store.audit, studyId, o.officer, o.reason);
      } finally {
        store.close();
      }
      console.log(`approval of ${studyId} withdrawn by ${o.officer}; the running site node tells the coordinator and takes part in no further round`);
    }),
  );
dataDirOpt(site.command('run').description('Run the site node: dial out to the coordinator and take part in approved studies; serve the site console and /metrics'))
  .option('--json-events', 'print one JSON line per event (for orchestration)')
  .option('--console-port <port>', 'port of the site console and /metrics (default console.port of site.json, 7401; 0: a free port)', (v) => consolePortArg(v))
  .option('--console-host <address>', 'address of the site console (default console.host of site.json, 127.0.0.1; only loopback or private addresses)')
  .option('--no-console', 'run without the site console and /metrics')
  .action(
    action(async (o: { dataDir: string; jsonEvents?: boolean; console?: boolean; consolePort?: number; consoleHost?: string }) => {
      const { SITE_FILES, SiteNode, createResponseTrainer, createTaskTrainer, createTwinPriorTrainer, createUNetTrainer, openSiteDb } = await import('@twinfed/site-node');
      const dir = resolve(o.dataDir);
      const siteDb = openSiteDb(join(dir, SITE_FILES.db));
      const unet = await createUNetTrainer(siteDb);
      // The study's manifest task picks the model: U-Net for segmentation, softmax regression for response, growth-model statistics for twin-prior.
      const trainer = { ...createTaskTrainer({ segmentation: unet, response: createResponseTrainer(siteDb), 'twin-prior': createTwinPriorTrainer(siteDb) }), backendReason: unet.backendReason };
      const emit = (event: string, data: object) => {
        if (o.jsonEvents) console.log(JSON.stringify({ event, ...data }));
      };
      const node = await SiteNode.open({
        dataDir: dir,
        trainer,
        events: {
          onLog: (level, msg) => (o.jsonEvents ? emit('log', { level, msg }) : console.error(`[${level}] ${msg}`)),
          onUploaded: (r) =>
            o.jsonEvents
              ? emit('uploaded', r)
              : console.error(`round ${r.round}: uploaded ${r.uploadBytes} bytes in ${r.chunks} chunks (n=${r.nSamples}, train ${Math.round(r.trainMs)} ms, encrypt ${Math.round(r.encryptMs)} ms)`),
          onApplied: (e) =>
            o.jsonEvents
              ? emit('applied', e)
              : console.error(
                  `round ${e.round}: aggregate of ${e.contributors} sites applied${e.dropped.length ? ` (${e.dropped.length} dropped out; their masks removed)` : ''}, ${e.metric ? `held-out ${e.metric.name} ${e.metric.value?.toFixed(3) ?? 'n/a'}` : `validation Dice ${e.meanDice?.toFixed(3) ?? 'n/a'}`}`,
                ),
          // One line per epoch of local training that takes a while (a linear model trains in milliseconds: no line).
          onTrainProgress: (e) =>
            o.jsonEvents
              ? emit('train-progress', e)
              : e.elapsedMs >= 1000 && console.error(`round ${e.round}: epoch ${e.epoch}/${e.epochs} loss ${e.loss.toFixed(3)} (${(e.elapsedMs / 1000).toFixed(0)} s)`),
          onRejected: (e) => (o.jsonEvents ? emit('rejected', e) : console.error(`refused: ${e.code} ${e.detail}`)),
          onCompleted: (e) => (o.jsonEvents ? emit('completed', e) : console.error(`study ${e.studyId} completed after ${e.rounds} rounds; model in ${e.modelDir}`)),
          onRefusedAggregate: (e) => (o.jsonEvents ? emit('aggregate-refused', e) : console.error(`round ${e.round}: aggregate refused: ${e.code} ${e.detail}`)),
          onAwaitingApproval: (e) => emit('awaiting-approval', e), // the node also logs it, in words
          onFatal: (e) => {
            // Reconnecting cannot help (revoked, unknown site, other protocol): exit non-zero so a supervisor (systemd) shows it.
            console.error(`fatal: ${e.code}: ${e.detail}`);
            void node.close().finally(() => process.exit(3));
          },
        },
      });
      console.error(
        `site ${node.siteId}: backend ${trainer.backend} (${trainer.backendReason}); ${unet.workers > 0 ? `${unet.workers} data-parallel training worker threads` : 'training on the main thread'} (TWINFED_TRAIN_WORKERS overrides)`,
      );
      node.connect();
      const { consoleLine, startConsoleWithNode } = await import('./commands/site-console.js');
      const siteConsole = await startConsoleWithNode(dir, node, o, (msg) => console.error(`[warn] ${msg}`));
      if (siteConsole) console.log(consoleLine(siteConsole));
      const stop = () => {
        Promise.all([siteConsole?.close(), node.close()]).then(
          () => process.exit(0),
          (e: unknown) => {
            console.error(`close failed: ${(e as Error).message}`);
            process.exit(1);
          },
        );
      };
      process.on('SIGINT', stop);
      process.on('SIGTERM', stop);
    }),
  );
dataDirOpt(site.command('console').description('Serve the site console and /metrics on the site data alone, without connecting to the coordinator'))
  .option('--console-port <port>', 'port (default console.port of site.json, 7401; 0: a free port)', (v) => consolePortArg(v))
  .option('--console-host <address>', 'address (default console.host of site.json, 127.0.0.1; only loopback or private addresses)')
  .action(
    action(async (o: { dataDir: string; consolePort?: number; consoleHost?: string }) => {
      const { serveConsoleAlone } = await import('./commands/site-console.js');
      await serveConsoleAlone(o.dataDir, o);
    }),
  );
const siteStudy = site.command('study').description('One study announced to this site');
dataDirOpt(
  siteStudy.command('show <studyId>').description('The manifest in plain words: participants with fingerprints, what leaves the hospital and how often, the privacy budget, the hash to approve'),
)
  .option('--json', 'print the structured form')
  .action(
    action(async (studyId: string, o: { dataDir: string; json?: boolean }) => {
      const { studyShow } = await import('./commands/site-console.js');
      const r = await studyShow(o.dataDir, studyId);
      print(!!o.json, r.json, () => r.text);
    }),
  );
dataDirOpt(site.command('doctor').description('Check the site: compute backend and why, keys, database, coordinator reachability'))
  .option('--json', 'print JSON')
  .action(
    action(async (o: { dataDir: string; json?: boolean }) => {
      const { runDoctor } = await import('@twinfed/site-node');
      const r = await runDoctor(resolve(o.dataDir));
      print(!!o.json, r, () => r.checks.map((c) => `${c.ok ? 'ok  ' : c.optional ? 'info' : 'FAIL'} ${c.name}: ${c.detail}`).join('\n'));
      if (!r.checks.every((c) => c.ok || c.optional)) process.exitCode = 1;
    }),
  );

const siteTwin = site.command('twin').description("Patients' digital twins at this site");
dataDirOpt(siteTwin.command('show <patientId>').description("The record, the calibrated model with parameter intervals, the twin's scored forecasts, and an SVG plot"))
  .option('--svg <file>', 'write the plot (observed, fit, 90% band, treatments shaded)')
  .option('--json', 'print JSON')
  .action(
    action(async (patientId: string, o: { dataDir: string; svg?: string; json?: boolean }) => {
      const { twinShow, RADIOMICS_HEADLINE } = await import('./commands/site-twin.js');
      const r = await twinShow(resolve(o.dataDir), patientId, o.svg);
      const f = (x: number) => (Math.abs(x) >= 100 ? x.toFixed(0) : x.toPrecision(3));
      print(!!o.json, r, () =>
        [
          `patient ${r.patientId}, lesion ${r.lesion}`,
          `measurements (day: mm³): ${r.measurements.map((m) => `${m.day}: ${f(m.volumeMm3)}`).join(', ')}`,
          r.treatments ? `treatments: ${JSON.stringify(r.treatments)}` : 'treatments: none recorded',
          r.twin
            ? `twin: ${r.twin.model} (${r.twin.method}), ${r.twin.points} points, AIC ${r.twin.aic.toFixed(1)}\n${r.twin.parameters.map((p) => `  ${p.name} = ${f(p.estimate)} ${p.unit} (95% ${f(p.lower95)} to ${f(p.upper95)})`).join('\n')}`
            : 'twin: not calibrated (needs 2 measurements)',
          `scored forecasts: ${r.scoredForecasts.length ? r.scoredForecasts.map((s) => `day ${s.day}: predicted ${f(s.predictedMm3)}, observed ${f(s.observedMm3!)}, |error| ${s.absErrorNorm!.toFixed(3)} of max, ${s.inside90 ? 'inside' : 'outside'} 90% band`).join('; ') : 'none yet'}`,
          `pending forecasts: ${r.pendingForecasts.map((p) => `day ${p.day}: ${f(p.predictedMm3)} (${f(p.lower90Mm3)}-${f(p.upper90Mm3)})`).join('; ') || 'none'}`,
          `90% band: ${r.calibration.note}`,
          ...r.radiomics.map(
            (m) =>
              `radiomics, day ${m.day} ${m.modality} ${m.lesion} (${m.origin} mask, ${m.settings}, ${Object.keys(m.features).length} IBSI features; all with --json): ${RADIOMICS_HEADLINE.filter(
                (t) => t in m.features,
              )
                .map((t) => `${t} ${m.features[t] === null ? 'n/a' : f(m.features[t]!)}`)
                .join(', ')}`,
          ),
          ...(r.plot?.written ? [`plot: ${r.plot.file}${r.plot.note ? ` (${r.plot.note})` : ''}`] : []),
        ].join('\n'),
      );
      if (r.plot && !r.plot.written) {
        console.error(`no plot written to ${r.plot.file}: ${r.plot.note}`);
        process.exitCode = 1;
      }
    }),
  );
dataDirOpt(siteTwin.command('simulate <patientId>').description('What-if: the twin under alternative treatment schedules, side by side with 90% bands'))
  .requiredOption('--schedule <file>', 'JSON: { "horizonDays": 180, "alternatives": { "name": { "radiotherapy": [...], "systemic": [...] } } }')
  .option('--svg <file>', 'write the side-by-side plot')
  .option('--json', 'print the trajectories as JSON')
  .action(
    action(async (patientId: string, o: { dataDir: string; schedule: string; svg?: string; json?: boolean }) => {
      const { twinSimulate } = await import('./commands/site-twin.js');
      const r = await twinSimulate(resolve(o.dataDir), patientId, o.schedule, o.svg);
      print(!!o.json, r, () =>
        [
          `patient ${r.patientId} (${r.model}), tumour volume at the horizon (90% band: ${r.calibration.note}):`,
          ...Object.entries(r.atHorizon).map(
            ([k, v]) => `  ${k.padEnd(24)} ${v ? `${v.medianMm3.toFixed(0)} mm³ (90%: ${v.lower90Mm3.toFixed(0)}-${v.upper90Mm3.toFixed(0)}) at day ${v.day}` : 'n/a'}`,
          ),
          ...(o.svg ? [`plot: ${o.svg}`] : []),
        ].join('\n'),
      );
    }),
  );

dataDirOpt(
  siteTwin.command('prior').description("The site's federated population priors (twin-prior studies): versions with provenance; --out writes the current one as a `twin evaluate --prior` file"),
)
  .option('--out <file>', 'write the current prior (JSON, accepted by twinfed twin evaluate --prior)')
  .option('--json', 'print the versions as JSON')
  .action(
    action(async (o: { dataDir: string; out?: string; json?: boolean }) => {
      const { openSiteStore, federatedPriorHistory, readFederatedPrior } = await import('@twinfed/site-node');
      const st = await openSiteStore(resolve(o.dataDir));
      try {
        const cur = readFederatedPrior(st.db);
        const versions = federatedPriorHistory(st.db).map(({ models, ...p }) => ({ ...p, models: Object.keys(models) }));
        if (o.out) {
          if (!cur) throw new Error('TWF_E_NOT_FOUND: this site holds no federated prior yet (run a twin-prior study)');
          writeFileSync(resolve(o.out), JSON.stringify(cur, null, 1) + '\n');
        }
        print(!!o.json, { current: cur?.version ?? null, versions }, () =>
          versions.length === 0
            ? 'no federated prior at this site (until a twin-prior study completes, sparse patients use the site prior)'
            : [
                ...versions.map(
                  (v) =>
                    `${v.version === cur?.version ? '*' : ' '} v${v.version}  study ${v.studyId} round ${v.round}, ${v.patients} patients at ${v.contributingSites} sites, ${v.models.join(', ')}; stored ${v.storedAt}`,
                ),
                ...(o.out ? [`current prior written to ${o.out}`] : []),
              ].join('\n'),
        );
      } finally {
        st.close();
      }
    }),
  );

// ------------------------------------------------------------------- audit
const audit = program.command('audit').description('Verify and cross-check hash-chained audit logs');
audit
  .command('verify <db>')
  .description('Check a coordinator or site audit chain; report the first broken link')
  .option('--public-key <b64>', "the log owner's Ed25519 public key from a trusted source (default: the key recorded in the database)")
  .option('--json', 'print JSON')
  .action(
    action(async (db: string, o: { publicKey?: string; json?: boolean }) => {
      const { formatVerify, verifyAuditDb } = await import('./commands/audit.js');
      const v = await verifyAuditDb(db, o.publicKey);
      print(!!o.json, v, () => formatVerify(v));
      if (!v.ok) process.exitCode = 2;
    }),
  );
audit
  .command('compare')
  .description(
    "Cross-check a site against the coordinator: both chains under pinned keys, what each logged sending and receiving, and the coordinator's signed receipts and checkpoints the site kept. The coordinator's log comes from a copy of coordinator.db, or its API (no copy needed), or is left out (--receipts-only)",
  )
  .requiredOption('--site-db <file>', 'the site database (site.db)')
  .option('--coordinator-db <file>', 'a copy of the coordinator database (coordinator.db)')
  .addOption(new Option('--coordinator <url>', "fetch the coordinator's log through its API (GET /api/audit) instead of a copy of coordinator.db").env('TWINFED_COORDINATOR_URL'))
  .addOption(new Option('--auditor-token <token>', 'API token for --coordinator (an auditor token; the lead token works too)').env('TWINFED_AUDITOR_TOKEN'))
  .option('--receipts-only', "no coordinator log: check the site's chain and the coordinator's signed receipts and checkpoints it kept (not whether the coordinator's log still holds them)")
  .option('--coordinator-key <b64>', "the coordinator's Ed25519 public key (default: coordinatorPublicKey of site.json beside the site database, pinned at enrolment)")
  .option('--site-key <b64>', "the site's Ed25519 public key (default: ed25519PublicKey of identity.json beside the site database)")
  .option('--json', 'print JSON')
  .action(
    action(async (o: { siteDb: string; coordinatorDb?: string; coordinator?: string; auditorToken?: string; receiptsOnly?: boolean; coordinatorKey?: string; siteKey?: string; json?: boolean }) => {
      const keys = { coordinatorKey: o.coordinatorKey, siteKey: o.siteKey };
      if (o.receiptsOnly) {
        if (o.coordinatorDb) throw new InvalidArgumentError('--receipts-only compares without a coordinator log: leave out --coordinator-db');
        const { compareReceiptsOnly, formatReceiptsOnly } = await import('./commands/audit-remote.js');
        const r = await compareReceiptsOnly(o.siteDb, keys);
        print(!!o.json, r, () => formatReceiptsOnly(r));
        if (!r.ok) process.exitCode = 2;
        return;
      }
      const { compareAuditDbs, compareAuditWith, formatCompare } = await import('./commands/audit.js');
      let r;
      if (o.coordinatorDb) r = await compareAuditDbs(o.siteDb, o.coordinatorDb, keys);
      else if (o.coordinator) {
        if (!o.auditorToken) throw new InvalidArgumentError('--coordinator needs --auditor-token (or TWINFED_AUDITOR_TOKEN)');
        const [{ LeadClient }, { fetchCoordinatorLog }] = await Promise.all([import('./http.js'), import('./commands/audit-remote.js')]);
        const client = new LeadClient(o.coordinator, o.auditorToken);
        r = await compareAuditWith(o.siteDb, () => fetchCoordinatorLog(client), keys);
      } else throw new InvalidArgumentError("give the coordinator's log: --coordinator-db FILE, or --coordinator URL (or TWINFED_COORDINATOR_URL) with --auditor-token; or --receipts-only");
      print(!!o.json, r, () => formatCompare(r));
      if (!r.ok) process.exitCode = 2;
    }),
  );
audit
  .command('report')
  .description("A signed report of the audit log for a date range, for the privacy officer to print and file: entries, counts, the whole chain's verdict, signed with the data folder's identity")
  .requiredOption('--data-dir <dir>', 'a site data folder (site.db, identity.json) or a coordinator data folder (coordinator.db, coordinator-identity.json)')
  .requiredOption('--from <YYYY-MM-DD>', 'first day of the range (UTC, included)')
  .requiredOption('--to <YYYY-MM-DD>', 'last day of the range (UTC, included)')
  .option('--out <file>', 'write the report: printable HTML, or the signed JSON when the name ends in .json')
  .option('--json', 'print the signed report as JSON')
  .action(
    action(async (o: { dataDir: string; from: string; to: string; out?: string; json?: boolean }) => {
      const { auditReportFromDataDir, formatAuditReport } = await import('./commands/audit-report.js');
      const r = await auditReportFromDataDir(o);
      print(!!o.json, r.signed, () => formatAuditReport(r));
      if (!r.signed.report.chain.ok) process.exitCode = 2;
    }),
  );
audit
  .command('verify-report <file>')
  .description('Check a saved audit report (HTML or JSON): signed by the pinned key, unchanged since (the printed part too)')
  .option('--public-key <b64>', "the log owner's Ed25519 public key from a trusted source (without it: only the report's self-consistency)")
  .option('--json', 'print JSON')
  .action(
    action(async (file: string, o: { publicKey?: string; json?: boolean }) => {
      const { formatReportVerification, verifyReportFile } = await import('./commands/audit-report.js');
      const v = await verifyReportFile(file, o.publicKey);
      print(!!o.json, v, () => formatReportVerification(v));
      if (!v.ok) process.exitCode = 2;
    }),
  );
audit
  .command('show')
  .description('List the entries of an audit log (a site or coordinator data folder), filtered; read only (audit verify checks the chain)')
  .requiredOption('--data-dir <dir>', 'site or coordinator data folder (or the .db file itself)')
  .option('--type <actions>', 'comma-separated actions or families: study.started, msg.sent, study (every study.*)')
  .option('--study <id>', 'entries of this study only')
  .option('--since <iso>', 'entries at or after this time (ISO 8601)')
  .option('--until <iso>', 'entries at or before this time (ISO 8601)')
  .option('--grep <text>', 'case-insensitive text in actor, action, peer, message type, digest or detail')
  .option('--limit <n>', 'the newest N matching entries', (v) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('expected a positive integer');
    return n;
  })
  .option('--json', 'print JSON')
  .action(
    action(async (o: { dataDir: string; type?: string; study?: string; since?: string; until?: string; grep?: string; limit?: number; json?: boolean }) => {
      const { formatAuditShow, isoMs, showAudit } = await import('./commands/audit-show.js');
      const r = showAudit(o.dataDir, {
        ...(o.type ? { types: o.type.split(',').map((t) => t.trim()) } : {}),
        ...(o.study ? { studyId: o.study } : {}),
        ...(o.since ? { sinceMs: isoMs(o.since, '--since') } : {}),
        ...(o.until ? { untilMs: isoMs(o.until, '--until') } : {}),
        ...(o.grep ? { grep: o.grep } : {}),
        ...(o.limit ? { limit: o.limit } : {}),
      });
      print(!!o.json, r, () => formatAuditShow(r));
    }),
  );

// -------------------------------------------------------------------- spec
const spec = program.command('spec').description('Study specs and manifests: check a spec, hash a spec or a manifest (no coordinator needed)');
spec
  .command('check <file>')
  .description('Check a study spec: JSON syntax (file:line:column), unknown keys (with "did you mean"), values; examples in examples/specs/')
  .option('--json', 'print JSON')
  .action(
    action(async (file: string, o: { json?: boolean }) => {
      const { checkSpecFile, formatSpecCheck } = await import('./commands/spec.js');
      const { check } = checkSpecFile(file);
      print(!!o.json, check, () => formatSpecCheck(check));
      if (!check.ok) process.exitCode = 2;
    }),
  );
spec
  .command('hash <file>')
  .description(
    "SHA-256 of a spec, or with --manifest of a manifest. A privacy officer compares `twinfed spec hash --manifest FILE` with `twinfed site approve --hash`: the approval binds the MANIFEST (the spec plus study id, encryption, the roster with every site's keys, the key-dealer order), so the hash of the spec alone never equals it",
  )
  .option('--manifest', 'FILE is a manifest (GET /api/studies/ID/manifest as downloaded, or the bare manifest): print the hash `site approve --hash` checks')
  .option('--json', 'print JSON')
  .action(
    action(async (file: string, o: { manifest?: boolean; json?: boolean }) => {
      const { formatSpecHash, manifestHashOfFile, specHashOfFile } = await import('./commands/spec.js');
      const r = o.manifest ? manifestHashOfFile(file) : specHashOfFile(file);
      print(!!o.json, r, () => formatSpecHash(r));
      if (r.statedHashMatches === false) process.exitCode = 2;
    }),
  );

// -------------------------------------------------------------------- twin
const twin = program.command('twin').description('Digital-twin science on any file (no site needed)');
twin
  .command('evaluate')
  .description("Forecast each patient's last K measurements from the earlier ones; score every growth model, the population-prior variant and two baselines")
  .requiredOption('--csv <file>', 'longitudinal measurements')
  .option('--format <name>', 'CSV layout (built in: laleh)', 'laleh')
  .option('--holdout-last <k>', 'measurements held out per patient', (v) => Number(v), 1)
  .option('--prior <file>', 'a population prior to score on the sparse patients: { "models": { MODEL: GaussianPrior | SufficientStats } } (docs/twin.md)')
  .option('--json', 'print one JSON object as the last line')
  .action(
    action(async (o: { csv: string; format: string; holdoutLast: number; prior?: string; json?: boolean }) => {
      const { evaluateTwinCsv, formatTwinEvaluation } = await import('./commands/twin.js');
      const { result } = evaluateTwinCsv(o.csv, o.format, o.holdoutLast, { priorFile: o.prior });
      if (!o.json) console.log(formatTwinEvaluation(result, o.csv, o.holdoutLast));
      else console.log(JSON.stringify(result));
    }),
  );

// -------------------------------------------------------------- segmentation
const seg = program.command('seg').description('Segmentation models: evaluation, comparison, explanations');
seg
  .command('evaluate')
  .description('3D Dice and HD95 (mm) per patient of a model folder on DIR/PATIENT/{MOD}_image.nii.gz + {MOD}_mask.nii.gz, with the 40%-SUVmax baseline')
  .requiredOption('--model <dir>', 'model folder (model.json + weights.bin)')
  .requiredOption('--data <dir>', 'folder of patient folders')
  .option('--modality <mod>', 'file prefix / modality', 'PET')
  .option('--patients <ids>', 'comma-separated patient folders (default: all)')
  .option('--no-largest-component', 'score the raw prediction (default: keep its largest 3D connected component)')
  .option('--json', 'print { n, meanDice, medianDice, meanHd95Mm } as the last line')
  .action(
    action(async (o: { model: string; data: string; modality: string; patients?: string; largestComponent: boolean; json?: boolean }) => {
      const { evaluateSegmentation } = await import('./commands/seg.js');
      const r = await evaluateSegmentation(resolve(o.model), resolve(o.data), o.modality, { patients: o.patients?.split(','), largestComponent: o.largestComponent });
      if (o.json) {
        console.log(JSON.stringify({ n: r.n, meanDice: r.meanDice, medianDice: r.medianDice, meanHd95Mm: r.meanHd95Mm, threshold: r.threshold, patients: r.patients }));
        return;
      }
      const f = (x: number | null) => (x === null ? '   n/a' : x.toFixed(3).padStart(6));
      console.log(`patient   Dice   HD95 mm   | 40% SUVmax: Dice   HD95 mm   (backend ${r.backend})`);
      for (const p of r.patients) console.log(`${p.patientId.padEnd(8)} ${f(p.dice)}  ${f(p.hd95Mm)}    |             ${f(p.thresholdDice)}  ${f(p.thresholdHd95Mm)}`);
      console.log(`mean     ${f(r.meanDice)}  ${f(r.meanHd95Mm)}    |             ${f(r.threshold.meanDice)}  ${f(r.threshold.meanHd95Mm)}`);
      console.log(`median   ${f(r.medianDice)}            |             ${f(r.threshold.medianDice)}\n${r.n} patients`);
    }),
  );

seg
  .command('explain')
  .description('Grad-CAM of the tumour prediction on one slice: writes an overlay PNG (PET, heat map, reference and predicted contours)')
  .requiredOption('--model <dir>', 'model folder (model.json + weights.bin)')
  .requiredOption('--data <dir>', 'folder of patient folders')
  .requiredOption('--patient <id>', 'patient folder, e.g. STS_005')
  .option('--slice <z>', 'axial index (default: the slice with the largest reference-mask area)', (v) => Number(v))
  .option('--modality <mod>', 'file prefix / modality', 'PET')
  .option('--layer <name>', 'layer explained: down0.., bottleneck (default), up{depth-1}..up0')
  .option('--out <file>', 'PNG to write (default out/explain/PATIENT_zZ_LAYER.png)')
  .option('--scale <k>', 'upscale factor of the picture', (v) => Number(v), 6)
  .option('--json', 'print the result as one JSON object')
  .action(
    action(async (o: { model: string; data: string; patient: string; slice?: number; modality: string; layer?: string; out?: string; scale: number; json?: boolean }) => {
      const { explainSegmentation, formatExplain } = await import('./commands/seg-explain.js');
      const r = await explainSegmentation({
        modelDir: resolve(o.model),
        dataDir: resolve(o.data),
        patient: o.patient,
        slice: o.slice,
        modality: o.modality,
        layer: o.layer,
        out: o.out ? resolve(o.out) : undefined,
        scale: o.scale,
      });
      print(!!o.json, r, () => formatExplain(r));
    }),
  );

seg
  .command('compare')
  .description("Federated vs local-only vs centralised vs 40%-SUVmax threshold on the demo sites' held-out patients (docs/segmentation.md)")
  .option('--data <dir>', 'STS NIfTI folder', DEFAULT_STS_DIR)
  .option('--rounds <n>', 'rounds (epochs = rounds x epochs per round for every regime)', (v) => Number(v), 5)
  .option('--federated-model <dir>', 'model decrypted by the demo', 'out/demo/model')
  .option('--out <dir>', 'output folder', 'out/seg-compare')
  .option('--json', 'print the report as JSON')
  .action(
    action(async (o: { data: string; rounds: number; federatedModel: string; out: string; json?: boolean }) => {
      const { compareSegmentation } = await import('./commands/seg-compare.js');
      const r = await compareSegmentation({ dataDir: resolve(o.data), outDir: resolve(o.out), rounds: o.rounds, federatedModel: resolve(o.federatedModel), log: (s) => console.error(s) });
      if (o.json) return console.log(JSON.stringify(r));
      const f = (x: number | null) => (x === null ? '   n/a' : x.toFixed(3).padStart(6));
      console.log(`| regime | patients | mean Dice | median Dice | mean HD95 (mm) |\n|---|---|---|---|---|`);
      for (const row of r.rows) console.log(`| ${row.regime} | ${row.n} | ${f(row.meanDice)} | ${f(row.medianDice)} | ${f(row.meanHd95Mm)} |`);
    }),
  );

// ---------------------------------------------------------------- response
const response = program.command('response').description('Treatment-response models (RECIST-style category at the last measurement from the first three)');
response
  .command('evaluate')
  .description('Score a response model folder on a CSV: macro one-vs-rest AUC, balanced accuracy, permutation importances')
  .requiredOption('--model <dir>', 'model folder (model.json + weights.bin), e.g. out/response/model')
  .requiredOption('--csv <file>', 'longitudinal measurements')
  .option('--format <name>', 'CSV layout (built in: laleh)', 'laleh')
  .option('--held-out', "only the patients the model's study held out (salted id hash recorded in model.json)")
  .option('--json', 'print { n, auc, balancedAccuracy, ... } as one JSON object on the last line')
  .action(
    action(async (o: { model: string; csv: string; format: string; heldOut?: boolean; json?: boolean }) => {
      const { evaluateResponseModel, formatResponseEvaluation } = await import('./commands/response.js');
      const r = evaluateResponseModel(resolve(o.model), resolve(o.csv), o.format, { heldOutOnly: !!o.heldOut });
      if (o.json)
        console.log(
          JSON.stringify({
            n: r.n,
            auc: r.auc,
            balancedAccuracy: r.balancedAccuracy,
            perClassAuc: r.perClassAuc,
            skippedClasses: r.skippedClasses,
            classCounts: r.classCounts,
            confusion: r.confusion,
            excluded: r.excluded,
            unknownArm: r.unknownArm,
            importanceMethod: r.importanceMethod,
            importance: r.importance,
          }),
        );
      else console.log(formatResponseEvaluation(r, o.csv));
    }),
  );
response
  .command('compare')
  .description('Federated vs local-only vs centralised on the held-out patients of Study1-3 (docs/response.md)')
  .option('--data <dir>', 'folder with Study1.csv..Study3.csv (Laleh layout)', DEFAULT_LALEH_DIR)
  .option('--rounds <n>', 'rounds (every regime trains rounds x epochs per round)', (v) => Number(v), 20)
  .option('--federated-model <dir>', 'model decrypted by demo:response (plaintext FedAvg is simulated when absent)', 'out/response/model')
  .option('--out <dir>', 'output folder', 'out/response-compare')
  .option('--json', 'print the report as JSON')
  .action(
    action(async (o: { data: string; rounds: number; federatedModel: string; out: string; json?: boolean }) => {
      const { compareResponse, formatResponseCompare } = await import('./commands/response.js');
      const r = compareResponse({ dataDir: resolve(o.data), outDir: resolve(o.out), rounds: o.rounds, federatedModel: resolve(o.federatedModel), log: (s) => console.error(s) });
      console.log(o.json ? JSON.stringify(r) : formatResponseCompare(r));
    }),
  );

// ---------------------------------------------------------------- radiomics
const radiomics = program.command('radiomics').description('IBSI radiomics features of a segmented lesion (docs/radiomics.md)');
radiomics
  .command('extract')
  .description('Features keyed by IBSI tag (morph_*, loc_*, stat_*, ih_*, ivh_*, cm_*, rlm_*, szm_*, dzm_*, ngt_*, ngl_*) of the ROI of a mask on an image')
  .requiredOption('--image <file>', 'image (NIfTI, NRRD or DICOM file)')
  .requiredOption('--mask <file>', 'mask on the same grid (non-zero voxels are the ROI)')
  .option('--settings <file>', 'settings JSON (default: PyRadiomics-like, fixtures/radiomics/pyradiomics-default.json)')
  .option('--label <n>', 'only mask voxels with this value are the ROI', (v) => Number(v))
  .option('--json', 'print one JSON object, IBSI tag -> value')
  .action(
    action(async (o: { image: string; mask: string; settings?: string; label?: number; json?: boolean }) => {
      const { formatFeatures, radiomicsExtract } = await import('./commands/radiomics.js');
      const r = radiomicsExtract({ image: resolve(o.image), mask: resolve(o.mask), settings: o.settings ? resolve(o.settings) : undefined, label: o.label });
      if (o.json) {
        for (const w of r.warnings) console.error(`warning: ${w}`);
        console.log(JSON.stringify(r.features));
      } else console.log(formatFeatures(r));
    }),
  );

// ----------------------------------------------------------------- privacy
registerPrivacyCommands(program);

// -------------------------------------------------------------------- demo
addDemoOptions(
  program
    .command('demo-response')
    .description('Coordinator and three trial sites (Laleh 2022 Study1-3) on this machine: an encrypted federated treatment-response study, then the 3-regime comparison')
    .option('--rounds <n>', 'training rounds', (v) => Number(v), 20)
    .option('--out <dir>', 'output folder', 'out/response')
    .option('--data <dir>', 'folder with Study1.csv..Study3.csv', DEFAULT_LALEH_DIR),
).action(
  action(async (o: DemoCommonFlags & { rounds: number; out: string; data: string }) => {
    const { runResponseDemo } = await import('./demo-response.js');
    const ok = await runResponseDemo({ rounds: o.rounds, outDir: resolve(o.out), dataDir: resolve(o.data), strategy: o.strategy, epsilon: o.epsilon, dpLevel: o.dpLevel, serve: !!o.serve });
    if (!ok) process.exitCode = 1;
  }),
);
program
  .command('demo-twin')
  .description(
    'Coordinator and three trial sites (Laleh 2022 Study1-3) on this machine: an encrypted federated population prior of growth parameters (task twin-prior), then sparse-patient scores with it',
  )
  .option('--out <dir>', 'output folder (the prior goes to OUT/prior.json)', 'out/twin')
  .option('--data <dir>', 'folder with Study1.csv..Study3.csv', DEFAULT_LALEH_DIR)
  .action(
    action(async (o: { out: string; data: string }) => {
      const { runTwinDemo } = await import('./demo-twin.js');
      const ok = await runTwinDemo({ outDir: resolve(o.out), dataDir: resolve(o.data) });
      if (!ok) process.exitCode = 1;
    }),
  );
addDemoOptions(
  program
    .command('demo')
    .description('A coordinator and three hospital sites on this machine: a real encrypted federated study on STS PET data')
    .option('--rounds <n>', 'training rounds', (v) => Number(v), 5)
    .option('--out <dir>', 'output folder', 'out/demo')
    .option('--data <dir>', 'STS NIfTI folder (STS_xxx/PET_image.nii.gz)'),
).action(
  action(async (o: DemoCommonFlags & { rounds: number; out: string; data?: string }) => {
    const { runDemo } = await import('./demo.js');
    const ok = await runDemo({
      rounds: o.rounds,
      outDir: resolve(o.out),
      dataDir: o.data ? resolve(o.data) : undefined,
      strategy: o.strategy,
      epsilon: o.epsilon,
      dpLevel: o.dpLevel,
      serve: !!o.serve,
    });
    if (!ok) process.exitCode = 1;
  }),
);

await program.parseAsync(process.argv);
