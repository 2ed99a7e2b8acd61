import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { randomBytes } from 'node:crypto';
import { WireError } from '@twinfed/protocols';
import {
  CONSOLE_SECURITY_HEADERS,
  SESSION_COOKIE,
  SessionStore,
  clearedSessionCookie,
  consoleAsset,
  csrfOk,
  html,
  notice,
  page,
  parseCookies,
  roleForToken,
  safeNext,
  sameOrigin,
  sessionCookie,
  signInPage,
} from '@twinfed/shared/web/index';
import { RateLimiter } from '@twinfed/shared/rate-limit';
import { registerAuditPages } from './audit.js';
import type { ConsoleDeps, Ctx, Out, Role } from './common.js';
import { registerSitePages } from './sites.js';
import { registerStudyPages } from './studies.js';

export { studyTopic } from './common.js';
export type { ConsoleDeps, Role } from './common.js';

/** Largest form body the console accepts (a pasted study spec fits many times over), bytes. */
export const CONSOLE_FORM_LIMIT_BYTES = 256 * 1024;
/** Sign-in attempts per client address: a burst of this many, then one per SIGN_IN_REFILL_S. */
export const SIGN_IN_BURST = 5;
export const SIGN_IN_REFILL_S = 12;

const ROLES_TEXT = 'Consortium lead (acts on studies and sites) or auditor (reads everything, changes nothing): sign in with your access token.';

/**
 * Headers of every console response. Referrer-Policy is `same-origin` rather than the kit's
 * `no-referrer`: under `no-referrer` a browser sends `Origin: null` on a same-origin form POST
 * (Fetch standard, "serializing a request origin"), which the Origin check must refuse; with
 * `same-origin` nothing leaks to another origin and our own forms carry their real Origin.
 */
const HEADERS: Record<string, string> = { ...CONSOLE_SECURITY_HEADERS, 'referrer-policy': 'same-origin' };

export interface ConsoleRouter {
  /** A page any signed-in user (lead or auditor) may read. */
  get(url: string, h: (c: Ctx) => Out | Promise<Out>): void;
  /** A state-changing form: signed-in lead, matching CSRF token and Origin. */
  post(url: string, h: (c: Ctx) => Out | Promise<Out>): void;
  /** Raw access for the SSE stream (session checked, reply hijacked by the handler). */
  stream(url: string, h: (c: Ctx, reply: FastifyReply) => void): void;
}

/**
 * The coordinator's web console as a fastify plugin (registered by buildCoordinator on the REST
 * port). Encapsulated: its form parser, error handler and header hook apply to console routes
 * only, so /api/* keeps its bearer-token JSON behaviour. Without a session every page answers the
 * sign-in page with 200 (never a JSON 401).
 */
export function registerConsole(deps: ConsoleDeps) {
  return async function consolePlugin(app: FastifyInstance): Promise<void> {
    const now = deps.now ?? Date.now;
    const sessions = new SessionStore<Role>({ now });
    const signInLimit = new RateLimiter(SIGN_IN_BURST, 1 / SIGN_IN_REFILL_S, now);
    const tokens = [
      { role: 'lead' as const, token: deps.config.adminToken },
      { role: 'auditor' as const, token: deps.config.auditorToken },
    ];
    const instance = deps.engine.coordinatorId;

    app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string', bodyLimit: CONSOLE_FORM_LIMIT_BYTES }, (_req, body, done) => {
      done(null, new URLSearchParams(body as string));
    });
    app.addHook('onSend', async (_req, reply, payload) => {
      for (const [k, v] of Object.entries(HEADERS)) void reply.header(k, v);
      return payload;
    });

    const send = (reply: FastifyReply, out: Out) => {
      if ('redirect' in out) return reply.code(303).header('location', out.redirect).send();
      return reply
        .code(out.status ?? 200)
        .type(out.contentType ?? 'text/html; charset=utf-8')
        .send(out.body);
    };
    const plain = (title: string, body: ReturnType<typeof html>, status: number): Out => ({ status, body: page({ app: 'coordinator', instance, title, body }) });
    const signIn = (status: number, error?: string, next?: string): Out => ({
      status,
      body: signInPage({ app: 'coordinator', instance, roles: ROLES_TEXT, ...(error ? { error } : {}), ...(next && next !== '/' ? { next } : {}) }),
    });
    const sessionOf = (req: FastifyRequest) => sessions.get(parseCookies(req.headers.cookie)[SESSION_COOKIE]);
    const ctxOf = (req: FastifyRequest, session: NonNullable<ReturnType<typeof sessionOf>>): Ctx => ({
      req,
      session,
      role: session.role,
      deps,
      params: (req.params ?? {}) as Record<string, string>,
      query: Object.fromEntries(Object.entries((req.query ?? {}) as Record<string, unknown>).filter((e): e is [string, string] => typeof e[1] === 'string')),
      form: req.body instanceof URLSearchParams ? req.body : new URLSearchParams(),
      path: req.url.split('?')[0],
    });

    /** Engine refusals become a page with the message (4xx); anything else a 500 page with a log reference. */
    const failed = (c: Ctx | null, e: unknown): Out => {
      if (e instanceof WireError) {
        const body = html`${notice('error', `${e.message}${e.detail ? `: ${e.detail}` : ''} (${e.code})`)}
          <p><a href="${c?.path ?? '/'}">Back</a></p>`;
        return plain('Refused', body, e.status);
      }
      const ref = randomBytes(4).toString('hex');
      console.error(`[coordinator] error: console internal error [${ref}] on ${c?.req.method ?? ''} ${c?.req.url ?? ''}: ${(e as Error).stack ?? String(e)}`);
      return plain('Internal error', html`${notice('error', `Internal error: reference ${ref} in the coordinator log.`)}`, 500);
    };

    app.setErrorHandler((err, _req, reply) => {
      const status = (err as { statusCode?: number }).statusCode;
      if (status === 413) return send(reply, plain('Too large', html`${notice('error', `The form is larger than ${CONSOLE_FORM_LIMIT_BYTES} bytes.`)}`, 413));
      if (status !== undefined && status >= 400 && status < 500)
        return send(reply, plain('Bad request', html`${notice('error', 'The request could not be read; go back and submit the form again.')}`, status));
      return send(reply, failed(null, err));
    });

    const router: ConsoleRouter = {
      get(url, h) {
        app.get(url, async (req, reply) => {
          const s = sessionOf(req);
          if (!s) return send(reply, signIn(200, undefined, safeNext(req.url)));
          const c = ctxOf(req, s);
          try {
            return await send(reply, await h(c));
          } catch (e) {
            return send(reply, failed(c, e));
          }
        });
      },
      post(url, h) {
        app.post(url, async (req, reply) => {
          const s = sessionOf(req);
          if (!s)
            return send(
              reply,
              plain(
                'Signed out',
                html`${notice('error', 'Your session ended; nothing was changed.')}
                  <p><a href="/">Sign in again</a></p>`,
                403,
              ),
            );
          const c = ctxOf(req, s);
          if (!csrfOk(s, c.form.get('csrf') ?? undefined, req.headers.origin, req.headers.host))
            return send(
              reply,
              plain('Refused', html`${notice('error', 'This form did not come from this console (CSRF or Origin check failed); nothing was changed. Reload the page and try again.')}`, 403),
            );
          if (s.role !== 'lead')
            return send(
              reply,
              plain(
                'Refused',
                html`${notice('error', 'The auditor role is read-only; nothing was changed.')}
                  <p><a href="/">Back</a></p>`,
                403,
              ),
            );
          try {
            return await send(reply, await h(c));
          } catch (e) {
            return send(reply, failed(c, e));
          }
        });
      },
      stream(url, h) {
        app.get(url, async (req, reply) => {
          const s = sessionOf(req);
          if (!s) return send(reply, signIn(200));
          h(ctxOf(req, s), reply);
        });
      },
    };

    app.get('/assets/:name', async (req, reply) => {
      const a = consoleAsset((req.params as { name: string }).name);
      if (!a) return reply.code(404).type('text/plain; charset=utf-8').send('no such asset');
      return reply.type(a.contentType).send(a.body);
    });

    app.post('/console/sign-in', async (req, reply) => {
      const form = req.body instanceof URLSearchParams ? req.body : new URLSearchParams();
      const next = safeNext(form.get('next'));
      // Login CSRF: a foreign page must not sign a browser in to an attacker's session.
      if (!sameOrigin(req.headers.origin, req.headers.host)) return send(reply, signIn(403, 'This sign-in did not come from this console.'));
      if (!signInLimit.take(req.ip)) return send(reply, signIn(429, `Too many sign-in attempts from this address; wait ${SIGN_IN_REFILL_S} seconds and try again.`, next));
      const role = roleForToken(form.get('token') ?? '', tokens);
      if (!role) return send(reply, signIn(401, 'That token is not valid for this coordinator. Check it with whoever runs the coordinator.', next));
      // Session fixation: whatever session id the browser brought is dropped; a fresh one is issued.
      sessions.destroy(parseCookies(req.headers.cookie)[SESSION_COOKIE]);
      const s = sessions.create(role);
      void reply.header('set-cookie', sessionCookie(s.id, deps.secure));
      return send(reply, { redirect: next });
    });

    app.post('/console/sign-out', async (req, reply) => {
      const s = sessionOf(req);
      const form = req.body instanceof URLSearchParams ? req.body : new URLSearchParams();
      if (s && !csrfOk(s, form.get('csrf') ?? undefined, req.headers.origin, req.headers.host))
        return send(reply, plain('Refused', html`${notice('error', 'This form did not come from this console; you are still signed in.')}`, 403));
      if (s) sessions.destroy(s.id);
      void reply.header('set-cookie', clearedSessionCookie(deps.secure));
      return send(reply, { redirect: '/' });
    });

    registerStudyPages(router);
    registerSitePages(router);
    registerAuditPages(router);
  };
}
