import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import { randomBytes } from 'node:crypto';
import {
  ActionReason,
  AuditEntryWire,
  EnrolRequest,
  EnrolResponse,
  EnrolmentTokenRequest,
  EnrolmentTokenResponse,
  ErrorReply,
  HandshakeChallengeRequest,
  HandshakeChallengeResponse,
  RosterChangeRequest,
  RoundSummary,
  SiteIdSchema,
  SiteSummary,
  StartStudyRequest,
  StudyIdSchema,
  StudySpecSchema,
  StudyStatus,
  TlsInfoResponse,
  WireError,
} from '@twinfed/protocols';
import type { CoordinatorConfig } from './config.js';
import type { CoordinatorEngine } from './engine.js';
import type { CoordinatorMetrics } from './metrics.js';
import type { RateLimiter } from '@twinfed/shared/rate-limit';
import type { TlsPins } from './tls.js';

interface RouteDoc {
  method: 'GET' | 'POST' | 'DELETE';
  url: string;
  summary: string;
  auth: boolean;
  /** A read-only route the auditor's token may call too (every POST stays the lead's). */
  auditor?: boolean;
  /** Unauthenticated routes a stranger can call: limited per client address. */
  preAuthLimited?: boolean;
  body?: z.ZodType;
  response?: z.ZodType;
}

function parse<T>(schema: z.ZodType<T>, data: unknown): T {
  const p = schema.safeParse(data);
  if (!p.success)
    throw new WireError(
      'TWF_E_BAD_REQUEST',
      p.error.issues
        .slice(0, 5)
        .map((i) => `${i.path.join('.') || '(body)'}: ${i.message}`)
        .join('; '),
    );
  return p.data;
}

function sameToken(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/**
 * REST API for consortium leads (+ the enrolment and handshake calls sites make). Client errors
 * stay 4xx with their catalogue code; internal errors answer 500 with a log reference only, never
 * the internal message.
 */
export function registerRestRoutes(app: FastifyInstance, engine: CoordinatorEngine, metrics: CoordinatorMetrics, config: CoordinatorConfig, preAuth: RateLimiter, tls: TlsPins | null = null): void {
  const docs: RouteDoc[] = [];
  const preAuthRoutes = new Set<string>();
  const route = (d: RouteDoc, handler: (req: FastifyRequest, reply: FastifyReply) => unknown) => {
    docs.push(d);
    if (d.preAuthLimited) preAuthRoutes.add(d.url);
    app.route({
      method: d.method,
      url: d.url,
      handler: async (req, reply) => {
        if (d.preAuthLimited && !preAuth.take(req.ip)) {
          metrics.requestsRateLimited.inc({ route: d.url });
          throw new WireError('TWF_E_RATE_LIMITED', 'too many requests from this address');
        }
        if (d.auth) {
          const h = req.headers.authorization ?? '';
          const given = h.startsWith('Bearer ') ? h.slice(7) : null;
          const lead = given !== null && sameToken(given, config.adminToken);
          const auditor = given !== null && d.auditor === true && d.method === 'GET' && config.auditorToken !== undefined && sameToken(given, config.auditorToken);
          if (!lead && !auditor) throw new WireError('TWF_E_NOT_AUTHORISED');
        }
        return handler(req, reply);
      },
    });
  };

  app.setErrorHandler((err, req, reply) => {
    let e: WireError;
    const status = (err as { statusCode?: number }).statusCode;
    if (err instanceof WireError) e = err;
    else if (status === 413) e = new WireError('TWF_E_TOO_LARGE', `at most ${app.initialConfig.bodyLimit} bytes`);
    else if ((err as { validation?: unknown }).validation || (status !== undefined && status >= 400 && status < 500)) e = new WireError('TWF_E_BAD_REQUEST', (err as Error).message);
    else {
      const ref = randomBytes(4).toString('hex');
      req.log.error(err);
      console.error(`[coordinator] error: internal error [${ref}] on ${req.method} ${req.url}: ${(err as Error).stack ?? String(err)}`);
      e = new WireError('TWF_E_INTERNAL', `reference ${ref} in the coordinator log`);
    }
    const url = req.routeOptions?.url;
    if (url && preAuthRoutes.has(url)) metrics.preAuthRefused.inc({ route: url, code: e.code });
    void reply.status(e.status).send({ code: e.code, message: e.message, detail: e.detail });
  });
  app.setNotFoundHandler((req, reply) => {
    const e = new WireError('TWF_E_NOT_FOUND', `${req.method} ${req.url.split('?')[0]}`);
    void reply.status(404).send({ code: e.code, message: e.message, detail: e.detail });
  });

  const studyId = (req: FastifyRequest) => parse(StudyIdSchema, (req.params as { id: string }).id);
  const siteParam = (req: FastifyRequest) => parse(SiteIdSchema, (req.params as { siteId: string }).siteId);

  route({ method: 'POST', url: '/api/studies', summary: 'Create a draft study from a spec (minSites >= 3); its roster is fixed at start', auth: true, body: StudySpecSchema }, async (req, reply) => {
    const r = await engine.createStudy(req.body);
    return reply.status(201).send(r);
  });
  route({ method: 'GET', url: '/api/studies', summary: 'List studies', auth: true, auditor: true }, () => engine.listStudies());
  route({ method: 'GET', url: '/api/studies/:id', summary: 'Study status: roster, joined sites, key epoch, per-round summaries', auth: true, auditor: true, response: StudyStatus }, (req) =>
    engine.studyStatus(studyId(req)),
  );
  route({ method: 'GET', url: '/api/studies/:id/manifest', summary: 'The manifest officers approve (with its roster), with its hash; the draft before start', auth: true, auditor: true }, (req) =>
    engine.manifestOf(studyId(req)),
  );
  route(
    {
      method: 'POST',
      url: '/api/studies/:id/start',
      summary: 'Start a draft: write the roster (default every enrolled site) and key-dealer order into the manifest, announce it to the roster; or resume a stopped study',
      auth: true,
      body: StartStudyRequest,
    },
    (req) => {
      engine.startStudy(studyId(req), parse(StartStudyRequest, req.body ?? {}));
      return engine.studyStatus(studyId(req));
    },
  );
  route({ method: 'DELETE', url: '/api/studies/:id', summary: 'Delete a draft study (audited); a started study is refused with TWF_E_STUDY_STATE', auth: true }, (req) =>
    engine.deleteDraft(studyId(req)),
  );
  route({ method: 'POST', url: '/api/studies/:id/stop', summary: 'Stop a running study (its open round fails)', auth: true }, (req) => {
    engine.stopStudy(studyId(req));
    return engine.studyStatus(studyId(req));
  });
  route({ method: 'POST', url: '/api/studies/:id/roster', summary: 'Add or remove sites: a new manifest version every officer must approve again', auth: true, body: RosterChangeRequest }, (req) => {
    engine.changeRoster(studyId(req), parse(RosterChangeRequest, req.body ?? {}));
    return engine.studyStatus(studyId(req));
  });
  route({ method: 'POST', url: '/api/studies/:id/rounds/current/abort', summary: 'Abort the open round (it fails, audited; a fresh round opens)', auth: true, body: ActionReason }, (req) => {
    return engine.abortRound(studyId(req), parse(ActionReason, req.body ?? {}).reason);
  });
  route({ method: 'POST', url: '/api/studies/:id/sites/:siteId/evict', summary: 'Evict a participant: no further rounds, a new study key without it', auth: true, body: ActionReason }, (req) => {
    engine.evictSite(studyId(req), siteParam(req), parse(ActionReason, req.body ?? {}).reason);
    return engine.studyStatus(studyId(req));
  });
  route(
    { method: 'GET', url: '/api/studies/:id/rounds/:round', summary: 'One round: phase, key set, survivors, stragglers, bytes, metrics', auth: true, auditor: true, response: RoundSummary },
    (req) => {
      const round = Number((req.params as { round: string }).round);
      if (!Number.isInteger(round) || round < 1) throw new WireError('TWF_E_BAD_REQUEST', 'round must be a positive integer');
      return engine.roundStatus(studyId(req), round);
    },
  );
  route({ method: 'POST', url: '/api/enrolment-tokens', summary: 'Issue a one-time site enrolment token', auth: true, body: EnrolmentTokenRequest, response: EnrolmentTokenResponse }, (req, reply) => {
    const b = parse(EnrolmentTokenRequest, req.body ?? {});
    return reply.status(201).send(engine.issueEnrolmentToken(b.siteName, b.expiresInS));
  });
  route(
    {
      method: 'POST',
      url: '/api/enrol',
      summary: 'Site enrolment with a one-time token (called by twinfed site enrol)',
      auth: false,
      preAuthLimited: true,
      body: EnrolRequest,
      response: EnrolResponse,
    },
    (req, reply) => {
      return reply.status(201).send(engine.enrol(parse(EnrolRequest, req.body)));
    },
  );
  route(
    {
      method: 'POST',
      url: '/api/handshake',
      summary: 'A single-use nonce a site signs to open its socket connection',
      auth: false,
      preAuthLimited: true,
      body: HandshakeChallengeRequest,
      response: HandshakeChallengeResponse,
    },
    (req) => {
      return engine.issueChallenge(parse(HandshakeChallengeRequest, req.body ?? {}).siteId);
    },
  );
  route(
    { method: 'GET', url: '/api/sites', summary: 'Enrolled sites: authenticated connection state, last seen, key fingerprints, revocation', auth: true, auditor: true, response: z.array(SiteSummary) },
    () => engine.listSites(),
  );
  route(
    { method: 'POST', url: '/api/sites/:siteId/revoke', summary: "Revoke a site's enrolment: disconnected, refused at connect, excluded from every study", auth: true, body: ActionReason },
    (req) => {
      engine.revokeSite(siteParam(req), parse(ActionReason, req.body ?? {}).reason);
      return engine.listSites().find((s) => s.siteId === siteParam(req));
    },
  );
  route({ method: 'GET', url: '/api/audit', summary: 'Coordinator audit log entries after ?after=ID (limit ?limit=N)', auth: true, auditor: true, response: z.array(AuditEntryWire) }, (req) => {
    const q = parse(z.object({ after: z.coerce.number().int().min(0).default(0), limit: z.coerce.number().int().min(1).max(100000).default(1000) }), req.query);
    return engine.audit.entries(q.after, q.limit);
  });
  route({ method: 'GET', url: '/api/audit/owner', summary: 'Who signs this audit log (coordinator id and Ed25519 public key)', auth: true, auditor: true }, () => ({
    ownerId: engine.coordinatorId,
    ed25519PublicKey: Buffer.from(engine.identity.ed25519PublicKey).toString('base64'),
  }));
  route({ method: 'GET', url: '/healthz', summary: 'Liveness', auth: false }, () => ({ ok: true, coordinatorId: engine.coordinatorId }));
  route(
    {
      method: 'GET',
      url: '/api/tls',
      summary: 'TLS pins served now and next (sha256/BASE64, RFC 7469); for the lead to hand out: sites must get the pin out of band',
      auth: false,
      response: TlsInfoResponse,
    },
    () => ({
      tls: tls !== null,
      pin: tls?.pin ?? null,
      nextPin: tls?.nextPin ?? null,
    }),
  );
  route({ method: 'GET', url: '/metrics', summary: 'Prometheus metrics', auth: false }, async (_req, reply) => {
    void reply.header('content-type', metrics.registry.contentType);
    return metrics.registry.metrics();
  });
  route({ method: 'GET', url: '/openapi.json', summary: 'This API as OpenAPI 3.1', auth: false }, () => openApi(docs));
}

/** OpenAPI 3.1 document generated from the same zod schemas the handlers validate with. */
function openApi(docs: RouteDoc[]) {
  const paths: Record<string, Record<string, unknown>> = {};
  const errorSchema = z.toJSONSchema(ErrorReply, { io: 'output' });
  for (const d of docs) {
    const path = d.url.replace(/:(\w+)/g, '{$1}');
    const params = [...d.url.matchAll(/:(\w+)/g)].map((m) => ({ name: m[1], in: 'path', required: true, schema: { type: 'string' } }));
    paths[path] ??= {};
    paths[path][d.method.toLowerCase()] = {
      summary: d.summary,
      ...(params.length ? { parameters: params } : {}),
      ...(d.auth ? { security: [{ bearer: [] }], 'x-twinfed-roles': d.auditor ? ['lead', 'auditor'] : ['lead'] } : {}),
      ...(d.body ? { requestBody: { required: true, content: { 'application/json': { schema: z.toJSONSchema(d.body, { io: 'input', unrepresentable: 'any' }) } } } } : {}),
      responses: {
        [d.method === 'POST' && d.body ? '201' : '200']: {
          description: 'OK',
          ...(d.response ? { content: { 'application/json': { schema: z.toJSONSchema(d.response, { io: 'output', unrepresentable: 'any' }) } } } : {}),
        },
        default: { description: 'Error with a TWF_E_ code', content: { 'application/json': { schema: errorSchema } } },
      },
    };
  }
  return {
    openapi: '3.1.0',
    info: { title: 'Twinfed coordinator API', version: '1.0' },
    components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
    paths,
  };
}
