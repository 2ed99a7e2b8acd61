import { z } from 'zod';
import { canonicalJson, sha256Hex, utf8 } from '@twinfed/protocols';
import { fromB64, toB64 } from '../crypto/sodium.js';
import { fingerprint, verify } from '../crypto/identity.js';
import { signStatement, verifyStatement } from '../crypto/statement.js';
import { html, raw, type SafeHtml } from '../web/html.js';
import { entryHash, type AuditEntry, type ChainVerdict } from './chain.js';

/**
 * A signed audit report: the entries of one audit log in a date range, with the verdict on the
 * whole chain, for a privacy officer to print, file and hand on. The owner of the log signs it with
 * the key that signs the log (Ed25519 over a signed statement, see crypto/statement.ts), so anyone
 * holding that public key from a trusted source can check later that the printed report is the one
 * the owner produced, and each entry still carries the chain's own hash and signature.
 *
 * Pure: no file or database access (the CLI and the consoles read the log and pass it in).
 */

/** Statement kind of a report signature (domain separation from receipts, checkpoints, handshakes). */
export const AUDIT_REPORT_KIND = 'twinfed.audit-report.v1';

export interface AuditReport {
  kind: typeof AUDIT_REPORT_KIND;
  owner: { ownerId: string; ed25519PublicKey: string; fingerprint: string };
  /** Entries with fromMs <= tsMs < toMs (ms since the epoch, UTC). */
  range: { fromMs: number; toMs: number };
  generatedAtMs: number;
  /** Verification of the whole chain from genesis (not only of the range), under the owner's key. */
  chain: { ok: boolean; totalEntries: number; checked: number; firstBroken: { id: number; reason: string } | null; lastHash: string };
  counts: { entries: number; byMessageType: Record<string, number>; byStudy: Record<string, number>; byAction: Record<string, number> };
  /** First and last entry of the range (null when the range is empty). */
  first: { id: number; hash: string } | null;
  last: { id: number; hash: string } | null;
  entries: AuditEntry[];
}

export interface SignedAuditReport {
  report: AuditReport;
  signature: { alg: 'Ed25519'; kind: typeof AUDIT_REPORT_KIND; reportSha256: string; publicKey: string; value: string };
}

export interface BuildAuditReportInput {
  /** The whole log, in id order (as readAuditLog returns it). */
  entries: readonly AuditEntry[];
  owner: { ownerId: string; ed25519PublicKey: Uint8Array | string };
  fromMs: number;
  toMs: number;
  /** verifyAuditChain of the same entries under the owner's key. */
  verdict: ChainVerdict;
  generatedAtMs?: number;
}

const keyBytes = (k: Uint8Array | string) => (typeof k === 'string' ? fromB64(k) : k);

function countBy(entries: readonly AuditEntry[], key: (e: AuditEntry) => string | null): Record<string, number> {
  const out: Record<string, number> = {};
  for (const e of entries) {
    const k = key(e);
    if (k !== null) out[k] = (out[k] ?? 0) + 1;
  }
  return out;
}

export const DAY_MS = 86_400_000;

/** `YYYY-MM-DD` as the start of that calendar day in UTC (ms), or null when it is not a real date. */
export function utcDayMs(v: string): number | null {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(v);
  const ms = m ? Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3])) : NaN;
  return m && !Number.isNaN(ms) && new Date(ms).toISOString().slice(0, 10) === v ? ms : null;
}

export function buildAuditReport(input: BuildAuditReportInput): AuditReport {
  const { fromMs, toMs, verdict } = input;
  if (!Number.isFinite(fromMs) || !Number.isFinite(toMs) || fromMs >= toMs) throw new RangeError(`report range: from (${fromMs}) must be before to (${toMs})`);
  const pk = keyBytes(input.owner.ed25519PublicKey);
  const inRange = input.entries.filter((e) => e.tsMs >= fromMs && e.tsMs < toMs).map((e) => ({ ...e }));
  const first = inRange[0];
  const last = inRange[inRange.length - 1];
  return {
    kind: AUDIT_REPORT_KIND,
    owner: { ownerId: input.owner.ownerId, ed25519PublicKey: toB64(pk), fingerprint: fingerprint(pk) },
    range: { fromMs, toMs },
    generatedAtMs: input.generatedAtMs ?? Date.now(),
    chain: { ok: verdict.ok, totalEntries: input.entries.length, checked: verdict.checked, firstBroken: verdict.firstBroken, lastHash: verdict.lastHash },
    counts: {
      entries: inRange.length,
      byMessageType: countBy(inRange, (e) => e.msgType),
      byStudy: countBy(inRange, (e) => e.studyId),
      byAction: countBy(inRange, (e) => e.action),
    },
    first: first ? { id: first.id, hash: first.hash } : null,
    last: last ? { id: last.id, hash: last.hash } : null,
    entries: inRange,
  };
}

/** SHA-256 (hex) of the report's canonical JSON: what the signature statement names. */
export function auditReportSha256(report: AuditReport): string {
  return sha256Hex(canonicalJson(report));
}

const statementFields = (reportSha256: string, ownerId: string) => ({ reportSha256, ownerId });

/** Signs the report with the log owner's Ed25519 secret key (the key that signs the log). */
export function signAuditReport(report: AuditReport, ed25519SecretKey: Uint8Array): SignedAuditReport {
  const publicKey = toB64(ed25519SecretKey.slice(32));
  if (publicKey !== report.owner.ed25519PublicKey) throw new Error(`this secret key belongs to another public key than the log owner's (${report.owner.fingerprint}): sign with the owner's identity`);
  const reportSha256 = auditReportSha256(report);
  return {
    report,
    signature: { alg: 'Ed25519', kind: AUDIT_REPORT_KIND, reportSha256, publicKey, value: signStatement(AUDIT_REPORT_KIND, statementFields(reportSha256, report.owner.ownerId), ed25519SecretKey) },
  };
}

const Entry = z.object({
  id: z.number().int(),
  tsMs: z.number(),
  actor: z.string(),
  action: z.string(),
  peer: z.string().nullable(),
  msgType: z.string().nullable(),
  seq: z.number().nullable(),
  studyId: z.string().nullable(),
  round: z.number().nullable(),
  digest: z.string().nullable(),
  sizeBytes: z.number().nullable(),
  detail: z.string().nullable(),
  sig: z.string(),
  prevHash: z.string(),
  hash: z.string(),
});
const Counts = z.record(z.string(), z.number());
const SignedReportSchema = z.object({
  report: z.object({
    kind: z.literal(AUDIT_REPORT_KIND),
    owner: z.object({ ownerId: z.string(), ed25519PublicKey: z.string(), fingerprint: z.string() }),
    range: z.object({ fromMs: z.number(), toMs: z.number() }),
    generatedAtMs: z.number(),
    chain: z.object({
      ok: z.boolean(),
      totalEntries: z.number(),
      checked: z.number(),
      firstBroken: z.object({ id: z.number(), reason: z.string() }).nullable(),
      lastHash: z.string(),
    }),
    counts: z.object({ entries: z.number(), byMessageType: Counts, byStudy: Counts, byAction: Counts }),
    first: z.object({ id: z.number(), hash: z.string() }).nullable(),
    last: z.object({ id: z.number(), hash: z.string() }).nullable(),
    entries: z.array(Entry),
  }),
  signature: z.object({ alg: z.literal('Ed25519'), kind: z.literal(AUDIT_REPORT_KIND), reportSha256: z.string(), publicKey: z.string(), value: z.string() }),
});

export type ReportVerdict =
  /** The signature verifies under the key checked against, and every entry matches its own hash and chain signature. */
  | 'ok'
  /** Intact and validly signed, but by another key than the one given: another owner's report, or the wrong key was pinned. */
  | 'key-mismatch'
  /** The content was changed after signing, or the signature is not the owner's. */
  | 'tampered'
  /** Not a Twinfed audit report (or of another version). */
  | 'malformed';

export interface ReportVerification {
  ok: boolean;
  verdict: ReportVerdict;
  /** What was found, in words, and what to do. */
  message: string;
  /** Where the key checked against came from: the caller (pinned), or the report itself (self-consistency only). */
  keySource: 'argument' | 'report';
  /** Fingerprint of the key the report says signed it (null when malformed). */
  signerFingerprint: string | null;
  /** The parsed report, when it parsed. */
  report: AuditReport | null;
}

/** Each entry's hash recomputed from its fields, its link to the entry before it in the range, its chain signature. Null when all hold. */
function entryProblem(entries: readonly AuditEntry[], ownerKey: Uint8Array): string | null {
  let prev: AuditEntry | null = null;
  for (const e of entries) {
    if (entryHash(e, e.prevHash) !== e.hash) return `entry ${e.id}: its content does not match its hash`;
    let sigOk = false;
    try {
      sigOk = verify(fromB64(e.sig), utf8(e.hash), ownerKey);
    } catch {
      sigOk = false;
    }
    if (!sigOk) return `entry ${e.id}: its chain signature does not verify under the owner's key`;
    if (prev && prev.id + 1 === e.id && e.prevHash !== prev.hash) return `entry ${e.id}: its previous-hash link does not match entry ${prev.id}`;
    prev = e;
  }
  return null;
}

/**
 * Checks a signed report. With `publicKey` (the owner's key from a trusted source: site.json,
 * identity.json, the consortium's register) a report signed by another key is a key mismatch, told
 * apart from tampering; without it only the report's self-consistency is checked (anyone can sign
 * a consistent report with their own key), and the message says so.
 */
export function verifyAuditReport(signed: unknown, publicKey?: Uint8Array): ReportVerification {
  const parsed = SignedReportSchema.safeParse(signed);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    return {
      ok: false,
      verdict: 'malformed',
      message: `not a Twinfed audit report (${AUDIT_REPORT_KIND}): ${issue.path.join('.') || '(root)'}: ${issue.message}`,
      keySource: publicKey ? 'argument' : 'report',
      signerFingerprint: null,
      report: null,
    };
  }
  const s = parsed.data as SignedAuditReport;
  const keySource = publicKey ? 'argument' : 'report';
  let signerKey: Uint8Array;
  try {
    signerKey = fromB64(s.signature.publicKey);
  } catch {
    signerKey = new Uint8Array(0);
  }
  if (signerKey.length !== 32) return { ok: false, verdict: 'malformed', message: 'the signature names no Ed25519 public key', keySource, signerFingerprint: null, report: s.report };
  const signerFingerprint = fingerprint(signerKey);
  const result = (ok: boolean, verdict: ReportVerdict, message: string): ReportVerification => ({ ok, verdict, message, keySource, signerFingerprint, report: s.report });

  const sha = auditReportSha256(s.report);
  const signatureValid = (key: Uint8Array) => verifyStatement(AUDIT_REPORT_KIND, statementFields(sha, s.report.owner.ownerId), s.signature.value, key);
  const tampered = (why: string) =>
    result(false, 'tampered', `${why}: the report was changed after it was signed, or was not signed by its owner. Do not rely on it; produce a new one from the log (twinfed audit report).`);

  if (sha !== s.signature.reportSha256) return tampered('the report content does not match the hash it was signed over');
  if (s.signature.publicKey !== s.report.owner.ed25519PublicKey) return tampered('the signing key is not the log owner key the report names');
  if (!signatureValid(signerKey)) return tampered('the signature does not verify under the key the report names');
  if (publicKey && toB64(publicKey) !== s.signature.publicKey) {
    return result(
      false,
      'key-mismatch',
      `the report is intact and signed, but by key ${signerFingerprint} (${s.report.owner.ownerId}), not by the key given (${fingerprint(publicKey)}): it is another owner's report, or the key given is the wrong one. Get the owner's key from a trusted source and check again.`,
    );
  }
  const problem = entryProblem(s.report.entries, signerKey);
  if (problem) return tampered(`${problem}, although the report signature holds`);
  const chain = s.report.chain.ok
    ? `the whole log (${s.report.chain.totalEntries} entries) verified when the report was made`
    : `the report itself records that the log's chain is BROKEN at entry ${s.report.chain.firstBroken?.id} (${s.report.chain.firstBroken?.reason})`;
  return result(
    true,
    'ok',
    publicKey
      ? `signed by the pinned key ${signerFingerprint} (${s.report.owner.ownerId}); ${s.report.counts.entries} entries, each matching its hash and chain signature; ${chain}`
      : `consistent and signed by the key it names, ${signerFingerprint} (${s.report.owner.ownerId}); ${s.report.counts.entries} entries, each matching its hash and chain signature; ${chain}. No key was pinned: compare the fingerprint with the owner's key from a trusted source, or pass --public-key.`,
  );
}

const isoUtc = (ms: number) =>
  new Date(ms)
    .toISOString()
    .replace('T', ' ')
    .replace(/\.\d{3}Z$/, ' UTC');
/** The last day a [fromMs, toMs) range of whole UTC days covers, for display. */
const lastDay = (toMs: number) => new Date(toMs - 1).toISOString().slice(0, 10);

/** JSON for a <script type="application/json"> block: no `<`, `>` or `&` can end the element or open a comment. */
export function jsonForScript(v: unknown): string {
  return JSON.stringify(v).replace(/</g, '\\u003c').replace(/>/g, '\\u003e').replace(/&/g, '\\u0026');
}

/** Id of the element that holds the signed JSON inside the HTML report. */
export const REPORT_SCRIPT_ID = 'twinfed-report';

/** Reads the signed report embedded in a rendered HTML report (null when there is none or it is not JSON). */
export function extractSignedReport(document: string): unknown {
  const m = new RegExp(`<script type="application/json" id="${REPORT_SCRIPT_ID}">([^<]*)</script>`).exec(document);
  if (!m) return null;
  try {
    return JSON.parse(m[1]) as unknown;
  } catch {
    return null;
  }
}

/**
 * Checks a saved HTML report: the signed data embedded in it (verifyAuditReport), and that the
 * visible document is exactly the rendering of that data, so that an edit to the printed table
 * (which the signature does not cover by itself) is caught too.
 */
export function verifyAuditReportHtml(document: string, publicKey?: Uint8Array): ReportVerification {
  const v = verifyAuditReport(extractSignedReport(document), publicKey);
  if (v.verdict === 'malformed' && v.report === null && extractSignedReport(document) === null) {
    return { ...v, message: `no signed report embedded (no readable <script type="application/json" id="${REPORT_SCRIPT_ID}"> element): not an HTML report written by twinfed audit report` };
  }
  if (!v.ok) return v;
  if (renderAuditReportHtml(extractSignedReport(document) as SignedAuditReport) !== document) {
    return {
      ...v,
      ok: false,
      verdict: 'tampered',
      message:
        'the signed data embedded in the file is intact, but the visible document differs from its rendering: the printed part was edited (or the file was re-saved by an editor). Rely only on a fresh rendering: twinfed audit report, or verify-report --json to read the signed data.',
    };
  }
  return v;
}

function countsTable(title: string, counts: Record<string, number>): SafeHtml {
  const rows = Object.entries(counts).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
  return html`<table class="counts">
    <caption>
      ${title}
    </caption>
    ${
      rows.length
        ? rows.map(
            ([k, n]) =>
              html`<tr>
                <td>${k}</td>
                <td class="n">${n}</td>
              </tr>`,
          )
        : html`<tr>
            <td colspan="2">none</td>
          </tr>`
    }
  </table>`;
}

const STYLE = `
body { font: 11pt/1.4 system-ui, sans-serif; margin: 2em; color: #111; }
h1 { font-size: 16pt; margin: 0 0 .3em; } h2 { font-size: 13pt; margin: 1.4em 0 .4em; border-bottom: 1px solid #999; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .2em 1em; } dt { font-weight: 600; } dd { margin: 0; }
code, .mono { font-family: ui-monospace, monospace; font-size: 9pt; word-break: break-all; }
.verdict { padding: .5em .8em; border: 2px solid; font-weight: 600; }
.verdict.ok { border-color: #2a7; } .verdict.broken { border-color: #c22; }
.counts { display: inline-table; margin-right: 2em; vertical-align: top; border-collapse: collapse; }
caption { text-align: left; font-weight: 600; }
table { border-collapse: collapse; } td, th { border: 1px solid #bbb; padding: .15em .4em; text-align: left; vertical-align: top; }
td.n { text-align: right; }
table.entries { width: 100%; font-size: 8.5pt; } table.entries td { word-break: break-word; }
thead { display: table-header-group; } tr { break-inside: avoid; }
@media print { body { margin: 0; } a { color: inherit; text-decoration: none; } }
`;

/**
 * The signed report as one complete, printable HTML document: no script runs (a CSP that allows
 * only the inline style; the signed JSON sits in a non-executable application/json block, so that
 * `twinfed audit verify-report FILE.html` checks the very file that was printed or mailed).
 * Every value from the log is escaped.
 */
export function renderAuditReportHtml(signed: SignedAuditReport): string {
  const r = signed.report;
  const title = `Audit report: ${r.owner.ownerId}, ${isoUtc(r.range.fromMs).slice(0, 10)} to ${lastDay(r.range.toMs)}`;
  const chain = r.chain.ok
    ? html`<p class="verdict ok">Chain intact: all ${r.chain.totalEntries} entries of the log, from the first, verified (hash links and the owner's signatures) when this report was made.</p>`
    : html`<p class="verdict broken">
        Chain BROKEN at entry ${r.chain.firstBroken?.id ?? '?'}: ${r.chain.firstBroken?.reason ?? ''}. ${r.chain.checked} of ${r.chain.totalEntries} entries verified before it. Entries after that
        point cannot be relied on; keep this report and the database, and inform your security officer.
      </p>`;
  const entryRows = r.entries.map(
    (e) =>
      html`<tr>
        <td class="n">${e.id}</td>
        <td>${isoUtc(e.tsMs)}</td>
        <td>${e.actor}</td>
        <td>${e.action}</td>
        <td>${e.peer ?? ''}</td>
        <td>${e.msgType ?? ''}${e.seq !== null ? html` #${e.seq}` : ''}</td>
        <td>${e.studyId ?? ''}${e.round !== null ? html` r${e.round}` : ''}</td>
        <td class="mono">${e.digest ? e.digest.slice(0, 16) : ''}</td>
        <td class="n">${e.sizeBytes ?? ''}</td>
        <td>${e.detail ?? ''}</td>
        <td class="mono">${e.hash.slice(0, 16)}</td>
      </tr>`,
  );
  const body = html`<!doctype html>
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'" />
        <meta name="referrer" content="no-referrer" />
        <title>${title}</title>
        <style>
          ${raw(STYLE)}
        </style>
      </head>
      <body>
        <h1>${title}</h1>
        <dl>
          <dt>Log owner</dt>
          <dd>${r.owner.ownerId}</dd>
          <dt>Owner key fingerprint</dt>
          <dd class="mono">${r.owner.fingerprint}</dd>
          <dt>Owner public key (Ed25519)</dt>
          <dd class="mono">${r.owner.ed25519PublicKey}</dd>
          <dt>Range</dt>
          <dd>${isoUtc(r.range.fromMs)} (included) to ${isoUtc(r.range.toMs)} (excluded)</dd>
          <dt>Generated</dt>
          <dd>${isoUtc(r.generatedAtMs)}</dd>
          <dt>Entries in range</dt>
          <dd>${r.counts.entries}${r.first && r.last ? html` (ids ${r.first.id} to ${r.last.id})` : ''}</dd>
          <dt>First hash in range</dt>
          <dd class="mono">${r.first?.hash ?? 'none'}</dd>
          <dt>Last hash in range</dt>
          <dd class="mono">${r.last?.hash ?? 'none'}</dd>
          <dt>Head of the log</dt>
          <dd class="mono">${r.chain.lastHash}</dd>
        </dl>
        <h2>Chain verification</h2>
        ${chain}
        <h2>Counts</h2>
        ${countsTable('By message type', r.counts.byMessageType)} ${countsTable('By study', r.counts.byStudy)} ${countsTable('By action', r.counts.byAction)}
        <h2>Entries</h2>
        <table class="entries">
          <thead>
            <tr>
              <th>id</th>
              <th>time</th>
              <th>actor</th>
              <th>action</th>
              <th>peer</th>
              <th>message</th>
              <th>study</th>
              <th>digest</th>
              <th>bytes</th>
              <th>detail</th>
              <th>hash</th>
            </tr>
          </thead>
          <tbody>
            ${
              entryRows.length
                ? entryRows
                : html`<tr>
                    <td colspan="11">No entries in this range.</td>
                  </tr>`
            }
          </tbody>
        </table>
        <h2>Signature</h2>
        <dl>
          <dt>Algorithm</dt>
          <dd>${signed.signature.alg} over the statement ${signed.signature.kind} naming the SHA-256 of the report's canonical JSON</dd>
          <dt>Report SHA-256</dt>
          <dd class="mono">${signed.signature.reportSha256}</dd>
          <dt>Signature</dt>
          <dd class="mono">${signed.signature.value}</dd>
          <dt>Signed by key</dt>
          <dd class="mono">${r.owner.fingerprint} (${signed.signature.publicKey})</dd>
        </dl>
        <h2>How to verify this report</h2>
        <ol>
          <li>
            Obtain the owner's public key from a trusted source, not from this report: for a site, <code>ed25519PublicKey</code> in its <code>identity.json</code>; for the coordinator,
            <code>coordinatorPublicKey</code> in any enrolled site's <code>site.json</code>.
          </li>
          <li>
            Run <code>twinfed audit verify-report THIS-FILE.html --public-key KEY</code> on the saved file (the signed data is embedded in it). "OK" means the report is exactly what the owner signed;
            "key mismatch" means it is intact but signed by another key; "TAMPERED" means it was changed.
          </li>
          <li>
            Without the tool: the fingerprint printed above must equal the fingerprint of the trusted key, and the embedded JSON (element <code>#${REPORT_SCRIPT_ID}</code>) must verify as Ed25519 over
            the canonical JSON of <code>{"kind":"${AUDIT_REPORT_KIND}","ownerId":…,"reportSha256":…}</code>.
          </li>
        </ol>
        <script type="application/json" id="${REPORT_SCRIPT_ID}">
          ${raw(jsonForScript(signed))}
        </script>
      </body>
    </html> `;
  return body.value;
}
