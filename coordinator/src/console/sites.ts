import { EnrolmentTokenRequest, SiteIdSchema, WireError } from '@twinfed/protocols';
import { csrfField, facts, html, notice, table, type SafeHtml } from '@twinfed/shared/web/index';
import type { ConsoleRouter } from './index.js';
import { badge, doneNotice, field, layout, select, type Ctx, type Out } from './common.js';

const EXPIRIES: [string, string][] = [
  ['3600', '1 hour'],
  ['86400', '1 day'],
  ['604800', '7 days'],
  ['2592000', '30 days'],
];

function sitesPage(c: Ctx, o: { problem?: string; siteName?: string; status?: number } = {}): Out {
  const lead = c.role === 'lead';
  const csrf = csrfField(c.session.csrf);
  const rows = c.deps.engine
    .listSites()
    .map((s, i) => [
      html`${s.siteName}<br /><code>${s.siteId}</code>`,
      s.revokedAt ? badge('revoked') : s.connected ? badge('connected') : badge('offline'),
      s.lastSeenAt ?? 'never',
      s.enrolledAt,
      html`<code>${s.fingerprint}</code>`,
      s.revokedAt ? `revoked ${s.revokedAt}` : lead ? revokeForm(csrf, s.siteId, s.siteName, i) : '',
    ]);
  const body: SafeHtml = html`${doneNotice(c.query)}${o.problem ? notice('error', o.problem) : null}
    ${table('Enrolled sites', ['Site', 'Connection', 'Last seen', 'Enrolled', 'Key fingerprint', lead ? 'Revoke' : 'Revocation'], rows, { id: 'sites', empty: 'No site is enrolled yet.' })}
    <p class="note">Connected means an authenticated connection that said hello. Compare each fingerprint with the one the site's IT shows (twinfed site status) before starting a study with it.</p>
    ${
      lead
        ? html`<h2 id="token-h">Issue an enrolment token</h2>
            <form class="stack" method="post" action="/sites/tokens" aria-labelledby="token-h">
              ${csrf} ${field({ name: 'siteName', label: 'Site name', value: o.siteName ?? '', required: true })}
              ${select({ name: 'expiresInS', label: 'Valid for', value: '86400', options: EXPIRIES })}
              <button type="submit">Issue token</button>
            </form>`
        : null
    }`;
  return layout(c, 'Sites', body, { status: o.status ?? 200 });
}

function revokeForm(csrf: SafeHtml, siteId: string, siteName: string, i: number): SafeHtml {
  return html`<form class="stack" method="post" action="/sites/${siteId}/revoke" data-confirm="Revoke ${siteName}? It is disconnected and excluded from every study.">
    ${csrf}
    <label for="revoke-${i}">Reason for revoking ${siteName}</label>
    <input id="revoke-${i}" name="reason" type="text" required />
    <button type="submit" class="danger">Revoke</button>
  </form>`;
}

export function registerSitePages(r: ConsoleRouter): void {
  r.get('/sites', (c) => sitesPage(c));
  r.post('/sites/tokens', (c) => {
    const siteName = (c.form.get('siteName') ?? '').trim();
    const p = EnrolmentTokenRequest.safeParse({ siteName, expiresInS: Number(c.form.get('expiresInS') ?? '86400') });
    if (!p.success) return sitesPage(c, { problem: p.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; '), siteName, status: 400 });
    const t = c.deps.engine.issueEnrolmentToken(p.data.siteName, p.data.expiresInS);
    // Shown once: only its hash is stored; this response is not cached (Cache-Control: no-store).
    const body = html`${notice('ok', 'Enrolment token issued. It is shown only on this page: copy it now and give it to the site over a trusted channel.')}
      ${facts([
        ['Site name', t.siteName],
        ['Token', html`<code id="enrol-token">${t.token}</code> <button type="button" class="secondary" data-copy="#enrol-token">Copy</button>`],
        ['Expires', t.expiresAt],
        ['At the site', html`<code>twinfed site enrol --coordinator &lt;url&gt; --token &lt;token&gt;</code>`],
      ])}
      <p><a href="/sites">Back to sites</a></p>`;
    return layout(c, 'Enrolment token', body);
  });
  r.post('/sites/:siteId/revoke', (c) => {
    const id = SiteIdSchema.safeParse(c.params.siteId);
    if (!id.success) return sitesPage(c, { problem: 'No such site.', status: 404 });
    const reason = (c.form.get('reason') ?? '').trim().slice(0, 500) || 'no reason given';
    try {
      c.deps.engine.revokeSite(id.data, reason);
    } catch (e) {
      if (e instanceof WireError) return sitesPage(c, { problem: `${e.message}${e.detail ? `: ${e.detail}` : ''} (${e.code})`, status: e.status });
      throw e;
    }
    return { redirect: '/sites?done=revoked' };
  });
}
