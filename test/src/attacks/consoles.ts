import { request } from 'node:http';
import { join } from 'node:path';
import { readFileSync, writeFileSync } from 'node:fs';
import { SiteNode, openSiteStore, startSiteConsole, buildSiteConsole, type SiteConsole } from '@twinfed/site-node';
import { seedSite } from '@twinfed/site-node/console/testing';
import { buildAuditReport, signAuditReport, renderAuditReportHtml, verifyAuditReportHtml } from '@twinfed/shared/audit/report';
import { verifyAuditChain } from '@twinfed/shared/audit/index';
import { fromB64 } from '@twinfed/shared/crypto/index';
import { ADMIN_TOKEN, enrolNewSite, lead, startCoordinator, tinySpec } from '../harness.js';
import { failed, refused, type Attack, type AttackOutcome } from './types.js';

/**
 * Attacks on the consoles (issue 10): the coordinator console at `/` (lead and read-only auditor)
 * and each site's local console (officer, IT, clinician), played with real HTTP on loopback against
 * a real coordinator and real site folders: cross-site request forgery, an auditor trying to act,
 * stored script through names, sign-in brute force, redirects off-site, session fixation, a live
 * stream without a session, a site console reached from outside the hospital or bound to every
 * interface, path traversal through a patient id, and an edited audit report.
 */

const AUDITOR_TOKEN = 'attack-auditor-token-0123456789';
const SITE_TOKEN = 'attack-site-console-token-0123456789';
const EVIL = 'http://evil.example';

const form = (fields: Record<string, string>) => new URLSearchParams(fields).toString();

/** Signs in through the sign-in form as a browser would; returns the session cookie and the page's CSRF token. */
async function signIn(base: string, token: string, extraCookie?: string): Promise<{ cookie: string; csrf: string; status: number }> {
  const r = await fetch(base + '/console/sign-in', {
    method: 'POST',
    redirect: 'manual',
    headers: { 'content-type': 'application/x-www-form-urlencoded', origin: base, ...(extraCookie ? { cookie: extraCookie } : {}) },
    body: form({ token }),
  });
  const setCookie = r.headers.get('set-cookie') ?? '';
  const cookie = setCookie.split(';')[0];
  if (!cookie.includes('=') || cookie.endsWith('=')) return { cookie: '', csrf: '', status: r.status };
  const page = await (await fetch(base + '/', { headers: { cookie } })).text();
  const csrf = /<meta name="csrf" content="([^"]+)"/.exec(page)?.[1] ?? '';
  return { cookie, csrf, status: r.status };
}

async function post(base: string, path: string, fields: Record<string, string>, headers: Record<string, string>) {
  const r = await fetch(base + path, { method: 'POST', redirect: 'manual', headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers }, body: form(fields) });
  return { status: r.status, text: await r.text() };
}

/** GET with the path sent exactly as given (fetch would resolve `..` and `%2e%2e` before sending). */
function rawGet(base: string, path: string, cookie: string): Promise<{ status: number; body: Buffer }> {
  const u = new URL(base);
  return new Promise((res, rej) => {
    const req = request({ host: u.hostname, port: u.port, path, method: 'GET', headers: { cookie } }, (r) => {
      const chunks: Buffer[] = [];
      r.on('data', (c: Buffer) => chunks.push(c));
      r.on('end', () => res({ status: r.statusCode ?? 0, body: Buffer.concat(chunks) }));
    });
    req.on('error', rej);
    req.end();
  });
}

async function coordinatorLab(dir: string) {
  const { c, url } = await startCoordinator(join(dir, 'coordinator'), { auditorToken: AUDITOR_TOKEN });
  const created = await lead<{ studyId: string }>(url, 'POST', '/api/studies', tinySpec({ rounds: 1, minSites: 3 }));
  return { c, url, studyId: created.json.studyId, close: () => c.close() };
}

/** A real site folder (identity, site.json, site.db) holding one manifest that awaits its officer, with its console on loopback. */
async function siteLab(dir: string): Promise<{ db: Awaited<ReturnType<typeof openSiteStore>>; console: SiteConsole; url: string; studyId: string; manifestHash: string; close(): Promise<void> }> {
  const siteDir = join(dir, 'site');
  const seeded = await seedSite(siteDir, { title: 'Pending study' });
  const k = await startSiteConsole({ dataDir: siteDir, port: 0, token: SITE_TOKEN });
  const store = await openSiteStore(siteDir);
  return {
    db: store,
    console: k,
    url: k.url.replace(/\/$/, ''),
    studyId: seeded.manifest.studyId,
    manifestHash: seeded.hash,
    close: async () => {
      store.close();
      await k.close();
    },
  };
}

export const CONSOLE_ATTACKS: Attack[] = [
  {
    name: 'console-csrf-start-study',
    finding: null,
    expected: "a page on another site makes the lead's signed-in browser post 'start study' (cookie sent, no CSRF token, foreign Origin) -> 403; the study stays a draft",
    async run({ dir }): Promise<AttackOutcome> {
      const lab = await coordinatorLab(dir);
      try {
        const s = await signIn(lab.url, ADMIN_TOKEN);
        const tries = [
          await post(lab.url, `/studies/${lab.studyId}/start`, {}, { cookie: s.cookie, origin: EVIL }),
          await post(lab.url, `/studies/${lab.studyId}/start`, { csrf: 'guessed' }, { cookie: s.cookie }),
          await post(lab.url, `/studies/${lab.studyId}/start`, { csrf: s.csrf }, { cookie: s.cookie, origin: EVIL }),
          await post(lab.url, `/studies/${lab.studyId}/start`, { csrf: s.csrf }, { cookie: s.cookie, origin: 'null' }),
        ];
        const state = lab.c.engine.studyStatus(lab.studyId).state;
        if (tries.some((t) => t.status !== 403) || state !== 'draft') return failed(`answers ${tries.map((t) => t.status).join(',')}; study ${state}`);
        return refused(`4 forged posts (no token, guessed token, foreign Origin, Origin null) -> 403 each; study still ${state}`, '403');
      } finally {
        await lab.close();
      }
    },
  },
  {
    name: 'console-auditor-escalation',
    finding: null,
    expected:
      'the read-only auditor (valid session and CSRF token) posts start, stop, evict, revoke, token creation; and uses its token on the REST API to start -> every one refused, nothing changes',
    async run({ dir }): Promise<AttackOutcome> {
      const lab = await coordinatorLab(dir);
      try {
        const s = await signIn(lab.url, AUDITOR_TOKEN);
        const h = { cookie: s.cookie, origin: lab.url };
        const statuses = [
          (await post(lab.url, `/studies/${lab.studyId}/start`, { csrf: s.csrf }, h)).status,
          (await post(lab.url, `/studies/${lab.studyId}/stop`, { csrf: s.csrf }, h)).status,
          (await post(lab.url, `/studies/${lab.studyId}/evict`, { csrf: s.csrf, siteId: 'site-x', reason: 'r' }, h)).status,
          (await post(lab.url, '/sites/tokens', { csrf: s.csrf, siteName: 'Rogue' }, h)).status,
          (await post(lab.url, '/sites/site-x/revoke', { csrf: s.csrf, reason: 'r' }, h)).status,
        ];
        const rest = await fetch(new URL(`/api/studies/${lab.studyId}/start`, lab.url), {
          method: 'POST',
          headers: { authorization: `Bearer ${AUDITOR_TOKEN}`, 'content-type': 'application/json' },
          body: '{}',
        });
        const tokens = await fetch(new URL('/api/enrolment-tokens', lab.url), {
          method: 'POST',
          headers: { authorization: `Bearer ${AUDITOR_TOKEN}`, 'content-type': 'application/json' },
          body: '{"siteName":"Rogue"}',
        });
        const state = lab.c.engine.studyStatus(lab.studyId).state;
        if (statuses.some((x) => x !== 403) || rest.ok || tokens.ok || state !== 'draft') return failed(`console ${statuses.join(',')}; REST ${rest.status}/${tokens.status}; study ${state}`);
        return refused(`5 console actions -> 403; REST start ${rest.status}, token ${tokens.status}; study still ${state}`, 'TWF_E_NOT_AUTHORISED');
      } finally {
        await lab.close();
      }
    },
  },
  {
    name: 'console-stored-xss-through-names',
    finding: null,
    expected: "a site enrols as '<script>…</script>' and a study is titled '<img src=x onerror=…>': the lead's studies, study, sites and audit pages show them as text, no live tag",
    async run({ dir }): Promise<AttackOutcome> {
      const { c, url } = await startCoordinator(join(dir, 'coordinator'), { auditorToken: AUDITOR_TOKEN });
      try {
        const payloadSite = '<script>window.pwned=1</script>';
        const payloadTitle = '<img src=x onerror=alert(1)>';
        await enrolNewSite(url, join(dir, 'site'), payloadSite);
        const created = await lead<{ studyId: string }>(url, 'POST', '/api/studies', { ...tinySpec({ rounds: 1, minSites: 3 }), title: payloadTitle });
        const s = await signIn(url, ADMIN_TOKEN);
        const pages = ['/', `/studies/${created.json.studyId}`, `/studies/${created.json.studyId}/live`, '/sites', '/audit'];
        const live: string[] = [];
        for (const p of pages) {
          const t = await (await fetch(url + p, { headers: { cookie: s.cookie } })).text();
          if (t.includes(payloadSite) || t.includes(payloadTitle)) live.push(p);
        }
        if (live.length) return failed(`unescaped payload on ${live.join(', ')}`);
        return refused(`${pages.length} pages render both payloads escaped (&lt;script&gt;, &lt;img …&gt;); the CSP also forbids inline script`, null);
      } finally {
        await c.close();
      }
    },
  },
  {
    name: 'console-sign-in-brute-force',
    finding: null,
    expected: 'one address tries 40 tokens at the coordinator console and 40 at a site console -> throttled (429) after a handful; no session is created',
    async run({ dir }): Promise<AttackOutcome> {
      const lab = await coordinatorLab(dir);
      const site = await siteLab(join(dir, 's'));
      try {
        const results: number[][] = [[], []];
        for (const [i, base] of [lab.url, site.url].entries()) {
          for (let k = 0; k < 40; k++) {
            const r = await fetch(base + '/console/sign-in', {
              method: 'POST',
              redirect: 'manual',
              headers: { 'content-type': 'application/x-www-form-urlencoded', origin: base },
              body: form({ token: `guess-${k}-0123456789abcdef` }),
            });
            results[i].push(r.status);
            await r.arrayBuffer();
          }
        }
        const throttled = results.map((r) => r.filter((x) => x === 429).length);
        const sessions = results.flat().filter((x) => x === 303).length;
        if (sessions > 0 || throttled.some((t) => t < 25)) return failed(`coordinator ${throttled[0]}/40 throttled, site ${throttled[1]}/40, sessions ${sessions}`);
        return refused(`coordinator console throttled ${throttled[0]} of 40 guesses, site console ${throttled[1]} of 40 (429); no session`, '429');
      } finally {
        await site.close();
        await lab.close();
      }
    },
  },
  {
    name: 'console-open-redirect-and-fixation',
    finding: null,
    expected:
      'a link signs the lead in with next=//evil.example (or https://…, /\\evil) and a cookie the attacker planted -> sent to / on this console; a fresh session id, the planted one signs in nobody',
    async run({ dir }): Promise<AttackOutcome> {
      const lab = await coordinatorLab(dir);
      try {
        const locations: string[] = [];
        for (const next of ['//evil.example/x', 'https://evil.example/', '/\\evil.example', 'javascript:alert(1)']) {
          const r = await fetch(lab.url + '/console/sign-in', {
            method: 'POST',
            redirect: 'manual',
            headers: { 'content-type': 'application/x-www-form-urlencoded', origin: lab.url, cookie: 'twinfed_console=attacker-chosen-session-id' },
            body: form({ token: ADMIN_TOKEN, next }),
          });
          locations.push(r.headers.get('location') ?? '');
          const cookie = (r.headers.get('set-cookie') ?? '').split(';')[0];
          if (cookie.includes('attacker-chosen')) return failed('the planted session id was kept');
        }
        const planted = await (await fetch(lab.url + '/sites', { headers: { cookie: 'twinfed_console=attacker-chosen-session-id' } })).text();
        if (locations.some((l) => l !== '/') || !/action="\/console\/sign-in"/.test(planted)) return failed(`redirects ${locations.join(' ')}`);
        return refused(`4 hostile next values -> Location: / ; new session id at each sign-in; the planted cookie gets the sign-in page`, null);
      } finally {
        await lab.close();
      }
    },
  },
  {
    name: 'console-live-stream-without-session',
    finding: null,
    expected: "a stranger opens a study's live event stream, fragment and chart JSON without a session -> the sign-in page, no event stream, no study data",
    async run({ dir }): Promise<AttackOutcome> {
      const lab = await coordinatorLab(dir);
      try {
        const seen: string[] = [];
        for (const p of [`/studies/${lab.studyId}/events`, `/studies/${lab.studyId}/live`, `/studies/${lab.studyId}/chart.json`, '/audit']) {
          const r = await fetch(lab.url + p);
          const t = await r.text();
          const type = r.headers.get('content-type') ?? '';
          // The sign-in page names the path to return to (its `next` field), never the study's contents.
          if (type.includes('event-stream') || t.includes('test study') || t.includes('"x":') || !/action="\/console\/sign-in"/.test(t)) seen.push(`${p} ${r.status} ${type}`);
        }
        if (seen.length) return failed(`served without a session: ${seen.join('; ')}`);
        return refused('4 live/data routes answer the sign-in page (200 HTML): no event stream, no title, no chart data', null);
      } finally {
        await lab.close();
      }
    },
  },
  {
    name: 'site-console-from-outside-the-hospital',
    finding: null,
    expected:
      'the site console or its /metrics is asked from a public address (203.0.113.5), or configured to listen on every interface or a public address -> 403 / refused at start (TWF_E_CONSOLE_BIND)',
    async run({ dir }): Promise<AttackOutcome> {
      const site = await siteLab(dir);
      try {
        // The console listens on loopback only, so a public client cannot even connect here; the
        // second line of defence (its own address check) is exercised with fastify's request injection.
        const built = await buildSiteConsole({ dataDir: join(dir, 'site'), token: SITE_TOKEN });
        const remote = await Promise.all(['/', '/metrics', '/approvals', '/assets/console.js'].map((u) => built.app.inject({ method: 'GET', url: u, remoteAddress: '203.0.113.5' })));
        await built.app.close();
        built.close();
        const binds: string[] = [];
        for (const host of ['0.0.0.0', '::', '8.8.8.8', 'console.example.org']) {
          try {
            const k = await startSiteConsole({ dataDir: join(dir, 'site'), host, port: 0, token: SITE_TOKEN });
            await k.close();
            binds.push(`${host} ACCEPTED`);
          } catch (e) {
            binds.push(`${host} ${(e as { code?: string }).code ?? (e as Error).message}`);
          }
        }
        if (remote.some((r) => r.statusCode !== 403) || binds.some((b) => !b.endsWith('TWF_E_CONSOLE_BIND')))
          return failed(`remote ${remote.map((r) => r.statusCode).join(',')}; binds ${binds.join('; ')}`);
        return refused(`4 routes from 203.0.113.5 -> 403; binding 0.0.0.0, ::, 8.8.8.8, a host name refused`, 'TWF_E_CONSOLE_BIND');
      } finally {
        await site.close();
      }
    },
  },
  {
    name: 'site-console-forged-approval',
    finding: null,
    expected: "a page on another site posts 'approve' to the officer's signed-in site console (no token / foreign Origin), or a valid form with another manifest hash -> refused; no approval recorded",
    async run({ dir }): Promise<AttackOutcome> {
      const site = await siteLab(dir);
      try {
        const s = await signIn(site.url, SITE_TOKEN);
        const path = `/approvals/${site.studyId}/approve`;
        const statuses = [
          (await post(site.url, path, { officer: 'Mallory', hash: site.manifestHash }, { cookie: s.cookie, origin: EVIL })).status,
          (await post(site.url, path, { officer: 'Mallory', hash: site.manifestHash, csrf: s.csrf }, { cookie: s.cookie, origin: EVIL })).status,
          (await post(site.url, path, { officer: 'Mallory', hash: 'f'.repeat(64), csrf: s.csrf }, { cookie: s.cookie, origin: site.url })).status,
        ];
        const approved = SiteNode.listStudies(site.db.db).find((x) => x.studyId === site.studyId)?.status;
        if (statuses.slice(0, 2).some((x) => x !== 403) || statuses[2] < 400 || approved === 'approved') return failed(`answers ${statuses.join(',')}; study ${approved}`);
        return refused(`no token + foreign Origin -> ${statuses[0]}, token + foreign Origin -> ${statuses[1]}, other hash -> ${statuses[2]}; study still ${approved}`, 'TWF_E_APPROVAL_HASH');
      } finally {
        await site.close();
      }
    },
  },
  {
    name: 'site-console-patient-id-traversal',
    finding: null,
    expected: 'a signed-in browser asks the twin pages for ../../site.db, encoded dots, a NUL byte, a 10 kB id -> 400/404/414, never a file or a 500',
    async run({ dir }): Promise<AttackOutcome> {
      const site = await siteLab(dir);
      try {
        const s = await signIn(site.url, SITE_TOKEN);
        const ids = ['..%2F..%2Fsite.db', '..%2Fsite.db', '%2e%2e%2fsite.db', '..\\site.db', 'a%00b', 'x'.repeat(10_000), '%3Cscript%3E'];
        const out: string[] = [];
        for (const id of ids) {
          for (const suffix of ['', '/plot.json', '/gradcam.png']) {
            const r = await rawGet(site.url, `/twins/${id}${suffix}`, s.cookie);
            if (r.status >= 500 || r.status < 400 || r.body.includes(Buffer.from('SQLite format'))) out.push(`${id.slice(0, 20)}${suffix} ${r.status}`);
          }
        }
        // Unencoded dot segments reach the router as sent; they must not climb out of /twins either.
        for (const path of ['/twins/../site.db', '/twins/../../site.db', '/assets/../site.db', '/assets/..%2F..%2Fsite.db']) {
          const r = await rawGet(site.url, path, s.cookie);
          if (r.status >= 500 || r.body.includes(Buffer.from('SQLite format'))) out.push(`${path} ${r.status}`);
        }
        if (out.length) return failed(out.join('; '));
        return refused(`${ids.length * 3} hostile ids -> 4xx each; 4 raw dot-segment paths -> no file, no 500`, null);
      } finally {
        await site.close();
      }
    },
  },
  {
    name: 'audit-report-edited-after-signing',
    finding: null,
    expected: 'someone edits a printed, signed audit report (drops an entry, changes a detail in the HTML table) or re-signs it with another key -> verify-report says tampered / key mismatch',
    async run({ dir }): Promise<AttackOutcome> {
      const siteDir = join(dir, 'site');
      {
        await seedSite(siteDir, { title: 'Report study' });
        const store = await openSiteStore(siteDir);
        const identity = JSON.parse(readFileSync(join(siteDir, 'identity.json'), 'utf8')) as { ed25519PublicKey: string; ed25519SecretKey: string };
        const entries = store.audit.entries();
        const pub = fromB64(identity.ed25519PublicKey);
        const report = buildAuditReport({
          entries,
          owner: { ownerId: store.config.siteId, ed25519PublicKey: identity.ed25519PublicKey },
          fromMs: 0,
          toMs: Date.now() + 1000,
          verdict: verifyAuditChain(entries, pub),
        });
        store.close();
        const signed = signAuditReport(report, fromB64(identity.ed25519SecretKey));
        const htmlDoc = renderAuditReportHtml(signed);
        writeFileSync(join(dir, 'report.html'), htmlDoc);
        const ok = verifyAuditReportHtml(htmlDoc, pub);
        const firstAction = entries[0].action;
        const editedTable = htmlDoc.replace(`<td>${firstAction}</td>`, '<td>nothing.happened</td>');
        const edited = verifyAuditReportHtml(editedTable, pub);
        const dropped = { ...signed, report: { ...signed.report, entries: signed.report.entries.slice(1) } };
        const droppedV = verifyAuditReportHtml(renderAuditReportHtml(dropped), pub);
        const other = fromB64(identity.ed25519PublicKey).slice();
        other[0] ^= 1;
        const wrongKey = verifyAuditReportHtml(htmlDoc, other);
        const verdicts = [ok, edited, droppedV, wrongKey].map((v) => v.verdict);
        if (!ok.ok || edited.ok || droppedV.ok || wrongKey.ok) return failed(`verdicts ${verdicts.join(', ')}`);
        return refused(`original ${verdicts[0]}; edited table ${verdicts[1]}; dropped entry ${verdicts[2]}; other key ${verdicts[3]}`, null);
      }
    },
  },
];
