import { z } from 'zod';
import { canonicalJson, sha256Hex } from './canonical.js';

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

const studyCommon = {
  title: z.string().min(1).max(200),
  training: TrainingConfigSchema,
  rounds: z.number().int().min(1).max(1000),
  minSites: z.number().int().min(1).max(1000),
  /** Seconds after a round opens at which it closes if quorum (minSites) is met. */
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
export type StudySpec = z.infer<typeof StudySpecSchema>;
export type SegmentationSpec = z.infer<typeof SegmentationSpecSchema>;
export type ResponseSpec = z.infer<typeof ResponseSpecSchema>;

const manifestExtra = {
  studyId: z.string().min(1).max(64),
  encryption: HeParamsSchema,
  coordinatorId: z.string().min(1),
  createdAt: z.string(),
};

/** The manifest a privacy officer approves; its hash binds the approval. */
export const StudyManifestSchema = z.discriminatedUnion('task', [SegmentationSpecSchema.extend(manifestExtra), ResponseSpecSchema.extend(manifestExtra)]);
export type StudyManifest = z.infer<typeof StudyManifestSchema>;
export type SegmentationManifest = Extract<StudyManifest, { task: 'segmentation' }>;
export type ResponseManifest = Extract<StudyManifest, { task: 'response' }>;

/** SHA-256 of the canonical JSON of a manifest: what an approval is bound to. */
export function manifestHash(m: StudyManifest): string {
  return sha256Hex(canonicalJson(m));
}
