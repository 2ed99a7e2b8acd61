import { z } from 'zod';

/** REST bodies of the coordinator API (leads, and site enrolment). */
export const EnrolmentTokenRequest = z.object({
  siteName: z.string().min(1).max(200),
  /** Validity of the one-time token in seconds. */
  expiresInS: z.number().int().min(60).max(30 * 24 * 3600).default(24 * 3600),
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
  connected: z.boolean(),
  lastSeenAt: z.string().nullable(),
  ed25519PublicKey: z.string(),
});

const SiteMetric = z.object({ siteId: z.string(), meanDice: z.number().nullable(), valPatients: z.number().int(), encryptMs: z.number().nullable(), uploadBytes: z.number().int().nullable() });

export const RoundSummary = z.object({
  round: z.number().int(),
  state: z.enum(['open', 'closed', 'failed']),
  openedAt: z.string(),
  closedAt: z.string().nullable(),
  deadlineAt: z.string(),
  participants: z.array(z.string()),
  completed: z.array(z.string()),
  stragglers: z.array(z.string()),
  totalSamples: z.number().int(),
  bytesIn: z.number().int(),
  aggregateMs: z.number(),
  metrics: z.array(SiteMetric),
});

export const StudyStatus = z.object({
  studyId: z.string(),
  title: z.string(),
  state: z.enum(['draft', 'running', 'completed', 'stopped']),
  manifestHash: z.string(),
  currentRound: z.number().int(),
  rounds: z.number().int(),
  joined: z.array(z.string()),
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
