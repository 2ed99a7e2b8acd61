#!/usr/bin/env node
// Where Grad-CAM puts its heat, per U-Net layer, over every patient of a folder: for each patient's
// slice with the largest reference-mask area, the share of CAM mass inside the reference mask and
// its ratio to the mask's area share (1 = no better than spreading heat uniformly).
// Usage (after npm run build and npm run demo):
//   node scripts/gradcam-layers.mjs [MODEL_DIR=out/demo/model] [DATA_DIR=examples/sts-pet]
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { explainSegmentation } from '../cli/dist/commands/seg-explain.js';

const [modelDir = 'out/demo/model', dataDir = 'examples/sts-pet'] = process.argv.slice(2);
const ids = readdirSync(dataDir)
  .filter((d) => d.startsWith('STS_'))
  .sort();
const layers = ['down0', 'down1', 'bottleneck', 'up1', 'up0'];
const tmp = mkdtempSync(join(tmpdir(), 'twinfed-gradcam-'));
const acc = Object.fromEntries(layers.map((l) => [l, { inRef: [], ratio: [], empty: 0, whole: 0 }]));
try {
  for (const patient of ids) {
    for (const layer of layers) {
      const r = await explainSegmentation({ modelDir, dataDir, patient, layer, out: join(tmp, `${patient}_${layer}.png`) });
      if (r.targetRegion === 'wholeSlice') acc[layer].whole++;
      if (r.camMax === 0) {
        acc[layer].empty++;
        continue;
      }
      acc[layer].inRef.push(r.camMassInReference);
      acc[layer].ratio.push(r.camMassInReference / r.referenceAreaShare);
    }
  }
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
console.log(`${ids.length} patients of ${dataDir}, model ${modelDir}, each patient's slice with the largest reference area`);
console.log("| layer | median CAM mass in reference mask | median ratio to the mask's area share | patients with ratio > 1 | empty CAMs | no tumour predicted |");
console.log('|---|---|---|---|---|---|');
for (const l of layers) {
  const a = acc[l];
  console.log(`| ${l} | ${(100 * median(a.inRef)).toFixed(0)}% | ${median(a.ratio).toFixed(1)} | ${a.ratio.filter((x) => x > 1).length}/${a.ratio.length} | ${a.empty} | ${a.whole} |`);
}
