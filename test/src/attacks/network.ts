import { existsSync } from 'node:fs';
import https from 'node:https';
import { join } from 'node:path';
import { CoordinatorLink, SITE_FILES, SiteNode, enrolSite } from '@twinfed/site-node';
import { enrolNewSite, lead, startCoordinator, waitFor } from '../harness.js';
import { idleTrainer, makeCert, startConnectProxy, withEnv } from '../tls-kit.js';
import { failed, refused, type Attack, type AttackContext } from './types.js';

const PROXY_ENV = { HTTPS_PROXY: undefined, https_proxy: undefined, NO_PROXY: undefined, no_proxy: undefined };

/**
 * Opens the enrolled site in `dir` and connects; resolves at the first refusal or connection.
 * A connection attempt opens the WebSocket first (the handshake nonce is fetched once it is open),
 * so a refused key shows as a refused WebSocket. `codes`: every refusal the site reported.
 */
async function tryConnect(dir: string, ms = 8000): Promise<{ codes: string[]; connected: boolean; siteId: string; refusedAudited: boolean }> {
  const codes: string[] = [];
  const node = await SiteNode.open({ dataDir: dir, trainer: idleTrainer, events: { onRejected: (e) => codes.push(e.code) } });
  try {
    node.connect();
    await waitFor(() => codes.length > 0 || node.connected, 'a refusal or a connection', ms).catch(() => undefined);
    return { codes, connected: node.connected, siteId: node.siteId, refusedAudited: node.audit.entries().some((e) => e.action === 'tls.refused') };
  } finally {
    await node.close();
  }
}

const codeOf = (e: unknown) => (e as { code?: string }).code ?? (e as Error).message;

/** Attacks on the network path between a site and the coordinator (TLS without a reverse proxy). */
export const NETWORK_ATTACKS: Attack[] = [
  {
    name: 'tls-inspecting-proxy',
    finding: null,
    expected: 'a proxy that re-encrypts TLS with its own certificate: the site refuses (TWF_E_TLS_PIN) and sends nothing through it',
    async run(ctx: AttackContext) {
      const real = makeCert(ctx.dir, 'coordinator');
      const inspector = makeCert(ctx.dir, 'inspector', 'Hospital TLS Inspection CA');
      const { c, url } = await startCoordinator(join(ctx.dir, 'coordinator'), { tls: { certFile: real.certFile, keyFile: real.keyFile } });
      const proxy = await startConnectProxy(inspector);
      try {
        // Control: the proxy really decrypts what a client that trusts any key sends through it.
        await withEnv({ ...PROXY_ENV, HTTPS_PROXY: proxy.url }, () => new CoordinatorLink({ coordinatorUrl: url, firstUse: true }).request('GET', '/healthz'));
        if (!proxy.fromSite().includes('GET /healthz')) return failed('control: the inspecting proxy did not read a request sent through it; the attack proves nothing');
        const control = proxy.fromSite().length;
        const tunnels = proxy.connects.length;

        // 1. Enrolment through the proxy, with the pin the lead gave out of band.
        const tok = await lead<{ token: string }>(url, 'POST', '/api/enrolment-tokens', { siteName: 'Hospital Inspected' });
        const dir1 = join(ctx.dir, 'enrolling');
        let enrolCode: string | null = null;
        await withEnv({ ...PROXY_ENV, HTTPS_PROXY: proxy.url }, () => enrolSite({ dataDir: dir1, coordinatorUrl: url, token: tok.json.token, tls: { pin: real.pin } })).then(
          () => undefined,
          (e) => {
            enrolCode = codeOf(e);
          },
        );
        ctx.log(`enrolment through the proxy: ${enrolCode}`);
        if (enrolCode !== 'TWF_E_TLS_PIN') return failed(`enrolment through the inspecting proxy ended with ${enrolCode ?? 'success'}`);
        if (existsSync(join(dir1, SITE_FILES.config)) || existsSync(join(dir1, SITE_FILES.identity))) return failed('the refused enrolment left an identity or site.json behind');

        // 2. An enrolled site whose traffic is later routed through the proxy.
        const dir2 = join(ctx.dir, 'enrolled');
        await withEnv(PROXY_ENV, () => enrolNewSite(url, dir2, 'Hospital Enrolled'));
        const run = await withEnv({ ...PROXY_ENV, HTTPS_PROXY: proxy.url }, () => tryConnect(dir2));
        ctx.log(`site node through the proxy: ${run.codes.join(', ')}; connected ${run.connected}`);
        if (run.connected) return failed('the site connected through the inspecting proxy');
        if (run.codes[0] !== 'TWF_E_TLS_PIN') return failed(`the site node reported ${run.codes.join(', ') || 'nothing'}, not TWF_E_TLS_PIN`);
        if (!run.refusedAudited) return failed("the refusal is not in the site's audit log (tls.refused)");

        const leaked = proxy.fromSite().subarray(control);
        if (proxy.connects.length < tunnels + 2) return failed(`${proxy.connects.length - tunnels} tunnels through the proxy, not 2 (enrolment, WebSocket): the attack proves less than it says`);
        if (leaked.length > 0) return failed(`the proxy read ${leaked.length} bytes in clear: ${leaked.toString('latin1').slice(0, 80)}`);
        if (leaked.includes(tok.json.token)) return failed('the enrolment token crossed the proxy');
        const heard = c.engine.audit.entries().filter((e) => e.actor === run.siteId && e.action === 'msg.received').length;
        if (heard > 0) return failed(`the coordinator received ${heard} messages from the site through the proxy`);
        const sites = await lead<{ siteName: string }[]>(url, 'GET', '/api/sites');
        if (sites.json.some((s) => s.siteName === 'Hospital Inspected')) return failed('the refused enrolment registered a site');
        return refused(
          `enrolment and the site's WebSocket refused (${proxy.connects.length - tunnels} tunnels); the proxy read 0 bytes in clear (it read ${control} from a client that trusts any key)`,
          'TWF_E_TLS_PIN',
        );
      } finally {
        await proxy.close();
        await c.close();
      }
    },
  },
  {
    name: 'tls-wrong-server',
    finding: null,
    expected: "another server (another certificate) at the coordinator's address: enrolment and site refuse it (TWF_E_TLS_PIN) and it receives no request",
    async run(ctx: AttackContext) {
      const real = makeCert(ctx.dir, 'coordinator');
      const impostorCert = makeCert(ctx.dir, 'impostor'); // same subject, another key
      const first = await startCoordinator(join(ctx.dir, 'coordinator'), { tls: { certFile: real.certFile, keyFile: real.keyFile } });
      const { url } = first;
      const port = Number(new URL(url).port);
      const dir = join(ctx.dir, 'site');
      await withEnv(PROXY_ENV, () => enrolNewSite(url, dir, 'Hospital Pinned'));
      const tok = await lead<{ token: string }>(url, 'POST', '/api/enrolment-tokens', { siteName: 'Hospital New' });
      await first.c.close();

      // The impostor takes the address and answers anything like a coordinator would.
      const requests: string[] = [];
      const impostor = https.createServer({ cert: impostorCert.certPem, key: impostorCert.keyPem }, (req, res) => {
        let body = '';
        req.on('data', (d: Buffer) => {
          body += d.toString('utf8');
        });
        req.on('end', () => {
          requests.push(`${req.method} ${req.url} ${body}`);
          res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
        });
      });
      impostor.on('upgrade', (req, socket) => {
        requests.push(`UPGRADE ${req.url}`);
        socket.destroy();
      });
      await new Promise<void>((r) => impostor.listen(port, '127.0.0.1', r));
      try {
        let enrolCode: string | null = null;
        await withEnv(PROXY_ENV, () => enrolSite({ dataDir: join(ctx.dir, 'new'), coordinatorUrl: url, token: tok.json.token, tls: { pin: real.pin } })).then(
          () => undefined,
          (e) => {
            enrolCode = codeOf(e);
          },
        );
        if (enrolCode !== 'TWF_E_TLS_PIN') return failed(`enrolment with the impostor ended with ${enrolCode ?? 'success'}`);
        const run = await withEnv(PROXY_ENV, () => tryConnect(dir));
        if (run.connected || run.codes[0] !== 'TWF_E_TLS_PIN') return failed(`the site node: connected ${run.connected}, reported ${run.codes.join(', ') || 'nothing'}`);
        if (requests.length > 0) return failed(`the impostor received ${requests.length} requests: ${requests[0].slice(0, 120)}`);
        return refused("enrolment (with the pin given) and the running site refused the impostor's key; it received no request, no token, no handshake", 'TWF_E_TLS_PIN');
      } finally {
        await new Promise<void>((r) => impostor.close(() => r()));
      }
    },
  },
];
