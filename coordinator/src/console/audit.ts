import { verifyAuditChain, type AuditEntry } from '@twinfed/shared/audit/index';
import { html, notice, table } from '@twinfed/shared/web/index';
import type { ConsoleRouter } from './index.js';
import { badge, field, iso, layout, select, type Ctx } from './common.js';

export const AUDIT_PAGE_SIZE = 50;

export interface AuditFilter {
  q: string;
  type: string;
  study: string;
  /** yyyy-mm-dd, inclusive, UTC. */
  from: string;
  to: string;
  page: number;
}

export function auditFilter(q: Record<string, string>): AuditFilter {
  const date = (s: string | undefined) => (s && /^\d{4}-\d{2}-\d{2}$/.test(s) ? s : '');
  const page = Number(q.page);
  return {
    q: (q.q ?? '').slice(0, 200),
    type: (q.type ?? '').slice(0, 100),
    study: (q.study ?? '').slice(0, 100),
    from: date(q.from),
    to: date(q.to),
    page: Number.isInteger(page) && page >= 1 ? page : 1,
  };
}

/** Entries matching the filter, newest first. */
export function filterAudit(entries: readonly AuditEntry[], f: AuditFilter): AuditEntry[] {
  const fromMs = f.from ? Date.parse(`${f.from}T00:00:00Z`) : -Infinity;
  const toMs = f.to ? Date.parse(`${f.to}T00:00:00Z`) + 86_400_000 : Infinity;
  const text = f.q.toLowerCase();
  const out: AuditEntry[] = [];
  for (let i = entries.length - 1; i >= 0; i--) {
    const e = entries[i];
    if (e.tsMs < fromMs || e.tsMs >= toMs) continue;
    if (f.type && e.action !== f.type) continue;
    if (f.study && e.studyId !== f.study) continue;
    if (text && ![e.actor, e.action, e.peer, e.msgType, e.studyId, e.detail, e.digest].some((v) => v?.toLowerCase().includes(text))) continue;
    out.push(e);
  }
  return out;
}

function auditPage(c: Ctx) {
  const { engine } = c.deps;
  const f = auditFilter(c.query);
  const entries = engine.audit.entries();
  const verdict = verifyAuditChain(entries, engine.identity.ed25519PublicKey);
  const matched = filterAudit(entries, f);
  const pages = Math.max(1, Math.ceil(matched.length / AUDIT_PAGE_SIZE));
  const pageNo = Math.min(f.page, pages);
  const shown = matched.slice((pageNo - 1) * AUDIT_PAGE_SIZE, pageNo * AUDIT_PAGE_SIZE);
  const types = [...new Set(entries.map((e) => e.action))].sort();
  const studies = engine.listStudies().map((s) => s.studyId);
  const link = (p: number) => {
    const u = new URLSearchParams();
    for (const [k, v] of Object.entries({ q: f.q, type: f.type, study: f.study, from: f.from, to: f.to })) if (v) u.set(k, v);
    u.set('page', String(p));
    return `/audit?${u.toString()}`;
  };
  const rows = shown.map((e) => [
    String(e.id),
    iso(e.tsMs),
    e.actor,
    e.action,
    e.peer ?? '',
    e.studyId ? html`<a href="/studies/${e.studyId}">${e.studyId}</a>` : '',
    e.round ?? '',
    [e.msgType, e.seq !== null ? `seq ${e.seq}` : null, e.sizeBytes !== null ? `${e.sizeBytes} B` : null].filter(Boolean).join(' · '),
    e.detail ?? '',
  ]);
  const body = html`${
    verdict.ok
      ? html`<div class="notice ok" role="status">
            Chain ${badge('intact')}: ${verdict.checked} entries, each linked to the previous one by its hash and signed by <code>${engine.coordinatorId}</code>. Head <code>${verdict.lastHash}</code>.
          </div>`
      : notice(
          'error',
          `Chain BROKEN at entry ${verdict.firstBroken!.id}: ${verdict.firstBroken!.reason}. ${verdict.checked} entries before it verify. Keep a copy of the database and compare it with the sites' receipts (twinfed audit compare).`,
        )
  }
    <form class="grid" method="get" action="/audit" role="search" aria-label="Filter the audit log">
      ${field({ name: 'q', label: 'Text (actor, action, peer, study, detail, digest)', value: f.q, type: 'search' })}
      ${select({ name: 'type', label: 'Action', value: f.type, options: [['', 'any'], ...types.map((t): [string, string] => [t, t])] })}
      ${select({ name: 'study', label: 'Study', value: f.study, options: [['', 'any'], ...studies.map((s): [string, string] => [s, s])] })}
      ${field({ name: 'from', label: 'From (UTC date)', value: f.from, type: 'date' })} ${field({ name: 'to', label: 'To (UTC date, inclusive)', value: f.to, type: 'date' })}
      <div><button type="submit">Filter</button> <a href="/audit">Clear</a></div>
    </form>
    <p role="status">${matched.length} of ${entries.length} entries match; page ${pageNo} of ${pages}, newest first.</p>
    ${table('Audit entries', ['#', 'Time', 'Actor', 'Action', 'Peer', 'Study', 'Round', 'Message', 'Detail'], rows, { id: 'audit', empty: 'No entry matches.' })}
    <nav aria-label="Audit pages">
      <ul class="pager">
        ${pageNo > 1 ? html`<li><a href="${link(pageNo - 1)}" rel="prev">Newer</a></li>` : null} ${pageNo < pages ? html`<li><a href="${link(pageNo + 1)}" rel="next">Older</a></li>` : null}
      </ul>
    </nav>`;
  return layout(c, 'Audit log', body);
}

export function registerAuditPages(r: ConsoleRouter): void {
  r.get('/audit', (c) => auditPage(c));
}
