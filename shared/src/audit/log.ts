import { asc, desc, gt, sql } from 'drizzle-orm';
import type { BetterSQLite3Database } from 'drizzle-orm/better-sqlite3';
import { toB64 } from '../crypto/sodium.js';
import { GENESIS_HASH, signEntry, type AuditEntry, type AuditFields } from './chain.js';
import type { Checkpoint, Receipt } from './receipts.js';
import { auditLog, auditOwner } from './table.js';

export type AuditInput = Omit<AuditFields, 'id' | 'tsMs' | 'peer' | 'msgType' | 'seq' | 'studyId' | 'round' | 'digest' | 'sizeBytes' | 'detail'> &
  Partial<Omit<AuditFields, 'id' | 'actor' | 'action'>>;

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyDb = BetterSQLite3Database<any>;

/**
 * Where an AuditLog keeps its rows: a Twinfed SQLite database (sqliteAuditBackend), or the
 * coordinator's PostgreSQL store (coordinator/src/store/postgres.ts). Synchronous; `transaction`
 * nests inside one the caller has open on the same connection (the entry commits with the state
 * change it records).
 */
export interface AuditBackend {
  owner(): { ownerId: string; ed25519PublicKey: string } | undefined;
  insertOwner(row: { ownerId: string; ed25519PublicKey: string }): void;
  transaction<T>(fn: () => T): T;
  /** The entry with the highest id. */
  last(): AuditEntry | undefined;
  /** Id and hash of the entry with the highest id (what an append links to; cheaper than last()). */
  lastLink?(): { id: number; hash: string } | undefined;
  insert(entry: AuditEntry): void;
  /** Entries with id > afterId, by id, at most `limit`. */
  entries(afterId: number, limit: number): AuditEntry[];
}

type Statement = { get(...p: unknown[]): unknown; run(...p: unknown[]): unknown };
type Client = { prepare(sql: string): Statement; transaction<F extends (...a: never[]) => unknown>(fn: F): F };

/**
 * The audit tables (table.ts) of a drizzle SQLite database; better-sqlite3 nests transactions as
 * savepoints. An append's two statements are prepared once on the connection: the coordinator
 * appends one entry per chunk it accepts (244k in a round of 100 sites x 10M parameters), and
 * building them through drizzle each time cost ~0.1 ms.
 */
export function sqliteAuditBackend(db: AnyDb): AuditBackend {
  const client = (db as unknown as { $client?: Client }).$client;
  const fast = client
    ? {
        last: client.prepare('select id, hash from audit_log order by id desc limit 1'),
        insert: client.prepare(
          'insert into audit_log (id, ts_ms, actor, action, peer, msg_type, seq, study_id, round, digest, size_bytes, detail, sig, prev_hash, hash) values (@id, @tsMs, @actor, @action, @peer, @msgType, @seq, @studyId, @round, @digest, @sizeBytes, @detail, @sig, @prevHash, @hash)',
        ),
      }
    : null;
  return {
    owner: () => db.select().from(auditOwner).get(),
    insertOwner: (row) => void db.insert(auditOwner).values(row).run(),
    transaction: client ? (fn) => client.transaction(() => fn())() : (fn) => db.transaction(() => fn()),
    last: () => db.select().from(auditLog).orderBy(desc(auditLog.id)).limit(1).get(),
    lastLink: fast ? () => fast.last.get() as { id: number; hash: string } | undefined : undefined,
    insert: fast ? (entry) => void fast.insert.run(entry) : (entry) => void db.insert(auditLog).values(entry).run(),
    entries: (afterId, limit) => db.select().from(auditLog).where(gt(auditLog.id, afterId)).orderBy(asc(auditLog.id)).limit(limit).all(),
  };
}

/** The hash-chained audit log in a package's database (SQLite, or an AuditBackend), signed by its owner. */
export class AuditLog {
  private readonly db: AuditBackend;

  constructor(
    db: AnyDb | AuditBackend,
    readonly ownerId: string,
    private readonly ed25519SecretKey: Uint8Array,
    ed25519PublicKey: Uint8Array,
  ) {
    this.db = 'insertOwner' in db ? db : sqliteAuditBackend(db);
    const pk = toB64(ed25519PublicKey);
    const row = this.db.owner();
    if (!row) this.db.insertOwner({ ownerId, ed25519PublicKey: pk });
    else if (row.ed25519PublicKey !== pk) throw new Error(`audit log belongs to ${row.ownerId} with another key; refusing to append`);
  }

  /** Appends one entry atomically (the chain link is read and written in one transaction). */
  append(input: AuditInput): AuditEntry {
    return this.db.transaction(() => {
      const entry = this.link(input, this.headLink());
      this.db.insert(entry);
      return entry;
    });
  }

  /** The next entry after `last`, linked and signed. */
  private link(input: AuditInput, last: { id: number; hash: string } | undefined): AuditEntry {
    const fields: AuditFields = {
      id: (last?.id ?? 0) + 1,
      tsMs: input.tsMs ?? Date.now(),
      actor: input.actor,
      action: input.action,
      peer: input.peer ?? null,
      msgType: input.msgType ?? null,
      seq: input.seq ?? null,
      studyId: input.studyId ?? null,
      round: input.round ?? null,
      digest: input.digest ?? null,
      sizeBytes: input.sizeBytes ?? null,
      detail: input.detail ?? null,
    };
    return signEntry(fields, last?.hash ?? GENESIS_HASH, this.ed25519SecretKey);
  }

  /** Id and hash of the chain head (cheaper than head()), or undefined for an empty log. */
  headLink(): { id: number; hash: string } | undefined {
    if (this.db.lastLink) return this.db.lastLink();
    const h = this.head();
    return h && { id: h.id, hash: h.hash };
  }

  /** The last entry (the chain head), or undefined for an empty log. */
  head(): AuditEntry | undefined {
    return this.db.last();
  }

  entries(afterId = 0, limit = 1_000_000): AuditEntry[] {
    return this.db.entries(afterId, limit);
  }
}

/** Reads a whole audit log and its recorded owner from any Twinfed database. */
export function readAuditLog(db: AnyDb): { owner: { ownerId: string; ed25519PublicKey: string } | null; entries: AuditEntry[] } {
  const owner = db.select().from(auditOwner).get() ?? null;
  return { owner, entries: db.select().from(auditLog).orderBy(asc(auditLog.id)).all() };
}

function hasTable(db: AnyDb, name: string): boolean {
  return db.get<{ n: number }>(sql`select count(*) as n from sqlite_master where type = 'table' and name = ${name}`)!.n > 0;
}

/**
 * Reads the coordinator's receipts and checkpoints a site keeps (tables
 * `receipts` and `audit_checkpoints` of site.db); null where the table is
 * absent (a database from before receipts). A receipt row has no site id: it
 * is the site's own, `siteId`.
 */
export function readSiteStatements(db: AnyDb, siteId: string): { receipts: Receipt[] | null; checkpoints: Checkpoint[] | null } {
  type ReceiptRow = { seq: number; msg_type: string; study_id: string | null; round: number | null; digest: string; entry_id: number; entry_hash: string; coordinator_id: string; signature: string };
  type CheckpointRow = { entry_id: number; entry_hash: string; coordinator_id: string; ts_ms: number; signature: string };
  const receipts = hasTable(db, 'receipts')
    ? db.all<ReceiptRow>(sql`select seq, msg_type, study_id, round, digest, entry_id, entry_hash, coordinator_id, signature from receipts order by seq`).map((x): Receipt => ({
        coordinatorId: x.coordinator_id,
        siteId,
        seq: x.seq,
        msgType: x.msg_type,
        studyId: x.study_id,
        round: x.round,
        digest: x.digest,
        entryId: x.entry_id,
        entryHash: x.entry_hash,
        signature: x.signature,
      }))
    : null;
  const checkpoints = hasTable(db, 'audit_checkpoints')
    ? db.all<CheckpointRow>(sql`select entry_id, entry_hash, coordinator_id, ts_ms, signature from audit_checkpoints order by entry_id`).map((x): Checkpoint => ({
        coordinatorId: x.coordinator_id,
        entryId: x.entry_id,
        entryHash: x.entry_hash,
        tsMs: x.ts_ms,
        signature: x.signature,
      }))
    : null;
  return { receipts, checkpoints };
}
