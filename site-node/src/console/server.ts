import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify';
import type { AuditLog } from '@twinfed/shared/audit/index';
import { RateLimiter } from '@twinfed/shared/rate-limit';
import {
  CONSOLE_SECURITY_HEADERS,
  SESSION_COOKIE,
  SessionStore,
  clearedSessionCookie,
  consoleAsset,
  csrfOk,
  facts,
  html,
  notice,
  page,
  parseCookies,
  roleForToken,
  safeNext,
  sessionCookie,
  signInPage,
  type ConsoleSession,
  type NavItem,
  type SafeHtml,
} from '@twinfed/shared/web/index';
import type { SiteConfig } from '../config.js';
import type { SiteDb } from '../db/index.js';
import { openSiteStore } from '../store.js';
import { createSiteMetrics } from '../metrics.js';
import type { SiteNode } from '../node.js';
import { checkConsoleHost, consoleUrl, isLocalAddress } from './bind.js';
import { consoleToken } from './token.js';
import { pendingApprovals } from './pending.js';
import { registerOfficerPages } from './officer.js';
import { registerItPages } from './it.js';
import { registerTwinPages } from './twin-pages.js';

/** One role: whoever holds the site's console token (the officer, hospital IT, clinicians of this site). */
export type SiteConsoleRole = 'site';

/**
 * What a console section gets to build its pages: `page()` wraps a body in the site console's
 * layout (nav, pending-approval badge, sign-out with CSRF); `form()` is the request's urlencoded
 * body, already CSRF-checked (every POST is, before any handler runs). The twin pages
 * (`registerTwinPages(app, ctx)`, site-node/src/console/twin-pages.ts) receive the same object.
 */
export interface SiteConsoleContext {
  page(req: FastifyRequest, o: { title: string; body: SafeHtml; charts?: boolean }): string;
  form(req: FastifyRequest): Record<string, string>;
  session(req: FastifyRequest): ConsoleSession<SiteConsoleRole> | null;
  /** The session's CSRF token, for the hidden `csrf` field of a section's forms. */
  csrf(req: FastifyRequest): string;
  db: SiteDb;
  audit: AuditLog;
  dataDir: string;
  config: SiteConfig;
  /** The running node (site run), or null (site console: no connection). */
  node: SiteNode | null;
}

export interface SiteConsoleOptions {
  dataDir: string;
  /** The running node: its database and audit log are used (one writer), and its connection state shown. */
  node?: SiteNode | null;
  /** Default: console.host of site.json (127.0.0.1). */
  host?: string;
  /** Default: console.port of site.json (7401); 0 picks a free port. */
  port?: number;
  /** Default: TWINFED_SITE_CONSOLE_TOKEN or DATA_DIR/console.token (created). */
  token?: string;
  /** Extra sections (routes) registered after the built-in ones (overview, officer, IT, twins). */
  sections?: ((app: FastifyInstance, ctx: SiteConsoleContext) => void)[];
  /** Sign-in attempts allowed per client address per minute (default 10). */
  signInPerMinute?: number;
}

export interface SiteConsole {
  url: string;
  host: string;
  port: number;
  /** Where the token is: the file, or the environment variable's name. */
  tokenSource: string;
  app: FastifyInstance;
  close(): Promise<void>;
}

const NAV = (pending: number): NavItem[] => [
  { href: '/', label: 'Overview' },
  { href: '/approvals', label: pending ? `Approvals (${pending} waiting)` : 'Approvals' },
  { href: '/audit', label: 'Audit' },
  { href: '/it', label: 'IT' },
  { href: '/twins', label: 'Twins' },
];

const FORM_BODY_LIMIT_BYTES = 64 * 1024;
const sessionOf = new WeakMap<object, ConsoleSession<SiteConsoleRole>>();

/** 403 with a page that says why, for browsers and scripts alike. */
class ConsoleRefusal extends Error {
  constructor(
    readonly statusCode: number,
    message: string,
  ) {
    super(message);
  }
}

/**
 * Builds the site console (not listening): Fastify, loopback/private clients only, one local
 * token, in-memory sessions with CSRF on every form, the kit's security headers, /metrics without
 * a session. Tests use `app.inject()`; `startSiteConsole` listens.
 */
export async function buildSiteConsole(o: SiteConsoleOptions): Promise<{ app: FastifyInstance; ctx: SiteConsoleContext; tokenSource: string; close: () => void }> {
  const store = o.node ? null : await openSiteStore(o.dataDir);
  const config = o.node?.config ?? store!.config;
  const db = o.node?.db ?? store!.db;
  const audit = o.node?.audit ?? store!.audit;
  const tok = o.token ? { token: o.token, source: 'env' as const, path: null } : consoleToken(o.dataDir);
  const tokenSource = tok.path ?? 'TWINFED_SITE_CONSOLE_TOKEN';
  const sessions = new SessionStore<SiteConsoleRole>();
  const metrics = createSiteMetrics({ db, config, connected: () => o.node?.connected ?? false });
  const app = Fastify({ logger: false, bodyLimit: FORM_BODY_LIMIT_BYTES, trustProxy: false });

  // Urlencoded forms, without a dependency: URLSearchParams, one value per name (the last).
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string', bodyLimit: FORM_BODY_LIMIT_BYTES }, (_req, body, done) => {
    done(null, Object.fromEntries(new URLSearchParams(body as string)));
  });

  // Defence in depth: whatever the bind address, only loopback and private clients get an answer.
  app.addHook('onRequest', async (req, reply) => {
    if (!isLocalAddress(req.socket.remoteAddress)) {
      await reply
        .code(403)
        .headers(CONSOLE_SECURITY_HEADERS)
        .type('text/plain; charset=utf-8')
        .send('TWF_E_CONSOLE_BIND: the site console answers loopback and hospital-network (private) addresses only\n');
    }
  });
  app.addHook('onSend', async (_req, reply, payload) => {
    // A route serving a stand-alone document (the signed audit report, with its own inline print
    // style and no script) sets its own, stricter policy; every other response gets the console's.
    const own = reply.getHeader('content-security-policy');
    reply.headers({ ...CONSOLE_SECURITY_HEADERS, ...(own ? { 'content-security-policy': own } : {}) });
    return payload;
  });

  const isPublic = (req: FastifyRequest) => {
    const path = req.url.split('?')[0];
    return path === '/metrics' || path.startsWith('/assets/') || (path === '/console/sign-in' && req.method === 'POST');
  };
  const ctx: SiteConsoleContext = {
    db,
    audit,
    config,
    dataDir: o.dataDir,
    node: o.node ?? null,
    session: (req) => sessionOf.get(req) ?? null,
    csrf: (req) => sessionOf.get(req)?.csrf ?? '',
    form: (req) => {
      const b = req.body;
      if (!b || typeof b !== 'object') throw new ConsoleRefusal(400, 'this form was sent without a body');
      return b as Record<string, string>;
    },
    page: (req, p) => {
      const s = sessionOf.get(req);
      const pending = pendingApprovals(db).length;
      const path = req.url.split('?')[0];
      const badge =
        pending && path !== '/approvals' && !path.startsWith('/approvals/')
          ? html`<p class="notice note" role="status"><a href="/approvals">${pending === 1 ? '1 study awaits' : `${pending} studies await`} the privacy officer's approval</a></p>`
          : null;
      return page({
        app: 'site',
        instance: config.siteName,
        title: p.title,
        body: html`${badge}${p.body}`,
        nav: NAV(pending),
        path,
        ...(s ? { user: { role: 'site staff' }, csrf: s.csrf } : {}),
        ...(p.charts ? { charts: true } : {}),
      });
    },
  };

  app.addHook('preHandler', async (req, reply) => {
    if (reply.sent || isPublic(req)) return;
    const s = sessions.get(parseCookies(req.headers.cookie)[SESSION_COOKIE]);
    if (!s) {
      if (req.method === 'GET' || req.method === 'HEAD') {
        // 200 with the sign-in page (never a JSON 401): a browser shows it, then returns here.
        await reply.type('text/html; charset=utf-8').send(signInPage({ app: 'site', instance: config.siteName, roles: SIGN_IN_ROLES, next: safeNext(req.url) }));
        return;
      }
      throw new ConsoleRefusal(403, 'sign in first: this form needs a console session');
    }
    sessionOf.set(req, s);
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      const body = (req.body ?? {}) as Record<string, unknown>;
      // The kit's Referrer-Policy is same-origin, so a browser sends this origin with the console's own
      // forms; `Origin: null` (a sandboxed frame, a data: page) is refused like any foreign origin.
      if (!csrfOk(s, body.csrf, req.headers.origin, req.headers.host))
        throw new ConsoleRefusal(403, "the form did not carry this session's CSRF token (or came from another site); reload the page and try again");
    }
  });

  app.setErrorHandler(async (err: Error & { statusCode?: number }, req, reply) => {
    const status = err instanceof ConsoleRefusal ? err.statusCode : err.statusCode && err.statusCode >= 400 && err.statusCode < 500 ? err.statusCode : 500;
    const text = status === 500 ? `internal error: ${err.message}` : err.message;
    const body = notice('error', text);
    const s = sessionOf.get(req);
    await reply
      .code(status)
      .type('text/html; charset=utf-8')
      .send(s ? ctx.page(req, { title: status === 403 ? 'Refused' : 'Error', body }) : page({ app: 'site', instance: config.siteName, title: status === 403 ? 'Refused' : 'Error', body }));
  });
  app.setNotFoundHandler(async (req, reply) => {
    await reply
      .code(404)
      .type('text/html; charset=utf-8')
      .send(ctx.page(req, { title: 'Not found', body: notice('note', `nothing at ${req.url.split('?')[0]}`) }));
  });

  // ------------------------------------------------------------- sign-in
  // Wrong tokens are charged per client address (the project's token bucket): `perMinute` of them
  // at once, then one more each 60/perMinute seconds; a right token costs nothing.
  const perMinute = o.signInPerMinute ?? 10;
  const wrongTokens = new RateLimiter(perMinute, perMinute / 60);
  app.post('/console/sign-in', async (req, reply) => {
    const ip = req.socket.remoteAddress ?? '?';
    const b = (req.body ?? {}) as Record<string, unknown>;
    const next = safeNext(b.next);
    if (!wrongTokens.hasToken(ip)) {
      return reply
        .code(429)
        .header('retry-after', String(Math.ceil(60 / perMinute)))
        .type('text/html; charset=utf-8')
        .send(signInPage({ app: 'site', instance: config.siteName, roles: SIGN_IN_ROLES, error: 'Too many sign-in attempts from this address; wait a minute and try again.', next }));
    }
    const role = typeof b.token === 'string' ? roleForToken<SiteConsoleRole>(b.token, [{ role: 'site', token: tok.token }]) : null;
    if (!role) {
      wrongTokens.take(ip);
      return reply
        .code(200)
        .type('text/html; charset=utf-8')
        .send(signInPage({ app: 'site', instance: config.siteName, roles: SIGN_IN_ROLES, error: `That is not this site's console token (see ${tokenSource}).`, next }));
    }
    const s = sessions.create(role);
    return reply.code(303).header('set-cookie', sessionCookie(s.id, false)).header('location', next).send();
  });
  app.post('/console/sign-out', async (req, reply) => {
    sessions.destroy(sessionOf.get(req)?.id);
    return reply.code(303).header('set-cookie', clearedSessionCookie(false)).header('location', '/').send();
  });

  // ------------------------------------------------------------- assets, metrics
  app.get<{ Params: { name: string } }>('/assets/:name', async (req, reply) => {
    const a = consoleAsset(req.params.name);
    if (!a) return reply.code(404).type('text/plain; charset=utf-8').send('no such asset\n');
    return reply.type(a.contentType).header('cache-control', 'no-cache').send(a.body);
  });
  app.get('/metrics', async (_req, reply) => reply.type(metrics.contentType).send(await metrics.scrape()));

  registerOverview(app, ctx);
  registerOfficerPages(app, ctx);
  registerItPages(app, ctx);
  registerTwinPages(app, ctx);
  for (const section of o.sections ?? []) section(app, ctx);

  return { app, ctx, tokenSource, close: () => store?.close() };
}

const SIGN_IN_ROLES = "The privacy officer, hospital IT and clinicians of this site sign in with the site console's token (DATA_DIR/console.token, or TWINFED_SITE_CONSOLE_TOKEN).";

function registerOverview(app: FastifyInstance, ctx: SiteConsoleContext): void {
  app.get('/', async (req, reply) => {
    const pending = pendingApprovals(ctx.db);
    const node = ctx.node;
    const body = html`<section>
        <h2>This site</h2>
        ${facts([
          ['Site', `${ctx.config.siteName} (${ctx.config.siteId})`],
          ['Coordinator', `${ctx.config.coordinatorId} at ${ctx.config.coordinatorUrl}`],
          ['Connection', node ? (node.connected ? 'connected' : 'not connected (the node retries by itself)') : 'this console runs without the node (twinfed site console): no connection'],
          ['Waiting for the officer', pending.length ? html`<a href="/approvals">${pending.length} ${pending.length === 1 ? 'study' : 'studies'}</a>` : 'nothing'],
        ])}
      </section>
      <section>
        <h2>Sections</h2>
        <ul>
          <li><a href="/approvals">Approvals</a>: studies this site is asked to join, the manifest in plain words, approve or reject (privacy officer)</li>
          <li><a href="/audit">Audit</a>: this site's signed audit log, its verification, and the coordinator's receipts kept here</li>
          <li><a href="/it">IT</a>: compute, data imports, disk use, the connection to the coordinator (hospital IT)</li>
          <li><a href="/twins">Twins</a>: patients' digital twins (clinicians)</li>
        </ul>
      </section>`;
    return reply.type('text/html; charset=utf-8').send(ctx.page(req, { title: 'Overview', body }));
  });
}

/** Starts the console and /metrics: checks the bind address first (TWF_E_CONSOLE_BIND), then listens. */
export async function startSiteConsole(o: SiteConsoleOptions): Promise<SiteConsole> {
  const store = o.node ? null : await openSiteStore(o.dataDir);
  const cfg = o.node?.config ?? store!.config;
  store?.close();
  const host = checkConsoleHost(o.host ?? cfg.console.host);
  const built = await buildSiteConsole(o);
  let port: number;
  try {
    await built.app.listen({ host, port: o.port ?? cfg.console.port });
    const addr = built.app.server.address();
    port = typeof addr === 'object' && addr ? addr.port : (o.port ?? cfg.console.port);
  } catch (e) {
    built.close();
    throw e;
  }
  return {
    url: consoleUrl(host, port),
    host,
    port,
    tokenSource: built.tokenSource,
    app: built.app,
    close: async () => {
      await built.app.close();
      built.close();
    },
  };
}
