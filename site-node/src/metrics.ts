import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { SiteConfig } from './config.js';
import type { SiteDb } from './db/index.js';
import { pendingApprovals } from './console/pending.js';

/**
 * The site's Prometheus metrics (text format on the console server's /metrics). Everything is read
 * from the site's own database at scrape time — its signed audit log, the privacy ledger, the
 * round work and the imports — so the numbers survive restarts, agree with what the officer sees,
 * and `twinfed site console` (without a connection) serves them too. Only "connected" needs the
 * running node. Metric names are fixed: dashboards (deploy/) use them.
 */
export interface SiteMetricsSource {
  db: SiteDb;
  config: SiteConfig;
  /** The running node's connection state; absent when the console runs alone. */
  connected?: () => boolean;
}

type Row = Record<string, string | number | null>;

export function createSiteMetrics(src: SiteMetricsSource): { registry: Registry; scrape: () => Promise<string>; contentType: string } {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'twinfed_site_' });
  const all = (sql: string, ...params: unknown[]) => src.db.$client.prepare(sql).all(...params) as Row[];
  const one = (sql: string, ...params: unknown[]) => src.db.$client.prepare(sql).get(...params) as Row | undefined;
  const coordinatorId = src.config.coordinatorId;

  new Counter({
    name: 'twinfed_site_rounds_total',
    help: 'Rounds of each study this site was asked to take part in, by outcome: contributed (its encrypted update was sent), declined (refused before training: privacy budget, withdrawn approval, bad round), failed (the round failed or the aggregate was refused)',
    labelNames: ['study', 'outcome'],
    registers: [registry],
    collect() {
      this.reset();
      const count = (outcome: string, sql: string) => {
        for (const r of all(sql)) this.inc({ study: String(r.s), outcome }, Number(r.n));
      };
      count('contributed', "select study_id s, count(distinct round) n from audit_log where action = 'msg.sent' and msg_type = 'update.chunk' and study_id is not null group by study_id");
      count('declined', "select study_id s, count(distinct round) n from audit_log where action in ('dp.refused', 'round.refused') and study_id is not null and round is not null group by study_id");
      count(
        'failed',
        "select study_id s, count(distinct round) n from audit_log where action in ('round.failed', 'aggregate.refused') and study_id is not null and round is not null group by study_id",
      );
    },
  });
  new Histogram({
    name: 'twinfed_site_training_seconds',
    help: 'Local training time of each round this site trained, seconds',
    labelNames: ['study'],
    buckets: [0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600],
    registers: [registry],
    collect() {
      this.reset();
      for (const r of all('select study_id s, train_ms ms from round_work where train_ms is not null')) this.observe({ study: String(r.s) }, Number(r.ms) / 1000);
    },
  });
  new Gauge({
    name: 'twinfed_site_epsilon_spent',
    help: "Differential-privacy epsilon all studies have spent on each of this site's datasets (at the site's delta), from the privacy ledger",
    labelNames: ['dataset'],
    registers: [registry],
    collect() {
      this.reset();
      for (const r of all('select dataset_key k, epsilon_dataset e from dp_ledger where id in (select max(id) from dp_ledger group by dataset_key)')) this.set({ dataset: String(r.k) }, Number(r.e));
    },
  });
  new Gauge({
    name: 'twinfed_site_epsilon_budget',
    help: "This site's privacy budget per dataset across all studies (site.json privacy.maxEpsilon)",
    registers: [registry],
    collect() {
      this.set(src.config.privacy.maxEpsilon);
    },
  });
  new Gauge({
    name: 'twinfed_site_imported_files',
    help: 'Files and series imported into the site database, by result (the importer stores what it imported; failed and skipped files are reported by twinfed site import, not stored)',
    labelNames: ['result'],
    registers: [registry],
    collect() {
      this.reset();
      this.set({ result: 'imported' }, Number(one('select count(*) n from imported_files')?.n ?? 0));
    },
  });
  new Gauge({
    name: 'twinfed_site_patients',
    help: 'Patients with local data (segmentation slices or a digital-twin record)',
    registers: [registry],
    collect() {
      this.set(Number(one('select count(*) n from (select patient_id from seg_slices union select patient_id from twin_patients)')?.n ?? 0));
    },
  });
  new Gauge({
    name: 'twinfed_site_last_contact_timestamp_seconds',
    help: 'When this site last received a verified message from its coordinator (Unix seconds; 0: never)',
    registers: [registry],
    collect() {
      const r = one("select max(ts_ms) t from audit_log where action = 'msg.received' and actor = ?", coordinatorId);
      this.set(r?.t === null || r?.t === undefined ? 0 : Number(r.t) / 1000);
    },
  });
  new Gauge({
    name: 'twinfed_site_connected',
    help: 'Whether the site node is connected to its coordinator now (1) or not (0; also when the console runs without the node)',
    registers: [registry],
    collect() {
      this.set(src.connected?.() ? 1 : 0);
    },
  });
  new Gauge({
    name: 'twinfed_site_pending_approvals',
    help: "Studies whose current manifest awaits this site's privacy officer",
    registers: [registry],
    collect() {
      this.set(pendingApprovals(src.db).length);
    },
  });
  return { registry, scrape: () => registry.metrics(), contentType: registry.contentType };
}
