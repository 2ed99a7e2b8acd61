import { z } from 'zod';
import { HeParamsSchema, StudyManifestSchema } from './manifest.js';
import type { MessageType } from './envelope.js';

const b64 = z.string().regex(/^[A-Za-z0-9+/]*={0,2}$/, 'expected base64');
const hex64 = z.string().regex(/^[0-9a-f]{64}$/);
const siteId = z.string().min(1).max(64);

// ---- site -> coordinator -------------------------------------------------

export const HelloBody = z.object({
  siteName: z.string().max(200),
  backend: z.string().max(40),
  /** Studies this site has approved (id + manifest hash), so the coordinator re-announces them. */
  approved: z.array(z.object({ studyId: z.string(), manifestHash: hex64 })).max(1000),
});
export const StudyJoinBody = z.object({ manifestHash: hex64, trainSlices: z.number().int().min(0), valPatients: z.number().int().min(0) });
export const StudyDeclineBody = z.object({ manifestHash: hex64, code: z.string(), reason: z.string().max(500) });
export const KeysSealedBody = z.object({
  heParamsDigest: hex64,
  /** SEAL secret key sealed (crypto_box_seal) to each recipient's X25519 public key. */
  recipients: z.array(z.object({ siteId, sealedKey: b64 })).min(1).max(1000),
});
/** Metadata of one binary ciphertext chunk of an encrypted update. */
export const UpdateChunkMeta = z.object({
  index: z.number().int().min(0),
  count: z.number().int().min(1).max(100000),
  /** Number of training samples n_i the update is weighted by (FedAvg). */
  nSamples: z.number().int().min(1),
  /** Number of model parameters in the update. */
  length: z.number().int().min(1),
  heParamsDigest: hex64,
});
export const MetricsReportBody = z.object({
  /** The round whose aggregate the metrics were computed on (0 = initial model). */
  evaluatedRound: z.number().int().min(0),
  meanDice: z.number().min(0).max(1).nullable(),
  valPatients: z.number().int().min(0),
  trainLoss: z.number().nullable(),
  trainMs: z.number().min(0).nullable(),
  encryptMs: z.number().min(0).nullable(),
  uploadBytes: z.number().int().min(0).nullable(),
  /** A task metric other than Dice (e.g. 'macroAucOvr' for response studies); absent for segmentation. */
  metricName: z.string().min(1).max(40).optional(),
  metricValue: z.number().nullable().optional(),
});
export const AggregateRequestBody = z.object({ fromRound: z.number().int().min(1) });

// ---- coordinator -> site -------------------------------------------------

export const WelcomeBody = z.object({ coordinatorId: z.string(), protocolVersion: z.string(), serverTimeMs: z.number().int(), lastSeqSeen: z.number().int().min(0) });
export const StudyAnnounceBody = z.object({ manifest: StudyManifestSchema, manifestHash: hex64, status: z.string() });
export const KeysRequestBody = z.object({
  encryption: HeParamsSchema,
  recipients: z.array(z.object({ siteId, x25519PublicKey: b64 })).min(1),
});
export const KeysDeliverBody = z.object({ dealerSiteId: siteId, sealedKey: b64, heParamsDigest: hex64 });
export const RoundStartBody = z.object({
  deadlineMs: z.number().int(),
  /** The global model version the sites must start from (= number of aggregates applied). */
  modelVersion: z.number().int().min(0),
  participants: z.array(siteId),
  /** Chunk indices of this site's update the coordinator already holds (resume after a drop). */
  alreadyReceived: z.array(z.number().int().min(0)),
});
export const RoundAggregateMeta = z.object({ count: z.number().int().min(1), length: z.number().int().min(1), totalSamples: z.number().int().min(1), sites: z.string(), heParamsDigest: hex64 });
export const StudyCompletedBody = z.object({ rounds: z.number().int().min(0) });
export const RejectBody = z.object({ code: z.string(), detail: z.string(), refType: z.string().nullable(), refSeq: z.number().int().nullable() });

/** Body schema of each JSON message; `null` marks a binary body with meta. */
export const BODY_SCHEMAS: Record<MessageType, z.ZodType | null> = {
  hello: HelloBody,
  'study.join': StudyJoinBody,
  'study.decline': StudyDeclineBody,
  'keys.sealed': KeysSealedBody,
  'update.chunk': null,
  'metrics.report': MetricsReportBody,
  'aggregate.request': AggregateRequestBody,
  welcome: WelcomeBody,
  'study.announce': StudyAnnounceBody,
  'keys.request': KeysRequestBody,
  'keys.deliver': KeysDeliverBody,
  'round.start': RoundStartBody,
  'round.aggregate': null,
  'study.completed': StudyCompletedBody,
  reject: RejectBody,
};
/** Meta schema of each binary message. */
export const META_SCHEMAS: Partial<Record<MessageType, z.ZodType>> = {
  'update.chunk': UpdateChunkMeta,
  'round.aggregate': RoundAggregateMeta,
};

export type BodyOf = {
  hello: z.infer<typeof HelloBody>;
  'study.join': z.infer<typeof StudyJoinBody>;
  'study.decline': z.infer<typeof StudyDeclineBody>;
  'keys.sealed': z.infer<typeof KeysSealedBody>;
  'metrics.report': z.infer<typeof MetricsReportBody>;
  'aggregate.request': z.infer<typeof AggregateRequestBody>;
  welcome: z.infer<typeof WelcomeBody>;
  'study.announce': z.infer<typeof StudyAnnounceBody>;
  'keys.request': z.infer<typeof KeysRequestBody>;
  'keys.deliver': z.infer<typeof KeysDeliverBody>;
  'round.start': z.infer<typeof RoundStartBody>;
  'study.completed': z.infer<typeof StudyCompletedBody>;
  reject: z.infer<typeof RejectBody>;
};
export type JsonMessageType = keyof BodyOf;
export type UpdateChunkMetaT = z.infer<typeof UpdateChunkMeta>;
export type RoundAggregateMetaT = z.infer<typeof RoundAggregateMeta>;

/** Frames several binary blobs into one body: u32 count, then (u32 length, bytes)*. */
export function packFrames(frames: Uint8Array[]): Uint8Array {
  const total = 4 + frames.reduce((s, f) => s + 4 + f.length, 0);
  const out = new Uint8Array(total);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, frames.length, true);
  let o = 4;
  for (const f of frames) {
    dv.setUint32(o, f.length, true);
    out.set(f, o + 4);
    o += 4 + f.length;
  }
  return out;
}

export function unpackFrames(buf: Uint8Array): Uint8Array[] {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  if (buf.length < 4) throw new RangeError('frames: too short');
  const n = dv.getUint32(0, true);
  const out: Uint8Array[] = [];
  let o = 4;
  for (let i = 0; i < n; i++) {
    if (o + 4 > buf.length) throw new RangeError('frames: truncated header');
    const len = dv.getUint32(o, true);
    if (o + 4 + len > buf.length) throw new RangeError('frames: truncated frame');
    out.push(buf.subarray(o + 4, o + 4 + len));
    o += 4 + len;
  }
  if (o !== buf.length) throw new RangeError('frames: trailing bytes');
  return out;
}
