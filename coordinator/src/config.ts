import { z } from 'zod';
import { CoordinatorError } from './errors.js';

export const CoordinatorConfigSchema = z.object({
  /** Folder for the SQLite file and the coordinator identity (created if missing). */
  dataDir: z.string().min(1),
  /**
   * Keep the coordinator's state (and its audit log) in this PostgreSQL database instead of
   * dataDir/coordinator.db: `postgres://user:password@host:port/db` (node-postgres connection
   * string; `?host=/run/postgresql` for a Unix socket). The database must exist; its tables are
   * created and migrated at start. The identity stays in dataDir. Read from
   * TWINFED_COORDINATOR_STORE_URL by the CLI (--store). docs/scaling.md says when to use it.
   */
  storeUrl: z
    .string()
    .regex(/^postgres(ql)?:\/\//, 'a postgres:// or postgresql:// URL')
    .optional(),
  /** Longest a PostgreSQL statement may take before the store gives up and the coordinator must restart, seconds. */
  storeTimeoutS: z.number().positive().max(3600).default(30),
  host: z.string().default('127.0.0.1'),
  /** TCP port; 0 picks a free one (tests). */
  port: z.number().int().min(0).max(65535).default(7400),
  /** Bearer token leads use for the REST API. */
  adminToken: z.string().min(16),
  /**
   * Token of the read-only auditor (console and the GET routes of the REST API; every POST stays
   * the lead's). Absent: no auditor can sign in. Read from TWINFED_AUDITOR_TOKEN by the CLI.
   */
  auditorToken: z.string().min(16).optional(),
  /** Accepted clock difference between a site's envelope timestamp and ours, ms. */
  clockSkewMs: z
    .number()
    .int()
    .min(1000)
    .default(5 * 60 * 1000),
  /** A round opens only when no site joined in this many ms, so sites approved together start together. */
  joinSettleMs: z.number().int().min(0).default(2000),
  /** Deadline of each secure-aggregation phase after setup (upload, consistency, unmask), seconds. */
  phaseTimeoutS: z
    .number()
    .positive()
    .max(24 * 3600)
    .default(120),
  /** How long a round phase short of its quorum waits past its deadline before the round fails, seconds. */
  quorumGraceS: z
    .number()
    .min(0)
    .max(24 * 3600)
    .default(60),
  /** A key dealer that has not dealt within this time is replaced by the next in the manifest's order, seconds. */
  dealerTimeoutS: z.number().positive().max(3600).default(30),
  /**
   * Per-address limit before authentication (handshake nonces, socket connections, enrolment):
   * a burst of `burst`, then `perS` per second. Several hospitals may share one outbound
   * address (a regional network), so the default is generous.
   */
  preAuthRateLimit: z.object({ burst: z.number().int().min(1).default(120), perS: z.number().positive().default(4) }).default({ burst: 120, perS: 4 }),
  /**
   * Catch-up window: the encrypted aggregates of the last `catchUpRounds` closed rounds of each
   * study are kept for sites that missed them (aggregate.request); older ones are pruned when a
   * round closes, their digest, size and contributors kept (docs/protocol.md, "Catch-up window").
   * A site further behind cannot rebuild the model and sits the study out
   * (TWF_E_AGGREGATE_PRUNED). At least 2: the newest aggregate is published after its round
   * commits and re-sent to a site that was offline at that moment, and the one before lets a site
   * that missed a whole round rejoin even when the next round closes first. Default 20: a site
   * may be down for 20 rounds (a night of hourly rounds, a long weekend of daily ones) and still
   * catch up; at ~66 KB per round of a one-ciphertext model that is ~1.3 MB kept, at 10M
   * parameters ~3.2 GB. Capped at 100000: beyond that, pruning never happens in practice.
   */
  catchUpRounds: z.number().int().min(2).max(100_000).default(20),
  /**
   * Extra time the upload phase gets per million parameters per site of the key set, ms, on top of
   * phaseTimeoutS: the phase's work grows with both (rounds.ts uploadAllowanceMs). Default 1000
   * (a floor of 1M parameters/s for the whole phase; a loaded 2-core coordinator measured
   * 1.4-2.5M/s): +88 ms for 3 sites x 29k parameters, +16 min for 100 sites x 10M. A deadline
   * only bounds a stalled round: a phase ends as soon as every upload is complete.
   */
  uploadMsPerMParams: z.number().min(0).max(1_000_000).default(1000),
  /**
   * Worker threads that add ciphertexts (coordinator/src/sums); 0 adds them on the main thread.
   * Default: one per core beyond the main thread's, 1..8.
   */
  aggregationWorkers: z.number().int().min(0).max(64).optional(),
  /**
   * BENCH ONLY (test/src/bench/aggregate-memory.ts --plaintext-compare): sum float32 plaintext
   * chunks instead of ciphertexts, to measure what encryption costs. Nothing is encrypted; real
   * site nodes are refused (their chunks are ciphertexts). Refused unless the environment has
   * TWINFED_BENCH_PLAINTEXT=updates-are-not-encrypted (BENCH_PLAINTEXT_CONSENT); never part of a manifest.
   */
  benchPlaintext: z.boolean().default(false),
  /** How often open rounds are checked against their deadline, ms. */
  tickMs: z.number().int().min(50).default(1000),
  /**
   * How long a site's connection may go without answering the coordinator's heartbeat (sent every
   * 10 s) before it is closed, seconds. A heartbeat queues behind whatever is being sent on the
   * connection: an aggregate must reach the site within 10 s + this, or the site is disconnected
   * in the middle of it and asks for it again (catch-up). 30 s covers a 160 MB aggregate (10M
   * parameters) at 40 Mbit/s; raise it for slower sites or larger models.
   */
  heartbeatTimeoutS: z.number().int().min(5).max(3600).default(30),
  /** Largest socket.io message, bytes (ciphertext chunks and aggregates). */
  maxMessageBytes: z
    .number()
    .int()
    .min(1 << 16)
    .default(64 << 20),
  logLevel: z.enum(['silent', 'error', 'warn', 'info', 'debug']).default('info'),
  /**
   * Serve HTTPS and WSS on `port` from these PEM files (default: plain HTTP, for loopback and a
   * TLS-terminating proxy). `nextCertFile`: the certificate of the next key; its pin is sent to
   * every site, signed, after hello, so sites accept it when the coordinator restarts on it.
   */
  tls: z.object({ certFile: z.string().min(1), keyFile: z.string().min(1), nextCertFile: z.string().min(1).optional() }).optional(),
});
export type CoordinatorConfig = z.infer<typeof CoordinatorConfigSchema>;

/** What TWINFED_BENCH_PLAINTEXT must say for benchPlaintext to be accepted. */
export const BENCH_PLAINTEXT_CONSENT = 'updates-are-not-encrypted';
export type CoordinatorConfigInput = z.input<typeof CoordinatorConfigSchema>;

export function parseCoordinatorConfig(input: unknown): CoordinatorConfig {
  const p = CoordinatorConfigSchema.safeParse(input);
  if (!p.success) throw new CoordinatorError('TWF_E_CONFIG', p.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; '));
  // One token for two roles would make every auditor a lead.
  if (p.data.auditorToken !== undefined && p.data.auditorToken === p.data.adminToken)
    throw new CoordinatorError('TWF_E_CONFIG', 'auditorToken: must differ from adminToken (the auditor is read-only)');
  if (p.data.benchPlaintext && process.env.TWINFED_BENCH_PLAINTEXT !== BENCH_PLAINTEXT_CONSENT)
    throw new CoordinatorError(
      'TWF_E_CONFIG',
      `benchPlaintext: a benchmark mode that sums unencrypted updates; set TWINFED_BENCH_PLAINTEXT=${BENCH_PLAINTEXT_CONSENT} to run it (never with real sites)`,
    );
  return p.data;
}
