import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { eq } from 'drizzle-orm';
import { DEFAULT_SUV_NORMALISATION } from '@twinfed/shared/data/index';
import { SITE_FILES } from '../config.js';
import type { SiteDb } from '../db/index.js';
import { segSlices } from '../db/schema.js';
import { readModelDir, type ModelFile } from '../model-files.js';

/**
 * Grad-CAM of the site's segmentation model on one of a patient's slices, for the clinician's twin
 * page: the same computation and picture as `twinfed seg explain` (shared/src/seg), run on the slices
 * the site stored at import (seg_slices: exactly what the model trains and predicts on), so nothing
 * outside the site database and the site's model folder is read. The displayed grey is SUV
 * (normalised intensity x the import's fixed scale, clipped as at import).
 */

/** The newest U-Net a completed study left in DATA_DIR/models/STUDY/ (model.json + weights.bin), or null. */
export function findSegmentationModel(dataDir: string): { dir: string; meta: ModelFile } | null {
  const root = join(dataDir, SITE_FILES.models);
  if (!existsSync(root)) return null;
  let best: { dir: string; meta: ModelFile } | null = null;
  for (const e of readdirSync(root, { withFileTypes: true })) {
    if (!e.isDirectory()) continue;
    const dir = join(root, e.name);
    try {
      const { meta } = readModelDir(dir);
      if (meta.model.arch !== 'unet2d') continue;
      if (!best || meta.createdAt > best.meta.createdAt) best = { dir, meta };
    } catch {
      // Not a model folder, or its weights do not match their digest: not offered.
    }
  }
  return best;
}

export type GradCamAvailability = { ok: true; modelDir: string; studyId: string; title: string; slices: number; modality: string } | { ok: false; reason: string };

/** Whether a Grad-CAM overlay can be drawn for the patient, and if not, why (in words for the page). */
export function gradCamAvailability(db: SiteDb, dataDir: string, patientId: string): GradCamAvailability {
  const model = findSegmentationModel(dataDir);
  if (!model) return { ok: false, reason: 'This site has no segmentation model yet (a completed segmentation study leaves one in the models folder).' };
  const row = db.select({ n: segSlices.nSlices, size: segSlices.size, modality: segSlices.modality }).from(segSlices).where(eq(segSlices.patientId, patientId)).get();
  if (!row || row.n === 0) return { ok: false, reason: 'This patient has no imported image with a tumour mask, so there is nothing to explain.' };
  const cfg = model.meta.model;
  if (cfg.arch !== 'unet2d') return { ok: false, reason: 'The site model is not a segmentation U-Net.' };
  if (cfg.size !== row.size)
    return { ok: false, reason: `The segmentation model takes ${cfg.size} px slices; this patient's slices were imported at ${row.size} px (re-import with --size ${cfg.size}).` };
  return { ok: true, modelDir: model.dir, studyId: model.meta.studyId, title: model.meta.title, slices: row.n, modality: row.modality };
}

export interface PatientGradCam {
  png: Buffer;
  /** Index among the patient's stored slices (the one with the largest reference area). */
  slice: number;
  sliceDice: number;
  targetRegion: 'predicted' | 'wholeSlice';
  studyId: string;
}

const cache = new Map<string, PatientGradCam>();

/** The overlay PNG (grey SUV, heat map, reference and predicted contours, legend), or the reason there is none. */
export async function patientGradCam(db: SiteDb, dataDir: string, patientId: string): Promise<PatientGradCam | { reason: string }> {
  const av = gradCamAvailability(db, dataDir, patientId);
  if (!av.ok) return { reason: av.reason };
  const row = db.select().from(segSlices).where(eq(segSlices.patientId, patientId)).get()!;
  const { meta, weights } = readModelDir(av.modelDir);
  const key = `${patientId}\u0000${meta.weightsSha256}\u0000${row.sourceDigest}`;
  const hit = cache.get(key);
  if (hit) return hit;
  const size = row.size;
  const px = size * size;
  const images = new Float32Array(new Uint8Array(row.images).buffer, 0, row.nSlices * px);
  const masks = new Uint8Array(row.masks);
  let z = 0;
  let bestArea = -1;
  for (let k = 0; k < row.nSlices; k++) {
    let a = 0;
    for (let i = k * px; i < (k + 1) * px; i++) a += masks[i];
    if (a > bestArea) [z, bestArea] = [k, a];
  }
  const image = images.slice(z * px, (z + 1) * px);
  const reference = masks.slice(z * px, (z + 1) * px);
  const norm = DEFAULT_SUV_NORMALISATION;
  const suv = image.map((v) => (norm.kind === 'fixed' ? v * norm.scale : v));
  // tfjs is loaded only when a clinician asks for an explanation.
  const [{ createUNet, disposeUNet, setFlatWeights }, { DEFAULT_GRADCAM_LAYER, gradCam, renderGradCamOverlay }, { dice, selectBackend }, { encodePngRgb }] = await Promise.all([
    import('@twinfed/shared/model/index'),
    import('@twinfed/shared/seg/index'),
    import('@twinfed/shared/train/index'),
    import('@twinfed/shared/imaging/index'),
  ]);
  await selectBackend();
  const m = meta.model;
  if (m.arch !== 'unet2d') return { reason: 'The site model is not a U-Net.' };
  const model = createUNet({ inChannels: m.inChannels, nClasses: m.nClasses, base: m.base, depth: m.depth, size: m.size }, m.initSeed);
  try {
    setFlatWeights(model, weights);
    const r = gradCam(model, image, { layer: DEFAULT_GRADCAM_LAYER });
    const d = dice(r.predicted, reference);
    const pic = renderGradCamOverlay({
      size,
      suv,
      cam: r.cam,
      reference,
      predicted: r.predicted,
      scale: Math.max(1, Math.min(8, Math.round(384 / size))),
      title: `SLICE ${z + 1}/${row.nSlices} DICE ${d.toFixed(2)}`,
      subtitle: `LAYER ${DEFAULT_GRADCAM_LAYER}${r.targetRegion === 'wholeSlice' ? ' NO TUMOUR PREDICTED' : ''}`,
    });
    const out: PatientGradCam = { png: Buffer.from(encodePngRgb(pic)), slice: z, sliceDice: d, targetRegion: r.targetRegion, studyId: meta.studyId };
    if (cache.size >= 64) cache.delete(cache.keys().next().value!);
    cache.set(key, out);
    return out;
  } finally {
    disposeUNet(model);
  }
}
