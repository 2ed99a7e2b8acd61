import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { openSiteStore } from '../store.js';
import { seedSite } from './testing.js';
import { checkConsoleHost, isLocalAddress } from './bind.js';
import { consoleToken } from './token.js';
import { buildSiteConsole, startSiteConsole } from './server.js';
import { pendingApprovals } from './pending.js';
import { verifyAuditReportHtml } from '@twinfed/shared/audit/report';
import { loadIdentity } from '@twinfed/shared/crypto/index';

const XSS = '<script>alert(1)</script>';

describe('site console: where it listens and whom it answers', () => {
  it('accepts loopback, RFC 1918, RFC 4193 and link-local addresses only', () => {
    for (const a of [
      '127.0.0.1',
      '127.8.9.10',
      '::1',
      '10.2.3.4',
      '172.16.0.1',
      '172.31.255.254',
      '192.168.1.20',
      '169.254.3.4',
      'fd12:3456::1',
      'fe80::1%eth0',
      '::ffff:10.0.0.7',
      '::ffff:127.0.0.1',
    ])
      assert.ok(isLocalAddress(a), a);
    for (const a of ['8.8.8.8', '172.32.0.1', '192.169.0.1', '2001:db8::1', '2a00:1450::1', '::ffff:8.8.8.8', '0.0.0.0', '::', 'example.org', '', undefined]) assert.ok(!isLocalAddress(a), String(a));
  });

  it('binds to loopback or a private address; refuses every interface and public addresses, saying why', () => {
    assert.equal(checkConsoleHost('127.0.0.1'), '127.0.0.1');
    assert.equal(checkConsoleHost('localhost'), '127.0.0.1');
    assert.equal(checkConsoleHost('10.20.30.40'), '10.20.30.40');
    assert.equal(checkConsoleHost('[::1]'), '::1');
    assert.throws(() => checkConsoleHost('0.0.0.0'), /TWF_E_CONSOLE_BIND.*every network interface/s);
    assert.throws(() => checkConsoleHost('::'), /TWF_E_CONSOLE_BIND.*every network interface/s);
    assert.throws(() => checkConsoleHost('203.0.113.9'), /TWF_E_CONSOLE_BIND.*public address/s);
    assert.throws(() => checkConsoleHost('console.hospital.example'), /TWF_E_CONSOLE_BIND.*not an IP address/s);
  });
});

describe('site console: token, sessions, CSRF, approvals, metrics', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'twinfed-scon-'));
  const dir = join(tmp, 'site');
  let app: FastifyInstance;
  let close: () => void;
  let hash: string;
  const TOKEN = 'a-test-console-token-0123456789';

  before(async () => {
    ({ hash } = await seedSite(dir, { title: `Sarcoma ${XSS}`, otherSiteName: `Evil "><img src=x onerror=alert(2)>` }));
    const b = await buildSiteConsole({ dataDir: dir, token: TOKEN, signInPerMinute: 5 });
    app = b.app;
    close = b.close;
  });
  after(async () => {
    await app?.close();
    close?.();
    rmSync(tmp, { recursive: true, force: true });
  });

  const signIn = async (remoteAddress = '127.0.0.1') => {
    const r = await app.inject({
      method: 'POST',
      url: '/console/sign-in',
      remoteAddress,
      payload: `token=${encodeURIComponent(TOKEN)}&next=%2Fapprovals`,
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    });
    assert.equal(r.statusCode, 303, r.body);
    assert.equal(r.headers.location, '/approvals');
    const cookie = String(r.headers['set-cookie']).split(';')[0];
    const page = await app.inject({ method: 'GET', url: '/approvals/s1', headers: { cookie } });
    const csrf = /name="csrf" value="([^"]+)"/.exec(page.body)![1];
    return { cookie, csrf };
  };

  it('creates console.token once, mode 0600, and refuses one others can read', () => {
    const d = join(tmp, 'tok');
    mkdirSync(d);
    const a = consoleToken(d, {});
    assert.equal(a.source, 'file');
    assert.equal(statSync(a.path!).mode & 0o777, 0o600);
    assert.ok(Buffer.from(a.token, 'base64url').length === 32);
    assert.equal(consoleToken(d, {}).token, a.token, 'the same token on the next start');
    chmodSync(a.path!, 0o644);
    assert.throws(() => consoleToken(d, {}), /TWF_E_CONSOLE_TOKEN.*chmod 600/s);
    assert.equal(consoleToken(d, { TWINFED_SITE_CONSOLE_TOKEN: 'x'.repeat(20) }).source, 'env');
    assert.throws(() => consoleToken(d, { TWINFED_SITE_CONSOLE_TOKEN: 'short' }), /TWF_E_CONSOLE_TOKEN/);
    writeFileSync(join(d, 'unused'), '');
  });

  it('refuses clients that are not loopback or private (403), /metrics included', async () => {
    for (const url of ['/', '/metrics', '/assets/console.css']) {
      const r = await app.inject({ method: 'GET', url, remoteAddress: '203.0.113.5' });
      assert.equal(r.statusCode, 403, url);
      assert.match(r.body, /TWF_E_CONSOLE_BIND/);
    }
    assert.equal((await app.inject({ method: 'GET', url: '/metrics', remoteAddress: '10.1.2.3' })).statusCode, 200);
  });

  it('serves the sign-in page (200) without a session, with the security headers', async () => {
    const r = await app.inject({ method: 'GET', url: '/approvals/s1' });
    assert.equal(r.statusCode, 200);
    assert.match(r.body, /Access token/);
    assert.match(r.body, /name="next" value="\/approvals\/s1"/);
    assert.doesNotMatch(r.body, /Sarcoma/, 'nothing of the study before sign-in');
    assert.match(String(r.headers['content-security-policy']), /script-src 'self'/);
    assert.equal(r.headers['x-frame-options'], 'DENY');
    const post = await app.inject({ method: 'POST', url: '/approvals/s1/approve', payload: `officer=X&hash=${hash}`, headers: { 'content-type': 'application/x-www-form-urlencoded' } });
    assert.equal(post.statusCode, 403);
  });

  it('rate-limits wrong tokens per address (token brute force)', async () => {
    const wrong = (remoteAddress: string) =>
      app.inject({ method: 'POST', url: '/console/sign-in', remoteAddress, payload: 'token=guess-guess-guess-guess', headers: { 'content-type': 'application/x-www-form-urlencoded' } });
    for (let i = 0; i < 5; i++) {
      const r = await wrong('10.9.9.9');
      assert.equal(r.statusCode, 200);
      assert.match(r.body, /not this site&#39;s console token/);
    }
    const limited = await wrong('10.9.9.9');
    assert.equal(limited.statusCode, 429);
    // Even the right token waits: the limit is on attempts, so guessing cannot go on in parallel with a sign-in.
    const right = await app.inject({ method: 'POST', url: '/console/sign-in', remoteAddress: '10.9.9.9', payload: `token=${TOKEN}`, headers: { 'content-type': 'application/x-www-form-urlencoded' } });
    assert.equal(right.statusCode, 429);
    await signIn('10.9.9.8'); // another address is not affected
  });

  it('shows the pending manifest in plain words, escaping a hostile title and site name', async () => {
    const { cookie } = await signIn();
    const list = await app.inject({ method: 'GET', url: '/approvals', headers: { cookie } });
    assert.match(list.body, /Approvals \(1 waiting\)/);
    const r = await app.inject({ method: 'GET', url: '/approvals/s1', headers: { cookie } });
    assert.equal(r.statusCode, 200);
    assert.ok(!r.body.includes(XSS) && r.body.includes('&lt;script&gt;alert(1)&lt;/script&gt;'), 'title escaped');
    assert.ok(!r.body.includes('<img src=x'), 'site name escaped');
    for (const s of ['update.chunk', 'metrics.report', 'meanDice', 'this site', hash, 'Key dealers, in order: site-b → site-a → site-c', 'Projected for the whole study'])
      assert.ok(r.body.includes(s), s);
  });

  it('refuses an approval without the CSRF token, from another origin, or for another hash; approves the hash shown', async () => {
    const { cookie, csrf } = await signIn();
    const post = (payload: string, headers: Record<string, string> = {}) =>
      app.inject({ method: 'POST', url: '/approvals/s1/approve', payload, headers: { cookie, 'content-type': 'application/x-www-form-urlencoded', ...headers } });
    assert.equal((await post(`officer=Dr+Eve&hash=${hash}`)).statusCode, 403, 'no CSRF token');
    assert.equal((await post(`officer=Dr+Eve&hash=${hash}&csrf=${encodeURIComponent(csrf)}`, { origin: 'http://evil.example', host: 'localhost:80' })).statusCode, 403, 'cross-origin');
    const wrong = await post(`officer=Dr+Eve&hash=${'0'.repeat(64)}&csrf=${encodeURIComponent(csrf)}`);
    assert.equal(wrong.statusCode, 409);
    assert.match(wrong.body, /TWF_E_APPROVAL_HASH/);
    const noName = await post(`officer=+&hash=${hash}&csrf=${encodeURIComponent(csrf)}`);
    assert.equal(noName.statusCode, 409);
    const store = await openSiteStore(dir);
    try {
      assert.equal((store.db.$client.prepare('select count(*) n from approvals').get() as { n: number }).n, 0, 'nothing approved by refused forms');
      const ok = await post(`officer=Dr+Alice+Officer&hash=${hash}&csrf=${encodeURIComponent(csrf)}`);
      assert.equal(ok.statusCode, 303, ok.body);
      const ap = store.db.$client.prepare('select officer, manifest_hash from approvals').get() as { officer: string; manifest_hash: string };
      assert.deepEqual(ap, { officer: 'Dr Alice Officer', manifest_hash: hash });
      const audited = store.db.$client.prepare("select actor, digest from audit_log where action = 'study.approved'").get() as { actor: string; digest: string };
      assert.deepEqual(audited, { actor: 'Dr Alice Officer', digest: hash });
      assert.equal(pendingApprovals(store.db).length, 0);
    } finally {
      store.close();
    }
  });

  it('prints a signed audit report for a date range, under its own script-free policy, that verifies under the site key', async () => {
    const { cookie } = await signIn();
    const day = new Date().toISOString().slice(0, 10);
    const bad = await app.inject({ method: 'GET', url: '/audit/report?from=2026-02-30&to=' + day, headers: { cookie } });
    assert.equal(bad.statusCode, 400);
    const r = await app.inject({ method: 'GET', url: `/audit/report?from=2020-01-01&to=${day}`, headers: { cookie } });
    assert.equal(r.statusCode, 200, r.body);
    assert.equal(r.headers['content-security-policy'], "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'");
    const v = verifyAuditReportHtml(r.body, loadIdentity(join(dir, 'identity.json')).ed25519PublicKey);
    assert.equal(v.verdict, 'ok', v.message);
    assert.ok(v.report!.entries.length > 0);
    const noSession = await app.inject({ method: 'GET', url: `/audit/report?from=2020-01-01&to=${day}` });
    assert.match(noSession.body, /action="\/console\/sign-in"/, 'no report without a session');
  });

  it('serves /metrics without a session, with the fixed names', async () => {
    const r = await app.inject({ method: 'GET', url: '/metrics' });
    assert.equal(r.statusCode, 200);
    for (const n of [
      'twinfed_site_rounds_total',
      'twinfed_site_training_seconds',
      'twinfed_site_epsilon_spent',
      'twinfed_site_epsilon_budget 10',
      'twinfed_site_imported_files',
      'twinfed_site_patients 0',
      'twinfed_site_last_contact_timestamp_seconds 0',
      'twinfed_site_connected 0',
      'twinfed_site_pending_approvals 0',
      'twinfed_site_process_cpu_seconds_total',
    ])
      assert.ok(r.body.includes(n), n);
  });

  it('listens on a free port with port 0, and refuses 0.0.0.0 before listening', async () => {
    await assert.rejects(startSiteConsole({ dataDir: dir, host: '0.0.0.0', port: 0, token: TOKEN }), /TWF_E_CONSOLE_BIND/);
    const c = await startSiteConsole({ dataDir: dir, port: 0, token: TOKEN });
    try {
      assert.match(c.url, /^http:\/\/127\.0\.0\.1:\d+\/$/);
      assert.notEqual(c.port, 0);
      const r = await fetch(new URL('/metrics', c.url));
      assert.equal(r.status, 200);
      assert.match(await r.text(), /twinfed_site_pending_approvals/);
    } finally {
      await c.close();
    }
  });
});
