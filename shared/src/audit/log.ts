import { asc, desc, gt } from 'drizzle-orm';
import type { BetterSQLite3Database } from 'drizzle-orm/better-sqlite3';
import { utf8 } from '@twinfed/protocols';
import { sign } from '../crypto/identity.js';
import { toB64 } from '../crypto/sodium.js';
import { GENESIS_HASH, entryHash, type AuditEntry, type AuditFields } from './chain.js';
import { auditLog, auditOwner } from './table.js';

export type AuditInput = Omit<AuditFields, 'id' | 'tsMs' | 'peer' | 'msgType' | 'seq' | 'studyId' | 'round' | 'digest' | 'sizeBytes' | 'detail'> &
  Partial<Omit<AuditFields, 'id' | 'actor' | 'action'>>;

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyDb = BetterSQLite3Database<any>;

/** The hash-chained audit log in a package's SQLite database, signed by its owner. */
export class AuditLog {
  constructor(
    private readonly db: AnyDb,
    readonly ownerId: string,
    private readonly ed25519SecretKey: Uint8Array,
    ed25519PublicKey: Uint8Array,
  ) {
    const pk = toB64(ed25519PublicKey);
    const row = db.select().from(auditOwner).get();
    if (!row) db.insert(auditOwner).values({ ownerId, ed25519PublicKey: pk }).run();
    else if (row.ed25519PublicKey !== pk) throw new Error(`audit log belongs to ${row.ownerId} with another key; refusing to append`);
  }

  /** Appends one entry atomically (the chain link is read and written in one transaction). */
  append(input: AuditInput): AuditEntry {
    return this.db.transaction((tx) => {
      const last = tx.select({ id: auditLog.id, hash: auditLog.hash }).from(auditLog).orderBy(desc(auditLog.id)).limit(1).get();
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
      const prevHash = last?.hash ?? GENESIS_HASH;
      const hash = entryHash(fields, prevHash);
      const entry: AuditEntry = { ...fields, prevHash, hash, sig: toB64(sign(utf8(hash), this.ed25519SecretKey)) };
      tx.insert(auditLog).values(entry).run();
      return entry;
    });
  }

  entries(afterId = 0, limit = 1_000_000): AuditEntry[] {
    return this.db.select().from(auditLog).where(gt(auditLog.id, afterId)).orderBy(asc(auditLog.id)).limit(limit).all();
  }
}

/** Reads a whole audit log and its recorded owner from any Twinfed database. */
export function readAuditLog(db: AnyDb): { owner: { ownerId: string; ed25519PublicKey: string } | null; entries: AuditEntry[] } {
  const owner = db.select().from(auditOwner).get() ?? null;
  return { owner, entries: db.select().from(auditLog).orderBy(asc(auditLog.id)).all() };
}
