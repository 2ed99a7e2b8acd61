import { integer, sqliteTable, text } from 'drizzle-orm/sqlite-core';

/**
 * Append-only, hash-chained audit log; the same table at the coordinator and
 * at every site. Each row's `hash` covers all its fields and the previous
 * row's hash; `sig` is the log owner's Ed25519 signature of `hash`.
 */
export const auditLog = sqliteTable('audit_log', {
  id: integer('id').primaryKey(),
  tsMs: integer('ts_ms').notNull(),
  /** Who acted: the log owner, or the remote sender of a received message. */
  actor: text('actor').notNull(),
  /** e.g. msg.sent, msg.received, msg.rejected, study.approved, round.closed. */
  action: text('action').notNull(),
  /** The other party of a message exchange (recipient or sender). */
  peer: text('peer'),
  msgType: text('msg_type'),
  seq: integer('seq'),
  studyId: text('study_id'),
  round: integer('round'),
  /** SHA-256 hex of the payload concerned. */
  digest: text('digest'),
  sizeBytes: integer('size_bytes'),
  detail: text('detail'),
  sig: text('sig').notNull(),
  prevHash: text('prev_hash').notNull(),
  hash: text('hash').notNull(),
});

/** Who owns (signs) this log; verification needs this key from a trusted source. */
export const auditOwner = sqliteTable('audit_owner', {
  ownerId: text('owner_id').primaryKey(),
  ed25519PublicKey: text('ed25519_public_key').notNull(),
});
