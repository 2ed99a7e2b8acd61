import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import https from 'node:https';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Coordinator } from '@twinfed/coordinator';
import { CoordinatorLink, SITE_FILES, SiteNode, enrolSite, loadSiteConfig } from '@twinfed/site-node';
import { compareAuditLogs, readSiteStatements } from '@twinfed/shared/audit/index';
import { certificatePin, initSodium, loadIdentity } from '@twinfed/shared/crypto/index';
import { ADMIN_TOKEN, createAndStart, enrolNewSite, lead, realSite, startCoordinator, tempDir, tinySpec, waitFor, connectAndApprove } from './harness.js';
import { idleTrainer, makeCert, startConnectProxy, withEnv, type TestCert, type TestProxy } from './tls-kit.js';

/*
 * TLS without a reverse proxy: the coordinator serves HTTPS and WSS from a self-signed
 * certificate, sites pin its key. A TLS-inspecting proxy and a wrong server at the coordinator's
 * address are the red-team suite's 'tls-inspecting-proxy' and 'tls-wrong-server'
 * (test/src/attacks/network.ts, run as tests by attacks.test.ts).
 */

describe('a federation over real TLS: self-signed coordinator, two sites direct, one through a CONNECT proxy', () => {
  const tmp = tempDir('tls-fed');
  let c: Coordinator;
  let url: string;
  let cert: TestCert;
  let proxy: TestProxy;
  let studyId: string;
  const nodes: SiteNode[] = [];
  const SITES = [
    { name: 'A', patients: ['STS_001', 'STS_002', 'STS_003'], val: ['STS_003'], proxied: false },
    { name: 'B', patients: ['STS_011', 'STS_012', 'STS_013'], val: ['STS_013'], proxied: false },
    { name: 'C', patients: ['STS_021', 'STS_022', 'STS_023'], val: ['STS_023'], proxied: true },
  ];

  before(async () => {
    await initSodium();
    cert = makeCert(tmp.dir, 'coordinator');
    ({ c, url } = await startCoordinator(join(tmp.dir, 'coordinator'), { tls: { certFile: cert.certFile, keyFile: cert.keyFile } }));
    proxy = await startConnectProxy();
    for (const s of SITES) {
      // The proxy is read from the environment when a site enrols and when its node opens.
      const open = () => realSite(url, join(tmp.dir, `site-${s.name}`), `Hospital ${s.name}`, s.patients, s.val);
      const r = s.proxied
        ? await withEnv({ HTTPS_PROXY: proxy.url, NO_PROXY: undefined, https_proxy: undefined, no_proxy: undefined }, open)
        : await withEnv({ HTTPS_PROXY: undefined, https_proxy: undefined }, open);
      nodes.push(r.node);
    }
    let manifestHash: string;
    ({ studyId, manifestHash } = await createAndStart(url, tinySpec({ rounds: 1, minSites: 3, roundDeadlineS: 120 })));
    await connectAndApprove(nodes, { studyId, manifestHash }, (i) => `officer ${SITES[i].name}`);
  });

  after(async () => {
    for (const n of nodes) await n.close().catch(() => undefined);
    await c?.close();
    await proxy?.close();
    tmp.cleanup();
  });

  it('serves HTTPS and says its pin (GET /api/tls), the pin of the certificate file', async () => {
    assert.match(url, /^https:\/\/127\.0\.0\.1:\d+$/);
    assert.deepEqual(c.tls, { pin: cert.pin, nextPin: null });
    const r = await lead<{ tls: boolean; pin: string; nextPin: string | null }>(url, 'GET', '/api/tls');
    assert.deepEqual(r.json, { tls: true, pin: cert.pin, nextPin: null });
    // Plain HTTP on the TLS port gets nothing useful.
    const plain = await fetch(url.replace('https:', 'http:') + '/healthz').then(
      (x) => x.status,
      () => 'refused',
    );
    assert.notEqual(plain, 200);
  });

  it('runs a study to completion with the same model at every site', async () => {
    await waitFor(() => c.engine.studyStatus(studyId).state === 'completed', 'study completion', 120_000, 250);
    await waitFor(() => nodes.every((n) => (n.latestModel(studyId)?.version ?? 0) === 1), 'models at version 1', 30_000);
    const digests = nodes.map((n) => n.modelHistory(studyId).find((m) => m.version === 1)!.digest);
    assert.equal(new Set(digests).size, 1, 'all sites hold the same global model');
    assert.deepEqual([...c.engine.roundStatus(studyId, 1).survivors].sort(), nodes.map((n) => n.siteId).sort());
  });

  it('every site pinned the coordinator key at enrolment (site.json and its audit log)', () => {
    for (const n of nodes) {
      assert.deepEqual(n.config.tlsPins, [cert.pin]);
      const added = n.audit.entries().filter((e) => e.action === 'tls.pin_added');
      assert.equal(added.length, 1);
      assert.match(added[0].detail ?? '', /enrolment, pin given/);
    }
  });

  it('the proxied site made every connection through the proxy, which saw only TLS', () => {
    const target = new URL(url).host;
    assert.ok(proxy.connects.length >= 3, `enrolment, handshake nonce, WebSocket: ${proxy.connects.length} tunnels`);
    assert.ok(
      proxy.connects.every((t) => t === target),
      proxy.connects.join(','),
    );
    const seen = proxy.fromSite();
    assert.ok(seen.length > 1000);
    const siteC = nodes[2].siteId;
    for (const clear of [siteC, '/api/enrol', '/api/handshake', 'socket.io', 'hello', '"token"']) assert.equal(seen.includes(clear), false, `${clear} crossed the proxy in clear`);
    assert.equal(seen[0], 0x16, 'the first byte in the tunnel is a TLS handshake record');
  });
});

describe('a signed TLS rollover: a routine renewal does not lock sites out', () => {
  const tmp = tempDir('tls-roll');
  let c: Coordinator;
  let url: string;
  let port: number;
  let current: TestCert;
  let next: TestCert;
  const dir = (n: string) => join(tmp.dir, n);
  const rejected = new Map<string, string[]>();
  const open = (name: string) =>
    SiteNode.open({
      dataDir: dir(name),
      trainer: idleTrainer,
      approvalPollMs: 100,
      events: { onRejected: (e) => rejected.set(name, [...(rejected.get(name) ?? []), e.code]) },
    });

  before(async () => {
    await initSodium();
    current = makeCert(tmp.dir, 'current');
    next = makeCert(tmp.dir, 'next');
    ({ c, url } = await startCoordinator(dir('coordinator'), { tls: { certFile: current.certFile, keyFile: current.keyFile, nextCertFile: next.certFile } }));
    port = Number(new URL(url).port);
    await enrolNewSite(url, dir('online'), 'Hospital Online'); // pin given
    // Trust on first use: no pin given, the key that answers is pinned.
    const tok = await lead<{ token: string }>(url, 'POST', '/api/enrolment-tokens', { siteName: 'Hospital Offline' });
    const cfg = await enrolSite({ dataDir: dir('offline'), coordinatorUrl: url, token: tok.json.token });
    assert.deepEqual(cfg.tlsPins, [current.pin]);
  });

  after(async () => {
    await c?.close();
    tmp.cleanup();
  });

  it('GET /api/tls names the current and the next pin', async () => {
    const r = await lead<{ pin: string; nextPin: string }>(url, 'GET', '/api/tls');
    assert.deepEqual(r.json, { tls: true, pin: current.pin, nextPin: next.pin });
  });

  it("trust on first use is written down as such in the site's audit log", async () => {
    const n = await open('offline');
    const e = n.audit.entries().find((x) => x.action === 'tls.pin_added')!;
    assert.deepEqual(JSON.parse(e.detail!), { pin: current.pin, source: 'enrolment, trust on first use' });
    await n.close();
  });

  it('a site that connects gets the next pin, signed, and keeps it in site.json (audited tls.pin_added)', async () => {
    const n = await open('online');
    n.connect();
    const e = await waitFor(() => n.audit.entries().find((x) => x.action === 'tls.pin_added' && x.detail?.includes('rollover')), 'tls.pin_added', 15_000);
    const d = JSON.parse(e.detail!) as { pin: string; currentPin: string; signature: string };
    assert.equal(d.pin, next.pin);
    assert.equal(d.currentPin, current.pin);
    assert.deepEqual(loadSiteConfig(dir('online')).tlsPins, [current.pin, next.pin]);

    // A rollover whose statement is not signed by the coordinator key (here: signed for another pin) is refused.
    const forged = makeCert(tmp.dir, 'forged').pin;
    const before = n.audit.entries().length;
    c.engine.sendAsCoordinator(n.siteId, 'tls.rollover', null, null, { currentPin: current.pin, nextPin: forged, issuedAtMs: Date.now(), signature: d.signature });
    await waitFor(
      () =>
        n.audit
          .entries()
          .slice(before)
          .find((x) => x.action === 'msg.failed' && x.msgType === 'tls.rollover'),
      'refusal',
      10_000,
    );
    assert.ok(!loadSiteConfig(dir('online')).tlsPins.includes(forged));
    assert.match(
      n.audit
        .entries()
        .slice(before)
        .find((x) => x.action === 'msg.failed')!.detail!,
      /TWF_E_BAD_SIGNATURE/,
    );
    // The new message type cross-checks like any other (twinfed audit compare).
    const st = readSiteStatements(n.db, n.siteId);
    const cmp = compareAuditLogs({
      siteId: n.siteId,
      coordinatorId: c.engine.coordinatorId,
      site: n.audit.entries(),
      coordinator: c.engine.audit.entries(),
      siteKey: loadIdentity(join(dir('online'), SITE_FILES.identity)).ed25519PublicKey,
      coordinatorKey: c.engine.identity.ed25519PublicKey,
      receipts: st.receipts ?? [],
      checkpoints: st.checkpoints ?? [],
    });
    assert.equal(cmp.ok, true, JSON.stringify(cmp.problems));
    await n.close();
  });

  it('after the restart on the next certificate, the site that got the rollover connects; the one that did not is refused with TWF_E_TLS_PIN', async () => {
    await c.close();
    ({ c, url } = await startCoordinator(dir('coordinator'), { port, tls: { certFile: next.certFile, keyFile: next.keyFile } }));
    assert.equal(c.tls!.pin, next.pin);

    const online = await open('online');
    const offline = await open('offline');
    online.connect();
    offline.connect();
    await waitFor(() => c.engine.listSites().find((s) => s.siteId === online.siteId)?.connected, 'the rolled-over site online', 15_000);
    await waitFor(() => rejected.get('offline')?.includes('TWF_E_TLS_PIN'), 'TWF_E_TLS_PIN at the other site', 15_000);
    assert.equal(offline.connected, false);
    assert.equal(c.engine.listSites().find((s) => s.siteId === offline.siteId)?.connected, false);
    const refused = offline.audit.entries().filter((x) => x.action === 'tls.refused');
    assert.equal(refused.length, 1, 'audited once, however often it retries');
    assert.equal(JSON.parse(refused[0].detail!).presented, next.pin);
    // Nothing of the refused site reached the coordinator: no handshake nonce, no message.
    assert.ok(!c.engine.audit.entries().some((x) => x.actor === offline.siteId && x.action === 'msg.received'));
    assert.equal(rejected.get('online')?.includes('TWF_E_TLS_PIN') ?? false, false);
    await online.close();
    await offline.close();
  });
});

describe('the pinned link', () => {
  const tmp = tempDir('tls-link');
  after(() => tmp.cleanup());

  it('refuses an unpinned key before sending a byte, and a self-signed one without pins (certificate authorities)', async () => {
    // The served certificate is the tests' fallback for machines without openssl: it must hold up in a real handshake.
    const good = makeCert(tmp.dir, 'good', 'twinfed-test', 'node');
    assert.equal(good.pin, certificatePin(readFileSync(good.certFile, 'utf8')));
    const other = makeCert(tmp.dir, 'other');
    let requests = 0;
    const server = https.createServer({ cert: good.certPem, key: good.keyPem }, (_req, res) => {
      requests++;
      res.end('{"ok":true}');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const base = `https://127.0.0.1:${(server.address() as { port: number }).port}`;
    try {
      const ok = new CoordinatorLink({ coordinatorUrl: base, tlsPins: [other.pin, good.pin], env: {} });
      assert.deepEqual((await ok.request('GET', '/')).json, { ok: true });
      assert.equal(ok.presentedPin, good.pin);
      const seen: string[] = [];
      const wrong = new CoordinatorLink({ coordinatorUrl: base, tlsPins: [other.pin], env: {}, onTlsRefused: (r) => seen.push(r.presented) });
      await assert.rejects(wrong.request('POST', '/api/enrol', { body: { token: 'secret' } }), (e: Error & { code?: string }) => {
        assert.equal(e.code, 'TWF_E_TLS_PIN');
        assert.match(e.message, /TLS-inspecting proxy/);
        assert.match(e.message, /exempt the coordinator host/);
        assert.ok(e.message.includes(good.pin) && e.message.includes(other.pin), 'names the key presented and the keys pinned');
        return true;
      });
      assert.deepEqual(seen, [good.pin]);
      const ca = new CoordinatorLink({ coordinatorUrl: base, env: {} });
      await assert.rejects(ca.request('GET', '/'), /TWF_E_TLS.*self-signed/);
      assert.equal(requests, 1, 'only the pinned request reached the server');
    } finally {
      server.close();
    }
  });

  it("the coordinator refuses a key that is not its certificate's, a next certificate with the same key, a missing file", async () => {
    const a = makeCert(tmp.dir, 'cfg-a');
    const b = makeCert(tmp.dir, 'cfg-b');
    const start = (tls: Record<string, string>) =>
      startCoordinator(join(tmp.dir, 'cfg'), { tls }).then(
        async ({ c }) => {
          await c.close();
          return 'started';
        },
        (e: Error) => e.message,
      );
    assert.match(await start({ certFile: a.certFile, keyFile: b.keyFile }), /TWF_E_CONFIG.*is not the key of/);
    assert.match(await start({ certFile: a.certFile, keyFile: a.keyFile, nextCertFile: a.certFile }), /TWF_E_CONFIG.*same key/);
    assert.match(await start({ certFile: join(tmp.dir, 'nope.crt'), keyFile: a.keyFile }), /TWF_E_CONFIG.*certFile.*ENOENT/);
    assert.equal(await start({ certFile: a.certFile, keyFile: a.keyFile, nextCertFile: b.certFile }), 'started');
  });

  it('site.json of a site enrolled over plain http has no pins; GET /api/tls says there is no TLS', async () => {
    const { c, url } = await startCoordinator(join(tmp.dir, 'plain'));
    try {
      assert.deepEqual((await c.app.inject({ method: 'GET', url: '/api/tls' })).json(), { tls: false, pin: null, nextPin: null });
      const cfg = await enrolNewSite(url, join(tmp.dir, 'plain-site'), 'Plain');
      assert.deepEqual(cfg.tlsPins, []);
      assert.deepEqual(JSON.parse(readFileSync(join(tmp.dir, 'plain-site', SITE_FILES.config), 'utf8')).tlsPins, []);
    } finally {
      await c.close();
    }
  });
});

describe('twinfed CLI with TLS', () => {
  const BIN = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../cli/dist/bin.js');
  const tmp = tempDir('tls-cli');
  const env = { ...process.env, TWINFED_ADMIN_TOKEN: ADMIN_TOKEN, HTTPS_PROXY: '', https_proxy: '' };
  const twinfed = (args: string[], extra: Record<string, string> = {}) =>
    new Promise<{ code: number; out: string; err: string }>((res) => {
      execFile(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 60_000, env: { ...env, ...extra } }, (e, out, err) => res({ code: e ? Number(e.code ?? 1) : 0, out, err }));
    });
  let proc: ReturnType<typeof spawn>;
  let url = '';
  let pin = '';
  let nextPin = '';

  before(async () => {
    const cur = makeCert(tmp.dir, 'cur');
    const nxt = makeCert(tmp.dir, 'nxt');
    proc = spawn(
      process.execPath,
      [
        BIN,
        'coordinator',
        'start',
        '--data-dir',
        join(tmp.dir, 'coordinator'),
        '--port',
        '0',
        '--log-level',
        'error',
        '--tls-cert',
        cur.certFile,
        '--tls-key',
        cur.keyFile,
        '--tls-next-cert',
        nxt.certFile,
      ],
      { env, stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let out = '';
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
    });
    await waitFor(() => /next TLS pin/.test(out), 'coordinator start', 20_000, 50);
    url = /listening on (https:\/\/\S+)/.exec(out)![1];
    pin = /^TLS pin (\S+)/m.exec(out)![1];
    nextPin = /^next TLS pin (\S+)/m.exec(out)![1];
    assert.equal(pin, cur.pin);
    assert.equal(nextPin, nxt.pin);
  });

  after(() => {
    proc?.kill('SIGTERM');
    tmp.cleanup();
  });

  it('coordinator start --tls-cert prints the pin; lead commands pin it (TWINFED_TLS_PIN); site enrol --tls-pin checks it', async () => {
    const tok = await twinfed(['lead', 'token', 'Hospital CLI', '--url', url, '--json'], { TWINFED_TLS_PIN: pin });
    assert.equal(tok.code, 0, tok.err);
    const wrongLead = await twinfed(['lead', 'sites', '--url', url], { TWINFED_TLS_PIN: nextPin });
    assert.equal(wrongLead.code, 1);
    assert.match(wrongLead.err, /TWF_E_TLS_PIN/);

    const token = (JSON.parse(tok.out) as { token: string }).token;
    const wrong = await twinfed(['site', 'enrol', '--data-dir', join(tmp.dir, 'site'), '--coordinator', url, '--token', token, '--tls-pin', nextPin]);
    assert.equal(wrong.code, 1);
    assert.match(wrong.err, /TWF_E_TLS_PIN.*TLS-inspecting proxy.*exempt the coordinator host/s);
    // The token was not sent: it still enrols, with the right pin, pasted the way curl writes it.
    const ok = await twinfed(['site', 'enrol', '--data-dir', join(tmp.dir, 'site'), '--coordinator', url, '--token', token, '--tls-pin', pin.replace('sha256/', 'sha256//')]);
    assert.equal(ok.code, 0, ok.err);
    assert.match(ok.out, new RegExp(`TLS key pinned: ${pin.replace(/[+/]/g, '\\$&')} \\(as given\\)`));

    const doc = await twinfed(['site', 'doctor', '--data-dir', join(tmp.dir, 'site'), '--json']);
    const checks = (JSON.parse(doc.out) as { checks: { name: string; ok: boolean; detail: string }[] }).checks;
    assert.equal(checks.find((x) => x.name === 'TLS')!.detail, `pins ${pin}`);
    const coord = checks.find((x) => x.name === 'coordinator')!;
    assert.equal(coord.ok, true, coord.detail);
    assert.ok(coord.detail.endsWith(`with TLS key ${pin}`), coord.detail);
  });
});
