import type { FastifyInstance, FastifyRequest } from 'fastify';
import { join } from 'node:path';
import { readAuditLog, verifyAuditChain } from '@twinfed/shared/audit/index';
import { DAY_MS, buildAuditReport, renderAuditReportHtml, signAuditReport, utcDayMs } from '@twinfed/shared/audit/report';
import { loadIdentity } from '@twinfed/shared/crypto/index';
import { SITE_FILES } from '../config.js';
import { csrfField, facts, html, notice, table, type SafeHtml } from '@twinfed/shared/web/index';
import { approxSize, manifestView, type ManifestView } from '../manifest-view.js';
import { SiteNode } from '../node.js';
import { budgetView } from '../privacy.js';
import { checkSiteAudit } from './audit-check.js';
import { pendingApprovals, rejectStudy, rejectionOf } from './pending.js';
import type { SiteConsoleContext } from './server.js';

const when = (ms: number | null | undefined) => (ms ? new Date(ms).toISOString().replace('T', ' ').slice(0, 19) + ' UTC' : '-');
const OFFICER_NAME_MAX = 200;
const REASON_MAX = 500;

/** The manifest in plain words, as HTML: the same model as `twinfed site study show`. */
export function manifestViewHtml(v: ManifestView): SafeHtml {
  return html`<section aria-labelledby="what">
      <h2 id="what">What is trained</h2>
      ${facts([
        ['Study', `${v.studyId}: ${v.title}`],
        ['Task', v.task],
        ['Model', `${v.model.arch}, ${v.model.parameters.toLocaleString('en')} parameters`],
        ['Rounds', `${v.rounds}; each round needs at least ${v.quorum} contributing sites (minimum ${v.minSites})`],
        ['Training at this site', `${v.training.epochsPerRound} epochs per round, batch ${v.training.batchSize}, learning rate ${v.training.learningRate}, seed ${v.training.seed}`],
        ['Strategy', v.strategy.line],
      ])}
    </section>
    <section aria-labelledby="who">
      <h2 id="who">Who takes part</h2>
      <p>Compare each fingerprint with the site itself (by telephone, not through the coordinator) before approving. Manifest version ${v.manifestVersion}.</p>
      ${table(
        'Participants',
        ['Site', 'Name', 'Key fingerprint (Ed25519:X25519)', ''],
        v.participants.map((p) => [p.siteId, p.siteName, html`<code>${p.fingerprint}</code>`, p.thisSite ? html`<strong>this site</strong>` : '']),
        { id: 'participants' },
      )}
      <p>Key dealers, in order: ${v.keyDealers.join(' → ')}. The first connected one creates the study key and seals it to the sites above only.</p>
    </section>
    <section aria-labelledby="leaves">
      <h2 id="leaves">What leaves the hospital</h2>
      ${table(
        'Messages this site sends for the study',
        ['Message', 'How often', 'Size', 'What it holds'],
        v.leaves.map((l) => [html`<code>${l.messageType}</code>`, l.howOften, approxSize(l.approxBytes), l.what]),
        { id: 'leaves-table' },
      )}
      ${facts([
        ['Metrics reported', v.metrics.join('; ')],
        ['Never leaves', v.neverLeaves],
        [
          'Protection',
          `secure aggregation ${v.secureAggregation.scheme} (threshold ${v.secureAggregation.threshold} of ${v.secureAggregation.of}); encryption ${v.encryption.scheme} N=${v.encryption.polyModulusDegree}, ${v.encryption.valuesPerSlot} value${v.encryption.valuesPerSlot === 1 ? '' : 's'} per slot, ${v.encryption.ciphertexts} ciphertexts per update`,
        ],
      ])}
    </section>
    <section aria-labelledby="dp">
      <h2 id="dp">Privacy budget</h2>
      ${
        v.privacy.dp && v.privacy.budget && v.privacy.policy
          ? facts([
              ['Level', v.privacy.dp.level === 'patient' ? 'one patient (DP-SGD at each site)' : 'one whole site (distributed discrete Gaussian)'],
              ['Study budget', `epsilon ${v.privacy.dp.epsilon}, delta ${v.privacy.dp.delta}`],
              ['Projected for the whole study', `epsilon ${v.privacy.budget.projectedStudy?.toFixed(3) ?? '-'}`],
              [
                `This site's data (${v.privacy.budget.datasetKey})`,
                `spent epsilon ${v.privacy.budget.datasetSpent.toFixed(3)} of ${v.privacy.policy.maxEpsilon}; after this study ${v.privacy.budget.projectedDataset?.toFixed(3) ?? '-'}`,
              ],
            ])
          : null
      }
      <ul class="plain">
        ${v.privacy.lines.map((l) => html`<li>${l}</li>`)}
      </ul>
    </section>
    <p>Manifest hash: <code id="manifest-hash">${v.manifestHash}</code></p>`;
}

async function viewOf(ctx: SiteConsoleContext, studyId: string) {
  const r = SiteNode.listStudies(ctx.db).find((x) => x.studyId === studyId);
  if (!r?.manifest) return null;
  const budget = budgetView(ctx.db, r.manifest, ctx.config.privacy);
  return { row: r, view: await manifestView(r.manifest, r.manifestHash, ctx.config.siteId, { budget, policy: ctx.config.privacy }) };
}

/** A form field trimmed, control characters removed, length-capped; empty → null. */
function field(form: Record<string, string>, name: string, max: number): string | null {
  const v = (form[name] ?? '')
    // eslint-disable-next-line no-control-regex -- control characters are exactly what is removed
    .replace(/[\u0000-\u001f\u007f]/g, ' ')
    .trim()
    .slice(0, max);
  return v || null;
}

/** The privacy officer's pages: studies awaiting approval, each manifest in plain words, approve / reject / withdraw, and the audit log. */
export function registerOfficerPages(app: FastifyInstance, ctx: SiteConsoleContext): void {
  const send = (req: FastifyRequest, reply: { type: (t: string) => { send: (b: string) => unknown } }, title: string, body: SafeHtml) =>
    reply.type('text/html; charset=utf-8').send(ctx.page(req, { title, body }));

  app.get('/approvals', async (req, reply) => {
    const pending = pendingApprovals(ctx.db);
    const all = SiteNode.listStudies(ctx.db);
    const body = html`<section aria-labelledby="waiting">
        <h2 id="waiting">Awaiting your approval</h2>
        ${table(
          'Studies awaiting approval',
          ['Study', 'Title', 'Announced', 'Manifest hash'],
          pending.map((p) => [html`<a href="/approvals/${encodeURIComponent(p.studyId)}">${p.studyId}</a>`, p.title, when(p.announcedAtMs), html`<code>${p.manifestHash.slice(0, 16)}…</code>`]),
          { id: 'pending', empty: 'No study awaits approval.' },
        )}
      </section>
      <section aria-labelledby="all">
        <h2 id="all">All studies announced to this site</h2>
        ${table(
          'Studies',
          ['Study', 'Title', 'Status', 'Approved by'],
          all.map((s) => [html`<a href="/approvals/${encodeURIComponent(s.studyId)}">${s.studyId}</a>`, s.title, s.status, s.approvedBy ?? '-']),
          { id: 'studies', empty: 'No study has been announced yet.' },
        )}
      </section>`;
    return send(req, reply, 'Approvals', body);
  });

  const detail = async (req: FastifyRequest, studyId: string, message: SafeHtml | null) => {
    const v = await viewOf(ctx, studyId);
    if (!v) return null;
    const { row, view } = v;
    const rejected = rejectionOf(ctx.db, studyId, row.manifestHash);
    const csrf = ctx.session(req)?.csrf ?? '';
    const base = `/approvals/${encodeURIComponent(studyId)}`;
    const status = html`${facts([
      ['Status', row.status],
      ['Approved by', row.approvedBy ?? '-'],
      ...(rejected ? ([['Rejected', `by ${rejected.officer} at ${when(rejected.tsMs)}: ${rejected.reason}`]] as [string, unknown][]) : []),
    ])}`;
    const approveForm = html`<form
      method="post"
      action="${base}/approve"
      class="approve"
      data-confirm="Approve study ${studyId} with manifest hash ${row.manifestHash.slice(0, 16)}…? This site will train on its data and send the messages listed above."
    >
      ${csrfField(csrf)}<input type="hidden" name="hash" value="${row.manifestHash}" />
      <label for="approve-officer">Your name (privacy officer)</label>
      <input id="approve-officer" name="officer" required maxlength="${OFFICER_NAME_MAX}" autocomplete="name" />
      <button type="submit">Approve this manifest</button>
    </form>`;
    const rejectForm = html`<form method="post" action="${base}/reject" class="reject">
      ${csrfField(csrf)}<input type="hidden" name="hash" value="${row.manifestHash}" />
      <label for="reject-officer">Your name (privacy officer)</label>
      <input id="reject-officer" name="officer" required maxlength="${OFFICER_NAME_MAX}" autocomplete="name" />
      <label for="reject-reason">Reason</label>
      <input id="reject-reason" name="reason" maxlength="${REASON_MAX}" />
      <button type="submit">Reject</button>
    </form>`;
    const withdrawForm = html`<form
      method="post"
      action="${base}/withdraw"
      class="withdraw"
      data-confirm="Withdraw the approval of ${studyId}? The site finishes the round it is in and takes part in no later round."
    >
      ${csrfField(csrf)}<input type="hidden" name="hash" value="${row.manifestHash}" />
      <label for="withdraw-officer">Your name (privacy officer)</label>
      <input id="withdraw-officer" name="officer" required maxlength="${OFFICER_NAME_MAX}" autocomplete="name" />
      <label for="withdraw-reason">Reason</label>
      <input id="withdraw-reason" name="reason" maxlength="${REASON_MAX}" />
      <button type="submit">Withdraw approval</button>
    </form>`;
    const decide =
      row.status === 'pending'
        ? html`<section aria-labelledby="decide">
            <h2 id="decide">Decision</h2>
            <p>The approval binds to the manifest hash shown above; a changed manifest needs a new approval.</p>
            ${approveForm}${rejected ? null : rejectForm}
          </section>`
        : row.approvedBy && ['approved', 'joined'].includes(row.status)
          ? html`<section aria-labelledby="decide">
              <h2 id="decide">Decision</h2>
              ${withdrawForm}
            </section>`
          : null;
    return html`${message}${status}${manifestViewHtml(view)}${decide}`;
  };

  app.get<{ Params: { studyId: string }; Querystring: { done?: string } }>('/approvals/:studyId', async (req, reply) => {
    const done = req.query.done;
    const msg =
      done === 'approved'
        ? notice('ok', 'Approved. The running site node joins the study.')
        : done === 'rejected'
          ? notice('ok', 'Rejected and recorded in the audit log.')
          : done === 'withdrawn'
            ? notice('ok', 'Approval withdrawn.')
            : null;
    const body = await detail(req, req.params.studyId, msg);
    if (!body)
      return reply
        .code(404)
        .type('text/html; charset=utf-8')
        .send(ctx.page(req, { title: 'Unknown study', body: notice('error', `${req.params.studyId} has not been announced to this site`) }));
    return send(req, reply, `Study ${req.params.studyId}`, body);
  });

  const decision = (kind: 'approve' | 'reject' | 'withdraw') =>
    app.post<{ Params: { studyId: string } }>(`/approvals/:studyId/${kind}`, async (req, reply) => {
      const studyId = req.params.studyId;
      const form = ctx.form(req);
      const officer = field(form, 'officer', OFFICER_NAME_MAX);
      const hash = field(form, 'hash', 64);
      const reason = field(form, 'reason', REASON_MAX);
      try {
        if (!officer) throw new Error("the officer's name is required: the decision is recorded under it in the audit log");
        if (!hash) throw new Error('the form carries no manifest hash; reload the page');
        if (kind === 'approve') SiteNode.approve(ctx.db, ctx.audit, studyId, officer, hash);
        else if (kind === 'reject') rejectStudy(ctx.db, ctx.audit, studyId, officer, reason ?? 'rejected by the privacy officer', hash);
        else {
          const st = SiteNode.listStudies(ctx.db).find((x) => x.studyId === studyId);
          if (st && st.manifestHash !== hash) throw new Error(`the manifest of ${studyId} changed since this page was shown; reload it`);
          SiteNode.withdraw(ctx.db, ctx.audit, studyId, officer, reason ?? 'approval withdrawn by the privacy officer');
        }
      } catch (e) {
        const body = await detail(req, studyId, notice('error', (e as Error).message));
        return reply
          .code(body ? 409 : 404)
          .type('text/html; charset=utf-8')
          .send(ctx.page(req, { title: `Study ${studyId}`, body: body ?? notice('error', (e as Error).message) }));
      }
      const done = kind === 'approve' ? 'approved' : kind === 'reject' ? 'rejected' : 'withdrawn';
      return reply
        .code(303)
        .header('location', `/approvals/${encodeURIComponent(studyId)}?done=${done}`)
        .send();
    });
  decision('approve');
  decision('reject');
  decision('withdraw');

  app.get<{ Querystring: { q?: string; page?: string } }>('/audit', async (req, reply) => {
    const { entries } = readAuditLog(ctx.db);
    const check = checkSiteAudit(ctx.db, ctx.config, ctx.dataDir, entries);
    const q = (req.query.q ?? '').slice(0, 200).toLowerCase();
    const hits = (q ? entries.filter((e) => [e.actor, e.action, e.peer, e.msgType, e.studyId, e.detail, e.digest].some((f) => f?.toLowerCase().includes(q))) : entries).slice().reverse();
    const perPage = 50;
    const pages = Math.max(1, Math.ceil(hits.length / perPage));
    const pageNo = Math.min(pages, Math.max(1, Number.parseInt(req.query.page ?? '1', 10) || 1));
    const shown = hits.slice((pageNo - 1) * perPage, pageNo * perPage);
    const link = (p: number) => `/audit?${new URLSearchParams({ ...(q ? { q } : {}), page: String(p) }).toString()}`;
    const verify = check.chain.ok
      ? notice('ok', `Verified: ${check.chain.checked} entries, chain intact, every signature valid under this site's key (identity.json).`)
      : notice(
          'error',
          `BROKEN at entry ${check.chain.firstBroken!.id}: ${check.chain.firstBroken!.reason} (${check.chain.checked} entries verified before it). Keep a copy of site.db and tell your security team.`,
        );
    const receipts =
      check.badReceipts.length || check.badCheckpoints.length
        ? notice(
            'error',
            `${check.badReceipts.length} bad receipts and ${check.badCheckpoints.length} bad checkpoints from the coordinator: ${[...check.badReceipts.map((r) => `seq ${r.seq}: ${r.reason}`), ...check.badCheckpoints.map((c) => `checkpoint ${c.entryId}: ${c.reason}`)].slice(0, 5).join('; ')}`,
          )
        : notice(
            'ok',
            `The coordinator's ${check.receiptsChecked} signed receipts and ${check.checkpointsChecked} checkpoints kept here verify under the pinned coordinator key, and each receipt matches a message this site logged sending.`,
          );
    const body = html`<section aria-labelledby="verify">
        <h2 id="verify">Verification</h2>
        <div id="verify-status">${verify}${receipts}</div>
        ${facts([
          ['Newest coordinator checkpoint', check.newestCheckpoint === null ? 'none yet' : `names coordinator entry ${check.newestCheckpoint}`],
          ['Sent without a receipt', `${check.sentWithoutReceipt} (refused by the coordinator, or sent before receipts existed)`],
          ['Not acknowledged in time', `${check.unacked}`],
          [
            'Full cross-check',
            html`against the coordinator's log through its API (an auditor token from the consortium lead):
              <code>twinfed audit compare --site-db ${ctx.dataDir}/site.db --coordinator URL --auditor-token T</code>, or with a copy of its database (<code>--coordinator-db</code>)`,
          ],
        ])}
      </section>
      <section aria-labelledby="report">
        <h2 id="report">Signed report for a date range</h2>
        <p>
          A printable report of this log for the dates chosen (UTC, both included): every entry in the range, counts by action and study, the whole chain's verification, signed with this site's key.
          Anyone can check a saved copy with <code>twinfed audit verify-report FILE --public-key KEY</code>.
        </p>
        <form method="get" action="/audit/report" class="search">
          <label for="from">From</label> <input id="from" name="from" type="date" required value="${new Date(Date.now() - 30 * DAY_MS).toISOString().slice(0, 10)}" /> <label for="to">To</label>
          <input id="to" name="to" type="date" required value="${new Date().toISOString().slice(0, 10)}" />
          <button type="submit">Make the signed report</button>
        </form>
      </section>
      <section aria-labelledby="log">
        <h2 id="log">Audit log</h2>
        <form method="get" action="/audit" class="search">
          <label for="q">Search (actor, action, study, message type, detail)</label> <input id="q" name="q" value="${q}" /> <button type="submit">Search</button>
        </form>
        <p>${hits.length} of ${entries.length} entries${q ? html` match “${q}”` : null}; newest first; page ${pageNo} of ${pages}.</p>
        ${table(
          'Audit entries',
          ['#', 'Time', 'Actor', 'Action', 'Study', 'Round', 'Message', 'Detail'],
          shown.map((e) => [e.id, when(e.tsMs), e.actor, e.action, e.studyId ?? '', e.round ?? '', e.msgType ? `${e.msgType}${e.seq !== null ? ` #${e.seq}` : ''}` : '', e.detail ?? '']),
          { id: 'audit', empty: 'No entry matches.' },
        )}
        <nav aria-label="Audit pages" class="pager">
          ${pageNo > 1 ? html`<a href="${link(pageNo - 1)}" rel="prev">Newer</a>` : null} ${pageNo < pages ? html`<a href="${link(pageNo + 1)}" rel="next">Older</a>` : null}
        </nav>
      </section>`;
    return send(req, reply, 'Audit', body);
  });

  // The signed report (shared/src/audit/report.ts): a stand-alone printable document, signed with
  // the site's identity; its policy allows its own inline print style and nothing else (no script).
  app.get<{ Querystring: { from?: string; to?: string } }>('/audit/report', async (req, reply) => {
    const fromMs = utcDayMs(String(req.query.from ?? ''));
    const toDayMs = utcDayMs(String(req.query.to ?? ''));
    if (fromMs === null || toDayMs === null || fromMs > toDayMs) {
      return reply
        .code(400)
        .type('text/html; charset=utf-8')
        .send(ctx.page(req, { title: 'Audit report', body: notice('error', 'Give two calendar dates, the first not after the second (YYYY-MM-DD).') }));
    }
    const identity = loadIdentity(join(ctx.dataDir, SITE_FILES.identity));
    const { owner, entries } = readAuditLog(ctx.db);
    const report = buildAuditReport({
      entries,
      owner: { ownerId: owner?.ownerId ?? ctx.config.siteId, ed25519PublicKey: identity.ed25519PublicKey },
      fromMs,
      toMs: toDayMs + DAY_MS,
      verdict: verifyAuditChain(entries, identity.ed25519PublicKey),
    });
    const signed = signAuditReport(report, identity.ed25519SecretKey);
    ctx.audit.append({ actor: ctx.config.siteId, action: 'audit.report', detail: `signed report ${req.query.from} to ${req.query.to}: ${report.entries.length} entries` });
    return reply
      .type('text/html; charset=utf-8')
      .header('content-security-policy', "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'")
      .header('content-disposition', `inline; filename="twinfed-audit-${ctx.config.siteId}-${req.query.from}-${req.query.to}.html"`)
      .send(renderAuditReportHtml(signed));
  });
}
