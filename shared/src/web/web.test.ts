import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { html, raw, escapeHtml } from './html.js';
import { page } from './layout.js';
import { SessionStore, csrfOk, parseCookies, roleForToken, safeNext, sameOrigin } from './session.js';
import { consoleAsset } from './assets.js';
import { EventHub } from './sse.js';

describe('console html', () => {
  it('escapes every interpolated value, keeps html fragments and arrays', () => {
    const name = `<script>alert("x")</script>'&`;
    const out = html`<td title="${name}">${name}</td>${[html`<b>${1}</b>`, html`<i>${'<'}</i>`]}${null}${false}${raw('<hr>')}`.value;
    assert.equal(out, `<td title="${escapeHtml(name)}">&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&#39;&amp;</td><b>1</b><i>&lt;</i><hr>`);
    assert.ok(!out.includes('<script>'));
  });
  it('a page has no inline script and carries the csrf meta', () => {
    const p = page({ app: 'site', instance: 'Hospital <A>', title: 'T', body: html`<p>x</p>`, csrf: 'tok', user: { role: 'officer' } });
    assert.ok(!/<script>(?!<\/script>)/.test(p.replace(/<script src="[^"]+" defer><\/script>/g, '')));
    assert.match(p, /<meta name="csrf" content="tok" \/>/);
    assert.match(p, /Hospital &lt;A&gt;/);
  });
});

describe('console sessions', () => {
  it('expire when idle, refuse foreign origins and wrong csrf tokens', () => {
    let now = 0;
    const store = new SessionStore<'lead'>({ idleMs: 1000, now: () => now });
    const s = store.create('lead');
    assert.equal(store.get(s.id)?.role, 'lead');
    now = 900;
    assert.ok(store.get(s.id));
    now = 1901;
    assert.equal(store.get(s.id), null);
    const t = store.create('lead');
    assert.ok(csrfOk(t, t.csrf, 'http://127.0.0.1:7400', '127.0.0.1:7400'));
    assert.ok(!csrfOk(t, t.csrf, 'http://evil.example', '127.0.0.1:7400'));
    assert.ok(!csrfOk(t, 'nope', undefined, '127.0.0.1:7400'));
    assert.ok(sameOrigin(undefined, 'h:1'));
  });
  it('bounds the number of sessions, parses cookies, and picks roles by token', () => {
    const store = new SessionStore<'a'>({ maxSessions: 3 });
    for (let i = 0; i < 10; i++) store.create('a');
    assert.equal(store.size, 3);
    assert.deepEqual(parseCookies('a=1; twinfed_console=x%20y; a=2'), { a: '1', twinfed_console: 'x y' });
    assert.equal(
      roleForToken('t2', [
        { role: 'lead', token: 't1' },
        { role: 'auditor', token: 't2' },
      ]),
      'auditor',
    );
    assert.equal(roleForToken('', [{ role: 'lead', token: undefined }]), null);
    assert.equal(safeNext('//evil.example/x'), '/');
    assert.equal(safeNext('https://evil.example'), '/');
    assert.equal(safeNext('/studies/s1?x=1'), '/studies/s1?x=1');
  });
});

describe('console assets and events', () => {
  it('serves only allow-listed files, uPlot included', () => {
    assert.ok(consoleAsset('uplot.js')!.body.length > 10_000);
    assert.match(consoleAsset('console.css')!.contentType, /text\/css/);
    assert.equal(consoleAsset('../package.json'), null);
    assert.equal(consoleAsset('constructor'), null);
  });
  it('delivers to subscribers until they unsubscribe; a throwing listener does not stop others', () => {
    const hub = new EventHub<number>();
    const got: number[] = [];
    hub.subscribe('s', () => {
      throw new Error('closed');
    });
    const off = hub.subscribe('s', (n) => got.push(n));
    hub.publish('s', 1);
    off();
    hub.publish('s', 2);
    assert.deepEqual(got, [1]);
    assert.equal(hub.listenerCount('s'), 1);
  });
});
