import Database from '@twinfed/shared/db/driver';
import { drizzle } from 'drizzle-orm/better-sqlite3';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { compareAuditLogs, readAuditLog, readSiteStatements, verifyAuditChain, type AuditEntry, type ChainVerdict, type CompareCheck, type CompareReport } from '@twinfed/shared/audit/index';
import { fingerprint, fromB64, initSodium } from '@twinfed/shared/crypto/index';
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
  /**
   * --public-key is not the key the log is signed with, while every entry verifies under the key the
   * log records: a wrong key given (or a log re-signed as a whole by someone else), not an edited
   * entry. Fingerprints as `fingerprint()` of shared/crypto prints them.
   */
  keyMismatch: { logKeyFingerprint: string; givenKeyFingerprint: string } | null;
}

/**
 * Verifies one audit log. Without --public-key the key recorded in the same
 * database is used, which proves integrity against accidental or partial
 * edits; against someone who can rewrite the whole file, pin the key. A
 * pinned key that is not the log's own is reported as a key mismatch (with
 * both fingerprints) when the log is intact under its recorded key.
 */
export async function verifyAuditDb(path: string, publicKeyB64?: string): Promise<VerifyOutcome> {
  await initSodium();
  const given = publicKeyB64 === undefined ? null : publicKey(publicKeyB64, '--public-key');
  const { db, sqlite } = openReadonly(path);
  try {
    const { owner, entries } = readAuditLog(db);
    const recorded = owner ? publicKey(owner.ed25519PublicKey, `the owner key recorded in ${path}`) : null;
    const key = given ?? recorded;
    if (!key) throw new CliError('TWF_E_AUDIT', `${path} records no log owner; pass --public-key`);
    const verdict = verifyAuditChain(entries, key);
    let keyMismatch: VerifyOutcome['keyMismatch'] = null;
    if (!verdict.ok && given && recorded && fingerprint(given) !== fingerprint(recorded) && verifyAuditChain(entries, recorded).ok)
      keyMismatch = { logKeyFingerprint: fingerprint(recorded), givenKeyFingerprint: fingerprint(given) };
    return { ...verdict, path, ownerId: owner?.ownerId ?? null, keySource: given ? 'argument' : 'database', keyMismatch };
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
  /** The coordinator database's path, or the coordinator URL its log was fetched from. */
  coordinatorDb: string;
  /** Where the coordinator's log came from: a copy of coordinator.db, or GET /api/audit. */
  coordinatorSource: 'database' | 'api';
  /** Where each pinned key came from. */
  keySources: { coordinator: 'argument' | 'site.json'; site: 'argument' | 'identity.json' };
  /** Whether site.db has the receipts and checkpoints tables (a database from before receipts has neither). */
  receiptsTable: boolean;
  checkpointsTable: boolean;
  /** The coordinator log names another signing key than the pinned one (fingerprints): a wrong key given, or a log re-signed by another key. */
  coordinatorKeyMismatch: { logKeyFingerprint: string; pinnedKeyFingerprint: string } | null;
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

/** The keys of a comparison, pinned from the site's folder beside SITE.db unless given, never those a database records about itself. */
export function pinnedKeys(siteDbPath: string, keys: CompareKeys = {}) {
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
  return {
    pinned: { coordinatorKey: pinnedCoordinatorKey, siteKey: publicKey(siteKey, keys.siteKey ? '--site-key' : `ed25519PublicKey in ${identityPath}`) },
    /** The parties' ids as the site enrolled them (null where site.json does not say). */
    siteId: field(config, configPath, 'siteId').value,
    coordinatorId: field(config, configPath, 'coordinatorId').value,
    configPath,
    keySources: { coordinator: keys.coordinatorKey ? ('argument' as const) : ('site.json' as const), site: keys.siteKey ? ('argument' as const) : ('identity.json' as const) },
  };
}

/** The coordinator's log for a comparison: where it came from and what it holds. */
export interface CoordinatorLog {
  source: 'database' | 'api';
  /** Path or URL. */
  where: string;
  owner: { ownerId: string; ed25519PublicKey: string } | null;
  entries: AuditEntry[];
}

/**
 * Cross-checks a site's database against the coordinator's log (read from a
 * copy of coordinator.db, or fetched through the API): both audit chains under
 * pinned keys, the messages each logged, and the coordinator's receipts and
 * checkpoints the site kept. The keys default to those the site pinned at
 * enrolment, in its folder beside SITE.db (site.json for the coordinator's,
 * identity.json for its own), never those a log records about itself.
 */
export async function compareAuditWith(siteDbPath: string, coordinatorLog: () => CoordinatorLog | Promise<CoordinatorLog>, keys: CompareKeys = {}): Promise<CompareOutcome> {
  await initSodium();
  const k = pinnedKeys(siteDbPath, keys);
  const s = openReadonly(siteDbPath);
  try {
    const coord = await coordinatorLog();
    const site = readAuditLog(s.db);
    // The parties' ids as the site enrolled them; a log's own record where there is no site.json.
    const siteId = k.siteId ?? site.owner?.ownerId;
    const coordinatorId = k.coordinatorId ?? coord.owner?.ownerId;
    if (!siteId || !coordinatorId) throw new CliError('TWF_E_AUDIT', `${siteId ? coord.where : siteDbPath} records no log owner and ${k.configPath} does not name it`);
    const statements = readSiteStatements(s.db, siteId);
    const report = compareAuditLogs({
      siteId,
      coordinatorId,
      site: site.entries,
      coordinator: coord.entries,
      ...k.pinned,
      receipts: statements.receipts ?? [],
      checkpoints: statements.checkpoints ?? [],
    });
    let recorded: Uint8Array | null = null;
    try {
      recorded = coord.owner ? fromB64(coord.owner.ed25519PublicKey) : null;
    } catch {
      recorded = null;
    }
    const mismatch = recorded && recorded.length === 32 && fingerprint(recorded) !== fingerprint(k.pinned.coordinatorKey);
    return {
      ...report,
      siteDb: siteDbPath,
      coordinatorDb: coord.where,
      coordinatorSource: coord.source,
      keySources: k.keySources,
      receiptsTable: statements.receipts !== null,
      checkpointsTable: statements.checkpoints !== null,
      coordinatorKeyMismatch: mismatch ? { logKeyFingerprint: fingerprint(recorded!), pinnedKeyFingerprint: fingerprint(k.pinned.coordinatorKey) } : null,
    };
  } finally {
    s.sqlite.close();
  }
}

/** Cross-checks a site's database against a copy of the coordinator's (compareAuditWith). */
export async function compareAuditDbs(siteDbPath: string, coordinatorDbPath: string, keys: CompareKeys = {}): Promise<CompareOutcome> {
  return compareAuditWith(
    siteDbPath,
    () => {
      const c = openReadonly(coordinatorDbPath);
      try {
        return { source: 'database', where: coordinatorDbPath, ...readAuditLog(c.db) };
      } finally {
        c.sqlite.close();
      }
    },
    keys,
  );
}

export function formatVerify(v: VerifyOutcome): string {
  if (v.keyMismatch)
    return `KEY MISMATCH  ${v.path}: the log is signed by key ${v.keyMismatch.logKeyFingerprint} (owner ${v.ownerId}), you gave ${v.keyMismatch.givenKeyFingerprint}; every entry verifies under the log's own key, so no entry was edited. Check where your key came from; if yours is the right one, the whole log was re-signed by another key`;
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
  const keys = `${r.coordinatorSource === 'api' ? `coordinator log from the API at ${r.coordinatorDb}; ` : ''}coordinator key from ${r.keySources.coordinator === 'argument' ? '--coordinator-key' : 'site.json'}, site key from ${r.keySources.site === 'argument' ? '--site-key' : 'identity.json'}`;
  const coordinatorEntries = r.coordinatorChain.ok ? r.coordinatorChain.checked : null;
  const lines = [
    `${r.ok ? 'OK' : 'MISMATCH'}  site ${r.siteId} against coordinator ${r.coordinatorId} (${keys})`,
    `  site log             ${chainLine(r.siteChain)}`,
    `  coordinator log      ${chainLine(r.coordinatorChain)}`,
    ...(r.coordinatorKeyMismatch
      ? [
          `  KEY MISMATCH         the coordinator log is signed by key ${r.coordinatorKeyMismatch.logKeyFingerprint}, the site pinned ${r.coordinatorKeyMismatch.pinnedKeyFingerprint}: a wrong --coordinator-key, or a log re-signed by another key`,
        ]
      : []),
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
