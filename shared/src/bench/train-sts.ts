/**
 * Proof that the U-Net learns STS tumour segmentation within the demo's compute
 * budget: 3 simulated sites, 5 FedAvg rounds, in one process.
 *
 *   node shared/dist/bench/train-sts.js [--rounds 5] [--size 48] [--batch 8] [--epochs 3]
 *       [--lr 0.003] [--dice 1] [--budget-s 20] [--data examples/sts-pet] [--reference]
 *       [--backend wasm|cpu|tensorflow]
 *
 * Sites hold disjoint, contiguous blocks of patients (STS_001-012, 013-024, 025-035);
 * each site keeps its last 20% of patients for validation. Validation Dice is the
 * global model's 3D Dice on every slice of each validation patient (the whole cropped
 * volume, not just tumour slices), averaged over patients. --reference also prints the
 * backend table of train-backends.ts (the reference net of peers/unet_torch.py on every
 * tfjs backend and PyTorch, `npm run bench:train`).
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import { concatSlices, extractSlices, listStsCases, loadStsCase, type SliceSet, type SuvNormalisation } from '../data/index.js';
import { countParams, createUNet, getFlatWeights, setFlatWeights } from '../model/index.js';
import { evaluateDice, fedAvg, selectBackend, trainLocal, type BackendName } from '../train/index.js';
import { runTable } from './train-backends.js';

const { values: a } = parseArgs({
  options: {
    rounds: { type: 'string', default: '5' },
    size: { type: 'string', default: '48' },
    batch: { type: 'string', default: '8' },
    epochs: { type: 'string', default: '3' },
    lr: { type: 'string', default: '0.003' },
    dice: { type: 'string', default: '1' },
    margin: { type: 'string', default: '2' },
    norm: { type: 'string', default: 'fixed' },
    'suv-scale': { type: 'string', default: '5' },
    'budget-s': { type: 'string', default: '20' },
    seed: { type: 'string', default: '42' },
    data: { type: 'string' },
    backend: { type: 'string' },
    reference: { type: 'boolean', default: false },
    'reference-only': { type: 'boolean', default: false },
  },
});

function findDataRoot(): string {
  if (a.data) return a.data;
  for (const p of ['examples/sts-pet', '../examples/sts-pet', 'shared/data/sts/nifti', '../shared/data/sts/nifti']) {
    if (existsSync(p)) return p;
  }
  throw new Error('STS data not found; pass --data <dir with STS_001..>');
}

const fmt = (x: number, d = 3) => x.toFixed(d);

async function reference(): Promise<void> {
  console.log('');
  runTable({ steps: 5, warmup: 2, cpuSteps: 2, profile: false, python: '/usr/bin/python3' });
}

interface Site {
  name: string;
  train: SliceSet;
  val: SliceSet;
  trainIds: string[];
  valIds: string[];
}

async function main(): Promise<void> {
  const rounds = Number(a.rounds),
    size = Number(a.size),
    batchSize = Number(a.batch);
  const epochs = Number(a.epochs),
    learningRate = Number(a.lr),
    diceWeight = Number(a.dice);
  const marginSlices = Number(a.margin),
    budgetMs = Number(a['budget-s']) * 1000,
    seed = Number(a.seed);
  const normalisation: SuvNormalisation = a.norm === 'patientMax' ? { kind: 'patientMax' } : { kind: 'fixed', scale: Number(a['suv-scale']), clip: 3 };

  if (a['reference-only']) return reference();
  const choice = await selectBackend(a.backend as BackendName | undefined);
  console.log(`backend: ${choice.reason}`);

  const root = findDataRoot();
  const ids = (await listStsCases(root)).filter((id) => Number(id.slice(4)) <= 35);
  const blocks = [ids.slice(0, 12), ids.slice(12, 24), ids.slice(24)];
  const sites: Site[] = [];
  let lostVoxels = 0;
  for (const [k, block] of blocks.entries()) {
    const nVal = Math.max(1, Math.round(block.length * 0.2));
    const trainIds = block.slice(0, block.length - nVal);
    const valIds = block.slice(block.length - nVal);
    const load = async (id: string, onlyTumourSlices: boolean) => {
      const c = await loadStsCase(path.join(root, id));
      const s = extractSlices(c.image, c.mask, { size, onlyTumourSlices, marginSlices, normalisation });
      lostVoxels += s.maskVoxelsOutside;
      return s;
    };
    const train = concatSlices(await Promise.all(trainIds.map((id) => load(id, true))));
    const val = concatSlices(await Promise.all(valIds.map((id) => load(id, false))));
    sites.push({ name: `site${String.fromCharCode(65 + k)}`, train, val, trainIds, valIds });
  }
  const allVal = concatSlices(sites.map((s) => s.val));
  // Patient ids must stay distinct across sites once concatenated.
  let off = 0;
  const valPatient = new Int32Array(allVal.n);
  for (const s of sites) {
    for (let i = 0; i < s.val.n; i++) valPatient[off + i] = off * 1000 + s.val.patient[i];
    off += s.val.n;
  }
  for (const s of sites) {
    console.log(`${s.name}: train ${s.trainIds[0]}..${s.trainIds.at(-1)} (${s.trainIds.length} patients, ${s.train.n} slices), ` + `val ${s.valIds.join(',')} (${s.val.n} slices)`);
  }
  console.log(`mask voxels outside the ${size}x${size} window: ${lostVoxels}`);

  const model = createUNet({ inChannels: 1, nClasses: 2, base: 8, depth: 2, size }, seed);
  console.log(
    `model: U-Net base 8 depth 2, ${size}x${size}, ${countParams(model)} params; ` +
      `batch ${batchSize}, ${epochs} epochs/round, Adam lr ${learningRate}, loss CE + ${diceWeight} x soft-Dice, ` +
      `budget ${budgetMs / 1000}s/site/round`,
  );

  let global = getFlatWeights(model);
  const r0 = await evaluateDice(model, allVal, valPatient);
  console.log('\nround | site train s (steps) | ms/step | images/s | train loss | val Dice (per patient)');
  console.log(`0     | - | - | - | - | ${fmt(r0.mean)} (${r0.perPatient.map((p) => fmt(p.dice, 2)).join(' ')})`);
  const memStart = tf.memory().numTensors;
  for (let r = 1; r <= rounds; r++) {
    const updates: { weights: Float32Array; nSamples: number }[] = [];
    const cols: string[] = [];
    let ms = 0,
      steps = 0,
      images = 0,
      loss = 0;
    for (const [k, s] of sites.entries()) {
      setFlatWeights(model, global);
      const res = await trainLocal(model, s.train, {
        epochs,
        batchSize,
        learningRate,
        diceWeight,
        seed: seed * 1000 + r * 10 + k,
      });
      updates.push({ weights: getFlatWeights(model), nSamples: res.nSamples });
      cols.push(`${fmt(res.ms / 1000, 1)}(${res.steps})`);
      ms += res.ms;
      steps += res.steps;
      images += Math.min(res.steps * batchSize, epochs * s.train.n);
      loss += res.loss / sites.length;
    }
    global = fedAvg(updates);
    setFlatWeights(model, global);
    const ev = await evaluateDice(model, allVal, valPatient);
    console.log(`${r}     | ${cols.join(' ')} | ${fmt(ms / steps, 0)} | ${fmt(images / (ms / 1000), 1)} | ${fmt(loss)} | ` + `${fmt(ev.mean)} (${ev.perPatient.map((p) => fmt(p.dice, 2)).join(' ')})`);
    const slowest = Math.max(...cols.map((c) => Number(c.split('(')[0]))) * 1000;
    if (slowest > budgetMs) overBudget = true;
  }
  console.log(`tensors: ${memStart} before rounds, ${tf.memory().numTensors} after`);
  console.log(overBudget ? `WARNING: a site exceeded the ${budgetMs / 1000}s budget in some round` : `every site stayed within ${budgetMs / 1000}s per round`);
  if (a.reference) await reference();
}

let overBudget = false;

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
