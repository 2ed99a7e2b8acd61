import http from 'node:http';
import https from 'node:https';
import { isIP } from 'node:net';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import { HttpsProxyAgent } from 'https-proxy-agent';
import { HandshakeChallengeResponse } from '@twinfed/protocols';
import { certificatePin } from '@twinfed/shared/crypto/index';
import { SiteError } from './errors.js';

/**
 * The site's only way out to the coordinator (it never listens): enrolment, the REST calls, the
 * socket.io WebSocket and `site doctor` all go through a CoordinatorLink, so TLS pinning and the
 * proxy apply to every one of them.
 *
 * Trust, for an https:// coordinator:
 * - `pins` (the default once enrolled): the server must present a key whose SPKI SHA-256 is in
 *   site.json `tlsPins`. The pin replaces certificate authorities for this one host: the chain,
 *   the host name and the validity dates are not checked, because a pin already names the exact
 *   key (a CA and a name only vouch for a key the site does not know in advance). Self-signed
 *   certificates, IP addresses and internal names therefore all work, and a TLS-inspecting proxy
 *   trusted by the hospital's CA store does not.
 * - `first-use` (enrolment without --tls-pin): the first key presented is pinned.
 * - `ca` (enrolled with --tls-ca, or before pins existed): Node's CA list and the host name.
 * The check runs when the TLS handshake completes and before the socket is handed to HTTP, so a
 * refused server receives nothing but the TLS ClientHello (and a proxy, the CONNECT line).
 */
export type TlsTrust = 'pins' | 'first-use' | 'ca' | 'none';

export interface TlsRefusal {
  /** The pin of the key the server presented. */
  presented: string;
  subject: string;
  issuer: string;
  error: SiteError;
}

export interface CoordinatorLinkOptions {
  coordinatorUrl: string;
  /** Pins to require (site.json tlsPins); empty: first use with `firstUse`, else certificate authorities. */
  tlsPins?: readonly string[];
  /** Pin the first key presented (enrolment without --tls-pin). */
  firstUse?: boolean;
  /** Where HTTPS_PROXY / NO_PROXY are read (default process.env), once, when the link is made. */
  env?: NodeJS.ProcessEnv;
  /** A server presented a key that is not pinned (the site logs and audits it). */
  onTlsRefused?: (r: TlsRefusal) => void;
  handshakeTimeoutMs?: number;
}

/** Largest REST answer a site reads from the coordinator. */
const MAX_RESPONSE_BYTES = 4 << 20;

export class CoordinatorLink {
  readonly url: URL;
  /** The HTTPS proxy every connection tunnels through (HTTPS_PROXY, unless NO_PROXY lists the host), or null. */
  readonly proxy: URL | null;
  /** The http(s) agent that opens, checks and hands over every connection (REST and WebSocket). */
  readonly agent: http.Agent;
  /** The pin of the key presented on the last TLS connection that was accepted. */
  presentedPin: string | null = null;
  private readonly pins: string[];

  constructor(private readonly opts: CoordinatorLinkOptions) {
    this.url = new URL(opts.coordinatorUrl);
    this.pins = [...(opts.tlsPins ?? [])];
    this.proxy = proxyFor(this.url, opts.env ?? process.env);
    if (this.url.protocol !== 'https:') this.agent = new http.Agent({ keepAlive: false });
    else if (this.proxy) this.agent = new CheckedProxyAgent(this.proxy, this);
    else this.agent = new CheckedAgent(this);
  }

  get secure(): boolean {
    return this.url.protocol === 'https:';
  }

  get trust(): TlsTrust {
    if (!this.secure) return 'none';
    if (this.pins.length > 0) return 'pins';
    return this.opts.firstUse ? 'first-use' : 'ca';
  }

  /** The pins this link accepts now. */
  get pinned(): readonly string[] {
    return [...this.pins];
  }

  /** Accepts one more key (a signed rollover); false when it was already pinned. */
  addPin(pin: string): boolean {
    if (this.pins.includes(pin)) return false;
    this.pins.push(pin);
    return true;
  }

  /** ` via proxy http://host:port` for messages (credentials left out), or ''. */
  get via(): string {
    return this.proxy ? ` via proxy ${this.proxy.protocol}//${this.proxy.host}` : '';
  }

  /** One JSON request to the coordinator; `json` is null when the answer is not JSON. */
  async request(method: 'GET' | 'POST' | 'DELETE', path: string, o: { body?: unknown; headers?: Record<string, string>; timeoutMs?: number } = {}): Promise<{ status: number; json: unknown }> {
    const url = new URL(path, this.url);
    const payload = o.body === undefined ? undefined : Buffer.from(JSON.stringify(o.body));
    const timeoutMs = o.timeoutMs ?? 15_000;
    const headers: Record<string, string> = { accept: 'application/json', ...(o.headers ?? {}), ...(payload ? { 'content-type': 'application/json', 'content-length': String(payload.length) } : {}) };
    return new Promise((resolve, reject) => {
      const req = (this.secure ? https : http).request(url, { method, agent: this.agent, headers, signal: AbortSignal.timeout(timeoutMs) }, (res) => {
        const chunks: Buffer[] = [];
        let n = 0;
        res.on('data', (c: Buffer) => {
          n += c.length;
          if (n > MAX_RESPONSE_BYTES) req.destroy(new Error(`answer larger than ${MAX_RESPONSE_BYTES} bytes`));
          else chunks.push(c);
        });
        res.on('end', () => {
          let json: unknown = null;
          try {
            json = JSON.parse(Buffer.concat(chunks).toString('utf8'));
          } catch {
            /* not JSON */
          }
          resolve({ status: res.statusCode ?? 0, json });
        });
        res.on('error', reject);
      });
      req.on('error', (e: Error) => reject(e.name === 'AbortError' ? new Error(`${method} ${url.href}: no answer within ${timeoutMs} ms${this.via}`) : e));
      req.end(payload);
    });
  }

  /** socket.io-client options that route the WebSocket through this link (its agent does TLS, pins and proxy). */
  socketOptions(): { agent?: string | boolean } {
    // engine.io-client types `agent` as string | boolean, but hands it to `ws`, which takes an http.Agent.
    return this.secure ? { agent: this.agent as unknown as string } : {};
  }

  /** TLS options of a connection to `host`: pinned (no CA, name or date checks) or CA-validated. */
  tlsOptions(host: string): tls.ConnectionOptions {
    const common = { ALPNProtocols: ['http/1.1'], ...(isIP(host) ? {} : { servername: host }) };
    if (this.trust === 'ca') return { ...common, rejectUnauthorized: true, checkServerIdentity: tls.checkServerIdentity };
    return { ...common, rejectUnauthorized: false, checkServerIdentity: () => undefined };
  }

  /**
   * Resolves once the TLS handshake on `s` completed with an acceptable key; otherwise destroys
   * the socket (nothing was written to it) and rejects with TWF_E_TLS_PIN or TWF_E_TLS.
   */
  checked(s: tls.TLSSocket, host: string, port: number): Promise<void> {
    const where = `${host}:${port}${this.via}`;
    return new Promise((resolve, reject) => {
      const done = (e: Error | null) => {
        clearTimeout(timer);
        s.removeListener('secureConnect', onSecure);
        s.removeListener('error', onError);
        if (!e) return resolve();
        s.destroy();
        reject(e);
      };
      // A refused or reset TCP connection (coordinator down, restarting) is not a TLS problem: passed on as it is.
      const onError = (e: Error) => done(e instanceof SiteError || (e as NodeJS.ErrnoException).syscall ? e : new SiteError('TWF_E_TLS', `${where}: ${e.message}`));
      const onSecure = () => {
        const cert = s.getPeerX509Certificate();
        if (!cert) return done(new SiteError('TWF_E_TLS', `${where}: the server sent no certificate`));
        const pin = certificatePin(cert);
        if (this.trust === 'first-use') this.pins.push(pin);
        if (this.trust === 'ca' || this.pins.includes(pin)) {
          this.presentedPin = pin;
          return done(null);
        }
        const oneLine = (t: string) => t.replace(/\n/g, ', ');
        const error = new SiteError(
          'TWF_E_TLS_PIN',
          `${where} presented ${pin} (certificate subject "${oneLine(cert.subject)}", issuer "${oneLine(cert.issuer)}"); this site pins ${this.pins.join(', ')}`,
        );
        this.opts.onTlsRefused?.({ presented: pin, subject: oneLine(cert.subject), issuer: oneLine(cert.issuer), error });
        done(error);
      };
      const ms = this.opts.handshakeTimeoutMs ?? 15_000;
      const timer = setTimeout(() => onError(new Error(`no TLS handshake within ${ms} ms`)), ms);
      s.once('secureConnect', onSecure);
      s.once('error', onError);
    });
  }
}

/** Direct connections: the socket reaches HTTP only after CoordinatorLink.checked accepted it. */
class CheckedAgent extends https.Agent {
  constructor(private readonly link: CoordinatorLink) {
    super({ keepAlive: false, maxCachedSessions: 0 });
  }

  override createConnection(options: http.ClientRequestArgs, cb?: (err: Error | null, stream: Duplex) => void): Duplex | null | undefined {
    const host = String(options.host ?? options.hostname ?? this.link.url.hostname).replace(/^\[|\]$/g, '');
    const port = Number(options.port ?? 443);
    const s = tls.connect({ host, port, ...this.link.tlsOptions(host) });
    this.link.checked(s, host, port).then(
      () => cb!(null, s),
      (e: Error) => cb!(e, s),
    );
    return undefined; // handed over through cb, after the check
  }
}

/** Through HTTPS_PROXY: a CONNECT tunnel (https-proxy-agent), then TLS end to end with the coordinator, checked the same way. */
class CheckedProxyAgent extends HttpsProxyAgent<string> {
  constructor(
    proxy: URL,
    private readonly link: CoordinatorLink,
  ) {
    super(proxy, { keepAlive: false });
  }

  /** The target is always the https:// coordinator (agent-base otherwise guesses from the call stack). */
  override isSecureEndpoint(): boolean {
    return true;
  }

  override async connect(req: http.ClientRequest, opts: Parameters<HttpsProxyAgent<string>['connect']>[1]) {
    const host = String(opts.host).replace(/^\[|\]$/g, '');
    const port = Number(opts.port);
    let status: number | null = null;
    req.once('proxyConnect', (c: { statusCode: number }) => {
      status = c.statusCode;
    });
    let s: Duplex;
    try {
      s = await super.connect(req, { ...opts, ...this.link.tlsOptions(host), secureEndpoint: true, port });
    } catch (e) {
      throw new SiteError('TWF_E_PROXY', `${this.link.via.trim()}: ${(e as Error).message}`);
    }
    if (!(s instanceof tls.TLSSocket)) {
      s.destroy(); // the proxy's refusal, which https-proxy-agent would replay as the coordinator's answer
      const down = status !== null && status >= 502 && status <= 504 ? ': it could not reach the coordinator (down, or not allowed by the proxy)' : '';
      throw new SiteError('TWF_E_PROXY', `${this.link.via.trim()} answered ${status ?? 'without a status'} to CONNECT ${host}:${port}${down}`);
    }
    await this.link.checked(s, host, port);
    return s;
  }
}

/**
 * The proxy for a coordinator URL, from HTTPS_PROXY / https_proxy unless NO_PROXY / no_proxy lists
 * the host (`*`, a host, `.domain` or `domain` for it and its subdomains, IP literals, each with
 * an optional `:port`; no CIDR ranges). Plain http:// coordinators (loopback demos) are never proxied.
 */
export function proxyFor(target: URL, env: NodeJS.ProcessEnv = process.env): URL | null {
  if (target.protocol !== 'https:') return null;
  const raw = (env.https_proxy || env.HTTPS_PROXY || '').trim();
  if (!raw || noProxy(target, env.no_proxy ?? env.NO_PROXY ?? '')) return null;
  let u: URL;
  try {
    u = new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(raw) ? raw : `http://${raw}`);
  } catch {
    throw new SiteError('TWF_E_PROXY', `HTTPS_PROXY is not a URL: ${raw.replace(/\/\/[^@/]*@/, '//***@')}`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new SiteError('TWF_E_PROXY', `HTTPS_PROXY ${u.protocol}// proxies are not supported; give an http:// or https:// proxy`);
  return u;
}

function noProxy(target: URL, list: string): boolean {
  const host = target.hostname.replace(/^\[|\]$/g, '').toLowerCase();
  const port = target.port || '443';
  for (const raw of list
    .toLowerCase()
    .split(/[\s,]+/)
    .filter(Boolean)) {
    if (raw === '*') return true;
    let name = raw;
    let p: string | null = null;
    const bracket = /^\[([^\]]+)\](?::(\d+))?$/.exec(raw);
    if (bracket) [name, p] = [bracket[1], bracket[2] ?? null];
    else if ((raw.match(/:/g) ?? []).length === 1) [name, p] = raw.split(':') as [string, string];
    if (p !== null && p !== port) continue;
    name = name.replace(/^\*?\./, '');
    if (host === name || (isIP(host) === 0 && host.endsWith(`.${name}`))) return true;
  }
  return false;
}

/**
 * The link's own refusal (TWF_E_TLS_PIN, TWF_E_TLS, TWF_E_PROXY) behind a socket.io-client
 * connect_error: engine.io wraps the `ws` error event as the TransportError's description.
 */
export function linkErrorOf(err: unknown): SiteError | null {
  const d = (err as { description?: unknown } | null)?.description;
  const e = (d as { error?: unknown } | null)?.error ?? d;
  return e instanceof SiteError ? e : null;
}

/** POST with a JSON body through the link. */
export async function postJson(link: CoordinatorLink, path: string, body: unknown, timeoutMs = 15_000): Promise<{ status: number; json: unknown }> {
  return link.request('POST', path, { body, timeoutMs });
}

/** A fresh single-use handshake nonce (POST /api/handshake) and the coordinator's last seen sequence number of this site. */
export async function fetchHandshakeChallenge(link: CoordinatorLink, siteId: string) {
  const r = await postJson(link, '/api/handshake', { siteId });
  if (r.status !== 200) {
    const j = r.json as { code?: string; detail?: string } | null;
    throw new Error(`handshake challenge refused: ${r.status} ${j?.code ?? ''} ${j?.detail ?? ''}`.trim());
  }
  return HandshakeChallengeResponse.parse(r.json);
}
