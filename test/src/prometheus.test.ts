import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PROTOCOL_VERSION } from '@twinfed/protocols';
import type { Coordinator } from '@twinfed/coordinator';
import { generateIdentity, toB64 } from '@twinfed/shared/crypto/index';
import { BUILTIN_MAPPINGS, SiteNode, createResponseTrainer, importPath, openSiteStore, startSiteConsole, type SiteConsole } from '@twinfed/site-node';
import { responseStudySpec } from '@twinfed/shared/response/index';
import { RawSite, createAndStart, enrolNewSite, startCoordinator, tempDir, tinySpec, waitFor } from './harness.js';
import { RawParticipant } from './raw-protocol.js';

/**
 * The shipped monitoring works against a real Prometheus: the scrape config and alert rules of
 * deploy/prometheus load (the generated config keeps `rule_files`, so Prometheus parses and
 * evaluates alerts.yml), the real coordinator's /metrics is scraped as `up`, and every query of
 * the Grafana dashboard returns at least one series after the coordinator has run a round, refused
 * a connection, an enrolment and a replayed message. Skipped where /usr/bin/prometheus is absent
 * (Debian: `apt-get install prometheus`, which also ships promtool).
 *
 * The site node's /metrics (served by its console, 127.0.0.1:7401 by default; here on a free
 * loopback port) is scraped from a real site node that has imported data and taken part in a real
 * round of a differentially private response study, so that every labelled series of the site
 * dashboard exists (rounds by outcome, training time, epsilon spent per dataset, imported files).
 */
const FIX = join(resolve(dirname(fileURLToPath(import.meta.url)), '../..'), 'fixtures/growth-laleh2022');

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const DEPLOY = join(REPO, 'deploy');
const PROMETHEUS = process.env.TWINFED_PROMETHEUS_BIN ?? '/usr/bin/prometheus';
const PROMTOOL = process.env.TWINFED_PROMTOOL_BIN ?? join(dirname(PROMETHEUS), 'promtool');
const HAVE_PROMETHEUS = existsSync(PROMETHEUS);
const SKIP = HAVE_PROMETHEUS ? false : `${PROMETHEUS} is absent: install Debian's prometheus package (or set TWINFED_PROMETHEUS_BIN) to run the monitoring test`;

/** One scrape job of the shipped config, pointed at a process the test started, with the dashboard that reads it. */
export interface ScrapeTarget {
  /** job_name in deploy/prometheus/prometheus.yml */
  job: string;
  /** base URL of the process (its /metrics is scraped) */
  url: string;
  /** file in deploy/grafana/dashboards */
  dashboardFile: string;
}

/**
 * The shipped prometheus.yml with only the targets and intervals changed: each job of `targets`
 * scrapes the test's process, jobs the test did not start are dropped (and listed), rule_files is
 * kept. A text rewrite of our own file (no YAML library in the tree): it fails loudly when the
 * shipped layout changes.
 */
export function prometheusConfigFrom(shipped: string, targets: readonly ScrapeTarget[], intervalS = 1): { config: string; dropped: string[] } {
  const [head, ...jobs] = shipped.split(/^(?= {2}- job_name:)/m);
  assert.match(head, /^scrape_configs:\s*$/m, 'prometheus.yml: scrape_configs is not where the rewrite expects it');
  assert.match(head, /^rule_files:\n\s+- alerts\.yml/m, 'prometheus.yml no longer loads alerts.yml');
  const dropped: string[] = [];
  const kept: string[] = [];
  for (const block of jobs) {
    const job = /job_name:\s*(\S+)/.exec(block)![1];
    const t = targets.find((x) => x.job === job);
    if (!t) {
      dropped.push(job);
      continue;
    }
    const u = new URL(t.url);
    assert.match(block, /targets: \[[^\]]*\]/, `job ${job}: no targets line`);
    kept.push(block.replace(/targets: \[[^\]]*\]/, `targets: ["${u.host}"]`) + (u.protocol === 'https:' ? '    scheme: https\n    tls_config: { insecure_skip_verify: true }\n' : ''));
  }
  for (const t of targets) assert.ok(!dropped.includes(t.job) && kept.some((b) => b.includes(`job_name: ${t.job}`)), `no job ${t.job} in the shipped prometheus.yml`);
  const config = head.replace(/^(\s*)scrape_interval: \S+/m, `$1scrape_interval: ${intervalS}s`).replace(/^(\s*)evaluation_interval: \S+/m, `$1evaluation_interval: ${intervalS}s`) + kept.join('');
  return { config, dropped };
}

async function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => res(port));
    });
  });
}

interface PromResponse<T> {
  status: 'success' | 'error';
  data: T;
  error?: string;
}
interface VectorSample {
  metric: Record<string, string>;
  value: [number, string];
}

/** A Prometheus server on loopback with its own temp storage, from a generated config. */
class PrometheusProcess {
  private constructor(
    readonly url: string,
    private readonly child: ChildProcess,
    readonly log: () => string,
  ) {}

  static async start(dir: string, config: string): Promise<PrometheusProcess> {
    const cfgPath = join(dir, 'prometheus.yml');
    writeFileSync(cfgPath, config);
    copyFileSync(join(DEPLOY, 'prometheus', 'alerts.yml'), join(dir, 'alerts.yml'));
    const port = await freePort();
    const child = spawn(PROMETHEUS, [`--config.file=${cfgPath}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let log = '';
    child.stdout!.on('data', (b: Buffer) => (log += b.toString()));
    child.stderr!.on('data', (b: Buffer) => (log += b.toString()));
    const p = new PrometheusProcess(`http://127.0.0.1:${port}`, child, () => log);
    await waitFor(
      async () => {
        if (child.exitCode !== null) throw new Error(`prometheus exited with ${child.exitCode}: ${log}`);
        return fetch(`${p.url}/-/ready`).then(
          (r) => r.ok,
          () => false,
        );
      },
      'prometheus ready',
      30_000,
      200,
    );
    return p;
  }

  async api<T>(path: string): Promise<T> {
    const r = await fetch(`${this.url}${path}`);
    const j = (await r.json()) as PromResponse<T>;
    if (j.status !== 'success') throw new Error(`${path}: ${j.error ?? r.status}`);
    return j.data;
  }

  query(expr: string): Promise<{ resultType: string; result: VectorSample[] }> {
    return this.api(`/api/v1/query?query=${encodeURIComponent(expr)}`);
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = new Promise((res) => this.child.once('exit', res));
    this.child.kill('SIGTERM');
    await exited;
  }
}

/** Every PromQL expression of a provisioned dashboard, with its panel title. */
export function dashboardQueries(file: string): { panel: string; expr: string }[] {
  const d = JSON.parse(readFileSync(join(DEPLOY, 'grafana', 'dashboards', file), 'utf8')) as { panels: { title: string; targets?: { expr: string }[] }[] };
  return d.panels.flatMap((p) => (p.targets ?? []).map((t) => ({ panel: p.title, expr: t.expr })));
}

/** Waits until Prometheus reports each target's job `up`; prints every target's health. */
async function waitTargetsUp(prom: PrometheusProcess, targets: readonly ScrapeTarget[]) {
  type Active = { labels: Record<string, string>; health: string; lastError: string; scrapeUrl: string };
  const active = await waitFor(
    async () => {
      const d = await prom.api<{ activeTargets: Active[] }>('/api/v1/targets');
      return targets.every((t) => d.activeTargets.some((a) => a.labels.job === t.job && a.health === 'up')) ? d.activeTargets : null;
    },
    `targets ${targets.map((t) => t.job).join(', ')} up`,
    30_000,
    250,
  );
  for (const a of active) console.log(`target ${a.labels.job} ${a.scrapeUrl}: ${a.health}${a.lastError ? ` (${a.lastError})` : ''}`);
  return active;
}

describe('monitoring: the shipped Prometheus config, alert rules and Grafana dashboards against a real Prometheus', { skip: SKIP }, () => {
  const tmp = tempDir('prometheus');
  let c: Coordinator;
  let url: string;
  let prom: PrometheusProcess;
  let targets: ScrapeTarget[];
  const sites: RawSite[] = [];
  const nodes: SiteNode[] = [];
  const stores: { close(): void }[] = [];
  let siteConsole: SiteConsole | undefined;
  let sitePort = 0;

  before(async () => {
    ({ c, url } = await startCoordinator(join(tmp.dir, 'coordinator'), { phaseTimeoutS: 600 }));
    for (const d of ['a', 'b', 'c']) await enrolNewSite(url, join(tmp.dir, d), `Hospital ${d}`);
    // The site console starts later (after its site has trained), on a port chosen now for the config.
    sitePort = await freePort();
    targets = [
      { job: 'twinfed-coordinator', url, dashboardFile: 'twinfed-coordinator.json' },
      { job: 'twinfed-site', url: `http://127.0.0.1:${sitePort}`, dashboardFile: 'twinfed-site.json' },
    ];
    const { config, dropped } = prometheusConfigFrom(readFileSync(join(DEPLOY, 'prometheus', 'prometheus.yml'), 'utf8'), targets);
    console.log(`jobs of deploy/prometheus/prometheus.yml not started by this test (dropped): ${dropped.join(', ') || 'none'}`);
    prom = await PrometheusProcess.start(tmp.dir, config);
  });

  after(async () => {
    for (const s of sites) s.close();
    await siteConsole?.close();
    for (const n of nodes) await n.close().catch(() => undefined);
    for (const s of stores) s.close();
    await prom?.stop();
    await c?.close();
    tmp.cleanup();
  });

  it('promtool accepts the shipped config and rules', { skip: existsSync(PROMTOOL) ? false : `${PROMTOOL} is absent` }, () => {
    for (const args of [
      ['check', 'config', join(DEPLOY, 'prometheus', 'prometheus.yml')],
      ['check', 'rules', join(DEPLOY, 'prometheus', 'alerts.yml')],
    ]) {
      const r = spawnSync(PROMTOOL, args, { encoding: 'utf8' });
      console.log(`promtool ${args.slice(0, 2).join(' ')}: exit ${r.status}; ${(r.stdout + r.stderr).trim().replace(/\s*\n\s*/g, '; ')}`);
      assert.equal(r.status, 0, r.stdout + r.stderr);
    }
  });

  it('promtool test rules: the site alerts fire on synthetic site series, and only then', { skip: existsSync(PROMTOOL) ? false : `${PROMTOOL} is absent` }, () => {
    // Site series as the site console will export them (the console is not started by this test yet).
    const site = 'job="twinfed-site", instance="127.0.0.1:7401"';
    // promtool compares annotations exactly: test a copy of the rules without them (check rules above validates their templates).
    const rules = readFileSync(join(DEPLOY, 'prometheus', 'alerts.yml'), 'utf8').replace(/^ {8}annotations:\n(?: {10}.*\n(?: {12,}.*\n)*)+/gm, '');
    assert.ok(!rules.includes('annotations:'), 'alerts.yml layout changed: annotations not stripped');
    writeFileSync(join(tmp.dir, 'alerts-bare.yml'), rules);
    const tests = {
      rule_files: [join(tmp.dir, 'alerts-bare.yml')],
      evaluation_interval: '1m',
      tests: [
        {
          interval: '1m',
          input_series: [
            { series: `twinfed_site_connected{${site}}`, values: '1 1 0x15' },
            { series: `twinfed_site_pending_approvals{${site}}`, values: '1x1500' },
            { series: `twinfed_site_epsilon_budget{${site}}`, values: '10x20' },
            { series: `twinfed_site_epsilon_spent{${site}, dataset="sts-pet"}`, values: '8.9 9.5x19' },
            { series: `twinfed_site_epsilon_spent{${site}, dataset="laleh"}`, values: '1x20' },
          ],
          alert_rule_test: [
            { eval_time: '10m', alertname: 'TwinfedSiteDisconnected', exp_alerts: [] },
            { eval_time: '13m', alertname: 'TwinfedSiteDisconnected', exp_alerts: [{ exp_labels: { severity: 'warning', job: 'twinfed-site', instance: '127.0.0.1:7401' } }] },
            { eval_time: '0m', alertname: 'TwinfedSiteEpsilonNearBudget', exp_alerts: [] },
            { eval_time: '2m', alertname: 'TwinfedSiteEpsilonNearBudget', exp_alerts: [{ exp_labels: { severity: 'warning', job: 'twinfed-site', instance: '127.0.0.1:7401', dataset: 'sts-pet' } }] },
            { eval_time: '23h', alertname: 'TwinfedSiteApprovalPending', exp_alerts: [] },
            { eval_time: '1441m', alertname: 'TwinfedSiteApprovalPending', exp_alerts: [{ exp_labels: { severity: 'info', job: 'twinfed-site', instance: '127.0.0.1:7401' } }] },
          ],
        },
      ],
    };
    // JSON is YAML: promtool reads it as is.
    const file = join(tmp.dir, 'site-alerts.test.yml');
    writeFileSync(file, JSON.stringify(tests, null, 1));
    const r = spawnSync(PROMTOOL, ['test', 'rules', file], { encoding: 'utf8' });
    console.log(`promtool test rules (site alerts): exit ${r.status}; ${(r.stdout + r.stderr).trim().replace(/\s*\n\s*/g, '; ')}`);
    assert.equal(r.status, 0, r.stdout + r.stderr);
  });

  it('scrapes the coordinator and loads every alert group without evaluation errors', async () => {
    await waitTargetsUp(prom, targets.slice(0, 1));
    type Group = { name: string; rules: { name: string; health: string; lastError?: string }[] };
    const groups = await waitFor(
      async () => {
        const g = (await prom.api<{ groups: Group[] }>('/api/v1/rules')).groups;
        return g.every((x) => x.rules.every((r) => r.health !== 'unknown')) ? g : null;
      },
      'every rule evaluated once',
      30_000,
      250,
    );
    assert.deepEqual(groups.map((g) => g.name).sort(), ['twinfed-coordinator', 'twinfed-site']);
    for (const g of groups) {
      console.log(`rule group ${g.name}: ${g.rules.length} rules, health ${[...new Set(g.rules.map((r) => r.health))].join('/')}`);
      for (const r of g.rules) assert.equal(r.health, 'ok', `${g.name}/${r.name}: ${r.lastError}`);
    }
  });

  it('answers every coordinator dashboard query with at least one series once the coordinator has run a round and refused bad input', async () => {
    // Refusals before authentication (counted, per code): an unknown site and a junk enrolment token.
    const stranger = await RawSite.create(url, join(tmp.dir, 'a'), { siteId: 'site-nobody' });
    sites.push(stranger);
    assert.equal((await stranger.refused()).code, 'TWF_E_UNKNOWN_SITE');
    const keys = generateIdentity();
    const enrol = await fetch(new URL('/api/enrol', url), {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ token: 'not-a-real-token-0123456789', protocolVersion: PROTOCOL_VERSION, ed25519PublicKey: toB64(keys.ed25519PublicKey), x25519PublicKey: toB64(keys.x25519PublicKey) }),
    });
    assert.ok(enrol.status >= 400 && enrol.status < 500, `junk enrolment answered ${enrol.status}`);

    // One whole secure-aggregation round, played by three hand-driven sites with real keys and SEAL.
    const spec = tinySpec({ rounds: 1, minSites: 3 });
    const s = await createAndStart(url, spec);
    const parts = await Promise.all(
      ['a', 'b', 'c'].map(async (d) => {
        const raw = await RawSite.create(url, join(tmp.dir, d));
        sites.push(raw);
        await raw.connected();
        assert.equal((await raw.hello()).ok, true);
        await raw.next('study.announce');
        return new RawParticipant(raw, s.manifest, s.manifestHash).init();
      }),
    );
    // A replayed envelope is refused (counted by code).
    const hello = parts[0].raw.envelope('hello', null, null, { siteName: 'raw', backend: 'none', approved: [] });
    assert.equal((await parts[0].raw.emit(hello)).ok, true);
    const replay = await parts[0].raw.emit(hello);
    assert.equal(!replay.ok && replay.code, 'TWF_E_REPLAY');

    for (const p of parts) assert.equal((await p.join(100)).ok, true);
    assert.equal((await parts[0].deal()).ack.ok, true);
    for (const p of parts.slice(1)) await p.acceptKey();
    for (const p of parts) assert.equal((await p.setup()).ack.ok, true);
    const n = s.manifest.updateLength;
    const prepared = await Promise.all(
      parts.map((p, k) =>
        p.prepareUpload(
          1,
          Float32Array.from({ length: n }, (_, i) => Math.sin(i + k) * 0.01),
          10 * (k + 1),
        ),
      ),
    );
    for (let k = 0; k < 3; k++) {
      const cts = prepared[k].ciphertexts;
      for (let i = 0; i < cts.length; i++) assert.equal((await parts[k].raw.send('update.chunk', s.studyId, 1, cts[i], parts[k].chunkMeta(1, i, cts.length, 10 * (k + 1)))).ok, true);
    }
    for (const p of parts) assert.equal((await p.sign(1)).ack.ok, true);
    for (const p of parts) assert.equal((await p.reveal(1)).ok, true);
    await parts[0].aggregate(1);

    // Let Prometheus take a few scrapes of the state after the round (1 s interval).
    const closed = async () => Number((await prom.query('sum(twinfed_rounds_closed_total)')).result[0]?.value[1] ?? 0) >= 1;
    await waitFor(closed, 'Prometheus to scrape the closed round', 30_000, 250);
    await new Promise((r) => setTimeout(r, 3000));

    // A single replayed message is enough to fire TwinfedSecurityRejections (its series appeared at 1).
    type Alert = { labels: Record<string, string>; state: string };
    const fired = await waitFor(
      async () => (await prom.api<{ alerts: Alert[] }>('/api/v1/alerts')).alerts.find((a) => a.labels.alertname === 'TwinfedSecurityRejections' && a.state === 'firing'),
      'TwinfedSecurityRejections to fire',
      15_000,
      250,
    );
    assert.equal(fired.labels.code, 'TWF_E_REPLAY');
    const alerts = (await prom.api<{ alerts: Alert[] }>('/api/v1/alerts')).alerts;
    console.log(`alerts: ${alerts.map((a) => `${a.labels.alertname}${a.labels.code ? `{code=${a.labels.code}}` : ''} ${a.state}`).join(', ') || 'none'}`);

    const empty: string[] = [];
    for (const t of targets.slice(0, 1)) {
      for (const { panel, expr } of dashboardQueries(t.dashboardFile)) {
        const r = await prom.query(expr);
        assert.equal(r.resultType, 'vector', expr);
        const values = r.result.map((x) => `${Object.values(x.metric).join(',') || '-'}=${x.value[1]}`);
        console.log(`${t.dashboardFile} | ${panel} | ${expr} -> ${r.result.length} series: ${values.join(' ')}`);
        if (r.result.length === 0) empty.push(`${panel}: ${expr}`);
      }
    }
    assert.deepEqual(empty, [], 'dashboard queries without any series');
    // The aggregation quantiles are numbers, not NaN: chunks were aggregated inside the window.
    const p95 = await prom.query('histogram_quantile(0.95, sum by (le) (rate(twinfed_aggregation_seconds_bucket[15m])))');
    assert.ok(Number.isFinite(Number(p95.result[0].value[1])), `aggregation p95 ${p95.result[0].value[1]}`);
  });
  it('scrapes a real site node after a differentially private round and answers every site dashboard query with a series', async () => {
    // Three real response sites (Laleh et al. 2022 Study1-3), a one-round study with patient-level DP-SGD.
    const ids: string[] = [];
    for (const k of [1, 2, 3]) {
      const dir = join(tmp.dir, `real-${k}`);
      ids.push((await enrolNewSite(url, dir, `Real hospital ${k}`)).siteId);
      const store = await openSiteStore(dir);
      stores.push(store);
      await importPath(store.db, store.audit, join(FIX, `Study${k}.csv`), { mapping: BUILTIN_MAPPINGS.laleh, refit: false });
      const node = await SiteNode.open({ dataDir: dir, trainer: createResponseTrainer(store.db), approvalPollMs: 100 });
      nodes.push(node);
      if (k === 1) siteConsole = await startSiteConsole({ dataDir: dir, node, port: sitePort, token: 'prometheus-test-console-token-0123' });
      node.connect();
    }
    const spec = { ...responseStudySpec(1), dp: { level: 'patient' as const, epsilon: 8, delta: 1e-5, clipNorm: 1, samplingRate: 0.5 } };
    const s = await createAndStart(url, spec, { sites: ids });
    await waitFor(() => nodes.every((n) => SiteNode.listStudies(n.db).some((x) => x.studyId === s.studyId)) || null, 'the manifest at the real sites', 20_000);
    nodes.forEach((n, i) => SiteNode.approve(n.db, n.audit, s.studyId, `officer ${i + 1}`, s.manifestHash));
    await waitFor(() => (c.engine.studyStatus(s.studyId).state === 'completed' ? true : null), 'the DP response study to complete', 120_000, 200);

    const site = targets[1];
    await waitTargetsUp(prom, [site]);
    const spent = async () => (await prom.query('twinfed_site_epsilon_spent')).result.length > 0;
    await waitFor(spent, 'Prometheus to scrape the site after its round', 30_000, 250);
    await new Promise((r) => setTimeout(r, 2500));
    const empty: string[] = [];
    for (const { panel, expr } of dashboardQueries(site.dashboardFile)) {
      const r = await prom.query(expr);
      assert.equal(r.resultType, 'vector', expr);
      const values = r.result.map((x) => `${Object.values(x.metric).join(',') || '-'}=${x.value[1]}`);
      console.log(`${site.dashboardFile} | ${panel} | ${expr} -> ${r.result.length} series: ${values.join(' ')}`);
      if (r.result.length === 0) empty.push(`${panel}: ${expr}`);
    }
    assert.deepEqual(empty, [], 'site dashboard queries without any series');
    const contributed = await prom.query('sum(twinfed_site_rounds_total{outcome="contributed"})');
    assert.equal(Number(contributed.result[0]?.value[1]), 1, 'the site contributed to one round');
    const eps = Number((await prom.query('max(twinfed_site_epsilon_spent)')).result[0].value[1]);
    assert.ok(eps > 0 && eps <= 8, `epsilon spent ${eps} within the study's budget`);
  });
});
