/**
 * The coordinator's tables on PostgreSQL (the optional store, store/postgres.ts): the same tables,
 * columns and keys as the SQLite schema (schema.ts), with PostgreSQL types:
 *  - SQLite INTEGER (64-bit) -> BIGINT read as a JS number (times in ms, byte counts: past 2^31);
 *  - REAL (64-bit) -> DOUBLE PRECISION (PostgreSQL's REAL is 32-bit);
 *  - BLOB -> BYTEA, read as a Buffer like better-sqlite3's.
 * Rows have the same TypeScript types as the SQLite ones (checked at the end of this file), so one
 * CoordinatorStore interface serves both. Migrations: coordinator/drizzle-pg (drizzle-kit, dialect
 * postgresql; see drizzle-pg.config.ts).
 */
import { bigint, customType, doublePrecision, pgTable, primaryKey, text } from 'drizzle-orm/pg-core';
import type * as lite from './schema.js';
import { EXCLUSIONS, ROUND_PHASES, ROUND_STATES, STUDY_STATES, UPDATE_STATES } from '../states.js';

/** SQLite INTEGER: 64-bit, read as a number (every value here is below 2^53). */
const int = (name: string) => bigint(name, { mode: 'number' });

/** BYTEA as a Buffer (a Uint8Array after crossing a worker boundary is turned back into one). */
const bytea = customType<{ data: Buffer; driverData: Uint8Array }>({
  dataType: () => 'bytea',
  fromDriver: (v) => (Buffer.isBuffer(v) ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength)),
});

export const meta = pgTable('meta', {
  key: text('key').primaryKey(),
  value: text('value').notNull(),
});

export const enrolmentTokens = pgTable('enrolment_tokens', {
  tokenHash: text('token_hash').primaryKey(),
  siteName: text('site_name').notNull(),
  expiresAtMs: int('expires_at_ms').notNull(),
  usedAtMs: int('used_at_ms'),
  siteId: text('site_id'),
});

export const sites = pgTable('sites', {
  siteId: text('site_id').primaryKey(),
  siteName: text('site_name').notNull(),
  ed25519PublicKey: text('ed25519_public_key').notNull(),
  x25519PublicKey: text('x25519_public_key').notNull(),
  enrolledAtMs: int('enrolled_at_ms').notNull(),
  lastSeq: int('last_seq').notNull().default(0),
  lastSeenAtMs: int('last_seen_at_ms'),
  revokedAtMs: int('revoked_at_ms'),
});

export const studies = pgTable('studies', {
  studyId: text('study_id').primaryKey(),
  manifestJson: text('manifest_json').notNull(),
  manifestHash: text('manifest_hash').notNull(),
  state: text('state', { enum: STUDY_STATES }).notNull(),
  stopReason: text('stop_reason'),
  currentRound: int('current_round').notNull().default(0),
  keyEpoch: int('key_epoch').notNull().default(0),
  keyDealer: text('key_dealer'),
  createdAtMs: int('created_at_ms').notNull(),
  lastFailedAtMs: int('last_failed_at_ms'),
});

export const studySites = pgTable(
  'study_sites',
  {
    studyId: text('study_id').notNull(),
    siteId: text('site_id').notNull(),
    manifestHash: text('manifest_hash').notNull(),
    joinedAtMs: int('joined_at_ms'),
    trainSamples: int('train_samples').notNull().default(0),
    valPatients: int('val_patients').notNull().default(0),
    excluded: text('excluded', { enum: EXCLUSIONS }),
    excludedAtMs: int('excluded_at_ms'),
    dpExhaustedAtMs: int('dp_exhausted_at_ms'),
  },
  (t) => [primaryKey({ columns: [t.studyId, t.siteId] })],
);

export const keyEpochs = pgTable(
  'key_epochs',
  {
    studyId: text('study_id').notNull(),
    epoch: int('epoch').notNull(),
    manifestHash: text('manifest_hash').notNull(),
    dealer: text('dealer').notNull(),
    recipientsJson: text('recipients_json').notNull(),
    requestedAtMs: int('requested_at_ms').notNull(),
    handoutJson: text('handout_json'),
    dealtAtMs: int('dealt_at_ms'),
  },
  (t) => [primaryKey({ columns: [t.studyId, t.epoch] })],
);

export const sealedKeys = pgTable(
  'sealed_keys',
  {
    studyId: text('study_id').notNull(),
    epoch: int('epoch').notNull(),
    siteId: text('site_id').notNull(),
    sealedKey: text('sealed_key').notNull(),
    deliveredAtMs: int('delivered_at_ms'),
  },
  (t) => [primaryKey({ columns: [t.studyId, t.epoch, t.siteId] })],
);

export const rounds = pgTable(
  'rounds',
  {
    studyId: text('study_id').notNull(),
    round: int('round').notNull(),
    state: text('state', { enum: ROUND_STATES }).notNull(),
    phase: text('phase', { enum: ROUND_PHASES }).notNull().default('setup'),
    keyEpoch: int('key_epoch').notNull().default(0),
    baseVersion: int('base_version').notNull().default(0),
    threshold: int('threshold').notNull().default(0),
    openedAtMs: int('opened_at_ms').notNull(),
    deadlineAtMs: int('deadline_at_ms').notNull(),
    phaseDeadlineAtMs: int('phase_deadline_at_ms'),
    closedAtMs: int('closed_at_ms'),
    participantsJson: text('participants_json').notNull(),
    keySetJson: text('key_set_json'),
    survivorsJson: text('survivors_json'),
    revealersJson: text('revealers_json'),
    failReason: text('fail_reason'),
    totalSamples: int('total_samples').notNull().default(0),
    length: int('length'),
    ciphertexts: int('ciphertexts'),
    bytesIn: int('bytes_in').notNull().default(0),
    aggregateMs: doublePrecision('aggregate_ms').notNull().default(0),
    aggregateDigest: text('aggregate_digest'),
    aggregateBytes: int('aggregate_bytes'),
    aggregatePrunedAtMs: int('aggregate_pruned_at_ms'),
  },
  (t) => [primaryKey({ columns: [t.studyId, t.round] })],
);

export const updates = pgTable(
  'updates',
  {
    studyId: text('study_id').notNull(),
    round: int('round').notNull(),
    siteId: text('site_id').notNull(),
    state: text('state', { enum: UPDATE_STATES }).notNull(),
    count: int('count').notNull(),
    nSamples: int('n_samples').notNull(),
    length: int('length').notNull(),
    received: int('received').notNull().default(0),
    bytes: int('bytes').notNull().default(0),
    startedAtMs: int('started_at_ms').notNull(),
    completedAtMs: int('completed_at_ms'),
  },
  (t) => [primaryKey({ columns: [t.studyId, t.round, t.siteId] })],
);

export const updateChunks = pgTable(
  'update_chunks',
  {
    studyId: text('study_id').notNull(),
    round: int('round').notNull(),
    siteId: text('site_id').notNull(),
    index: int('idx').notNull(),
    ct: bytea('ct').notNull(),
    digest: text('digest').notNull(),
    logFile: text('log_file'),
    logOffset: int('log_offset'),
    logLength: int('log_length'),
  },
  (t) => [primaryKey({ columns: [t.studyId, t.round, t.siteId, t.index] })],
);

export const accumulators = pgTable(
  'accumulators',
  {
    studyId: text('study_id').notNull(),
    round: int('round').notNull(),
    index: int('idx').notNull(),
    ct: bytea('ct').notNull(),
    contributions: int('contributions').notNull(),
  },
  (t) => [primaryKey({ columns: [t.studyId, t.round, t.index] })],
);

export const maskSetups = pgTable(
  'mask_setups',
  {
    studyId: text('study_id').notNull(),
    round: int('round').notNull(),
    siteId: text('site_id').notNull(),
    sPk: text('s_pk').notNull(),
    bCommit: text('b_commit').notNull(),
    signature: text('signature').notNull(),
    boxesJson: text('boxes_json').notNull(),
    receivedAtMs: int('received_at_ms').notNull(),
  },
  (t) => [primaryKey({ columns: [t.studyId, t.round, t.siteId] })],
);

export const maskSignatures = pgTable(
  'mask_signatures',
  {
    studyId: text('study_id').notNull(),
    round: int('round').notNull(),
    siteId: text('site_id').notNull(),
    signature: text('signature').notNull(),
  },
  (t) => [primaryKey({ columns: [t.studyId, t.round, t.siteId] })],
);

export const maskReveals = pgTable(
  'mask_reveals',
  {
    studyId: text('study_id').notNull(),
    round: int('round').notNull(),
    siteId: text('site_id').notNull(),
    bodyJson: text('body_json').notNull(),
  },
  (t) => [primaryKey({ columns: [t.studyId, t.round, t.siteId] })],
);

export const aggregateRefusals = pgTable(
  'aggregate_refusals',
  {
    studyId: text('study_id').notNull(),
    round: int('round').notNull(),
    siteId: text('site_id').notNull(),
    code: text('code').notNull(),
    detail: text('detail').notNull(),
    atMs: int('at_ms').notNull(),
  },
  (t) => [primaryKey({ columns: [t.studyId, t.round, t.siteId] })],
);

export const roundDeclines = pgTable(
  'round_declines',
  {
    studyId: text('study_id').notNull(),
    round: int('round').notNull(),
    siteId: text('site_id').notNull(),
    code: text('code').notNull(),
    detail: text('detail').notNull(),
    atMs: int('at_ms').notNull(),
  },
  (t) => [primaryKey({ columns: [t.studyId, t.round, t.siteId] })],
);

export const siteMetrics = pgTable(
  'site_metrics',
  {
    studyId: text('study_id').notNull(),
    round: int('round').notNull(),
    siteId: text('site_id').notNull(),
    valPatients: int('val_patients').notNull(),
    trainLoss: doublePrecision('train_loss'),
    trainMs: doublePrecision('train_ms'),
    encryptMs: doublePrecision('encrypt_ms'),
    uploadBytes: int('upload_bytes'),
    reportedAtMs: int('reported_at_ms').notNull(),
  },
  (t) => [primaryKey({ columns: [t.studyId, t.round, t.siteId] })],
);

export const siteMetricValues = pgTable(
  'site_metric_values',
  {
    studyId: text('study_id').notNull(),
    round: int('round').notNull(),
    siteId: text('site_id').notNull(),
    name: text('name').notNull(),
    value: doublePrecision('value'),
  },
  (t) => [primaryKey({ columns: [t.studyId, t.round, t.siteId, t.name] })],
);

/** The coordinator's hash-chained audit log (shared/src/audit/table.ts on SQLite); append-only by trigger (migration 0001). */
export const auditLog = pgTable('audit_log', {
  id: int('id').primaryKey(),
  tsMs: int('ts_ms').notNull(),
  actor: text('actor').notNull(),
  action: text('action').notNull(),
  peer: text('peer'),
  msgType: text('msg_type'),
  seq: int('seq'),
  studyId: text('study_id'),
  round: int('round'),
  digest: text('digest'),
  sizeBytes: int('size_bytes'),
  detail: text('detail'),
  sig: text('sig').notNull(),
  prevHash: text('prev_hash').notNull(),
  hash: text('hash').notNull(),
});

export const auditOwner = pgTable('audit_owner', {
  ownerId: text('owner_id').primaryKey(),
  ed25519PublicKey: text('ed25519_public_key').notNull(),
});

// Both schemas must give the same row types: a column added to one and not the other fails the build here.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
type Check<T extends true> = T;
type Row<T extends { $inferSelect: unknown }> = T['$inferSelect'];
export type SchemasAgree = Check<
  Same<
    [
      Row<typeof meta>,
      Row<typeof enrolmentTokens>,
      Row<typeof sites>,
      Row<typeof studies>,
      Row<typeof studySites>,
      Row<typeof keyEpochs>,
      Row<typeof sealedKeys>,
      Row<typeof rounds>,
      Row<typeof updates>,
      Row<typeof updateChunks>,
      Row<typeof accumulators>,
      Row<typeof maskSetups>,
      Row<typeof maskSignatures>,
      Row<typeof maskReveals>,
      Row<typeof aggregateRefusals>,
      Row<typeof roundDeclines>,
      Row<typeof siteMetrics>,
      Row<typeof siteMetricValues>,
      Row<typeof auditLog>,
      Row<typeof auditOwner>,
    ],
    [
      Row<typeof lite.meta>,
      Row<typeof lite.enrolmentTokens>,
      Row<typeof lite.sites>,
      Row<typeof lite.studies>,
      Row<typeof lite.studySites>,
      Row<typeof lite.keyEpochs>,
      Row<typeof lite.sealedKeys>,
      Row<typeof lite.rounds>,
      Row<typeof lite.updates>,
      Row<typeof lite.updateChunks>,
      Row<typeof lite.accumulators>,
      Row<typeof lite.maskSetups>,
      Row<typeof lite.maskSignatures>,
      Row<typeof lite.maskReveals>,
      Row<typeof lite.aggregateRefusals>,
      Row<typeof lite.roundDeclines>,
      Row<typeof lite.siteMetrics>,
      Row<typeof lite.siteMetricValues>,
      Row<typeof lite.auditLog>,
      Row<typeof lite.auditOwner>,
    ]
  >
>;
