import Database from 'better-sqlite3';
import { drizzle } from 'drizzle-orm/better-sqlite3';
import { existsSync } from 'node:fs';
import { compareAuditLogs, readAuditLog, verifyAuditChain, type ChainVerdict, type CompareReport } from '@twinfed/shared/audit/index';
import { fromB64, initSodium } from '@twinfed/shared/crypto/index';

function openReadonly(path: string) {
  if (!existsSync(path)) throw new Error(`TWF_E_NOT_FOUND: no database at ${path}`);
  const sqlite = new Database(path, { readonly: true, fileMustExist: true });
  return { db: drizzle(sqlite), sqlite };
}

export interface VerifyOutcome extends ChainVerdict {
  path: string;
  ownerId: string | null;
  /** Where the verifying key came from: pinned on the command line, or the log's own record. */
  keySource: 'argument' | 'database';
}

/**
 * Verifies one audit log. Without --public-key the key recorded in the same
 * database is used, which proves integrity against accidental or partial
 * edits; against someone who can rewrite the whole file, pin the key.
 */
export async function verifyAuditDb(path: string, publicKeyB64?: string): Promise<VerifyOutcome> {
  await initSodium();
  const { db, sqlite } = openReadonly(path);
  try {
    const { owner, entries } = readAuditLog(db);
    const key = publicKeyB64 ?? owner?.ed25519PublicKey;
    if (!key) throw new Error(`TWF_E_AUDIT: ${path} records no log owner; pass --public-key`);
    return { ...verifyAuditChain(entries, fromB64(key)), path, ownerId: owner?.ownerId ?? null, keySource: publicKeyB64 ? 'argument' : 'database' };
  } finally {
    sqlite.close();
  }
}

export async function compareAuditDbs(siteDbPath: string, coordinatorDbPath: string): Promise<CompareReport> {
  await initSodium();
  const s = openReadonly(siteDbPath);
  const c = openReadonly(coordinatorDbPath);
  try {
    const site = readAuditLog(s.db);
    const coord = readAuditLog(c.db);
    if (!site.owner || !coord.owner) throw new Error('TWF_E_AUDIT: a log has no recorded owner');
    return compareAuditLogs(site.owner.ownerId, site.entries, coord.entries, coord.owner.ownerId);
  } finally {
    s.sqlite.close();
    c.sqlite.close();
  }
}

export function formatVerify(v: VerifyOutcome): string {
  return v.ok
    ? `OK  ${v.path}: ${v.checked} entries, chain intact, signatures valid (owner ${v.ownerId}, key from ${v.keySource})`
    : `BROKEN  ${v.path}: first broken link at entry ${v.firstBroken!.id}: ${v.firstBroken!.reason} (${v.checked} entries verified before it)`;
}

export function formatCompare(r: CompareReport): string {
  const lines = [`${r.ok ? 'OK' : 'MISMATCH'}  site ${r.siteId}: ${r.matched} site->coordinator messages matched, ${r.matchedDownstream} coordinator->site matched`];
  if (r.sentNotReceived.length) lines.push(`  ${r.sentNotReceived.length} sent by the site but not logged by the coordinator (lost in transit?): seq ${r.sentNotReceived.slice(0, 10).map((x) => x.seq).join(', ')}`);
  if (r.receivedNotSent.length) lines.push(`  ${r.receivedNotSent.length} logged by the coordinator but never sent by the site: seq ${r.receivedNotSent.slice(0, 10).map((x) => x.seq).join(', ')}`);
  if (r.digestMismatch.length) lines.push(`  ${r.digestMismatch.length} with different payload digests: seq ${r.digestMismatch.slice(0, 10).map((x) => x.seq).join(', ')}`);
  if (r.downstreamMismatch.length) lines.push(`  ${r.downstreamMismatch.length} coordinator->site mismatches: ${r.downstreamMismatch.slice(0, 5).map((x) => `seq ${x.seq} ${x.reason}`).join('; ')}`);
  return lines.join('\n');
}
