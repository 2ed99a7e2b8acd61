import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { extractSlices } from '../data/slices.js';
import { readNifti } from '../data/nifti.js';
import { mulberry32 } from '../model/prng.js';
import { createUNet, disposeUNet, getFlatWeights, setFlatWeights, unetLayerNames, unetLogits, type UNetConfig } from '../model/unet.js';
import { selectBackend } from '../train/backend.js';
import { camMassShare, gradCam, gradCamTarget, layerGradient, resizeBilinear } from './gradcam.js';

// The project's own copies of real data and a model trained by `npm run demo` (fixtures/README.md).
const DATA = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../fixtures');

const randomImage = (n: number, seed: number) => {
  const r = mulberry32(seed);
  return Float32Array.from({ length: n }, () => r());
};

describe('Grad-CAM', () => {
  let backend = '';
  before(async () => {
    backend = (await selectBackend()).name;
  });

  it('forward taps see every named layer in order and leave the logits unchanged', () => {
    const m = createUNet({ base: 2, depth: 2, size: 16 }, 3);
    try {
      const w0 = getFlatWeights(m);
      const seen: string[] = [];
      const [a, b] = tf.tidy(() => {
        const x = tf.tensor4d(randomImage(256, 1), [1, 16, 16, 1]);
        return [unetLogits(m, x).dataSync(), unetLogits(m, x, { tap: (n, h) => (seen.push(`${n}:${h.shape.slice(1).join('x')}`), h) }).dataSync()];
      });
      assert.deepEqual(seen, ['down0:16x16x2', 'down1:8x8x4', 'bottleneck:4x4x8', 'up1:8x8x4', 'up0:16x16x2']);
      assert.deepEqual(
        seen.map((s) => s.split(':')[0]),
        unetLayerNames(m.config),
      );
      assert.deepEqual(a, b);
      assert.deepEqual(getFlatWeights(m), w0, 'parameters untouched');
    } finally {
      disposeUNet(m);
    }
  });

  it('CAM has the input shape, lies in [0, 1], peaks at 1, and leaks no tensors', () => {
    const m = createUNet({ base: 4, depth: 2, size: 16 }, 5);
    try {
      const img = randomImage(256, 2);
      const before = tf.memory().numTensors;
      for (const layer of unetLayerNames(m.config)) {
        const r = gradCam(m, img, { layer });
        assert.equal(r.cam.length, 256);
        const [h] = r.layerSize;
        assert.equal(r.camLayer.length, h * h);
        assert.equal(h, { down0: 16, down1: 8, bottleneck: 4, up1: 8, up0: 16 }[layer]);
        assert.ok(
          r.cam.every((v) => v >= 0 && v <= 1 && Number.isFinite(v)),
          layer,
        );
        if (r.camMax > 0) assert.ok(Math.abs(Math.max(...r.cam) - 1) < 1e-6, `${layer} normalised to max 1`);
        assert.ok(r.targetRegion === 'predicted' ? r.targetPixels === r.predicted.reduce((a, b) => a + b, 0) : r.targetPixels === 256);
      }
      assert.equal(tf.memory().numTensors, before, `no tensors leaked on ${backend}`);
      assert.throws(() => gradCam(m, img, { layer: 'up7' }), /unknown U-Net layer 'up7'.*down0, down1, bottleneck, up1, up0/);
      assert.throws(() => gradCam(m, new Float32Array(10)), /10 values; the model takes 16x16/);
    } finally {
      disposeUNet(m);
    }
  });

  it('the gradient with respect to a layer matches central finite differences', () => {
    // A ReLU/max-pool network is piecewise linear: difference quotients are exact unless the step
    // crosses a kink. Entries with a kink are skipped; the check still needs enough entries, with
    // non-zero gradients.
    const m = createUNet({ base: 2, depth: 1, size: 8 }, 11);
    try {
      const img = randomImage(64, 4).map((v) => 5 * v);
      const target = randomImage(64, 5); // arbitrary non-negative pixel weights
      const r = mulberry32(9);
      for (const layer of ['down0', 'bottleneck', 'up0']) {
        const g = layerGradient(m, img, layer, target);
        assert.ok(Math.abs(g.target - gradCamTarget(m, img, layer, target)) < 1e-4 * Math.max(1, Math.abs(g.target)));
        const n = g.activation.length;
        let checked = 0;
        let nonZero = 0;
        const f0 = gradCamTarget(m, img, layer, target);
        for (let t = 0; t < 16; t++) {
          const i = Math.floor(r() * n);
          const eps = 2e-2;
          const d = new Float32Array(n);
          d[i] = eps;
          const forward = (gradCamTarget(m, img, layer, target, 1, d) - f0) / eps;
          d[i] = -eps;
          const backward = (f0 - gradCamTarget(m, img, layer, target, 1, d)) / eps;
          // Forward and backward slopes differ: a kink within the step (e.g. a max-pool tie between
          // dead ReLUs, where any one-sided slope is a valid subgradient). Skip it.
          if (Math.abs(forward - backward) > 2e-3 + 1e-2 * Math.abs(forward)) continue;
          const fd = (forward + backward) / 2;
          checked++;
          if (Math.abs(g.gradient[i]) > 1e-2) nonZero++;
          assert.ok(Math.abs(fd - g.gradient[i]) <= 2e-3 + 1e-2 * Math.abs(g.gradient[i]), `${layer}[${i}]: finite difference ${fd}, gradient ${g.gradient[i]}`);
        }
        assert.ok(checked >= 10 && nonZero >= 4, `${layer}: ${checked} entries checked (${nonZero} non-zero) of 16`);
      }
    } finally {
      disposeUNet(m);
    }
  });

  it('bilinear resize keeps constants, interpolates between centres and matches tf.image.resizeBilinear', () => {
    assert.ok(resizeBilinear(new Float32Array(4).fill(3), 2, 2, 6, 6).every((v) => Math.abs(v - 3) < 1e-6));
    const src = Float32Array.from([0, 1, 2, 3, 4, 5, 6, 7, 8]);
    const ours = resizeBilinear(src, 3, 3, 12, 12);
    const ref = tf.tidy(() => tf.image.resizeBilinear(tf.tensor4d(src, [1, 3, 3, 1]), [12, 12], false, true).dataSync());
    for (let i = 0; i < ours.length; i++) assert.ok(Math.abs(ours[i] - ref[i]) < 1e-5, `pixel ${i}: ${ours[i]} vs ${ref[i]}`);
  });

  it('on the trained demo model, the CAM lies on the tumour of a real PET slice, unlike an untrained model', () => {
    const model = JSON.parse(readFileSync(path.join(DATA, 'models/demo-unet/model.json'), 'utf8')).model as UNetConfig & { initSeed: number };
    const m = createUNet(model, model.initSeed);
    try {
      const bytes = readFileSync(path.join(DATA, 'models/demo-unet/weights.bin'));
      setFlatWeights(m, new Float32Array(new Uint8Array(bytes).buffer));
      const image = readNifti(new Uint8Array(readFileSync(path.join(DATA, 'sts/nifti/STS_002/PET_image.nii.gz'))));
      const mask = readNifti(new Uint8Array(readFileSync(path.join(DATA, 'sts/nifti/STS_002/PET_mask.nii.gz'))));
      const s = extractSlices(image, mask, { size: model.size });
      const px = model.size * model.size;
      let k = 0; // the slice with the largest tumour area
      const area = (j: number) => s.masks.subarray(j * px, (j + 1) * px).reduce((a, v) => a + v, 0);
      for (let j = 1; j < s.n; j++) if (area(j) > area(k)) k = j;
      const slice = s.images.slice(k * px, (k + 1) * px);
      const truth = s.masks.slice(k * px, (k + 1) * px);
      const areaShare = area(k) / px;
      const b = gradCam(m, slice);
      assert.equal(b.targetRegion, 'predicted');
      const inTruth = camMassShare(b.cam, truth);
      // Measured 0.55 (the mask covers 2.5% of the slice); untrained models of the same shape put
      // 0.00-0.20 there, which the randomisation check below asserts.
      assert.ok(inTruth > 0.35 && inTruth > 10 * areaShare, `bottleneck CAM mass in the reference mask ${inTruth.toFixed(2)}; the mask covers ${areaShare.toFixed(3)} of the slice (${backend})`);
      const u = gradCam(m, slice, { layer: 'up0' });
      assert.ok(camMassShare(u.cam, truth) > 0.7, `up0 CAM mass in the reference mask ${camMassShare(u.cam, truth).toFixed(2)}`);
      // Model-parameter randomisation (Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS
      // 2018): a map that merely traces bright voxels would survive re-initialised weights.
      const r = createUNet(model, 2);
      try {
        const rb = camMassShare(gradCam(r, slice).cam, truth);
        assert.ok(rb < inTruth - 0.2, `an untrained model puts ${rb.toFixed(2)} of its CAM on the tumour, the trained one ${inTruth.toFixed(2)}`);
      } finally {
        disposeUNet(r);
      }
      // A slice without tumour evidence: the target falls back to the whole slice, and says so.
      const blank = gradCam(m, new Float32Array(px));
      assert.equal(blank.targetRegion, 'wholeSlice');
      assert.equal(blank.targetPixels, px);
    } finally {
      disposeUNet(m);
    }
  });
});
