import Database from 'better-sqlite3';
import { drizzle } from 'drizzle-orm/better-sqlite3';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { compareAuditLogs, readAuditLog, readSiteStatements, verifyAuditChain, type ChainVerdict, type CompareCheck, type CompareReport } from '@twinfed/shared/audit/index';
import { fromB64, initSodium } from '@twinfed/shared/crypto/index';
import { SITE_FILES } from '@twinfed/site-node/config';
import { CliError } from '../errors.js';

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
    if (!key) throw new CliError('TWF_E_AUDIT', `${path} records no log owner; pass --public-key`);
    return { ...verifyAuditChain(entries, fromB64(key)), path, ownerId: owner?.ownerId ?? null, keySource: publicKeyB64 ? 'argument' : 'database' };
  } finally {
    sqlite.close();
  }
}

export interface CompareKeys {
  /** The coordinator's Ed25519 public key (base64); default: `coordinatorPublicKey` of site.json beside the site database. */
  coordinatorKey?: string;
  /** The site's Ed25519 public key (base64); default: `ed25519PublicKey` of identity.json beside the site database. */
  siteKey?: string;
}

export interface CompareOutcome extends CompareReport {
  siteDb: string;
  coordinatorDb: string;
  /** Where each pinned key came from. */
  keySources: { coordinator: 'argument' | 'site.json'; site: 'argument' | 'identity.json' };
  /** Whether site.db has the receipts and checkpoints tables (a database from before receipts has neither). */
  receiptsTable: boolean;
  checkpointsTable: boolean;
}

/** A JSON file of the site's folder, or why it cannot be used. */
function readSiteFile(path: string): { json: Record<string, unknown> | null; why: string } {
  if (!existsSync(path)) return { json: null, why: `${path} is absent` };
  try {
    const j = JSON.parse(readFileSync(path, 'utf8')) as unknown;
    return j && typeof j === 'object' ? { json: j as Record<string, unknown>, why: '' } : { json: null, why: `${path} is not a JSON object` };
  } catch (e) {
    return { json: null, why: `${path} cannot be read (${(e as Error).message})` };
  }
}

function field(f: { json: Record<string, unknown> | null; why: string }, path: string, name: string): { value: string | null; why: string } {
  const v = f.json?.[name];
  return typeof v === 'string' ? { value: v, why: '' } : { value: null, why: f.why || `${path} has no ${name}` };
}

function publicKey(b64: string, what: string): Uint8Array {
  let k: Uint8Array | null = null;
  try {
    k = fromB64(b64);
  } catch {
    k = null;
  }
  if (k?.length !== 32) throw new CliError('TWF_E_AUDIT', `${what} is not a base64 Ed25519 public key`);
  return k;
}

/**
 * Cross-checks a site's database against the coordinator's: both audit
 * chains under pinned keys, the messages each logged, and the coordinator's
 * receipts and checkpoints the site kept. The keys default to those the site
 * pinned at enrolment, in its folder beside SITE.db (site.json for the
 * coordinator's, identity.json for its own), never those a database records
 * about itself.
 */
export async function compareAuditDbs(siteDbPath: string, coordinatorDbPath: string, keys: CompareKeys = {}): Promise<CompareOutcome> {
  await initSodium();
  const siteDir = dirname(siteDbPath);
  const configPath = join(siteDir, SITE_FILES.config);
  const identityPath = join(siteDir, SITE_FILES.identity);
  const config = readSiteFile(configPath);
  const fromConfig = field(config, configPath, 'coordinatorPublicKey');
  const coordinatorKey = keys.coordinatorKey ?? fromConfig.value;
  if (!coordinatorKey) throw new CliError('TWF_E_AUDIT', `no pinned coordinator key (${fromConfig.why}); pass --coordinator-key B64, the coordinator's Ed25519 public key from a trusted source`);
  const pinnedCoordinatorKey = publicKey(coordinatorKey, keys.coordinatorKey ? '--coordinator-key' : `coordinatorPublicKey in ${configPath}`);
  const fromIdentity = keys.siteKey ? null : field(readSiteFile(identityPath), identityPath, 'ed25519PublicKey');
  const siteKey = keys.siteKey ?? fromIdentity!.value;
  if (!siteKey) throw new CliError('TWF_E_AUDIT', `no pinned site key (${fromIdentity!.why}); pass --site-key B64, the site's Ed25519 public key from a trusted source`);
  const pinned = { coordinatorKey: pinnedCoordinatorKey, siteKey: publicKey(siteKey, keys.siteKey ? '--site-key' : `ed25519PublicKey in ${identityPath}`) };

  const s = openReadonly(siteDbPath);
  try {
    const c = openReadonly(coordinatorDbPath);
    try {
      const site = readAuditLog(s.db);
      const coord = readAuditLog(c.db);
      // The parties' ids as the site enrolled them; a database's own record where there is no site.json.
      const siteId = field(config, configPath, 'siteId').value ?? site.owner?.ownerId;
      const coordinatorId = field(config, configPath, 'coordinatorId').value ?? coord.owner?.ownerId;
      if (!siteId || !coordinatorId) throw new CliError('TWF_E_AUDIT', `${siteId ? coordinatorDbPath : siteDbPath} records no log owner and ${configPath} does not name it`);
      const statements = readSiteStatements(s.db, siteId);
      const report = compareAuditLogs({
        siteId,
        coordinatorId,
        site: site.entries,
        coordinator: coord.entries,
        ...pinned,
        receipts: statements.receipts ?? [],
        checkpoints: statements.checkpoints ?? [],
      });
      return {
        ...report,
        siteDb: siteDbPath,
        coordinatorDb: coordinatorDbPath,
        keySources: { coordinator: keys.coordinatorKey ? 'argument' : 'site.json', site: keys.siteKey ? 'argument' : 'identity.json' },
        receiptsTable: statements.receipts !== null,
        checkpointsTable: statements.checkpoints !== null,
      };
    } finally {
      c.sqlite.close();
    }
  } finally {
    s.sqlite.close();
  }
}

export function formatVerify(v: VerifyOutcome): string {
  return v.ok
    ? `OK  ${v.path}: ${v.checked} entries, chain intact, signatures valid (owner ${v.ownerId}, key from ${v.keySource})`
    : `BROKEN  ${v.path}: first broken link at entry ${v.firstBroken!.id}: ${v.firstBroken!.reason} (${v.checked} entries verified before it)`;
}

const PROBLEMS_SHOWN = 10;

const seqList = (xs: readonly { seq: number }[]) =>
  `seq ${xs
    .slice(0, PROBLEMS_SHOWN)
    .map((x) => x.seq)
    .join(', ')}${xs.length > PROBLEMS_SHOWN ? ', ...' : ''}`;

function chainLine(v: ChainVerdict): string {
  return v.ok
    ? `${v.checked} entries: chain intact, signatures valid under the pinned key`
    : `BROKEN at entry ${v.firstBroken!.id}: ${v.firstBroken!.reason} (${v.checked} entries verified before it)`;
}

/** The comparison as a person reads it: verdict, each check with its counts, the first problems of each kind, what was explained. */
export function formatCompare(r: CompareOutcome): string {
  const keys = `coordinator key from ${r.keySources.coordinator === 'argument' ? '--coordinator-key' : 'site.json'}, site key from ${r.keySources.site === 'argument' ? '--site-key' : 'identity.json'}`;
  const coordinatorEntries = r.coordinatorChain.ok ? r.coordinatorChain.checked : null;
  const lines = [
    `${r.ok ? 'OK' : 'MISMATCH'}  site ${r.siteId} against coordinator ${r.coordinatorId} (${keys})`,
    `  site log             ${chainLine(r.siteChain)}`,
    `  coordinator log      ${chainLine(r.coordinatorChain)}`,
    `  site -> coordinator  ${r.matched} matched, ${r.sentNotReceived.length} sent but not logged by the coordinator, ${r.receivedNotSent.length} logged by the coordinator but never sent, ${r.digestMismatch.length} with another digest`,
    `  coordinator -> site  ${r.matchedDownstream} matched, ${r.downstreamMismatch.length} received by the site but not logged as sent (or with another digest) by the coordinator`,
    r.receiptsTable
      ? `  receipts             ${r.receiptsChecked} checked, ${r.badReceipts.length} bad`
      : '  receipts             none: site.db has no receipts table (a database from before receipts)',
    r.checkpointsTable
      ? `  checkpoints          ${r.checkpointsChecked} checked, ${r.badCheckpoints.length} bad; ${r.newestCheckpoint === null ? 'no valid one' : `the newest valid one names entry ${r.newestCheckpoint}${coordinatorEntries === null ? '' : ` of ${coordinatorEntries}`}`}`
      : '  checkpoints          none: site.db has no audit_checkpoints table (a database from before checkpoints)',
  ];
  if (r.problems.length) {
    lines.push(`problems (${r.problems.length}; at most ${PROBLEMS_SHOWN} of each kind):`);
    const byCheck = new Map<CompareCheck, string[]>();
    for (const p of r.problems) byCheck.set(p.check, [...(byCheck.get(p.check) ?? []), p.message]);
    for (const [check, messages] of byCheck) {
      for (const m of messages.slice(0, PROBLEMS_SHOWN)) lines.push(`  ${check}: ${m}`);
      if (messages.length > PROBLEMS_SHOWN) lines.push(`  ${check}: ... and ${messages.length - PROBLEMS_SHOWN} more`);
    }
  }
  lines.push(
    'explained, not failures:',
    `  ${r.unackedNotReceived.length} unacknowledged site messages the coordinator never logged (lost in transit)${r.unackedNotReceived.length ? `: ${seqList(r.unackedNotReceived)}` : ''}`,
    `  ${r.resyncExplained.length} coordinator entries inside a seq.resync gap (site restored from a backup${r.resyncGaps.length ? `: ${r.resyncGaps.map((g) => `${g.from} -> ${g.to}`).join(', ')}` : ''}), on the coordinator's word${r.resyncExplained.length ? `: ${seqList(r.resyncExplained)}` : ''}`,
    `  ${r.notReceivedBySite} coordinator messages the site never logged as received (it was offline)`,
    `  ${r.withoutReceipt} accepted site messages without a receipt at the site`,
  );
  return lines.join('\n');
}
