import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { AnyModelConfigSchema, sha256Hex } from '@twinfed/protocols';

/** model.json beside weights.bin: the global model with its provenance. */
export const ModelFileSchema = z.object({
  format: z.literal('twinfed-model/1'),
  studyId: z.string(),
  title: z.string(),
  manifestHash: z.string(),
  /** The study's model config (U-Net or response model), discriminated by `arch`. */
  model: AnyModelConfigSchema,
  version: z.number().int(),
  weightsFile: z.string(),
  weightsDtype: z.literal('float32'),
  weightsSha256: z.string(),
  meanDiceAtSite: z.number().nullable(),
  /** The task's own validation metric at the exporting site (e.g. macro one-vs-rest AUC for response). */
  metricAtSite: z.object({ name: z.string(), value: z.number().nullable() }).optional(),
  /** Response models: the manifest's patient split, so an evaluation can keep to the held-out patients. */
  split: z.object({ splitSalt: z.string(), trainPercent: z.number().int(), minMeasurements: z.number().int() }).optional(),
  decryptedAt: z.string(),
  createdAt: z.string(),
});
export type ModelFile = z.infer<typeof ModelFileSchema>;

export function writeModelDir(dir: string, meta: Omit<ModelFile, 'format' | 'weightsFile' | 'weightsDtype' | 'weightsSha256'>, weights: Float32Array): void {
  mkdirSync(dir, { recursive: true });
  const bytes = Buffer.from(weights.buffer, weights.byteOffset, weights.byteLength);
  writeFileSync(join(dir, 'weights.bin'), bytes);
  const full: ModelFile = { format: 'twinfed-model/1', ...meta, weightsFile: 'weights.bin', weightsDtype: 'float32', weightsSha256: sha256Hex(bytes) };
  writeFileSync(join(dir, 'model.json'), JSON.stringify(full, null, 2) + '\n');
}

/** Reads a model folder and checks the weights against the recorded digest. */
export function readModelDir(dir: string): { meta: ModelFile; weights: Float32Array } {
  const mj = join(dir, 'model.json');
  if (!existsSync(mj)) throw new Error(`TWF_E_NOT_FOUND: ${mj} missing (a model folder holds model.json and weights.bin)`);
  const meta = ModelFileSchema.parse(JSON.parse(readFileSync(mj, 'utf8')));
  const bytes = readFileSync(join(dir, meta.weightsFile));
  if (sha256Hex(bytes) !== meta.weightsSha256) throw new Error(`TWF_E_MODEL_DIGEST: ${meta.weightsFile} does not match the SHA-256 in model.json; the file is corrupted or was replaced`);
  return { meta, weights: new Float32Array(new Uint8Array(bytes).buffer) };
}
