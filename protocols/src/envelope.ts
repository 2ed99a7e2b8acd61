import { z } from 'zod';
import { PartyIdSchema, SiteIdSchema, StudyIdSchema } from './ids.js';

export const SITE_MESSAGE_TYPES = [
  'hello',
  'study.join',
  'study.decline',
  'study.withdraw',
  'round.decline',
  'keys.sealed',
  'mask.setup',
  'update.chunk',
  'mask.consistency',
  'mask.unmask',
  'metrics.report',
  'aggregate.request',
  'aggregate.refused',
] as const;
export const COORDINATOR_MESSAGE_TYPES = [
  'welcome',
  'study.announce',
  'study.state',
  'keys.request',
  'keys.deliver',
  'round.start',
  'mask.peers',
  'mask.survivors',
  'mask.reveal',
  'round.aggregate',
  'round.failed',
  'audit.checkpoint',
  'study.completed',
  'tls.rollover',
  'reject',
] as const;
export const MessageTypeSchema = z.enum([...SITE_MESSAGE_TYPES, ...COORDINATOR_MESSAGE_TYPES]);
export type MessageType = z.infer<typeof MessageTypeSchema>;
export type SiteMessageType = (typeof SITE_MESSAGE_TYPES)[number];
export type CoordinatorMessageType = (typeof COORDINATOR_MESSAGE_TYPES)[number];

const hex64 = z.string().regex(/^[0-9a-f]{64}$/, 'expected 64 lowercase hex characters (SHA-256)');

/**
 * The signed part of every message. The signature (Ed25519, RFC 8032) covers
 * the canonical JSON of this header; the header carries the SHA-256 of the
 * body, so the signature covers the body too.
 */
export const EnvelopeHeaderSchema = z.object({
  v: z.string().max(16),
  type: MessageTypeSchema,
  senderId: PartyIdSchema,
  /** The one party this message is for (a site id, or the coordinator id): a message for site A does not verify as a message for site B. */
  to: PartyIdSchema,
  studyId: StudyIdSchema.nullable(),
  round: z.number().int().min(0).nullable(),
  /** Strictly increasing per sender, persisted across restarts: replay protection. */
  seq: z.number().int().min(1),
  /** Milliseconds since the Unix epoch at the sender. */
  tsMs: z.number().int().min(0),
  /** SHA-256 (hex) of the body bytes. */
  digest: hex64,
  /** Body size in bytes. */
  sizeBytes: z.number().int().min(0),
  /** Small typed metadata of binary messages (e.g. chunk index); see messages.ts. */
  meta: z.record(z.string(), z.union([z.string(), z.number(), z.boolean()])).optional(),
});
export type EnvelopeHeader = z.infer<typeof EnvelopeHeaderSchema>;

export const EnvelopeSchema = z.object({
  header: EnvelopeHeaderSchema,
  /** Ed25519 signature of canonicalJson(header), base64. */
  signature: z
    .string()
    .regex(/^[A-Za-z0-9+/]+={0,2}$/)
    .max(200),
  /** JSON (UTF-8 canonical JSON) or binary payload. */
  body: z.instanceof(Uint8Array),
});
export type Envelope = z.infer<typeof EnvelopeSchema>;

/**
 * The coordinator's signed receipt of an accepted site message: the id and hash of the audit
 * entry in which it logged the message, signed (statement 'twinfed.receipt.v1', fields in
 * shared/src/audit). The site keeps it; `twinfed audit compare` later proves the coordinator's
 * log still holds that entry unchanged.
 */
export const ReceiptSchema = z.object({ entryId: z.number().int().min(1), entryHash: hex64, signature: z.string().max(200) });
export type ReceiptWire = z.infer<typeof ReceiptSchema>;

/** What the receiver answers through the socket.io acknowledgement. */
export const AckSchema = z.union([
  z.object({ ok: z.literal(true), info: z.record(z.string(), z.unknown()).optional(), receipt: ReceiptSchema.optional() }),
  z.object({ ok: z.literal(false), code: z.string(), detail: z.string() }),
]);
export type Ack = z.infer<typeof AckSchema>;

/** Statement kind a site signs to open a connection (see HandshakeAuthSchema). */
export const HANDSHAKE_KIND = 'twinfed.handshake.v1';

/**
 * socket.io handshake `auth` of a site: a fresh single-use nonce from the coordinator
 * (POST /api/handshake) signed with the site's enrolled Ed25519 key over the statement
 * { kind: 'twinfed.handshake.v1', coordinatorId, siteId, nonce }. Knowing a site id is not
 * enough to connect as that site, nor to push it off its connection.
 */
export const HandshakeAuthSchema = z.object({
  siteId: SiteIdSchema,
  protocolVersion: z.string().max(16),
  nonce: z.string().regex(/^[A-Za-z0-9_-]{16,64}$/),
  signature: z
    .string()
    .regex(/^[A-Za-z0-9+/]+={0,2}$/)
    .max(200),
});
export type HandshakeAuth = z.infer<typeof HandshakeAuthSchema>;

/** Typed socket.io events (both directions use one event carrying an envelope). */
export interface ServerToClientEvents {
  envelope: (env: Envelope) => void;
}
export interface ClientToServerEvents {
  envelope: (env: Envelope, ack: (a: Ack) => void) => void;
}
