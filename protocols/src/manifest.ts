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

/** What a lead asks for (REST body of POST /api/studies). */
export const StudySpecSchema = z.object({
  title: z.string().min(1).max(200),
  task: z.literal('segmentation'),
  model: ModelConfigSchema,
  training: TrainingConfigSchema,
  data: DataCriteriaSchema,
  rounds: z.number().int().min(1).max(1000),
  minSites: z.number().int().min(1).max(1000),
  /** Seconds after a round opens at which it closes if quorum (minSites) is met. */
  roundDeadlineS: z.number().positive().max(7 * 24 * 3600),
  encryption: HeParamsSchema.optional(),
});
export type StudySpec = z.infer<typeof StudySpecSchema>;

/** The manifest a privacy officer approves; its hash binds the approval. */
export const StudyManifestSchema = StudySpecSchema.extend({
  studyId: z.string().min(1).max(64),
  encryption: HeParamsSchema,
  coordinatorId: z.string().min(1),
  createdAt: z.string(),
});
export type StudyManifest = z.infer<typeof StudyManifestSchema>;

/** SHA-256 of the canonical JSON of a manifest: what an approval is bound to. */
export function manifestHash(m: StudyManifest): string {
  return sha256Hex(canonicalJson(m));
}
