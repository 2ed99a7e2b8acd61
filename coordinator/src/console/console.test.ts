import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PROTOCOL_VERSION } from '@twinfed/protocols';
import { generateIdentity, initSodium, toB64 } from '@twinfed/shared/crypto/index';
import { responseStudySpec } from '@twinfed/shared/response/study';
import { buildCoordinator, type Coordinator } from '../server.js';
import { SIGN_IN_BURST } from './index.js';

const LEAD = 'console-test-lead-token-0123';
const AUDITOR = 'console-test-auditor-token-0123';
const HOST = 'coordinator.test:7400';
const ORIGIN = `http://${HOST}`;
/** The create form as a browser submits it with its pre-filled values (response task). */
const FORM: Record<string, string> = {
  title: 'form study',
  task: 'response',
  rounds: '2',
  minSites: '3',
  roundDeadlineS: '60',
  'training.epochsPerRound': '20',
  'training.batchSize': '1024',
  'training.learningRate': '0.5',
  'training.clipBound': '2',
  'training.seed': '11',
  'model.arms': 'A, B',
  'model.l2': '0.001',
  'data.minMeasurements': '5',
  'data.trainPercent': '70',
  'data.splitSalt': 'salt',
  'data.minTrainPatients': '10',
  'strategy.name': 'fedavg',
  'dp.level': 'none',
};

/** The coordinator console's authentication and forms, through fastify's inject (real engine, real SQLite file). */
describe('coordinator console', () => {
  const dir = mkdtempSync(join(tmpdir(), 'twinfed-ccon-'));
  let c: Coordinator;
  /** A distinct client address per test, so the sign-in rate limit of one test does not touch another. */
  let ipN = 1;
  const ip = () => `10.0.0.${ipN++}`;

  const form = (o: Record<string, string | string[]>) => {
    const u = new URLSearchParams();
    for (const [k, v] of Object.entries(o)) for (const x of Array.isArray(v) ? v : [v]) u.append(k, x);
    return u.toString();
  };
  const post = (url: string, body: Record<string, string | string[]>, o: { cookie?: string; origin?: string | null; ip?: string } = {}) =>
    c.app.inject({
      method: 'POST',
      url,
      remoteAddress: o.ip ?? '10.1.0.1',
      headers: {
        host: HOST,
        'content-type': 'application/x-www-form-urlencoded',
        ...(o.origin === null ? {} : { origin: o.origin ?? ORIGIN }),
        ...(o.cookie ? { cookie: o.cookie } : {}),
      },
      payload: form(body),
    });
  const get = (url: string, cookie?: string) => c.app.inject({ method: 'GET', url, headers: { host: HOST, ...(cookie ? { cookie } : {}) } });

  /** Signs in; returns the cookie header to send and the session's CSRF token (from the page's meta). */
  const signIn = async (token: string) => {
    const r = await post('/console/sign-in', { token }, { ip: ip() });
    assert.equal(r.statusCode, 303, r.body);
    const setCookie = String(r.headers['set-cookie']);
    const cookie = setCookie.split(';')[0];
    const page = await get('/', cookie);
    const csrf = /<meta name="csrf" content="([^"]+)"/.exec(page.body)?.[1];
    assert.ok(csrf, 'signed-in page carries the CSRF token');
    return { cookie, csrf, setCookie };
  };

  const enrolSite = async (name: string): Promise<string> => {
    const { token } = (await c.app.inject({ method: 'POST', url: '/api/enrolment-tokens', headers: { authorization: `Bearer ${LEAD}` }, payload: { siteName: name } })).json<{ token: string }>();
    const id = generateIdentity();
    const r = await c.app.inject({
      method: 'POST',
      url: '/api/enrol',
      payload: { token, protocolVersion: PROTOCOL_VERSION, ed25519PublicKey: toB64(id.ed25519PublicKey), x25519PublicKey: toB64(id.x25519PublicKey) },
    });
    assert.equal(r.statusCode, 201, r.body);
    return r.json<{ siteId: string }>().siteId;
  };

  before(async () => {
    await initSodium();
    c = await buildCoordinator({ dataDir: dir, port: 0, adminToken: LEAD, auditorToken: AUDITOR, logLevel: 'silent' });
  });
  after(async () => {
    await c.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('answers every page without a session with a 200 HTML sign-in page and the security headers', async () => {
    for (const url of ['/', '/sites', '/audit', '/studies/study-1234abcd', '/studies/study-1234abcd/live']) {
      const r = await get(url);
      assert.equal(r.statusCode, 200, url);
      assert.match(String(r.headers['content-type']), /text\/html/);
      assert.match(r.body, /<form class="signin" method="post" action="\/console\/sign-in">/);
      assert.match(r.body, /<label for="token">Access token<\/label>/);
      assert.match(String(r.headers['content-security-policy']), /script-src 'self'/);
      assert.equal(r.headers['x-frame-options'], 'DENY');
      assert.equal(r.headers['cache-control'], 'no-store');
      // Not no-referrer: under it a browser sends Origin: null on the console's own form POSTs.
      assert.equal(r.headers['referrer-policy'], 'same-origin');
    }
    assert.match((await get('/studies/study-1234abcd')).body, /name="next" value="\/studies\/study-1234abcd"/);
    // The REST API keeps its bearer-token JSON answer.
    const api = await get('/api/studies');
    assert.equal(api.statusCode, 401);
    assert.equal(api.json<{ code: string }>().code, 'TWF_E_NOT_AUTHORISED');
  });

  it('refuses a wrong token with the sign-in page and an error, and rate-limits guessing per address', async () => {
    const addr = ip();
    const r = await post('/console/sign-in', { token: 'not-the-token-at-all' }, { ip: addr });
    assert.equal(r.statusCode, 401);
    assert.match(r.body, /not valid for this coordinator/);
    assert.equal(r.headers['set-cookie'], undefined);
    for (let i = 1; i < SIGN_IN_BURST; i++) await post('/console/sign-in', { token: `guess-${i}-xxxxxxxxxxxx` }, { ip: addr });
    const limited = await post('/console/sign-in', { token: LEAD }, { ip: addr });
    assert.equal(limited.statusCode, 429, 'even the right token waits once the budget is spent');
    assert.match(limited.body, /Too many sign-in attempts/);
    assert.equal((await post('/console/sign-in', { token: LEAD }, { ip: ip() })).statusCode, 303, 'another address is not affected');
  });

  it('sets an HttpOnly SameSite=Strict session cookie (no Secure over plain HTTP) and never redirects off-site', async () => {
    const { setCookie } = await signIn(LEAD);
    assert.match(setCookie, /^twinfed_console=[\w-]{43}; Path=\/; HttpOnly; SameSite=Strict$/);
    for (const next of ['//evil.example/x', 'https://evil.example', '/\\evil.example', 'javascript:alert(1)']) {
      const r = await post('/console/sign-in', { token: LEAD, next }, { ip: ip() });
      assert.equal(r.headers.location, '/', next);
    }
    assert.equal((await post('/console/sign-in', { token: LEAD, next: '/audit?page=2' }, { ip: ip() })).headers.location, '/audit?page=2');
  });

  it('issues a new session id at sign-in (fixation) and ends the one the browser brought', async () => {
    const first = await signIn(LEAD);
    const planted = await post('/console/sign-in', { token: LEAD }, { cookie: first.cookie, ip: ip() });
    const second = String(planted.headers['set-cookie']).split(';')[0];
    assert.notEqual(second, first.cookie);
    assert.match((await get('/', first.cookie)).body, /class="signin"/, 'the old id no longer signs in');
    const chosen = await post('/console/sign-in', { token: LEAD }, { cookie: 'twinfed_console=attacker-chosen-id', ip: ip() });
    assert.ok(!String(chosen.headers['set-cookie']).includes('attacker-chosen-id'));
  });

  it('refuses a sign-in posted from another origin (login CSRF)', async () => {
    const r = await post('/console/sign-in', { token: LEAD }, { origin: 'http://evil.example', ip: ip() });
    assert.equal(r.statusCode, 403);
    assert.equal(r.headers['set-cookie'], undefined);
  });

  it('refuses a lead form without the CSRF token, with a wrong one, or from a foreign Origin; accepts the right one', async () => {
    const { cookie, csrf } = await signIn(LEAD);
    const spec = { ...FORM, title: 'csrf study' };
    const before = c.engine.listStudies().length;
    for (const [what, body, origin] of [
      ['no token', spec, ORIGIN],
      ['wrong token', { ...spec, csrf: 'x'.repeat(32) }, ORIGIN],
      ['foreign origin', { ...spec, csrf }, 'http://evil.example'],
      ['null origin', { ...spec, csrf }, 'null'],
    ] as const) {
      const r = await post('/studies', body, { cookie, origin });
      assert.equal(r.statusCode, 403, what);
      assert.match(r.body, /nothing was changed/);
    }
    assert.equal(c.engine.listStudies().length, before);
    const ok = await post('/studies', { ...spec, csrf }, { cookie });
    assert.equal(ok.statusCode, 303, ok.body);
    assert.match(String(ok.headers.location), /^\/studies\/study-[\w-]+\?done=created$/);
  });

  it('shows a field error next to a bad value and the list of problems with their paths', async () => {
    const { cookie, csrf } = await signIn(LEAD);
    const r = await post('/studies', { ...FORM, csrf, title: 'x', rounds: '0', minSites: '2' }, { cookie });
    assert.equal(r.statusCode, 400);
    assert.match(r.body, /aria-invalid="true" aria-describedby="f-minSites-err"/);
    assert.match(r.body, /<div class="field-error" id="f-minSites-err">minSites must be at least 3/);
    assert.match(r.body, /<li><code>rounds<\/code>: /);
    assert.match(r.body, /value="x"/, 'what was typed is kept');
    const j = await post('/studies/json', { csrf, spec: JSON.stringify({ ...responseStudySpec(2), minSites: 1, training: { batchSize: 'many' } }) }, { cookie });
    assert.equal(j.statusCode, 400);
    assert.match(j.body, /<code>minSites<\/code>/);
    assert.match(j.body, /<code>training.batchSize<\/code>/);
    const bad = await post('/studies/json', { csrf, spec: '{not json' }, { cookie });
    assert.equal(bad.statusCode, 400);
    assert.match(bad.body, /<code>\(JSON\)<\/code>/);
    const good = await post('/studies/json', { csrf, spec: JSON.stringify(responseStudySpec(2)) }, { cookie });
    assert.equal(good.statusCode, 303, good.body);
  });

  it('shows engine refusals as a notice on the study page, not a 500', async () => {
    const { cookie, csrf } = await signIn(LEAD);
    const created = await post('/studies/json', { csrf, spec: JSON.stringify(responseStudySpec(2)) }, { cookie });
    const id = /\/studies\/(study-[\w-]+)/.exec(String(created.headers.location))![1];
    const r = await post(`/studies/${id}/stop`, { csrf }, { cookie });
    assert.equal(r.statusCode, 409, r.body);
    assert.match(r.body, /TWF_E_STUDY_STATE/);
    const start = await post(`/studies/${id}/start`, { csrf }, { cookie });
    assert.ok(start.statusCode >= 400 && start.statusCode < 500, `start with no enrolled site: ${start.statusCode}`);
    assert.match(start.body, /class="notice error"/);
  });

  it('gives the auditor every page and no action form; every POST is refused', async () => {
    const lead = await signIn(LEAD);
    await post('/studies/json', { csrf: lead.csrf, spec: JSON.stringify(responseStudySpec(2)) }, { cookie: lead.cookie });
    const { cookie, csrf } = await signIn(AUDITOR);
    const id = c.engine.listStudies()[0].studyId;
    for (const url of ['/', '/sites', '/audit', `/studies/${id}`, `/studies/${id}/live`]) {
      const r = await get(url, cookie);
      assert.equal(r.statusCode, 200, url);
      const forms = [...r.body.matchAll(/<form[^>]*method="post"[^>]*action="([^"]+)"/g)].map((m) => m[1]);
      assert.deepEqual(forms, url.endsWith('/live') ? [] : ['/console/sign-out'], `${url}: only sign-out`);
    }
    assert.match((await get('/', cookie)).body, /signed in as auditor/);
    const before = c.engine.listStudies().length;
    for (const url of ['/studies', '/studies/json', `/studies/${id}/start`, '/sites/tokens']) {
      const r = await post(url, { csrf, title: 't', spec: JSON.stringify(responseStudySpec(2)), siteName: 'x' }, { cookie });
      assert.equal(r.statusCode, 403, url);
      assert.match(r.body, /read-only/);
    }
    assert.equal(c.engine.listStudies().length, before);
    assert.equal(c.engine.studyStatus(id).state, 'draft');
  });

  it('lets the auditor token read the REST API, never write', async () => {
    const h = { authorization: `Bearer ${AUDITOR}` };
    for (const url of ['/api/studies', '/api/sites', '/api/audit?limit=5', '/api/audit/owner']) assert.equal((await c.app.inject({ method: 'GET', url, headers: h })).statusCode, 200, url);
    const w = await c.app.inject({ method: 'POST', url: '/api/studies', headers: h, payload: responseStudySpec(2) });
    assert.equal(w.statusCode, 401);
    assert.equal((await c.app.inject({ method: 'POST', url: '/api/enrolment-tokens', headers: h, payload: { siteName: 'x' } })).statusCode, 401);
  });

  it('renders a hostile study title, site name and audit detail as text', async () => {
    const evil = '<script>alert(1)</script><img src=x onerror=alert(2)>';
    const { cookie, csrf } = await signIn(LEAD);
    const created = await post('/studies/json', { csrf, spec: JSON.stringify({ ...responseStudySpec(2), title: evil }) }, { cookie });
    const id = /\/studies\/(study-[\w-]+)/.exec(String(created.headers.location))![1];
    const tok = await post('/sites/tokens', { csrf, siteName: evil, expiresInS: '3600' }, { cookie });
    assert.equal(tok.statusCode, 200);
    assert.match(tok.body, /<code id="enrol-token">[\w-]{20,}<\/code>/, 'the token is shown once');
    await enrolSite(evil);
    for (const url of ['/', `/studies/${id}`, '/sites', '/audit']) {
      const body = (await get(url, cookie)).body;
      assert.ok(!body.includes('<script>alert'), url);
      assert.ok(!body.includes('<img src=x'), url);
      assert.ok(body.includes('&lt;script&gt;alert(1)&lt;/script&gt;'), url);
    }
  });

  it('filters and pages the audit log and shows the chain verdict', async () => {
    const { cookie } = await signIn(LEAD);
    const all = await get('/audit', cookie);
    assert.match(all.body, /Chain <span class="state intact">intact<\/span>/);
    const r = await get('/audit?type=study.created&q=alert', cookie);
    assert.match(r.body, /1 of \d+ entries match/);
    const none = await get('/audit?from=2000-01-01&to=2000-01-02', cookie);
    assert.match(none.body, /No entry matches/);
  });

  it('revokes a site with a reason, and signs out (the old cookie then signs in nobody)', async () => {
    const { cookie, csrf } = await signIn(LEAD);
    const siteId = await enrolSite('Revoke me');
    const r = await post(`/sites/${siteId}/revoke`, { csrf, reason: 'lost laptop' }, { cookie });
    assert.equal(r.statusCode, 303);
    assert.ok(c.engine.listSites().find((s) => s.siteId === siteId)!.revokedAt);
    assert.ok(c.engine.audit.entries().some((e) => e.action === 'site.revoked' && e.detail === 'lost laptop'));
    const again = await post(`/sites/${siteId}/revoke`, { csrf, reason: 'twice' }, { cookie });
    assert.equal(again.statusCode, 409);
    const out = await post('/console/sign-out', { csrf }, { cookie });
    assert.equal(out.statusCode, 303);
    assert.match(String(out.headers['set-cookie']), /Max-Age=0/);
    assert.match((await get('/sites', cookie)).body, /class="signin"/);
  });

  it('refuses an auditor token equal to the lead token, or shorter than 16 characters', async () => {
    await assert.rejects(buildCoordinator({ dataDir: join(dir, 'x'), adminToken: LEAD, auditorToken: LEAD }), /auditorToken: must differ/);
    await assert.rejects(buildCoordinator({ dataDir: join(dir, 'y'), adminToken: LEAD, auditorToken: 'short' }), /auditorToken/);
  });

  it('serves only allow-listed assets', async () => {
    assert.equal((await get('/assets/console.js')).statusCode, 200);
    assert.equal((await get('/assets/..%2Fpackage.json')).statusCode, 404);
  });
});
