import { z } from 'zod';
import { canonicalJson, sha256Hex } from './canonical.js';
import { SiteIdSchema, StudyIdSchema, PartyIdSchema } from './ids.js';

/** Parameters of the additively homomorphic scheme a study uses (see docs/security.md). */
export const HeParamsSchema = z.object({
  scheme: z.literal('bfv-sym-seeded'),
  polyModulusDegree: z.number().int().min(1024).max(32768),
  coeffModulusBits: z.array(z.number().int().min(20).max(60)).min(1).max(8),
  plainModulusBits: z.number().int().min(17).max(60),
  precisionBits: z.number().int().min(8).max(40),
});
export type HeParamsWire = z.infer<typeof HeParamsSchema>;

export const ModelConfigSchema = z.object({
  arch: z.literal('unet2d'),
  inChannels: z.number().int().min(1).max(8),
  nClasses: z.number().int().min(2).max(16),
  base: z.number().int().min(2).max(64),
  depth: z.number().int().min(1).max(5),
  /** Input slice edge length in pixels (square). */
  size: z.number().int().min(16).max(512),
  /** Seed of the deterministic initialisation every site reproduces. */
  initSeed: z.number().int().min(0),
});

export const TrainingConfigSchema = z.object({
  epochsPerRound: z.number().min(0.1).max(100),
  batchSize: z.number().int().min(1).max(1024),
  learningRate: z.number().positive().max(1),
  /** Elementwise clip bound B of a weight update before quantisation. */
  clipBound: z.number().positive().max(100),
  seed: z.number().int().min(0),
  /**
   * Most training samples (FedAvg weight n) one site may declare in one round. The coordinator
   * refuses a larger n, or one above the counts the site joined with; with the roster size it
   * bounds the round's total so the encrypted sum can never overflow (checked at start).
   */
  maxSamplesPerSite: z.number().int().min(1).max(10_000_000).default(10_000),
});

export const DataCriteriaSchema = z.object({
  modality: z.enum(['PET', 'CT', 'MR']),
  /** Label names in mask order; index 0 is background. */
  labels: z.array(z.string().min(1)).min(2),
  minTrainSlices: z.number().int().min(1).default(1),
});

/**
 * Treatment-response model (task 'response'): softmax regression over the features of a patient's
 * first three measurements (shared/src/response/features.ts, feature set 'first3-v1') and a one-hot
 * of the arm over `arms`. Three classes: response, stable, progression (RECIST-style, see
 * shared/src/response/labels.ts).
 */
export const ResponseModelConfigSchema = z.object({
  arch: z.literal('logreg'),
  features: z.literal('first3-v1'),
  nClasses: z.literal(3),
  /** Arm vocabulary of the one-hot columns, in column order (unknown arms → all zeros). */
  arms: z.array(z.string().min(1).max(200)).max(64),
  /** L2 penalty on the weights (not the biases). */
  l2: z.number().min(0).max(10),
  initSeed: z.number().int().min(0),
});

/** Any model a study can train; discriminated by `arch`. */
export const AnyModelConfigSchema = z.discriminatedUnion('arch', [ModelConfigSchema, ResponseModelConfigSchema]);
export type AnyModelConfig = z.infer<typeof AnyModelConfigSchema>;

export const ResponseDataCriteriaSchema = z.object({
  /** Patients come from the site's twin tables (measurements + treatments), e.g. after `twinfed site import`. */
  source: z.literal('twin-measurements'),
  /** Patients with fewer usable measurements are left out (3 for features, the last for the label). */
  minMeasurements: z.number().int().min(4).max(100),
  /** Percent of patients (by salted hash of the id) used for training; the rest are held out. */
  trainPercent: z.number().int().min(1).max(99),
  splitSalt: z.string().min(1).max(64),
  minTrainPatients: z.number().int().min(1),
});

/** Fewest sites whose updates may form an aggregate: with 2, each learns the other's update from it. */
export const MIN_CONTRIBUTORS = 3;

const studyCommon = {
  title: z.string().min(1).max(200),
  training: TrainingConfigSchema,
  /** Rounds that must close (aborted or failed rounds do not count). */
  rounds: z.number().int().min(1).max(1000),
  /** Quorum: fewest contributors of a round, at least 3 (TWF_E_TOO_FEW_CONTRIBUTORS), and at least the secure-aggregation threshold of the roster. */
  minSites: z.number().int().min(MIN_CONTRIBUTORS, `minSites must be at least ${MIN_CONTRIBUTORS} (TWF_E_TOO_FEW_CONTRIBUTORS)`).max(255),
  /** Seconds after a round opens by which sites must have trained and sent their mask keys; with quorum the round goes on without the rest. */
  roundDeadlineS: z.number().positive().max(7 * 24 * 3600),
  encryption: HeParamsSchema.optional(),
};

export const SegmentationSpecSchema = z.object({
  ...studyCommon,
  task: z.literal('segmentation'),
  model: ModelConfigSchema,
  data: DataCriteriaSchema,
});

export const ResponseSpecSchema = z.object({
  ...studyCommon,
  task: z.literal('response'),
  model: ResponseModelConfigSchema,
  data: ResponseDataCriteriaSchema,
});

/** What a lead asks for (REST body of POST /api/studies); discriminated by `task`. */
export const StudySpecSchema = z.discriminatedUnion('task', [SegmentationSpecSchema, ResponseSpecSchema]);
/** A study spec as a lead writes it (defaults may be left out). */
export type StudySpec = z.input<typeof StudySpecSchema>;
export type SegmentationSpec = z.input<typeof SegmentationSpecSchema>;
export type ResponseSpec = z.input<typeof ResponseSpecSchema>;

const b64Key32 = z.string().regex(/^[A-Za-z0-9+/]{43}=$/, 'expected a 32-byte key in base64');

/** One participating site as the officers approve it: its id, name and the public keys its messages, key handouts and mask keys are checked against. */
export const RosterEntrySchema = z.object({
  siteId: SiteIdSchema,
  siteName: z.string().min(1).max(200),
  /** Ed25519 (RFC 8032) key the site signs with; its fingerprint is what officers compare out of band. */
  ed25519PublicKey: b64Key32,
  /** X25519 (RFC 7748) key sealed study keys and mask-key shares are encrypted to. */
  x25519PublicKey: b64Key32,
});
export type RosterEntry = z.infer<typeof RosterEntrySchema>;

/** Secure aggregation of the study: pairwise + self masks inside the HE plaintexts (Bonawitz et al., CCS 2017), t-of-n shared. */
export const SECURE_AGGREGATION = 'double-mask-v1' as const;

const draftExtra = {
  studyId: StudyIdSchema,
  encryption: HeParamsSchema,
  coordinatorId: PartyIdSchema,
  createdAt: z.string().max(40),
  /** Parameters in every update, from the model config: what leaves each site per round, and the only length the coordinator accepts. */
  updateLength: z.number().int().min(1).max(100_000_000),
  secureAggregation: z.literal(SECURE_AGGREGATION),
};
const rosterExtra = {
  /** 1 when the lead starts the study; +1 for every roster change (each needs new approvals). */
  manifestVersion: z.number().int().min(1),
  /** The sites that take part: nobody else can join, receive the study key or contribute. */
  participants: z.array(RosterEntrySchema).min(MIN_CONTRIBUTORS).max(255),
  /** Order in which sites act as key dealer (the first connected one deals; a missing dealer is replaced by the next). */
  keyDealers: z.array(SiteIdSchema).min(1).max(255),
};

/** A created study before the lead starts it: no roster yet, never shown to officers. */
export const StudyDraftSchema = z.discriminatedUnion('task', [SegmentationSpecSchema.extend(draftExtra), ResponseSpecSchema.extend(draftExtra)]);
export type StudyDraft = z.infer<typeof StudyDraftSchema>;

/**
 * The manifest a privacy officer approves; its hash binds the approval. It includes the roster:
 * who takes part, with which keys, and who deals the study key.
 */
export const StudyManifestSchema = z.discriminatedUnion('task', [
  SegmentationSpecSchema.extend({ ...draftExtra, ...rosterExtra }),
  ResponseSpecSchema.extend({ ...draftExtra, ...rosterExtra }),
]).superRefine((m, ctx) => {
  const ids = m.participants.map((p) => p.siteId);
  if (new Set(ids).size !== ids.length) ctx.addIssue({ code: 'custom', path: ['participants'], message: 'a site is listed twice' });
  for (const d of m.keyDealers) if (!ids.includes(d)) ctx.addIssue({ code: 'custom', path: ['keyDealers'], message: `key dealer ${d} is not a participant` });
  if (new Set(m.keyDealers).size !== m.keyDealers.length) ctx.addIssue({ code: 'custom', path: ['keyDealers'], message: 'a key dealer is listed twice' });
  if (m.minSites > ids.length) ctx.addIssue({ code: 'custom', path: ['minSites'], message: `minSites ${m.minSites} exceeds the ${ids.length} participants` });
});
export type StudyManifest = z.infer<typeof StudyManifestSchema>;
export type SegmentationManifest = Extract<StudyManifest, { task: 'segmentation' }>;
export type ResponseManifest = Extract<StudyManifest, { task: 'response' }>;

/** SHA-256 of the canonical JSON of a manifest: what an approval is bound to. */
export function manifestHash(m: StudyManifest): string {
  return sha256Hex(canonicalJson(m));
}

/**
 * Secure-aggregation threshold t for a round of n participants: a strict majority, never fewer
 * than 3 (Bonawitz et al. 2017 take t > n/2 against an active server). Shares of each site's mask
 * secrets are t-of-n; a round needs t sites to unmask.
 */
export function secaggThresholdFor(n: number): number {
  return Math.max(MIN_CONTRIBUTORS, Math.floor(n / 2) + 1);
}

/** Fewest contributors a round of this manifest needs: minSites, and never fewer than 3. */
export function quorumOf(m: Pick<StudyManifest, 'minSites'>): number {
  return Math.max(MIN_CONTRIBUTORS, m.minSites);
}
