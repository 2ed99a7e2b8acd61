import { blob, integer, primaryKey, real, sqliteTable, text } from 'drizzle-orm/sqlite-core';
export { auditLog, auditOwner } from '@twinfed/shared/audit/table';

/** Key/value settings of this coordinator (its id, its outgoing sequence counter). */
export const meta = sqliteTable('meta', {
  key: text('key').primaryKey(),
  value: text('value').notNull(),
});

export const enrolmentTokens = sqliteTable('enrolment_tokens', {
  /** SHA-256 of the token: the token itself is shown once and never stored. */
  tokenHash: text('token_hash').primaryKey(),
  siteName: text('site_name').notNull(),
  expiresAtMs: integer('expires_at_ms').notNull(),
  usedAtMs: integer('used_at_ms'),
  siteId: text('site_id'),
});

export const sites = sqliteTable('sites', {
  siteId: text('site_id').primaryKey(),
  siteName: text('site_name').notNull(),
  ed25519PublicKey: text('ed25519_public_key').notNull(),
  x25519PublicKey: text('x25519_public_key').notNull(),
  enrolledAtMs: integer('enrolled_at_ms').notNull(),
  /** Highest envelope sequence number accepted from this site (replay protection). */
  lastSeq: integer('last_seq').notNull().default(0),
  lastSeenAtMs: integer('last_seen_at_ms'),
});

export const studies = sqliteTable('studies', {
  studyId: text('study_id').primaryKey(),
  manifestJson: text('manifest_json').notNull(),
  manifestHash: text('manifest_hash').notNull(),
  /** draft | running | completed | stopped */
  state: text('state').notNull(),
  /** Number of the open or last round; 0 before the first round opens. */
  currentRound: integer('current_round').notNull().default(0),
  keyDealer: text('key_dealer'),
  createdAtMs: integer('created_at_ms').notNull(),
});

export const studySites = sqliteTable('study_sites', {
  studyId: text('study_id').notNull(),
  siteId: text('site_id').notNull(),
  manifestHash: text('manifest_hash').notNull(),
  joinedAtMs: integer('joined_at_ms').notNull(),
  /** SEAL secret key sealed to this site's X25519 key by the key dealer: opaque to the coordinator. */
  sealedKey: text('sealed_key'),
  keyDeliveredAtMs: integer('key_delivered_at_ms'),
}, (t) => [primaryKey({ columns: [t.studyId, t.siteId] })]);

export const rounds = sqliteTable('rounds', {
  studyId: text('study_id').notNull(),
  round: integer('round').notNull(),
  /** open | closed | failed */
  state: text('state').notNull(),
  openedAtMs: integer('opened_at_ms').notNull(),
  deadlineAtMs: integer('deadline_at_ms').notNull(),
  closedAtMs: integer('closed_at_ms'),
  participantsJson: text('participants_json').notNull(),
  /** Sites whose complete update is in the aggregate (set at close). */
  contributorsJson: text('contributors_json'),
  totalSamples: integer('total_samples').notNull().default(0),
  /** Model parameter count and ciphertext count of this round's updates. */
  length: integer('length'),
  ciphertexts: integer('ciphertexts'),
  bytesIn: integer('bytes_in').notNull().default(0),
  /** Wall time spent adding ciphertexts, milliseconds. */
  aggregateMs: real('aggregate_ms').notNull().default(0),
}, (t) => [primaryKey({ columns: [t.studyId, t.round] })]);

export const updates = sqliteTable('updates', {
  studyId: text('study_id').notNull(),
  round: integer('round').notNull(),
  siteId: text('site_id').notNull(),
  /** receiving | complete | abandoned */
  state: text('state').notNull(),
  count: integer('count').notNull(),
  nSamples: integer('n_samples').notNull(),
  length: integer('length').notNull(),
  received: integer('received').notNull().default(0),
  bytes: integer('bytes').notNull().default(0),
  startedAtMs: integer('started_at_ms').notNull(),
  completedAtMs: integer('completed_at_ms'),
}, (t) => [primaryKey({ columns: [t.studyId, t.round, t.siteId] })]);

/** Ciphertext chunks of the open round, kept until close so an abandoned upload can be subtracted. */
export const updateChunks = sqliteTable('update_chunks', {
  studyId: text('study_id').notNull(),
  round: integer('round').notNull(),
  siteId: text('site_id').notNull(),
  index: integer('idx').notNull(),
  ct: blob('ct', { mode: 'buffer' }).notNull(),
  digest: text('digest').notNull(),
}, (t) => [primaryKey({ columns: [t.studyId, t.round, t.siteId, t.index] })]);

/** Running encrypted sum per ciphertext index; after close, the published aggregate. */
export const accumulators = sqliteTable('accumulators', {
  studyId: text('study_id').notNull(),
  round: integer('round').notNull(),
  index: integer('idx').notNull(),
  ct: blob('ct', { mode: 'buffer' }).notNull(),
  contributions: integer('contributions').notNull(),
}, (t) => [primaryKey({ columns: [t.studyId, t.round, t.index] })]);

/** Per-site federated evaluation reported after applying a round's aggregate. */
export const siteMetrics = sqliteTable('site_metrics', {
  studyId: text('study_id').notNull(),
  round: integer('round').notNull(),
  siteId: text('site_id').notNull(),
  meanDice: real('mean_dice'),
  valPatients: integer('val_patients').notNull(),
  trainLoss: real('train_loss'),
  trainMs: real('train_ms'),
  encryptMs: real('encrypt_ms'),
  uploadBytes: integer('upload_bytes'),
  reportedAtMs: integer('reported_at_ms').notNull(),
}, (t) => [primaryKey({ columns: [t.studyId, t.round, t.siteId] })]);
