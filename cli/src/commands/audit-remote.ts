import Database from '@twinfed/shared/db/driver';
import { drizzle } from 'drizzle-orm/better-sqlite3';
import { existsSync } from 'node:fs';
import { CHECKPOINT_KIND, RECEIPT_KIND, checkpointFields, readAuditLog, readSiteStatements, receiptFields, verifyAuditChain, type AuditEntry, type ChainVerdict } from '@twinfed/shared/audit/index';
import { initSodium, verifyStatement } from '@twinfed/shared/crypto/index';
import { CliError } from '../errors.js';
import type { LeadClient } from '../http.js';
import { pinnedKeys, type CompareKeys, type CoordinatorLog } from './audit.js';

/** Environment variable of the auditor's API token (a --auditor-token flag wins). */
export const AUDITOR_TOKEN_ENV = 'TWINFED_AUDITOR_TOKEN';
const PAGE = 100_000;

/**
 * The coordinator's whole audit log through its API (GET /api/audit/owner, then GET /api/audit
 * page by page): for a hospital without a copy of coordinator.db. The owner key it states is only
 * compared with the pinned one, never trusted.
 */
export async function fetchCoordinatorLog(client: LeadClient): Promise<CoordinatorLog> {
  const owner = await client.call<{ ownerId: string; ed25519PublicKey: string }>('GET', '/api/audit/owner');
  const entries: AuditEntry[] = [];
  for (;;) {
    const after = entries.length ? entries[entries.length - 1]!.id : 0;
    const page = await client.call<AuditEntry[]>('GET', `/api/audit?after=${after}&limit=${PAGE}`);
    if (!Array.isArray(page)) throw new CliError('TWF_E_AUDIT', `${client.baseUrl}/api/audit did not answer a list of entries`);
    // A page that does not move past `after` would loop forever: the chain check reports what is wrong with the entries.
    if (page.length && !(page[page.length - 1]!.id > after)) throw new CliError('TWF_E_AUDIT', `${client.baseUrl}/api/audit?after=${after} answered entries that do not come after ${after}`);
    // Older coordinators leave out peer, msgType or seq on the wire: null, as in the database.
    for (const e of page) entries.push({ ...e, peer: e.peer ?? null, msgType: e.msgType ?? null, seq: e.seq ?? null });
    if (page.length < PAGE) break;
  }
  return { source: 'api', where: client.baseUrl, owner, entries };
}

export interface ReceiptsOnlyReport {
  siteDb: string;
  siteId: string;
  coordinatorId: string;
  ok: boolean;
  problems: string[];
  siteChain: ChainVerdict;
  receiptsTable: boolean;
  checkpointsTable: boolean;
  receiptsChecked: number;
  badReceipts: { seq: number; entryId: number; reason: string }[];
  checkpointsChecked: number;
  badCheckpoints: { entryId: number; reason: string }[];
  /** Messages the site logged as sent, and how many of them the coordinator acknowledged with a valid signed receipt. */
  sent: number;
  acknowledged: number;
  /** The newest valid checkpoint: the coordinator's signed statement of its log's length at a time. */
  newestCheckpoint: { entryId: number; at: string } | null;
  /** What this mode cannot check, in words. */
  notChecked: string;
}

function signedBy(kind: string, fields: Parameters<typeof verifyStatement>[1], signature: string, key: Uint8Array): boolean {
  try {
    return verifyStatement(kind, fields, signature, key);
  } catch {
    return false;
  }
}

/**
 * What a site can check with only its own database: its chain under its pinned key; every
 * receipt and checkpoint it kept signed by the pinned coordinator key, issued by that coordinator
 * to this site, a receipt matching a message the site logged as sent; and no two statements that
 * give one coordinator entry two hashes (the coordinator signed two histories). Whether those
 * entries are still in the coordinator's log needs the log: compare with --coordinator or
 * --coordinator-db.
 */
export async function compareReceiptsOnly(siteDbPath: string, keys: CompareKeys = {}): Promise<ReceiptsOnlyReport> {
  await initSodium();
  const k = pinnedKeys(siteDbPath, keys);
  if (!existsSync(siteDbPath)) throw new CliError('TWF_E_AUDIT', `no database at ${siteDbPath}`);
  const sqlite = new Database(siteDbPath, { readonly: true, fileMustExist: true });
  try {
    const db = drizzle(sqlite);
    const site = readAuditLog(db);
    const siteId = k.siteId ?? site.owner?.ownerId;
    if (!siteId || !k.coordinatorId) throw new CliError('TWF_E_AUDIT', `${k.configPath} does not name the site and its coordinator; --receipts-only needs the site folder's site.json`);
    const coordinatorId = k.coordinatorId;
    const { receipts, checkpoints } = readSiteStatements(db, siteId);
    const problems: string[] = [];
    const siteChain = verifyAuditChain(site.entries, k.pinned.siteKey);
    if (!siteChain.ok) problems.push(`site log broken at entry ${siteChain.firstBroken!.id}: ${siteChain.firstBroken!.reason}`);
    const sent = new Map<number, AuditEntry>();
    for (const e of site.entries) if (e.action === 'msg.sent' && e.seq !== null && !sent.has(e.seq)) sent.set(e.seq, e);
    // Entry hashes the coordinator signed for, to catch two statements about one entry.
    const signedHash = new Map<number, string>();
    const fork = (entryId: number, hash: string) => {
      const before = signedHash.get(entryId);
      if (before !== undefined && before !== hash) return `the coordinator signed another hash for its entry ${entryId} elsewhere: it showed two different histories`;
      signedHash.set(entryId, hash);
      return null;
    };
    const badReceipts: ReceiptsOnlyReport['badReceipts'] = [];
    let acknowledged = 0;
    for (const rc of receipts ?? []) {
      const s = sent.get(rc.seq);
      const reason =
        (signedBy(RECEIPT_KIND, receiptFields(rc), rc.signature, k.pinned.coordinatorKey) ? null : 'signature does not verify under the pinned coordinator key (forged or altered)') ??
        (rc.coordinatorId !== coordinatorId ? `issued by ${rc.coordinatorId}, not ${coordinatorId}` : null) ??
        (s && s.msgType === rc.msgType && s.digest === rc.digest ? null : 'the site log has no msg.sent of this seq, type and digest') ??
        fork(rc.entryId, rc.entryHash);
      if (reason) badReceipts.push({ seq: rc.seq, entryId: rc.entryId, reason });
      else acknowledged++;
    }
    const badCheckpoints: ReceiptsOnlyReport['badCheckpoints'] = [];
    let newest: { entryId: number; tsMs: number } | null = null;
    for (const cp of checkpoints ?? []) {
      const reason =
        (signedBy(CHECKPOINT_KIND, checkpointFields(cp), cp.signature, k.pinned.coordinatorKey) ? null : 'signature does not verify under the pinned coordinator key (forged or altered)') ??
        (cp.coordinatorId !== coordinatorId ? `issued by ${cp.coordinatorId}, not ${coordinatorId}` : null) ??
        fork(cp.entryId, cp.entryHash);
      if (reason) badCheckpoints.push({ entryId: cp.entryId, reason });
      else if (!newest || cp.entryId > newest.entryId) newest = { entryId: cp.entryId, tsMs: cp.tsMs };
    }
    for (const x of badReceipts) problems.push(`receipt for site seq ${x.seq} (coordinator entry ${x.entryId}): ${x.reason}`);
    for (const x of badCheckpoints) problems.push(`checkpoint of coordinator entry ${x.entryId}: ${x.reason}`);
    return {
      siteDb: siteDbPath,
      siteId,
      coordinatorId,
      ok: problems.length === 0,
      problems,
      siteChain,
      receiptsTable: receipts !== null,
      checkpointsTable: checkpoints !== null,
      receiptsChecked: receipts?.length ?? 0,
      badReceipts,
      checkpointsChecked: checkpoints?.length ?? 0,
      badCheckpoints,
      sent: sent.size,
      acknowledged,
      newestCheckpoint: newest ? { entryId: newest.entryId, at: new Date(newest.tsMs).toISOString() } : null,
      notChecked:
        "whether the coordinator's log still holds the entries it signed for (a dropped tail or a rewritten log): that needs its log, through the API (--coordinator URL --auditor-token T) or a copy of coordinator.db",
    };
  } finally {
    sqlite.close();
  }
}

export function formatReceiptsOnly(r: ReceiptsOnlyReport): string {
  return [
    `${r.ok ? 'OK' : 'MISMATCH'}  site ${r.siteId}: its own statements from coordinator ${r.coordinatorId} (receipts only, no coordinator log)`,
    `  site log             ${r.siteChain.ok ? `${r.siteChain.checked} entries: chain intact, signatures valid under the pinned key` : `BROKEN at entry ${r.siteChain.firstBroken!.id}: ${r.siteChain.firstBroken!.reason}`}`,
    r.receiptsTable
      ? `  receipts             ${r.receiptsChecked} checked, ${r.badReceipts.length} bad; ${r.acknowledged} of ${r.sent} sent messages acknowledged by a valid receipt`
      : '  receipts             none: site.db has no receipts table',
    r.checkpointsTable
      ? `  checkpoints          ${r.checkpointsChecked} checked, ${r.badCheckpoints.length} bad; ${r.newestCheckpoint ? `the newest valid one: the coordinator's log had ${r.newestCheckpoint.entryId} entries at ${r.newestCheckpoint.at}` : 'no valid one'}`
      : '  checkpoints          none: site.db has no audit_checkpoints table',
    ...r.problems.slice(0, 20).map((p) => `  problem: ${p}`),
    `not checked: ${r.notChecked}`,
  ].join('\n');
}
