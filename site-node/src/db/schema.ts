import { blob, integer, primaryKey, real, sqliteTable, text } from 'drizzle-orm/sqlite-core';
export { auditLog, auditOwner } from '@twinfed/shared/audit/table';

/** Key/value state of the site (outgoing sequence number, last coordinator sequence seen). */
export const meta = sqliteTable('meta', {
  key: text('key').primaryKey(),
  value: text('value').notNull(),
});

/** Studies announced by the coordinator, with the manifest exactly as received. */
export const studies = sqliteTable('studies', {
  studyId: text('study_id').primaryKey(),
  manifestJson: text('manifest_json').notNull(),
  manifestHash: text('manifest_hash').notNull(),
  /** pending (awaiting the officer) | approved | joined | completed */
  status: text('status').notNull(),
  announcedAtMs: integer('announced_at_ms').notNull(),
  /** Manifest hash a decline was last sent for (one decline per manifest). */
  declinedHash: text('declined_hash'),
});

/** The privacy officer's approvals, bound to a manifest hash. */
export const approvals = sqliteTable('approvals', {
  studyId: text('study_id').notNull(),
  manifestHash: text('manifest_hash').notNull(),
  officer: text('officer').notNull(),
  approvedAtMs: integer('approved_at_ms').notNull(),
  note: text('note'),
}, (t) => [primaryKey({ columns: [t.studyId, t.manifestHash] })]);

/** The study's SEAL secret key (never leaves the site except sealed to another approved site). */
export const studyKeys = sqliteTable('study_keys', {
  studyId: text('study_id').primaryKey(),
  secretKey: blob('secret_key', { mode: 'buffer' }).notNull(),
  dealerSiteId: text('dealer_site_id').notNull(),
  heParamsDigest: text('he_params_digest').notNull(),
  receivedAtMs: integer('received_at_ms').notNull(),
});

/** Global model after applying `version` aggregates (version 0 = seeded initialisation). */
export const models = sqliteTable('models', {
  studyId: text('study_id').notNull(),
  version: integer('version').notNull(),
  weights: blob('weights', { mode: 'buffer' }).notNull(),
  digest: text('digest').notNull(),
  createdAtMs: integer('created_at_ms').notNull(),
  meanDice: real('mean_dice'),
}, (t) => [primaryKey({ columns: [t.studyId, t.version] })]);

/** This site's encrypted update per round, kept so an interrupted upload resumes with the same bytes. */
export const roundWork = sqliteTable('round_work', {
  studyId: text('study_id').notNull(),
  round: integer('round').notNull(),
  /** Framed ciphertexts (protocols packFrames). */
  ciphertexts: blob('ciphertexts', { mode: 'buffer' }).notNull(),
  nSamples: integer('n_samples').notNull(),
  length: integer('length').notNull(),
  trainLoss: real('train_loss'),
  trainMs: real('train_ms'),
  encryptMs: real('encrypt_ms'),
  uploadBytes: integer('upload_bytes').notNull(),
  uploadedAtMs: integer('uploaded_at_ms'),
}, (t) => [primaryKey({ columns: [t.studyId, t.round] })]);

/** Imaging of local patients, as fixed-size training slices (never leaves the site). */
export const patients = sqliteTable('patients', {
  patientId: text('patient_id').primaryKey(),
  /** train | val: split by patient, so no patient is in both. */
  split: text('split').notNull(),
  modality: text('modality').notNull(),
  sourceDigest: text('source_digest').notNull(),
  nSlices: integer('n_slices').notNull(),
  /** Slice edge in pixels. */
  size: integer('size').notNull(),
  /** Float32 normalised intensities, n*size*size. */
  images: blob('images', { mode: 'buffer' }).notNull(),
  /** Uint8 labels, n*size*size. */
  masks: blob('masks', { mode: 'buffer' }).notNull(),
  pixelSpacingMm: real('pixel_spacing_mm').notNull(),
  sliceThicknessMm: real('slice_thickness_mm').notNull(),
  importedAtMs: integer('imported_at_ms').notNull(),
});
