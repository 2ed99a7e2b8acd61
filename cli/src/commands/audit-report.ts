import Database from '@twinfed/shared/db/driver';
import { drizzle } from 'drizzle-orm/better-sqlite3';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { readAuditLog, verifyAuditChain } from '@twinfed/shared/audit/index';
import {
  DAY_MS,
  buildAuditReport,
  renderAuditReportHtml,
  utcDayMs,
  signAuditReport,
  verifyAuditReport,
  verifyAuditReportHtml,
  type ReportVerification,
  type SignedAuditReport,
} from '@twinfed/shared/audit/report';
import { fromB64, initSodium, loadIdentity, toB64 } from '@twinfed/shared/crypto/index';
import { SITE_FILES } from '@twinfed/site-node/config';
import { CliError } from '../errors.js';

/** The two kinds of data folder with an audit log: the database and the identity that signs it. */
const LAYOUTS = [
  { role: 'site', db: SITE_FILES.db, identity: SITE_FILES.identity },
  { role: 'coordinator', db: 'coordinator.db', identity: 'coordinator-identity.json' },
] as const;

/** `YYYY-MM-DD` as the start of that day, UTC (ms). */
export function parseUtcDay(v: string, option: string): number {
  const ms = utcDayMs(v);
  if (ms === null) throw new CliError('TWF_E_BAD_OPTION', `${option} ${JSON.stringify(v)}: give a calendar date as YYYY-MM-DD (UTC)`);
  return ms;
}

export interface AuditReportOptions {
  dataDir: string;
  /** First day of the range, YYYY-MM-DD (UTC, included). */
  from: string;
  /** Last day of the range, YYYY-MM-DD (UTC, included). */
  to: string;
  /** Write the report here: HTML, or the signed JSON when the name ends in .json. */
  out?: string;
  nowMs?: number;
}

export interface AuditReportOutcome {
  role: 'site' | 'coordinator';
  dbPath: string;
  signed: SignedAuditReport;
  out: string | null;
}

/**
 * `twinfed audit report`: reads the audit log of a site or coordinator data folder, builds the
 * report of the days asked for with the verdict on the whole chain, and signs it with the folder's
 * identity, which must be the key the log records as its owner.
 */
export async function auditReportFromDataDir(o: AuditReportOptions): Promise<AuditReportOutcome> {
  const fromMs = parseUtcDay(o.from, '--from');
  const toMs = parseUtcDay(o.to, '--to') + DAY_MS;
  if (fromMs >= toMs) throw new CliError('TWF_E_BAD_OPTION', `--from ${o.from} is after --to ${o.to}`);
  const found = LAYOUTS.filter((l) => existsSync(join(o.dataDir, l.db)));
  if (found.length !== 1) {
    throw new CliError(
      'TWF_E_BAD_OPTION',
      found.length
        ? `${o.dataDir} holds both site.db and coordinator.db: point --data-dir at one party's folder`
        : `${o.dataDir} holds no ${LAYOUTS.map((l) => l.db).join(' or ')}: pass the site's or the coordinator's data folder as --data-dir`,
    );
  }
  const layout = found[0];
  await initSodium();
  const dbPath = join(o.dataDir, layout.db);
  const idPath = join(o.dataDir, layout.identity);
  if (!existsSync(idPath)) throw new CliError('TWF_E_AUDIT', `${idPath} is absent: the report is signed with the log owner's identity, which lives beside ${layout.db}`);
  const identity = loadIdentity(idPath);
  const sqlite = new Database(dbPath, { readonly: true, fileMustExist: true });
  let log: ReturnType<typeof readAuditLog>;
  try {
    log = readAuditLog(drizzle(sqlite));
  } finally {
    sqlite.close();
  }
  if (!log.owner) throw new CliError('TWF_E_AUDIT', `${dbPath} records no log owner: nothing to report on`);
  if (log.owner.ed25519PublicKey !== toB64(identity.ed25519PublicKey)) {
    throw new CliError('TWF_E_AUDIT', `${idPath} holds another key than the owner ${log.owner.ownerId} recorded in ${dbPath}: this identity cannot sign a report of that log`);
  }
  const report = buildAuditReport({
    entries: log.entries,
    owner: { ownerId: log.owner.ownerId, ed25519PublicKey: identity.ed25519PublicKey },
    fromMs,
    toMs,
    verdict: verifyAuditChain(log.entries, identity.ed25519PublicKey),
    ...(o.nowMs !== undefined ? { generatedAtMs: o.nowMs } : {}),
  });
  const signed = signAuditReport(report, identity.ed25519SecretKey);
  if (o.out) writeFileSync(o.out, o.out.toLowerCase().endsWith('.json') ? JSON.stringify(signed, null, 2) + '\n' : renderAuditReportHtml(signed));
  return { role: layout.role, dbPath, signed, out: o.out ?? null };
}

export function formatAuditReport(r: AuditReportOutcome): string {
  const rep = r.signed.report;
  const days = `${new Date(rep.range.fromMs).toISOString().slice(0, 10)} to ${new Date(rep.range.toMs - 1).toISOString().slice(0, 10)} (UTC)`;
  const chain = rep.chain.ok ? `chain intact (${rep.chain.totalEntries} entries)` : `chain BROKEN at entry ${rep.chain.firstBroken?.id}: ${rep.chain.firstBroken?.reason}`;
  const lines = [
    `${rep.chain.ok ? 'OK' : 'BROKEN'}  audit report of ${r.role} ${rep.owner.ownerId} (key ${rep.owner.fingerprint}), ${days}: ${rep.counts.entries} entries${rep.first && rep.last ? ` (ids ${rep.first.id} to ${rep.last.id})` : ''}; ${chain}`,
    ...Object.entries(rep.counts.byAction).map(([k, n]) => `  ${k.padEnd(28)} ${n}`),
  ];
  lines.push(
    r.out
      ? `written to ${r.out}; anyone can check it with: twinfed audit verify-report ${r.out} --public-key ${rep.owner.ed25519PublicKey}`
      : 'not written anywhere: pass --out FILE.html (printable) or FILE.json, or --json',
  );
  return lines.join('\n');
}

/** `twinfed audit verify-report FILE.json|FILE.html`: the verdict on a saved report. */
export async function verifyReportFile(path: string, publicKeyB64?: string): Promise<ReportVerification & { path: string }> {
  await initSodium();
  if (!existsSync(path)) throw new Error(`TWF_E_NOT_FOUND: no file at ${path}`);
  let key: Uint8Array | undefined;
  if (publicKeyB64 !== undefined) {
    try {
      key = fromB64(publicKeyB64);
    } catch {
      key = undefined;
    }
    if (key?.length !== 32) throw new CliError('TWF_E_AUDIT', '--public-key is not a base64 Ed25519 public key');
  }
  const text = readFileSync(path, 'utf8');
  if (!text.trimStart().startsWith('{')) return { ...verifyAuditReportHtml(text, key), path };
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    json = `unparseable JSON (${(e as Error).message})`;
  }
  return { ...verifyAuditReport(json, key), path };
}

const VERDICT_WORDS = { ok: 'OK', 'key-mismatch': 'KEY MISMATCH', tampered: 'TAMPERED', malformed: 'NOT A REPORT' } as const;

export function formatReportVerification(v: ReportVerification & { path: string }): string {
  const r = v.report;
  const what = r ? ` (${r.owner.ownerId}, ${new Date(r.range.fromMs).toISOString().slice(0, 10)} to ${new Date(r.range.toMs - 1).toISOString().slice(0, 10)} UTC)` : '';
  return `${VERDICT_WORDS[v.verdict]}  ${v.path}${what}: ${v.message}`;
}
