import {
  BODY_SCHEMAS,
  EnvelopeSchema,
  META_SCHEMAS,
  PROTOCOL_VERSION,
  WireError,
  canonicalJson,
  sha256Hex,
  utf8,
  type BodyOf,
  type Envelope,
  type EnvelopeHeader,
  type JsonMessageType,
  type MessageType,
} from '@twinfed/protocols';
import { fromB64, toB64 } from './sodium.js';
import { sign, verify } from './identity.js';

export interface Signer {
  id: string;
  ed25519SecretKey: Uint8Array;
  /** Returns the next sequence number (persisted by the caller). */
  nextSeq(): number;
}

export interface Outgoing {
  type: MessageType;
  /** The recipient (a site id or the coordinator id); receivers refuse envelopes addressed to someone else. */
  to: string;
  studyId: string | null;
  round: number | null;
  /** JSON body (serialised as canonical JSON) or binary body. */
  body: unknown;
  meta?: Record<string, string | number | boolean>;
  nowMs?: number;
  /**
   * sha256Hex of a binary body, when the caller already has it (one aggregate of 160 MB sent to
   * 100 sites is hashed once, not 100 times). The caller vouches for it: the receiver checks it.
   */
  bodyDigest?: string;
}

function bodyBytes(type: MessageType, body: unknown): Uint8Array {
  if (BODY_SCHEMAS[type] === null) {
    if (!(body instanceof Uint8Array)) throw new TypeError(`${type} needs a binary body`);
    return body;
  }
  return utf8(canonicalJson(body));
}

/** Builds and signs an envelope (Ed25519 over the canonical JSON of the header). */
export function sealEnvelope(signer: Signer, out: Outgoing): Envelope {
  const body = bodyBytes(out.type, out.body);
  const header: EnvelopeHeader = {
    v: PROTOCOL_VERSION,
    type: out.type,
    senderId: signer.id,
    to: out.to,
    studyId: out.studyId,
    round: out.round,
    seq: signer.nextSeq(),
    tsMs: out.nowMs ?? Date.now(),
    digest: out.bodyDigest !== undefined && body === out.body ? out.bodyDigest : sha256Hex(body),
    sizeBytes: body.length,
    ...(out.meta ? { meta: out.meta } : {}),
  };
  const signature = toB64(sign(utf8(canonicalJson(header)), signer.ed25519SecretKey));
  return { header, signature, body };
}

/** Validates the envelope's shape; throws TWF_E_MALFORMED naming the failing field. */
export function parseEnvelope(raw: unknown): Envelope {
  // socket.io delivers binary as Buffer; normalise to a plain Uint8Array view.
  const r = raw as { body?: unknown };
  if (r && typeof r === 'object' && Buffer.isBuffer(r.body)) {
    const b = r.body as Buffer;
    raw = { ...r, body: new Uint8Array(b.buffer, b.byteOffset, b.byteLength) };
  }
  const p = EnvelopeSchema.safeParse(raw);
  if (!p.success) throw new WireError('TWF_E_MALFORMED', formatIssues(p.error.issues));
  return p.data;
}

/** Checks signature then body digest; throws TWF_E_BAD_SIGNATURE / TWF_E_DIGEST_MISMATCH. */
export function verifyEnvelope(env: Envelope, ed25519PublicKey: Uint8Array): void {
  let sig: Uint8Array;
  try {
    sig = fromB64(env.signature);
  } catch {
    throw new WireError('TWF_E_BAD_SIGNATURE', 'signature is not base64');
  }
  if (!verify(sig, utf8(canonicalJson(env.header)), ed25519PublicKey)) {
    throw new WireError('TWF_E_BAD_SIGNATURE', `from ${env.header.senderId}, ${env.header.type} seq ${env.header.seq}`);
  }
  if (env.body.length !== env.header.sizeBytes || sha256Hex(env.body) !== env.header.digest) {
    throw new WireError('TWF_E_DIGEST_MISMATCH', `${env.header.type} seq ${env.header.seq}: body ${env.body.length} bytes`);
  }
}

/** Parses the body of a JSON message against its schema (TWF_E_MALFORMED on failure). */
export function decodeBody<T extends JsonMessageType>(env: Envelope, type: T): BodyOf[T] {
  const schema = BODY_SCHEMAS[type];
  if (!schema) throw new TypeError(`${type} has a binary body`);
  let json: unknown;
  try {
    json = JSON.parse(Buffer.from(env.body).toString('utf8'));
  } catch {
    throw new WireError('TWF_E_MALFORMED', `${type}: body is not JSON`);
  }
  const p = schema.safeParse(json);
  if (!p.success) throw new WireError('TWF_E_MALFORMED', `${type}: ${formatIssues(p.error.issues)}`);
  return p.data as BodyOf[T];
}

/** Parses the meta of a binary message against its schema (TWF_E_MALFORMED on failure). */
export function decodeMeta<T>(env: Envelope): T {
  const schema = META_SCHEMAS[env.header.type];
  if (!schema) throw new TypeError(`${env.header.type} has no meta`);
  const p = schema.safeParse(env.header.meta ?? {});
  if (!p.success) throw new WireError('TWF_E_MALFORMED', `${env.header.type} meta: ${formatIssues(p.error.issues)}`);
  return p.data as T;
}

function formatIssues(issues: { path: PropertyKey[]; message: string }[]): string {
  return issues
    .slice(0, 3)
    .map((i) => `${i.path.map(String).join('.') || '(root)'}: ${i.message}`)
    .join('; ');
}
