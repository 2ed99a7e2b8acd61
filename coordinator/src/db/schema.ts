import { blob, integer, primaryKey, real, sqliteTable, text } from 'drizzle-orm/sqlite-core';
export { auditLog, auditOwner } from '@twinfed/shared/audit/table';
import { EXCLUSIONS, ROUND_PHASES, ROUND_STATES, STUDY_STATES, UPDATE_STATES } from '../states.js';

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
  /** Set when the lead revoked the enrolment: the site can no longer connect and is excluded from every study. */
  revokedAtMs: integer('revoked_at_ms'),
});

export const studies = sqliteTable('studies', {
  studyId: text('study_id').primaryKey(),
  /** The draft (before start) or the manifest with its roster (after start). */
  manifestJson: text('manifest_json').notNull(),
  /** Empty for a draft. */
  manifestHash: text('manifest_hash').notNull(),
  state: text('state', { enum: STUDY_STATES }).notNull(),
  /** Why a stopped study stopped (the lead; too few sites with privacy budget left). */
  stopReason: text('stop_reason'),
  /** Number of the open or last round; 0 before the first round opens. */
  currentRound: integer('current_round').notNull().default(0),
  /** The latest study-key epoch requested (0: none yet). */
  keyEpoch: integer('key_epoch').notNull().default(0),
  keyDealer: text('key_dealer'),
  createdAtMs: integer('created_at_ms').notNull(),
  /** When the last round failed: the next one opens after a pause, not in a tight loop. */
  lastFailedAtMs: integer('last_failed_at_ms'),
});

/** Roster sites of a study and their state; joined with the current manifest iff manifestHash equals the study's. */
export const studySites = sqliteTable(
  'study_sites',
  {
    studyId: text('study_id').notNull(),
    siteId: text('site_id').notNull(),
    /** The manifest hash the site last joined with ('' until it joins). */
    manifestHash: text('manifest_hash').notNull(),
    joinedAtMs: integer('joined_at_ms'),
    /** Local data counts the site joined with: the upper bound of the sample count it may declare. */
    trainSamples: integer('train_samples').notNull().default(0),
    valPatients: integer('val_patients').notNull().default(0),
    /** Excluded from rounds opened afterwards, and from new key epochs. */
    excluded: text('excluded', { enum: EXCLUSIONS }),
    excludedAtMs: integer('excluded_at_ms'),
    /** When the site declined a round with TWF_E_DP_BUDGET: its privacy budget is spent; it is asked to no later round (still joined: it receives aggregates). */
    dpExhaustedAtMs: integer('dp_exhausted_at_ms'),
  },
  (t) => [primaryKey({ columns: [t.studyId, t.siteId] })],
);

/** One study-key epoch: requested from a dealer, then its signed handout. A new epoch after every roster change or exclusion. */
export const keyEpochs = sqliteTable(
  'key_epochs',
  {
    studyId: text('study_id').notNull(),
    epoch: integer('epoch').notNull(),
    manifestHash: text('manifest_hash').notNull(),
    dealer: text('dealer').notNull(),
    recipientsJson: text('recipients_json').notNull(),
    requestedAtMs: integer('requested_at_ms').notNull(),
    /** The dealer's signed handout fields (commitment, signature, heParamsDigest) once it answered. */
    handoutJson: text('handout_json'),
    dealtAtMs: integer('dealt_at_ms'),
  },
  (t) => [primaryKey({ columns: [t.studyId, t.epoch] })],
);

/** The study key of an epoch sealed to one site (crypto_box_seal): opaque bytes to the coordinator. */
export const sealedKeys = sqliteTable(
  'sealed_keys',
  {
    studyId: text('study_id').notNull(),
    epoch: integer('epoch').notNull(),
    siteId: text('site_id').notNull(),
    sealedKey: text('sealed_key').notNull(),
    deliveredAtMs: integer('delivered_at_ms'),
  },
  (t) => [primaryKey({ columns: [t.studyId, t.epoch, t.siteId] })],
);

export const rounds = sqliteTable(
  'rounds',
  {
    studyId: text('study_id').notNull(),
    round: integer('round').notNull(),
    state: text('state', { enum: ROUND_STATES }).notNull(),
    /** Secure-aggregation phase while open. */
    phase: text('phase', { enum: ROUND_PHASES }).notNull().default('setup'),
    keyEpoch: integer('key_epoch').notNull().default(0),
    /** The model version (last closed round) this round trains from. */
    baseVersion: integer('base_version').notNull().default(0),
    threshold: integer('threshold').notNull().default(0),
    openedAtMs: integer('opened_at_ms').notNull(),
    /** Setup deadline: sites train and send their mask keys by then. */
    deadlineAtMs: integer('deadline_at_ms').notNull(),
    /** Deadline of the current later phase (upload, consistency, unmask). */
    phaseDeadlineAtMs: integer('phase_deadline_at_ms'),
    closedAtMs: integer('closed_at_ms'),
    participantsJson: text('participants_json').notNull(),
    /** U2: sites whose mask keys were distributed (fixed when the upload phase starts). */
    keySetJson: text('key_set_json'),
    /** U3: sites whose complete update is in the sum (fixed when the consistency phase starts). */
    survivorsJson: text('survivors_json'),
    /** U4: survivors that signed the survivor set and are asked to reveal shares. */
    revealersJson: text('revealers_json'),
    failReason: text('fail_reason'),
    totalSamples: integer('total_samples').notNull().default(0),
    /** Model parameter count and ciphertext count of this round's updates. */
    length: integer('length'),
    ciphertexts: integer('ciphertexts'),
    bytesIn: integer('bytes_in').notNull().default(0),
    /** Wall time spent adding ciphertexts, milliseconds. */
    aggregateMs: real('aggregate_ms').notNull().default(0),
    /**
     * SHA-256 (hex) and size of the published round.aggregate body (info frame and ciphertexts),
     * fixed when the round closes: the digest every site's aggregate.applied entry records. Kept
     * after the ciphertexts are pruned (provenance).
     */
    aggregateDigest: text('aggregate_digest'),
    aggregateBytes: integer('aggregate_bytes'),
    /** When the aggregate's ciphertexts were deleted (older than the catch-up window); null while kept. */
    aggregatePrunedAtMs: integer('aggregate_pruned_at_ms'),
  },
  (t) => [primaryKey({ columns: [t.studyId, t.round] })],
);

export const updates = sqliteTable(
  'updates',
  {
    studyId: text('study_id').notNull(),
    round: integer('round').notNull(),
    siteId: text('site_id').notNull(),
    state: text('state', { enum: UPDATE_STATES }).notNull(),
    count: integer('count').notNull(),
    nSamples: integer('n_samples').notNull(),
    length: integer('length').notNull(),
    received: integer('received').notNull().default(0),
    bytes: integer('bytes').notNull().default(0),
    startedAtMs: integer('started_at_ms').notNull(),
    completedAtMs: integer('completed_at_ms'),
  },
  (t) => [primaryKey({ columns: [t.studyId, t.round, t.siteId] })],
);

/**
 * Ciphertext chunks of the open round: the durable record of what each site uploaded, kept until
 * the round's sums are written (they are rebuilt from these after a restart, and an abandoned
 * upload's chunks are subtracted). The bytes are in `ct`, or (a coordinator with a data folder)
 * empty here and in a chunk log: `logLength` bytes at `logOffset` of `logFile` in
 * <dataDir>/chunks, written and synced by the aggregation worker before this row was committed.
 */
export const updateChunks = sqliteTable(
  'update_chunks',
  {
    studyId: text('study_id').notNull(),
    round: integer('round').notNull(),
    siteId: text('site_id').notNull(),
    index: integer('idx').notNull(),
    ct: blob('ct', { mode: 'buffer' }).notNull(),
    digest: text('digest').notNull(),
    logFile: text('log_file'),
    logOffset: integer('log_offset'),
    logLength: integer('log_length'),
  },
  (t) => [primaryKey({ columns: [t.studyId, t.round, t.siteId, t.index] })],
);

/** Running encrypted sum per ciphertext index; after close, the published aggregate. */
export const accumulators = sqliteTable(
  'accumulators',
  {
    studyId: text('study_id').notNull(),
    round: integer('round').notNull(),
    index: integer('idx').notNull(),
    ct: blob('ct', { mode: 'buffer' }).notNull(),
    contributions: integer('contributions').notNull(),
  },
  (t) => [primaryKey({ columns: [t.studyId, t.round, t.index] })],
);

/** A site's secure-aggregation set-up for a round: signed mask keys and its share boxes for the others. */
export const maskSetups = sqliteTable(
  'mask_setups',
  {
    studyId: text('study_id').notNull(),
    round: integer('round').notNull(),
    siteId: text('site_id').notNull(),
    sPk: text('s_pk').notNull(),
    bCommit: text('b_commit').notNull(),
    signature: text('signature').notNull(),
    /** [{ to, box }]: opaque crypto_box ciphertexts the coordinator relays. */
    boxesJson: text('boxes_json').notNull(),
    receivedAtMs: integer('received_at_ms').notNull(),
  },
  (t) => [primaryKey({ columns: [t.studyId, t.round, t.siteId] })],
);

/** A survivor's signature of (key set, survivors) — the consistency step before any share is revealed. */
export const maskSignatures = sqliteTable(
  'mask_signatures',
  {
    studyId: text('study_id').notNull(),
    round: integer('round').notNull(),
    siteId: text('site_id').notNull(),
    signature: text('signature').notNull(),
  },
  (t) => [primaryKey({ columns: [t.studyId, t.round, t.siteId] })],
);

/** Shares a revealer sent for unmasking (JSON of the mask.unmask body). */
export const maskReveals = sqliteTable(
  'mask_reveals',
  {
    studyId: text('study_id').notNull(),
    round: integer('round').notNull(),
    siteId: text('site_id').notNull(),
    bodyJson: text('body_json').notNull(),
  },
  (t) => [primaryKey({ columns: [t.studyId, t.round, t.siteId] })],
);

/** A site that refused a round's aggregate after decrypting it (e.g. out of bounds). */
export const aggregateRefusals = sqliteTable(
  'aggregate_refusals',
  {
    studyId: text('study_id').notNull(),
    round: integer('round').notNull(),
    siteId: text('site_id').notNull(),
    code: text('code').notNull(),
    detail: text('detail').notNull(),
    atMs: integer('at_ms').notNull(),
  },
  (t) => [primaryKey({ columns: [t.studyId, t.round, t.siteId] })],
);

/** A site that declined a round (round.decline): it is not a participant of that round. */
export const roundDeclines = sqliteTable(
  'round_declines',
  {
    studyId: text('study_id').notNull(),
    round: integer('round').notNull(),
    siteId: text('site_id').notNull(),
    code: text('code').notNull(),
    detail: text('detail').notNull(),
    atMs: integer('at_ms').notNull(),
  },
  (t) => [primaryKey({ columns: [t.studyId, t.round, t.siteId] })],
);

/** Per-site federated evaluation reported after applying a round's aggregate (task metrics in siteMetricValues). */
export const siteMetrics = sqliteTable(
  'site_metrics',
  {
    studyId: text('study_id').notNull(),
    round: integer('round').notNull(),
    siteId: text('site_id').notNull(),
    valPatients: integer('val_patients').notNull(),
    trainLoss: real('train_loss'),
    trainMs: real('train_ms'),
    encryptMs: real('encrypt_ms'),
    uploadBytes: integer('upload_bytes'),
    reportedAtMs: integer('reported_at_ms').notNull(),
  },
  (t) => [primaryKey({ columns: [t.studyId, t.round, t.siteId] })],
);

/** Task metrics of one report (name → value, null when suppressed), e.g. meanDice, macroAucOvr. */
export const siteMetricValues = sqliteTable(
  'site_metric_values',
  {
    studyId: text('study_id').notNull(),
    round: integer('round').notNull(),
    siteId: text('site_id').notNull(),
    name: text('name').notNull(),
    value: real('value'),
  },
  (t) => [primaryKey({ columns: [t.studyId, t.round, t.siteId, t.name] })],
);
