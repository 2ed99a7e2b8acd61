/**
 * Test support, not exported from index.ts: a site and a coordinator
 * exchanging messages, each keeping its signed audit log (AuditLog) in its
 * own SQLite file with real Ed25519 keys. The coordinator signs a receipt for
 * every message it accepts and checkpoints of its chain head, and the site
 * keeps them in the tables the site's migrations create. Tests then tamper
 * with the files the way an attacker with file access (and its own key) could.
 */
import Database, { type SqliteDatabase } from '../db/driver.js';
import { drizzle } from 'drizzle-orm/better-sqlite3';
import { copyFileSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { sha256Hex } from '@twinfed/protocols';
import { generateIdentity, saveIdentity, type Identity } from '../crypto/identity.js';
import { initSodium, toB64 } from '../crypto/sodium.js';
import { signStatement } from '../crypto/statement.js';
import { GENESIS_HASH, signEntry, type AuditEntry, type AuditFields } from './chain.js';
import type { CompareInput } from './compare.js';
import { AuditLog, readAuditLog, readSiteStatements, type AuditInput } from './log.js';
import { CHECKPOINT_KIND, RECEIPT_KIND, checkpointFields, receiptFields, type Checkpoint, type Receipt } from './receipts.js';

/** The audit tables as both ends' migrations create them (0000_init, 0001_audit_append_only). */
export const AUDIT_TABLES_DDL = `
create table audit_log (id integer primary key not null, ts_ms integer not null, actor text not null, action text not null, peer text, msg_type text, seq integer, study_id text, round integer, digest text, size_bytes integer, detail text, sig text not null, prev_hash text not null, hash text not null);
create table audit_owner (owner_id text primary key not null, ed25519_public_key text not null);
create trigger audit_log_no_update before update on audit_log begin select raise(abort, 'audit_log is append-only'); end;
create trigger audit_log_no_delete before delete on audit_log begin select raise(abort, 'audit_log is append-only'); end;`;

/** The site's tables for the coordinator's receipts and checkpoints (exactly the site migration's DDL). */
export const SITE_STATEMENT_TABLES_DDL = `
create table receipts (seq integer primary key, msg_type text not null, study_id text, round integer, digest text not null, entry_id integer not null, entry_hash text not null, coordinator_id text not null, signature text not null, received_at_ms integer not null);
create table audit_checkpoints (entry_id integer primary key, entry_hash text not null, coordinator_id text not null, ts_ms integer not null, signature text not null, received_at_ms integer not null);`;

interface Party {
  id: string;
  identity: Identity;
  /** The party's folder: site.db (with site.json and identity.json) or coordinator.db. */
  dir: string;
  path: string;
  sqlite: SqliteDatabase;
  audit: AuditLog;
}

function openParty(dir: string, file: string, id: string, identity: Identity, ddl: string | null): Party {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, file);
  const sqlite = new Database(path);
  if (ddl !== null) sqlite.exec(ddl);
  return { id, identity, dir, path, sqlite, audit: new AuditLog(drizzle(sqlite), id, identity.ed25519SecretKey, identity.ed25519PublicKey) };
}

export interface SiteSendOptions {
  studyId?: string | null;
  round?: number | null;
  /**
   * accepted (default): the coordinator logs msg.received and returns a receipt;
   * rejected: the coordinator logs msg.rejected (no receipt);
   * ack-lost: the coordinator accepts it, the acknowledgement (and receipt) never arrives, the site logs msg.unacked;
   * lost: it never reaches the coordinator, the site logs msg.unacked;
   * lost-silently: it never reaches the coordinator and the site logs nothing more.
   */
  outcome?: 'accepted' | 'rejected' | 'ack-lost' | 'lost' | 'lost-silently';
}

/** One site, one coordinator, real files and keys; see the module comment. */
export class AuditExchange {
  private siteSeq = 0;
  private coordinatorSeq = 0;
  /** Highest site seq the coordinator has seen (what it tells a reconnecting site). */
  private lastSeenSiteSeq = 0;
  private clock = Date.UTC(2026, 0, 5, 9);

  private constructor(
    readonly site: Party,
    readonly coordinator: Party,
    private readonly statementTables: boolean,
  ) {}

  /** Creates `dir/site/site.db` (with site.json and identity.json beside it) and `dir/coordinator/coordinator.db`. */
  /** `statementTables: false`: a site database from before receipts and checkpoints (the coordinator signs them, the site keeps none). */
  static async create(dir: string, opts: { siteId?: string; coordinatorId?: string; statementTables?: boolean } = {}): Promise<AuditExchange> {
    await initSodium();
    const siteId = opts.siteId ?? 'site-a';
    const coordinatorId = opts.coordinatorId ?? 'coordinator-1';
    const siteIdentity = generateIdentity();
    const coordinatorIdentity = generateIdentity();
    const site = openParty(join(dir, 'site'), 'site.db', siteId, siteIdentity, AUDIT_TABLES_DDL + (opts.statementTables === false ? '' : SITE_STATEMENT_TABLES_DDL));
    const coordinator = openParty(join(dir, 'coordinator'), 'coordinator.db', coordinatorId, coordinatorIdentity, AUDIT_TABLES_DDL);
    saveIdentity(join(site.dir, 'identity.json'), siteIdentity);
    writeFileSync(
      join(site.dir, 'site.json'),
      JSON.stringify({ coordinatorUrl: 'http://127.0.0.1:1', siteId, siteName: 'Test Hospital', coordinatorId, coordinatorPublicKey: toB64(coordinatorIdentity.ed25519PublicKey) }, null, 2) + '\n',
    );
    return new AuditExchange(site, coordinator, opts.statementTables !== false);
  }

  private tick(): number {
    return (this.clock += 1000);
  }
  private log(p: Party, input: AuditInput): AuditEntry {
    return p.audit.append({ tsMs: this.tick(), ...input });
  }

  /** The site sends one message (seq from its counter); what happens next is `opts.outcome`. Returns the seq. */
  siteSends(msgType: string, opts: SiteSendOptions = {}): number {
    const seq = ++this.siteSeq;
    const m = { msgType, seq, studyId: opts.studyId ?? null, round: opts.round ?? null, digest: sha256Hex(`${this.site.id} ${seq} ${msgType} ${this.clock}`), sizeBytes: 100 + seq };
    const outcome = opts.outcome ?? 'accepted';
    this.log(this.site, { actor: this.site.id, action: 'msg.sent', peer: this.coordinator.id, ...m });
    if (outcome === 'lost' || outcome === 'lost-silently') {
      if (outcome === 'lost') this.log(this.site, { actor: this.site.id, action: 'msg.unacked', peer: this.coordinator.id, msgType, seq, detail: 'TWF_E_TIMEOUT' });
      return seq;
    }
    this.lastSeenSiteSeq = seq;
    if (outcome === 'rejected') {
      this.log(this.coordinator, { actor: this.site.id, action: 'msg.rejected', ...m, detail: 'TWF_E_WRONG_ROUND: round 9 is not open' });
      return seq;
    }
    const e = this.log(this.coordinator, { actor: this.site.id, action: 'msg.received', peer: this.coordinator.id, ...m });
    if (outcome === 'ack-lost') {
      this.log(this.site, { actor: this.site.id, action: 'msg.unacked', peer: this.coordinator.id, msgType, seq, detail: 'TWF_E_DISCONNECTED' });
      return seq;
    }
    const unsigned = { coordinatorId: this.coordinator.id, siteId: this.site.id, seq, msgType, studyId: m.studyId, round: m.round, digest: m.digest, entryId: e.id, entryHash: e.hash };
    this.storeReceipt({ ...unsigned, signature: signStatement(RECEIPT_KIND, receiptFields(unsigned), this.coordinator.identity.ed25519SecretKey) });
    return seq;
  }

  /** Stores a receipt at the site as the site node does (tests also use it to plant forged ones). */
  storeReceipt(r: Receipt): void {
    if (!this.statementTables) return; // a site from before receipts
    this.site.sqlite
      .prepare('insert into receipts (seq, msg_type, study_id, round, digest, entry_id, entry_hash, coordinator_id, signature, received_at_ms) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)')
      .run(r.seq, r.msgType, r.studyId, r.round, r.digest, r.entryId, r.entryHash, r.coordinatorId, r.signature, this.clock);
  }

  /** The coordinator sends one message to the site; `delivered: false` when the site is offline. Returns the coordinator's seq. */
  coordinatorSends(msgType: string, opts: { studyId?: string | null; round?: number | null; delivered?: boolean } = {}): number {
    const seq = ++this.coordinatorSeq;
    const m = { msgType, seq, studyId: opts.studyId ?? null, round: opts.round ?? null, digest: sha256Hex(`${this.coordinator.id} ${seq} ${msgType}`), sizeBytes: 200 + seq };
    this.log(this.coordinator, { actor: this.coordinator.id, action: 'msg.sent', peer: this.site.id, ...m });
    if (opts.delivered !== false) this.log(this.site, { actor: this.coordinator.id, action: 'msg.received', peer: this.site.id, ...m });
    return seq;
  }

  /** Something the coordinator logs that does not concern this site (another site's message, a round closing). */
  coordinatorLogs(action: string, detail: string | null = null): void {
    this.log(this.coordinator, { actor: this.coordinator.id, action, detail });
  }

  /** The coordinator signs a checkpoint of its chain head and sends it in a message; the site keeps it. */
  checkpoint(round: number | null = null): Checkpoint {
    const head = this.coordinator.audit.entries().at(-1);
    if (!head) throw new Error('empty coordinator log');
    const unsigned = { coordinatorId: this.coordinator.id, entryId: head.id, entryHash: head.hash, tsMs: this.tick() };
    const c = { ...unsigned, signature: signStatement(CHECKPOINT_KIND, checkpointFields(unsigned), this.coordinator.identity.ed25519SecretKey) };
    this.coordinatorSends('audit.checkpoint', { round });
    if (this.statementTables)
      this.site.sqlite
        .prepare('insert into audit_checkpoints (entry_id, entry_hash, coordinator_id, ts_ms, signature, received_at_ms) values (?, ?, ?, ?, ?, ?)')
        .run(c.entryId, c.entryHash, c.coordinatorId, c.tsMs, c.signature, this.clock);
    return c;
  }

  /** Copies site.db to `path` (a backup) and returns what restoring it needs. */
  backupSite(path: string): { path: string; siteSeq: number } {
    this.site.sqlite.exec(`vacuum into '${path.replaceAll("'", "''")}'`);
    return { path, siteSeq: this.siteSeq };
  }

  /**
   * Restores site.db from a backup; at the next connect the site learns the
   * last seq the coordinator accepted from it and logs seq.resync from its
   * restored counter to that.
   */
  restoreSite(backup: { path: string; siteSeq: number }): void {
    this.site.sqlite.close();
    rmSync(`${this.site.path}-journal`, { force: true });
    copyFileSync(backup.path, this.site.path);
    this.reopenSite();
    this.siteSeq = backup.siteSeq;
    if (this.lastSeenSiteSeq > this.siteSeq) {
      this.log(this.site, { actor: this.site.id, action: 'seq.resync', peer: this.coordinator.id, detail: JSON.stringify({ from: this.siteSeq, to: this.lastSeenSiteSeq }) });
      this.siteSeq = this.lastSeenSiteSeq;
    }
  }

  private reopenSite(): void {
    const s = this.site;
    s.sqlite = new Database(s.path);
    s.audit = new AuditLog(drizzle(s.sqlite), s.id, s.identity.ed25519SecretKey, s.identity.ed25519PublicKey);
  }

  /** What `compareAuditLogs` gets, read back from the two files, with the pinned keys. */
  input(): CompareInput {
    const statements = readSiteStatements(drizzle(this.site.sqlite), this.site.id);
    return {
      siteId: this.site.id,
      coordinatorId: this.coordinator.id,
      site: readAuditLog(drizzle(this.site.sqlite)).entries,
      coordinator: readAuditLog(drizzle(this.coordinator.sqlite)).entries,
      siteKey: this.site.identity.ed25519PublicKey,
      coordinatorKey: this.coordinator.identity.ed25519PublicKey,
      receipts: statements.receipts ?? [],
      checkpoints: statements.checkpoints ?? [],
    };
  }

  close(): void {
    this.site.sqlite.close();
    this.coordinator.sqlite.close();
  }
}

// --------------------------------------------------------- what an attacker with file access can do

/** Deletes the last `n` entries of a log (dropping the append-only trigger first). */
export function dropTail(sqlite: SqliteDatabase, n: number): void {
  sqlite.exec('drop trigger if exists audit_log_no_delete');
  sqlite.prepare('delete from audit_log where id > (select max(id) from audit_log) - ?').run(n);
}

/** Edits one entry in place without re-signing (someone with file access but not the key). */
export function editEntry(sqlite: SqliteDatabase, id: number, detail: string): void {
  sqlite.exec('drop trigger if exists audit_log_no_update');
  sqlite.prepare('update audit_log set detail = ? where id = ?').run(detail, id);
}

/**
 * Rewrites a whole log and re-signs it with the owner's key, as the owner
 * itself could: `edit` returns the entries to keep (fields may be changed);
 * ids are renumbered and the chain rebuilt, so the log verifies again.
 */
export function rewriteAndResign(sqlite: SqliteDatabase, ownerSecretKey: Uint8Array, edit: (entries: AuditEntry[]) => AuditEntry[]): void {
  const kept = edit(readAuditLog(drizzle(sqlite)).entries);
  const rebuilt: AuditEntry[] = [];
  kept.forEach((e, i) => {
    const fields: AuditFields = {
      id: i + 1,
      tsMs: e.tsMs,
      actor: e.actor,
      action: e.action,
      peer: e.peer,
      msgType: e.msgType,
      seq: e.seq,
      studyId: e.studyId,
      round: e.round,
      digest: e.digest,
      sizeBytes: e.sizeBytes,
      detail: e.detail,
    };
    rebuilt.push(signEntry(fields, rebuilt[i - 1]?.hash ?? GENESIS_HASH, ownerSecretKey));
  });
  sqlite.exec('drop trigger if exists audit_log_no_delete');
  const insert = sqlite.prepare(
    'insert into audit_log (id, ts_ms, actor, action, peer, msg_type, seq, study_id, round, digest, size_bytes, detail, sig, prev_hash, hash) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
  );
  sqlite.transaction(() => {
    sqlite.exec('delete from audit_log');
    for (const e of rebuilt) insert.run(e.id, e.tsMs, e.actor, e.action, e.peer, e.msgType, e.seq, e.studyId, e.round, e.digest, e.sizeBytes, e.detail, e.sig, e.prevHash, e.hash);
  })();
}
