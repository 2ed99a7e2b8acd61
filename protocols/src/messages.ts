import { z } from 'zod';
import { HeParamsSchema, StudyManifestSchema, chunkCiphertextRange } from './manifest.js';
import type { MessageType } from './envelope.js';
import { SiteIdSchema, StudyIdSchema } from './ids.js';

const b64 = z.string().regex(/^[A-Za-z0-9+/]*={0,2}$/, 'expected base64');
const b64Key32 = z.string().regex(/^[A-Za-z0-9+/]{43}=$/, 'expected a 32-byte key in base64');
const sig64 = z.string().regex(/^[A-Za-z0-9+/]{86}==$/, 'expected a 64-byte Ed25519 signature in base64');
const hex64 = z.string().regex(/^[0-9a-f]{64}$/);
const siteId = SiteIdSchema;
const siteList = z.array(SiteIdSchema).max(255);
/** A Shamir share (shamir-secret-sharing layout: secret-length bytes + 1 x-coordinate byte), base64. */
const share = z.string().regex(/^[A-Za-z0-9+/]{44}$/, 'expected a 33-byte share in base64');

// ---- site -> coordinator -------------------------------------------------
export const HelloBody = z.object({
  siteName: z.string().max(200),
  backend: z.string().max(40),
  /** Studies this site has approved (id + manifest hash), so the coordinator re-announces them. */
  approved: z.array(z.object({ studyId: StudyIdSchema, manifestHash: hex64 })).max(1000),
});
/** trainSamples: the site's training samples for this study's task (slices for segmentation, patients for response); the cap of the sample count it may declare in a round. */
export const StudyJoinBody = z.object({ manifestHash: hex64, trainSamples: z.number().int().min(0), valPatients: z.number().int().min(0) });
export const StudyDeclineBody = z.object({ manifestHash: hex64, code: z.string().max(40), reason: z.string().max(500) });
/**
 * The site declines the open round (sent for round `header.round`, before its mask set-up or, at
 * the latest, before its upload): the coordinator audits it and removes the site from the round's
 * participants as if it had never set up. `code` is a TWF_E_ code; TWF_E_DP_BUDGET (the site's
 * differential-privacy budget would be exceeded) also marks the site exhausted for the study: it
 * is asked to no later round.
 */
export const RoundDeclineBody = z.object({ code: z.string().regex(/^TWF_E_[A-Z0-9_]{1,33}$/, 'expected a TWF_E_ code'), detail: z.string().max(500) });
/** The site's officer withdrew the approval: the site leaves the study after the round it is in. */
export const StudyWithdrawBody = z.object({ manifestHash: hex64, officer: z.string().min(1).max(200), reason: z.string().max(500) });

/** Statement kind of a dealer's key handout (signed with the dealer's roster Ed25519 key). */
export const KEY_HANDOUT_KIND = 'twinfed.keys.handout.v1';
/**
 * A dealer's key handout for one key epoch: the SEAL secret key sealed (crypto_box_seal) to each
 * recipient's roster X25519 key, and a signature over the statement
 * { kind: 'twinfed.keys.handout.v1', studyId, manifestHash, epoch, dealerSiteId, recipients (sorted), keyCommitment }.
 * keyCommitment = SHA-256 of a domain string, the study, the epoch and the key: a recipient checks that what it
 * opened is the key the dealer signed for, so a coordinator cannot plant its own.
 */
export const KeysSealedBody = z.object({
  epoch: z.number().int().min(1),
  manifestHash: hex64,
  heParamsDigest: hex64,
  keyCommitment: hex64,
  signature: sig64,
  recipients: z
    .array(z.object({ siteId, sealedKey: b64.max(8_000_000) }))
    .min(1)
    .max(255),
});

/** Statement kind of a site's per-round mask keys (secure aggregation, shared/src/secagg). */
export const MASK_KEYS_KIND = 'twinfed.secagg.keys.v1';
/** Statement kind of the survivor set a site signs before it reveals any share. */
export const MASK_SURVIVORS_KIND = 'twinfed.secagg.survivors.v1';

/**
 * Secure-aggregation set-up of one site for one round, sent once it has trained: its fresh X25519
 * mask key sPk and a commitment to its self-mask seed, signed with its roster Ed25519 key
 * (statement MASK_KEYS_KIND over studyId, manifestHash, round, siteId, sPk, bCommit), and for each
 * other participant a crypto_box (long-term X25519 keys of the roster) holding that site's Shamir
 * shares of the seed and of sSk.
 */
export const MaskSetupBody = z.object({
  sPk: b64Key32,
  bCommit: hex64,
  signature: sig64,
  boxes: z.array(z.object({ to: siteId, box: b64.max(2000) })).max(255),
});
/** Metadata of one binary ciphertext chunk of an encrypted, masked update. */
export const UpdateChunkMeta = z.object({
  index: z.number().int().min(0),
  count: z.number().int().min(1).max(100000),
  /** Number of training samples n_i the update is weighted by (FedAvg). */
  nSamples: z.number().int().min(1),
  /** Number of model parameters in the update (must equal the manifest's updateLength). */
  length: z.number().int().min(1),
  /** Study key epoch the chunk is encrypted under. */
  keyEpoch: z.number().int().min(1),
  heParamsDigest: hex64,
});
/** The site's signature of (key set, survivors) as the coordinator announced them (statement MASK_SURVIVORS_KIND). */
export const MaskConsistencyBody = z.object({ signature: sig64 });
/** Shares revealed for unmasking: of the self-mask seed of every survivor, of sSk of every site that dropped. Never both for one site. */
export const MaskUnmaskBody = z.object({
  bShares: z.array(z.object({ of: siteId, share })).max(255),
  sShares: z.array(z.object({ of: siteId, share })).max(255),
});
export const MetricsReportBody = z.object({
  /** The round whose aggregate the metrics were computed on (0 = initial model). */
  evaluatedRound: z.number().int().min(0),
  /**
   * Task metrics of the global model on the site's validation patients, by name (e.g. 'meanDice'
   * for segmentation, 'macroAucOvr' for response); value null when suppressed (too few patients).
   */
  metrics: z.array(z.object({ name: z.string().min(1).max(40), value: z.number().nullable() })).max(32),
  valPatients: z.number().int().min(0),
  trainLoss: z.number().nullable(),
  trainMs: z.number().min(0).nullable(),
  encryptMs: z.number().min(0).nullable(),
  uploadBytes: z.number().int().min(0).nullable(),
});
export const AggregateRequestBody = z.object({ fromRound: z.number().int().min(1) });
/** The site refused a round's aggregate after decryption (e.g. an element outside [-B, B]); it did not apply it. */
export const AggregateRefusedBody = z.object({ round: z.number().int().min(1), code: z.string().max(40), detail: z.string().max(500) });

// ---- coordinator -> site -------------------------------------------------
export const WelcomeBody = z.object({ coordinatorId: z.string(), protocolVersion: z.string(), serverTimeMs: z.number().int(), lastSeqSeen: z.number().int().min(0) });
export const StudyAnnounceBody = z.object({ manifest: StudyManifestSchema, manifestHash: hex64, status: z.string().max(20) });
/** A study's state changed (stopped, completed, …): sites stop trying to join a study that is not running. */
export const StudyStateBody = z.object({ manifestHash: hex64, state: z.enum(['running', 'stopped', 'completed', 'excluded']) });
export const KeysRequestBody = z.object({
  epoch: z.number().int().min(1),
  manifestHash: hex64,
  encryption: HeParamsSchema,
  /** Sites to seal the key to; the dealer refuses any that is not in the manifest's roster and takes their keys from the roster, never from here. */
  recipients: siteList.min(1),
});
export const KeysDeliverBody = z.object({
  epoch: z.number().int().min(1),
  manifestHash: hex64,
  dealerSiteId: siteId,
  heParamsDigest: hex64,
  keyCommitment: hex64,
  /** All recipients of the handout (sorted), as signed by the dealer. */
  recipients: siteList.min(1),
  signature: sig64,
  /** This site's sealed key. */
  sealedKey: b64.max(8_000_000),
});
export const RoundStartBody = z.object({
  deadlineMs: z.number().int(),
  /** The global model version the sites start from (the last closed round, 0 = initial model). */
  modelVersion: z.number().int().min(0),
  keyEpoch: z.number().int().min(1),
  participants: siteList.min(1),
  /** Secure-aggregation threshold t of this round (= secaggThresholdFor(participants.length)). */
  threshold: z.number().int().min(1),
});
/** One site's entry of a round's key set, as it signed it. */
export const MaskKeyEntry = z.object({ siteId, sPk: b64Key32, bCommit: hex64, signature: sig64 });
/** The round's key set (the sites that sent mask set-ups in time) with, for the recipient, the box each of them sealed to it. */
export const MaskPeersBody = z.object({
  keySet: z
    .array(MaskKeyEntry.extend({ box: b64.max(2000).nullable() }))
    .min(1)
    .max(255),
  /** Chunk indices of this site's update the coordinator already holds (resume after a drop). */
  alreadyReceived: z.array(z.number().int().min(0)),
});
/** Sites whose complete masked update is in the sum; each participant signs (keySet, survivors) before anyone reveals a share. */
export const MaskSurvivorsBody = z.object({ keySet: siteList.min(1), survivors: siteList.min(1) });
export const MaskRevealBody = z.object({
  keySet: siteList.min(1),
  survivors: siteList.min(1),
  signatures: z
    .array(z.object({ siteId, signature: sig64 }))
    .min(1)
    .max(255),
});
/**
 * First frame of a round.aggregate body (canonical JSON): what a site needs to unmask and apply the
 * encrypted sum in the following frames. The key set travels with its signatures so a site that
 * catches up later can check every key against the roster.
 */
export const AggregateInfo = z.object({
  round: z.number().int().min(1),
  baseVersion: z.number().int().min(0),
  keyEpoch: z.number().int().min(1),
  length: z.number().int().min(1),
  totalSamples: z.number().int().min(1),
  threshold: z.number().int().min(1),
  keySet: z.array(MaskKeyEntry).min(1).max(255),
  survivors: siteList.min(1),
  /** Shares each revealer sent (mask.unmask bodies). */
  reveals: z.array(z.object({ siteId, bShares: MaskUnmaskBody.shape.bShares, sShares: MaskUnmaskBody.shape.sShares })).max(255),
  heParamsDigest: hex64,
});
export const RoundFailedBody = z.object({ reason: z.string().max(500), code: z.string().max(40) });
export const AuditCheckpointBody = z.object({ entryId: z.number().int().min(1), entryHash: hex64, tsMs: z.number().int().min(0), signature: sig64 });
export const StudyCompletedBody = z.object({ rounds: z.number().int().min(0), finalVersion: z.number().int().min(0) });
/** A TLS public-key pin, `sha256/` + base64 of the SHA-256 of the certificate's SubjectPublicKeyInfo (RFC 7469). */
export const TlsPinSchema = z.string().regex(/^sha256\/[A-Za-z0-9+/]{43}=$/, 'expected sha256/ and 44 base64 characters');
/**
 * The coordinator will move to another TLS key: sites that pin the current one add the next one.
 * `signature` is the coordinator's statement TLS_ROLLOVER_KIND over tlsRolloverFields (coordinator
 * id, both pins, issuedAtMs), checked against the coordinator key pinned at enrolment.
 */
export const TlsRolloverBody = z.object({ currentPin: TlsPinSchema, nextPin: TlsPinSchema, issuedAtMs: z.number().int().min(0), signature: sig64 });
export const RejectBody = z.object({ code: z.string(), detail: z.string(), refType: z.string().nullable(), refSeq: z.number().int().nullable() });

/** Body schema of each JSON message; `null` marks a binary body with meta. */
export const BODY_SCHEMAS: Record<MessageType, z.ZodType | null> = {
  hello: HelloBody,
  'study.join': StudyJoinBody,
  'study.decline': StudyDeclineBody,
  'study.withdraw': StudyWithdrawBody,
  'round.decline': RoundDeclineBody,
  'keys.sealed': KeysSealedBody,
  'mask.setup': MaskSetupBody,
  'update.chunk': null,
  'mask.consistency': MaskConsistencyBody,
  'mask.unmask': MaskUnmaskBody,
  'metrics.report': MetricsReportBody,
  'aggregate.request': AggregateRequestBody,
  'aggregate.refused': AggregateRefusedBody,
  welcome: WelcomeBody,
  'study.announce': StudyAnnounceBody,
  'study.state': StudyStateBody,
  'keys.request': KeysRequestBody,
  'keys.deliver': KeysDeliverBody,
  'round.start': RoundStartBody,
  'mask.peers': MaskPeersBody,
  'mask.survivors': MaskSurvivorsBody,
  'mask.reveal': MaskRevealBody,
  'round.aggregate': null,
  'round.failed': RoundFailedBody,
  'audit.checkpoint': AuditCheckpointBody,
  'study.completed': StudyCompletedBody,
  'tls.rollover': TlsRolloverBody,
  reject: RejectBody,
};

/** Meta schema of each binary message. */
export const META_SCHEMAS: Partial<Record<MessageType, z.ZodType>> = {
  'update.chunk': UpdateChunkMeta,
  'round.aggregate': z.object({ count: z.number().int().min(1), infoBytes: z.number().int().min(1) }),
};

export type BodyOf = {
  hello: z.infer<typeof HelloBody>;
  'study.join': z.infer<typeof StudyJoinBody>;
  'study.decline': z.infer<typeof StudyDeclineBody>;
  'study.withdraw': z.infer<typeof StudyWithdrawBody>;
  'round.decline': z.infer<typeof RoundDeclineBody>;
  'keys.sealed': z.infer<typeof KeysSealedBody>;
  'mask.setup': z.infer<typeof MaskSetupBody>;
  'mask.consistency': z.infer<typeof MaskConsistencyBody>;
  'mask.unmask': z.infer<typeof MaskUnmaskBody>;
  'metrics.report': z.infer<typeof MetricsReportBody>;
  'aggregate.request': z.infer<typeof AggregateRequestBody>;
  'aggregate.refused': z.infer<typeof AggregateRefusedBody>;
  welcome: z.infer<typeof WelcomeBody>;
  'study.announce': z.infer<typeof StudyAnnounceBody>;
  'study.state': z.infer<typeof StudyStateBody>;
  'keys.request': z.infer<typeof KeysRequestBody>;
  'keys.deliver': z.infer<typeof KeysDeliverBody>;
  'round.start': z.infer<typeof RoundStartBody>;
  'mask.peers': z.infer<typeof MaskPeersBody>;
  'mask.survivors': z.infer<typeof MaskSurvivorsBody>;
  'mask.reveal': z.infer<typeof MaskRevealBody>;
  'round.failed': z.infer<typeof RoundFailedBody>;
  'audit.checkpoint': z.infer<typeof AuditCheckpointBody>;
  'study.completed': z.infer<typeof StudyCompletedBody>;
  'tls.rollover': z.infer<typeof TlsRolloverBody>;
  reject: z.infer<typeof RejectBody>;
};
export type JsonMessageType = keyof BodyOf;
export type UpdateChunkMetaT = z.infer<typeof UpdateChunkMeta>;
export type AggregateInfoT = z.infer<typeof AggregateInfo>;
export type MaskKeyEntryT = z.infer<typeof MaskKeyEntry>;

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

/** The body of chunk `index` of an update's ciphertexts: the ciphertext itself with one per chunk, else packFrames of its range. */
export function chunkBody(ciphertexts: Uint8Array[], index: number, perChunk = 1): Uint8Array {
  if (perChunk === 1) return ciphertexts[index];
  const { first, n } = chunkCiphertextRange(index, ciphertexts.length, perChunk);
  return packFrames(ciphertexts.slice(first, first + n));
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
