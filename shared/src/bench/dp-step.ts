/**
 * Cost of one patient-level DP-SGD step of the U-Net against one ordinary step.
 *
 *   node shared/dist/bench/dp-step.js [--size 48] [--base 8] [--depth 2] [--patients 8]
 *       [--slices 30] [--batch 16] [--q 0.5] [--steps 3] [--backend wasm]
 *
 * Synthetic slices (a bright square per slice), `patients` patients of `slices` slices each.
 * Reports ms per ordinary step (batch `batch`), ms per patient gradient (all of the patient's
 * slices, the unit DP-SGD clips), ms per DP step with every patient sampled (q = 1), and the
 * expected DP step at rate q (q·P patients). Per round: ordinary epochs·P·slices/batch steps
 * versus DP round(epochs/q) steps of q·P patients, i.e. the same number of slice passes.
 */
import { parseArgs } from 'node:util';
import type { SliceSet } from '../data/index.js';
import { createUNet, disposeUNet, mulberry32 } from '../model/index.js';
import { selectBackend, trainLocal, type BackendName } from '../train/index.js';
import { patientLossGradient, patientSlices } from '../train/train.js';

const { values: a } = parseArgs({
  options: {
    size: { type: 'string', default: '48' },
    base: { type: 'string', default: '8' },
    depth: { type: 'string', default: '2' },
    patients: { type: 'string', default: '8' },
    slices: { type: 'string', default: '30' },
    batch: { type: 'string', default: '16' },
    q: { type: 'string', default: '0.5' },
    steps: { type: 'string', default: '3' },
    backend: { type: 'string', default: 'wasm' },
  },
});
const size = Number(a.size),
  base = Number(a.base),
  depth = Number(a.depth);
const P = Number(a.patients),
  S = Number(a.slices),
  batch = Number(a.batch),
  q = Number(a.q),
  steps = Number(a.steps);

const choice = await selectBackend(a.backend as BackendName);
const n = P * S;
const r = mulberry32(1);
const images = new Float32Array(n * size * size);
const masks = new Uint8Array(n * size * size);
for (let k = 0; k < n; k++) {
  const w = 6 + Math.floor(r() * 8),
    x0 = Math.floor(r() * (size - w)),
    y0 = Math.floor(r() * (size - w));
  for (let y = 0; y < size; y++)
    for (let x = 0; x < size; x++) {
      const inside = x >= x0 && x < x0 + w && y >= y0 && y < y0 + w;
      images[k * size * size + y * size + x] = (inside ? 1 : 0.2) + 0.2 * r();
      masks[k * size * size + y * size + x] = inside ? 1 : 0;
    }
}
const data: SliceSet = {
  images,
  masks,
  n,
  size,
  spacingMm: [1, 1, 1],
  z: Int32Array.from({ length: n }, (_, i) => i % S),
  patient: Int32Array.from({ length: n }, (_, i) => Math.floor(i / S)),
  maskVoxelsOutside: 0,
};
const model = createUNet({ inChannels: 1, nClasses: 2, base, depth, size }, 7);
const common = { epochs: 100, batchSize: batch, learningRate: 3e-3, seed: 1 };

await trainLocal(model, data, { ...common, maxSteps: 1 }); // warm-up (kernels, wasm pages)
const plain = await trainLocal(model, data, { ...common, maxSteps: steps * 2 });
const plainMs = plain.ms / plain.steps;

const patients = patientSlices(data);
patientLossGradient(model, data, patients[0], { diceWeight: 1, microBatchSlices: 32 });
const t = performance.now();
for (let i = 0; i < steps; i++) patientLossGradient(model, data, patients[i % P], { diceWeight: 1, microBatchSlices: 32 });
const patientMs = (performance.now() - t) / steps;

const dpAll = await trainLocal(model, data, { ...common, dp: { samplingRate: 1, noiseMultiplier: 1, clipNorm: 1, steps } });
const dpAllMs = dpAll.ms / dpAll.steps;
const expectedDpMs = q * P * (dpAllMs / P);

const stepsPerRoundPlain = Math.ceil(n / batch) * 2;
const stepsPerRoundDp = Math.max(1, Math.round(2 / q));
console.log(`backend ${choice.name}; U-Net size ${size} base ${base} depth ${depth}; ${P} patients x ${S} slices; load average ${(await import('node:os')).loadavg()[0].toFixed(2)}`);
console.log(`ordinary step (batch ${batch} slices):         ${plainMs.toFixed(0)} ms`);
console.log(`one patient's gradient (${S} slices):          ${patientMs.toFixed(0)} ms`);
console.log(`DP step, q = 1 (${P} patients, ${n} slices):    ${dpAllMs.toFixed(0)} ms  (${(dpAllMs / plainMs).toFixed(1)}x an ordinary step)`);
console.log(`DP step, q = ${q} (expected ${q * P} patients):   ${expectedDpMs.toFixed(0)} ms  (${(expectedDpMs / plainMs).toFixed(1)}x)`);
console.log(
  `per round of 2 epochs: ordinary ${stepsPerRoundPlain} steps ≈ ${((stepsPerRoundPlain * plainMs) / 1000).toFixed(1)} s; DP ${stepsPerRoundDp} steps ≈ ${((stepsPerRoundDp * expectedDpMs) / 1000).toFixed(1)} s`,
);
disposeUNet(model);
