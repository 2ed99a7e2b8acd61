import Database from '@twinfed/shared/db/driver';
import { drizzle } from 'drizzle-orm/better-sqlite3';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { readAuditLog, type AuditEntry } from '@twinfed/shared/audit/index';
import { CliError } from '../errors.js';
import { printable } from './text.js';

/** The audit database of a data folder: site.db of a site, coordinator.db of a coordinator; or the .db file given. */
export function auditDbOf(dataDir: string): string {
  if (existsSync(dataDir) && statSync(dataDir).isFile()) return dataDir;
  const found = ['site.db', 'coordinator.db'].map((f) => join(dataDir, f)).filter((p) => existsSync(p));
  if (found.length === 1) return found[0]!;
  if (found.length > 1) throw new CliError('TWF_E_AUDIT', `${dataDir} holds both site.db and coordinator.db; pass the database file itself`);
  throw new CliError('TWF_E_AUDIT', `${dataDir} holds no site.db or coordinator.db: give a site's or the coordinator's --data-dir`);
}

export interface AuditFilter {
  /** Action names, or families: `study` (or `study.`) matches study.created, study.started... */
  types?: string[];
  studyId?: string;
  /** Inclusive bounds, ms since the epoch. */
  sinceMs?: number;
  untilMs?: number;
  /** Case-insensitive text in actor, action, peer, message type, digest or detail. */
  grep?: string;
  /** The newest N matching entries (in log order). */
  limit?: number;
}

/** Parses an ISO 8601 time (a date alone is midnight UTC). */
export function isoMs(v: string, what: string): number {
  const ms = Date.parse(v);
  if (!Number.isFinite(ms)) throw new CliError('TWF_E_BAD_OPTION', `${what} ${JSON.stringify(v)} is not an ISO 8601 time (e.g. 2025-03-01 or 2025-03-01T12:00:00Z)`);
  return ms;
}

export function matches(e: AuditEntry, f: AuditFilter): boolean {
  if (f.types?.length && !f.types.some((t) => e.action === t || e.action.startsWith(t.endsWith('.') ? t : `${t}.`))) return false;
  if (f.studyId !== undefined && e.studyId !== f.studyId) return false;
  if (f.sinceMs !== undefined && e.tsMs < f.sinceMs) return false;
  if (f.untilMs !== undefined && e.tsMs > f.untilMs) return false;
  if (f.grep) {
    const needle = f.grep.toLowerCase();
    if (![e.actor, e.action, e.peer, e.msgType, e.digest, e.detail].some((x) => x?.toLowerCase().includes(needle))) return false;
  }
  return true;
}

export interface AuditShow {
  db: string;
  ownerId: string | null;
  /** Entries in the log, and matching the filter (before --limit). */
  total: number;
  matched: number;
  entries: AuditEntry[];
}

/** The entries of an audit log that pass a filter. Reads only; it does not verify the chain (twinfed audit verify does). */
export function showAudit(dataDir: string, f: AuditFilter): AuditShow {
  const path = auditDbOf(dataDir);
  const sqlite = new Database(path, { readonly: true, fileMustExist: true });
  try {
    const { owner, entries } = readAuditLog(drizzle(sqlite));
    const hit = entries.filter((e) => matches(e, f));
    return { db: path, ownerId: owner?.ownerId ?? null, total: entries.length, matched: hit.length, entries: f.limit !== undefined ? hit.slice(Math.max(0, hit.length - f.limit)) : hit };
  } finally {
    sqlite.close();
  }
}

export function formatAuditShow(r: AuditShow): string {
  const lines = r.entries.map((e) => {
    const where = [e.studyId, e.round !== null ? `r${e.round}` : null].filter(Boolean).join(' ');
    const msg = e.seq !== null || e.msgType ? `${e.peer ? `${e.peer} ` : ''}${e.msgType ?? ''}#${e.seq ?? '-'}` : (e.peer ?? '');
    return printable(`${String(e.id).padStart(5)}  ${new Date(e.tsMs).toISOString()}  ${e.actor}  ${e.action}${where ? `  [${where}]` : ''}${msg ? `  ${msg}` : ''}${e.detail ? `  ${e.detail}` : ''}`);
  });
  return [...lines, `${r.entries.length} shown of ${r.matched} matching, ${r.total} in ${r.db} (owner ${r.ownerId ?? 'unknown'}); not verified here: twinfed audit verify ${r.db}`].join('\n');
}
