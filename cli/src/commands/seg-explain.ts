import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { extractSlices, readNifti, type NiftiVolume } from '@twinfed/shared/data/index';
import { createUNet, disposeUNet, setFlatWeights, unetLayerNames, type UNet } from '@twinfed/shared/model/index';
import { DEFAULT_GRADCAM_LAYER, camMassShare, gradCam, renderGradCamOverlay } from '@twinfed/shared/seg/index';
import { dice, selectBackend } from '@twinfed/shared/train/index';
import { encodePngRgb } from '@twinfed/shared/imaging/index';
import { readModelDir } from '@twinfed/site-node';
import { CliError } from '../errors.js';

export interface ExplainOptions {
  modelDir: string;
  dataDir: string;
  patient: string;
  modality?: string;
  /** Axial index; default: the slice with the largest reference-mask area. */
  slice?: number;
  layer?: string;
  /** PNG path; default out/explain/{patient}_z{slice}_{layer}.png. */
  out?: string;
  /** Upscale factor of the picture (default 6). */
  scale?: number;
}

export interface ExplainResult {
  out: string;
  bytes: number;
  patient: string;
  slice: number;
  sliceChoice: 'largest reference area' | 'given';
  layer: string;
  backend: string;
  /** What the Grad-CAM target sums over (predicted tumour pixels, or the whole slice when none). */
  targetRegion: 'predicted' | 'wholeSlice';
  targetPixels: number;
  /** 2D Dice of the raw per-slice prediction against the reference, inside the model's window. */
  sliceDice: number;
  referencePixels: number;
  predictedPixels: number;
  /** Reference pixels of this slice outside the model's size x size window (not shown, not scored). */
  referenceOutsideWindow: number;
  /** Share of the CAM's mass on the reference / predicted mask, and the area share of each mask (the chance level). */
  camMassInReference: number;
  camMassInPredicted: number;
  referenceAreaShare: number;
  predictedAreaShare: number;
  camMax: number;
  suvWindow: [number, number];
  size: number;
}

const bad = (msg: string) => new CliError('TWF_E_BAD_OPTION', msg);

function maskArea(mask: NiftiVolume, z: number): number {
  const [nx, ny] = mask.dims;
  let n = 0;
  for (let i = z * nx * ny; i < (z + 1) * nx * ny; i++) if (mask.data[i] > 0.5) n++;
  return n;
}

/**
 * `twinfed seg explain`: Grad-CAM of the tumour prediction on one axial slice of one patient,
 * written as an overlay PNG (PET in grey, heat map, reference and predicted contours, legend).
 * The slice goes through exactly the crop and SUV normalisation of training and of
 * `seg evaluate` (extractSlices); the prediction shown is the raw per-slice argmax (no 3D
 * largest-component step, which needs the whole volume).
 */
export async function explainSegmentation(o: ExplainOptions): Promise<ExplainResult> {
  const modality = o.modality ?? 'PET';
  const layer = o.layer ?? DEFAULT_GRADCAM_LAYER;
  const imgPath = join(o.dataDir, o.patient, `${modality}_image.nii.gz`);
  const maskPath = join(o.dataDir, o.patient, `${modality}_mask.nii.gz`);
  for (const p of [imgPath, maskPath]) if (!existsSync(p)) throw new Error(`TWF_E_NOT_FOUND: ${p} missing (expected DIR/PATIENT/${modality}_image.nii.gz and ${modality}_mask.nii.gz)`);
  const { meta, weights } = readModelDir(o.modelDir);
  if (meta.model.arch !== 'unet2d') throw new CliError('TWF_E_MODEL_KIND', `${o.modelDir} holds a '${meta.model.arch}' model, seg explain needs a U-Net`);
  const cfg = { inChannels: meta.model.inChannels, nClasses: meta.model.nClasses, base: meta.model.base, depth: meta.model.depth, size: meta.model.size };
  const layers = unetLayerNames(cfg);
  if (!layers.includes(layer)) throw bad(`--layer ${layer} is not a layer of this model; choose one of ${layers.join(', ')}`);
  const image = readNifti(new Uint8Array(readFileSync(imgPath)));
  const mask = readNifti(new Uint8Array(readFileSync(maskPath)));
  const nz = image.dims[2];
  let z: number;
  let sliceChoice: ExplainResult['sliceChoice'];
  if (o.slice === undefined) {
    z = 0;
    for (let k = 1; k < nz; k++) if (maskArea(mask, k) > maskArea(mask, z)) z = k;
    sliceChoice = 'largest reference area';
  } else {
    if (!(Number.isInteger(o.slice) && o.slice >= 0 && o.slice < nz)) throw bad(`--slice ${o.slice} is outside 0..${nz - 1} (${o.patient} has ${nz} axial slices)`);
    z = o.slice;
    sliceChoice = 'given';
  }
  const one = (v: NiftiVolume): NiftiVolume => {
    const [nx, ny] = v.dims;
    return { ...v, dims: [nx, ny, 1], data: v.data.subarray(z * nx * ny, (z + 1) * nx * ny) };
  };
  const size = cfg.size;
  const input = extractSlices(one(image), one(mask), { size, onlyTumourSlices: false });
  // The same window in SUV for display: scale 1, no clip.
  const suv = extractSlices(one(image), one(mask), { size, onlyTumourSlices: false, normalisation: { kind: 'fixed', scale: 1, clip: Infinity } });

  const backend = await selectBackend();
  let model: UNet | null = null;
  try {
    model = createUNet(cfg, meta.model.initSeed);
    setFlatWeights(model, weights);
    const r = gradCam(model, input.images, { layer });
    const reference = input.masks;
    const count = (m: Uint8Array) => m.reduce((a, b) => a + b, 0);
    const out = o.out ?? join('out', 'explain', `${o.patient}_z${z}_${layer}.png`);
    const pic = renderGradCamOverlay({
      size,
      suv: suv.images,
      cam: r.cam,
      reference,
      predicted: r.predicted,
      scale: o.scale,
      title: `${o.patient} Z=${z} DICE ${dice(r.predicted, reference).toFixed(2)}`,
      subtitle: `LAYER ${layer}${r.targetRegion === 'wholeSlice' ? ' NO TUMOUR PREDICTED' : ''}`,
    });
    const png = encodePngRgb(pic);
    mkdirSync(dirname(out), { recursive: true });
    writeFileSync(out, png);
    return {
      out,
      bytes: png.length,
      patient: o.patient,
      slice: z,
      sliceChoice,
      layer,
      backend: backend.name,
      targetRegion: r.targetRegion,
      targetPixels: r.targetPixels,
      sliceDice: dice(r.predicted, reference),
      referencePixels: count(reference),
      predictedPixels: count(r.predicted),
      referenceOutsideWindow: input.maskVoxelsOutside,
      camMassInReference: camMassShare(r.cam, reference),
      camMassInPredicted: camMassShare(r.cam, r.predicted),
      referenceAreaShare: count(reference) / (size * size),
      predictedAreaShare: count(r.predicted) / (size * size),
      camMax: r.camMax,
      suvWindow: pic.suvWindow,
      size,
    };
  } finally {
    if (model) disposeUNet(model);
  }
}

export function formatExplain(r: ExplainResult): string {
  const pct = (x: number) => (Number.isNaN(x) ? 'n/a' : `${(100 * x).toFixed(0)}%`);
  return [
    `wrote ${r.out} (${r.bytes} bytes)`,
    `${r.patient} slice z=${r.slice} (${r.sliceChoice}); layer ${r.layer}; backend ${r.backend}`,
    `Dice on this slice ${r.sliceDice.toFixed(3)} (reference ${r.referencePixels} px, predicted ${r.predictedPixels} px${r.referenceOutsideWindow ? `, ${r.referenceOutsideWindow} reference px outside the ${r.size}x${r.size} window` : ''})`,
    `Grad-CAM target: tumour logits summed over ${r.targetRegion === 'predicted' ? `the ${r.targetPixels} predicted tumour pixels` : `the whole slice (${r.targetPixels} px): no tumour pixel predicted`}`,
    r.camMax > 0
      ? `heat mass inside reference mask ${pct(r.camMassInReference)} (mask covers ${pct(r.referenceAreaShare)} of the slice); inside predicted mask ${pct(r.camMassInPredicted)} (covers ${pct(r.predictedAreaShare)})`
      : `heat map is empty: no channel of ${r.layer} adds positive evidence for tumour here`,
    `legend: grey = SUV ${r.suvWindow[0].toFixed(1)}..${r.suvWindow[1].toFixed(1)}; heat = Grad-CAM 0..1 (viridis, opacity grows with the value); cyan = reference contour; red = predicted contour`,
  ].join('\n');
}
