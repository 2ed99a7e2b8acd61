import { z } from 'zod';
import { SiteIdSchema, StudyIdSchema } from './ids.js';

/** REST bodies of the coordinator API (leads, and site enrolment). */
export const EnrolmentTokenRequest = z.object({
  siteName: z.string().min(1).max(200),
  /** Validity of the one-time token in seconds. */
  expiresInS: z
    .number()
    .int()
    .min(60)
    .max(30 * 24 * 3600)
    .default(24 * 3600),
});
export const EnrolmentTokenResponse = z.object({ token: z.string(), siteName: z.string(), expiresAt: z.string() });

export const EnrolRequest = z.object({
  token: z.string().min(16).max(200),
  protocolVersion: z.string().max(16),
  ed25519PublicKey: z.string().max(100),
  x25519PublicKey: z.string().max(100),
});
export const EnrolResponse = z.object({
  siteId: z.string(),
  siteName: z.string(),
  coordinatorId: z.string(),
  coordinatorPublicKey: z.string(),
  protocolVersion: z.string(),
});

export const SiteSummary = z.object({
  siteId: z.string(),
  siteName: z.string(),
  enrolledAt: z.string(),
  /** True only while an authenticated connection (signed handshake + hello) is open. */
  connected: z.boolean(),
  lastSeenAt: z.string().nullable(),
  revokedAt: z.string().nullable(),
  ed25519PublicKey: z.string(),
  x25519PublicKey: z.string(),
  /** Short fingerprints of the two keys, for officers to compare out of band. */
  fingerprint: z.string(),
});

/** POST /api/handshake: a single-use nonce a site signs to open its socket (see HandshakeAuthSchema). */
export const HandshakeChallengeRequest = z.object({ siteId: SiteIdSchema });
export const HandshakeChallengeResponse = z.object({
  nonce: z.string(),
  coordinatorId: z.string(),
  expiresAtMs: z.number().int(),
  /** Highest sequence number the coordinator accepted from this site: a site restored from a backup resumes above it. */
  lastSeqSeen: z.number().int().min(0),
});

/**
 * GET /api/tls (no authentication): the TLS pins the coordinator serves now and will serve next.
 * For the lead's convenience only: a site must get the pin out of band (over this connection it
 * proves nothing), and learns the next pin from the signed tls.rollover message.
 */
export const TlsInfoResponse = z.object({
  tls: z.boolean(),
  pin: z.string().nullable(),
  nextPin: z.string().nullable(),
});

/** POST /api/studies/:id/start: the roster (default: every enrolled, non-revoked site) and the key-dealer order (default: roster order). */
export const StartStudyRequest = z.object({
  sites: z.array(SiteIdSchema).min(3).max(255).optional(),
  keyDealers: z.array(SiteIdSchema).min(1).max(255).optional(),
});
/** POST /api/studies/:id/roster: a new manifest version with sites added or removed; every officer must approve it again. */
export const RosterChangeRequest = z.object({
  add: z.array(SiteIdSchema).max(255).default([]),
  remove: z.array(SiteIdSchema).max(255).default([]),
});
export const ActionReason = z.object({ reason: z.string().min(1).max(500).optional() });
export const StudyIdParam = StudyIdSchema;

/** One site's evaluation: task metrics by name (value null when suppressed for a small count), its validation patients, its cost. */
const SiteMetric = z.object({
  siteId: z.string(),
  metrics: z.array(z.object({ name: z.string(), value: z.number().nullable() })),
  valPatients: z.number().int(),
  encryptMs: z.number().nullable(),
  uploadBytes: z.number().int().nullable(),
});

export const RoundSummary = z.object({
  round: z.number().int(),
  /** open → closed (aggregate published) | failed (quorum lost, aborted) ; closed → refused when a majority of contributors refused the aggregate. */
  state: z.enum(['open', 'closed', 'failed', 'refused']),
  /** Secure-aggregation phase of an open round: setup (training, mask keys) → upload → consistency → unmask. */
  phase: z.string(),
  keyEpoch: z.number().int(),
  baseVersion: z.number().int(),
  threshold: z.number().int(),
  /** Sites that declined this round (round.decline), with their code. */
  declined: z.array(z.object({ siteId: z.string(), code: z.string(), detail: z.string() })),
  /** Sites that sent mask keys in time (their masks are in every other site's update). */
  keySet: z.array(z.string()),
  /** Sites whose complete update is in the aggregate. */
  survivors: z.array(z.string()),
  /** Why the round failed or was refused. */
  failReason: z.string().nullable(),
  openedAt: z.string(),
  closedAt: z.string().nullable(),
  deadlineAt: z.string(),
  participants: z.array(z.string()),
  completed: z.array(z.string()),
  stragglers: z.array(z.string()),
  /** Progress inside the round: sites whose mask keys (secure-aggregation set-up) arrived, whose upload is under way, complete. */
  maskKeysFrom: z.array(z.string()),
  uploading: z.array(z.string()),
  uploaded: z.array(z.string()),
  totalSamples: z.number().int(),
  bytesIn: z.number().int(),
  aggregateMs: z.number(),
  metrics: z.array(SiteMetric),
});

export const StudyStatus = z.object({
  studyId: z.string(),
  title: z.string(),
  state: z.enum(['draft', 'running', 'completed', 'stopped']),
  /** Why the study stopped (the lead, or too few sites left with differential-privacy budget); null otherwise. */
  stopReason: z.string().nullable(),
  /** Empty for a draft (no roster yet). */
  manifestHash: z.string(),
  manifestVersion: z.number().int(),
  currentRound: z.number().int(),
  /** Rounds that closed with a published aggregate (the study completes at `rounds`). */
  closedRounds: z.number().int(),
  rounds: z.number().int(),
  /** Every roster site: joined with the current manifest, evicted, withdrawn; key fingerprints. */
  participants: z.array(
    z.object({
      siteId: z.string(),
      siteName: z.string(),
      fingerprint: z.string(),
      joined: z.boolean(),
      connected: z.boolean(),
      excluded: z.string().nullable(),
      /** The site declined a round with TWF_E_DP_BUDGET: its privacy budget is spent, it is asked to no later round. */
      dpExhausted: z.boolean(),
      /** When the site last joined (any manifest version); null if never. */
      joinedAt: z.string().nullable(),
    }),
  ),
  joined: z.array(z.string()),
  keyEpoch: z.number().int(),
  keyDealer: z.string().nullable(),
  roundSummaries: z.array(RoundSummary),
  /** Evaluation of the seeded initial model (round 0) at each site. */
  baselineMetrics: z.array(SiteMetric),
});

export const AuditEntryWire = z.object({
  id: z.number().int(),
  tsMs: z.number().int(),
  actor: z.string(),
  action: z.string(),
  studyId: z.string().nullable(),
  round: z.number().int().nullable(),
  digest: z.string().nullable(),
  sizeBytes: z.number().int().nullable(),
  detail: z.string().nullable(),
  sig: z.string(),
  prevHash: z.string(),
  hash: z.string(),
});

export const ErrorReply = z.object({ code: z.string(), message: z.string(), detail: z.string().optional() });
