import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { readNifti } from '@twinfed/shared/data/index';
import { createUNet, disposeUNet, setFlatWeights } from '@twinfed/shared/model/index';
import { dice3d, hd95Mm, segmentVolume, thresholdBaseline } from '@twinfed/shared/seg/index';
import { selectBackend } from '@twinfed/shared/train/index';
import { largestComponent } from '@twinfed/shared/imaging/index';
import { readModelDir } from '@twinfed/site-node';
import { CliError } from '../errors.js';

export interface SegPatientScore {
  patientId: string;
  dice: number;
  hd95Mm: number | null;
  /** The 40%-of-SUVmax threshold baseline on the same patient. */
  thresholdDice: number;
  thresholdHd95Mm: number | null;
}
export interface SegEvaluation {
  n: number;
  meanDice: number;
  medianDice: number;
  meanHd95Mm: number | null;
  threshold: { meanDice: number; medianDice: number; meanHd95Mm: number | null };
  patients: SegPatientScore[];
  backend: string;
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const meanOrNull = (xs: (number | null)[]) => {
  const ok = xs.filter((x): x is number => x !== null);
  return ok.length ? mean(ok) : null;
};

/**
 * `twinfed seg evaluate`: 3D Dice and HD95 (mm) per patient of a trained model
 * on a folder laid out as DIR/STS_xxx/{MOD}_image.nii.gz + {MOD}_mask.nii.gz,
 * next to the 40%-of-SUVmax baseline on the same patients.
 */
function keepLargestComponent(mask: Uint8Array, dims: [number, number, number]): Uint8Array {
  const keep = largestComponent({ dims, data: Float32Array.from(mask), spacingMm: [1, 1, 1], originMm: [0, 0, 0], direction: [1, 0, 0, 0, 1, 0, 0, 0, 1] });
  const out = new Uint8Array(mask.length);
  for (const i of keep) out[i] = 1;
  return out;
}

export async function evaluateSegmentation(modelDir: string, dataDir: string, modality: string, opts: { patients?: string[]; largestComponent?: boolean } = {}): Promise<SegEvaluation> {
  const { meta, weights } = readModelDir(modelDir);
  if (meta.model.arch !== 'unet2d')
    throw new CliError('TWF_E_MODEL_KIND', `${modelDir} holds a '${meta.model.arch}' model, seg evaluate needs a U-Net (for a response model use twinfed response evaluate)`);
  const backend = await selectBackend();
  const cfg = { inChannels: meta.model.inChannels, nClasses: meta.model.nClasses, base: meta.model.base, depth: meta.model.depth, size: meta.model.size };
  const model = createUNet(cfg, meta.model.initSeed);
  setFlatWeights(model, weights);
  const ids = (opts.patients ?? readdirSync(dataDir).sort()).filter((d) => existsSync(join(dataDir, d, `${modality}_image.nii.gz`)) && existsSync(join(dataDir, d, `${modality}_mask.nii.gz`)));
  if (ids.length === 0) throw new Error(`TWF_E_NOT_FOUND: no ${modality}_image.nii.gz + ${modality}_mask.nii.gz under ${dataDir}`);
  const patients: SegPatientScore[] = [];
  try {
    for (const patientId of ids) {
      const image = readNifti(new Uint8Array(readFileSync(join(dataDir, patientId, `${modality}_image.nii.gz`))));
      const mask = readNifti(new Uint8Array(readFileSync(join(dataDir, patientId, `${modality}_mask.nii.gz`))));
      const truth = Uint8Array.from(mask.data, (v) => (v > 0.5 ? 1 : 0));
      const raw = await segmentVolume(model, image, cfg.size);
      // Single-lesion post-processing: keep the largest 3D (26-connected) component of the prediction.
      const pred = opts.largestComponent === false ? raw : keepLargestComponent(raw, image.dims);
      const thr = thresholdBaseline(image.data, truth, image.dims, image.spacingMm);
      patients.push({
        patientId,
        dice: dice3d(pred, truth),
        hd95Mm: hd95Mm(pred, truth, image.dims, image.spacingMm),
        thresholdDice: dice3d(thr, truth),
        thresholdHd95Mm: hd95Mm(thr, truth, image.dims, image.spacingMm),
      });
    }
  } finally {
    disposeUNet(model);
  }
  const d = patients.map((p) => p.dice);
  const td = patients.map((p) => p.thresholdDice);
  return {
    n: patients.length,
    meanDice: mean(d),
    medianDice: median(d),
    meanHd95Mm: meanOrNull(patients.map((p) => p.hd95Mm)),
    threshold: { meanDice: mean(td), medianDice: median(td), meanHd95Mm: meanOrNull(patients.map((p) => p.thresholdHd95Mm)) },
    patients,
    backend: backend.name,
  };
}
