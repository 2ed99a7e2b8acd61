import { z } from 'zod';

export const SITE_MESSAGE_TYPES = [
  'hello',
  'study.join',
  'study.decline',
  'keys.sealed',
  'update.chunk',
  'metrics.report',
  'aggregate.request',
] as const;
export const COORDINATOR_MESSAGE_TYPES = [
  'welcome',
  'study.announce',
  'keys.request',
  'keys.deliver',
  'round.start',
  'round.aggregate',
  'study.completed',
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
  senderId: z.string().min(1).max(64),
  studyId: z.string().min(1).max(64).nullable(),
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
  signature: z.string().regex(/^[A-Za-z0-9+/]+={0,2}$/).max(200),
  /** JSON (UTF-8 canonical JSON) or binary payload. */
  body: z.instanceof(Uint8Array),
});
export type Envelope = z.infer<typeof EnvelopeSchema>;

/** What the receiver answers through the socket.io acknowledgement. */
export const AckSchema = z.union([
  z.object({ ok: z.literal(true), info: z.record(z.string(), z.unknown()).optional() }),
  z.object({ ok: z.literal(false), code: z.string(), detail: z.string() }),
]);
export type Ack = z.infer<typeof AckSchema>;

/** socket.io handshake `auth` of a site. */
export const HandshakeAuthSchema = z.object({
  siteId: z.string().min(1).max(64),
  protocolVersion: z.string().max(16),
});
export type HandshakeAuth = z.infer<typeof HandshakeAuthSchema>;

/** Typed socket.io events (both directions use one event carrying an envelope). */
export interface ServerToClientEvents {
  envelope: (env: Envelope) => void;
}
export interface ClientToServerEvents {
  envelope: (env: Envelope, ack: (a: Ack) => void) => void;
}
