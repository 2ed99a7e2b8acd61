import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { concatSlices, extractSlices, loadStsCase, type SliceSet } from '@twinfed/shared/data/index';
import { createUNet, deriveSeed, disposeUNet, getFlatWeights, initialWeights, setFlatWeights, type UNetConfig } from '@twinfed/shared/model/index';
import { fedAvg, selectBackend, trainLocal } from '@twinfed/shared/train/index';
import { writeModelDir } from '@twinfed/site-node';
import { DEMO_SITES, demoStudySpec } from '../demo.js';
import { evaluateSegmentation, type SegEvaluation } from './seg.js';

/**
 * `twinfed seg compare`: the same held-out patients (every site's validation
 * patients) scored for four ways of getting a model — federated across the
 * three demo sites, each site alone, all data pooled — and the 40%-SUVmax
 * threshold. Same architecture, seed, optimiser and total epochs for all
 * trained regimes. The federated model is the one `npm run demo` decrypted
 * (encrypted FedAvg) when given; otherwise plaintext FedAvg is simulated,
 * which equals the encrypted path within 4.8e-7·B per weight (see the tests).
 */
export async function compareSegmentation(opts: { dataDir: string; outDir: string; rounds: number; federatedModel?: string; log?: (s: string) => void }) {
  const log = opts.log ?? (() => undefined);
  const spec = demoStudySpec(opts.rounds);
  const cfg: UNetConfig = { inChannels: 1, nClasses: 2, base: spec.model.base, depth: spec.model.depth, size: spec.model.size };
  const backend = await selectBackend();
  const load = async (ids: string[]): Promise<SliceSet> => {
    const sets = [];
    for (const id of ids) {
      const c = await loadStsCase(join(opts.dataDir, id));
      sets.push(extractSlices(c.image, c.mask, { size: cfg.size }));
    }
    return concatSlices(sets);
  };
  const train = DEMO_SITES.map((s) => s.patients.filter((p) => !s.val.includes(p)));
  const heldOut = DEMO_SITES.flatMap((s) => s.val);
  const siteData = await Promise.all(train.map(load));
  const t = spec.training;
  const fit = async (data: SliceSet, start: Float32Array, epochs: number, seed: number): Promise<Float32Array> => {
    const m = createUNet(cfg, spec.model.initSeed);
    try {
      setFlatWeights(m, start);
      await trainLocal(m, data, { epochs, batchSize: t.batchSize, learningRate: t.learningRate, seed });
      return getFlatWeights(m);
    } finally {
      disposeUNet(m);
    }
  };
  const init = initialWeights(cfg, spec.model.initSeed);
  const totalEpochs = opts.rounds * t.epochsPerRound;
  const models: Record<string, string> = {};
  const save = (name: string, w: Float32Array) => {
    const dir = join(opts.outDir, name);
    writeModelDir(
      dir,
      {
        studyId: `compare-${name}`,
        title: `${name} (seg compare)`,
        manifestHash: '-',
        model: spec.model,
        version: opts.rounds,
        meanDiceAtSite: null,
        decryptedAt: 'local',
        createdAt: new Date().toISOString(),
      },
      w,
    );
    models[name] = dir;
  };
  mkdirSync(opts.outDir, { recursive: true });

  if (opts.federatedModel && existsSync(join(opts.federatedModel, 'model.json'))) {
    models.federated = opts.federatedModel;
    log(`federated: using ${opts.federatedModel} (encrypted FedAvg from the demo)`);
  } else {
    log(`federated: simulating plaintext FedAvg, ${opts.rounds} rounds x ${t.epochsPerRound} epochs`);
    let w = init;
    for (let r = 1; r <= opts.rounds; r++) {
      const ups = [];
      for (let i = 0; i < siteData.length; i++) ups.push({ weights: await fit(siteData[i], w, t.epochsPerRound, deriveSeed(t.seed, `round-${r}`)), nSamples: siteData[i].n });
      w = fedAvg(ups);
    }
    save('federated', w);
  }
  for (let i = 0; i < siteData.length; i++) {
    log(`local-only: ${DEMO_SITES[i].name}, ${totalEpochs} epochs on ${siteData[i].n} slices`);
    save(`local-${'abc'[i]}`, await fit(siteData[i], init, totalEpochs, t.seed));
  }
  const pooled = concatSlices(siteData);
  log(`centralised: ${totalEpochs} epochs on ${pooled.n} pooled slices`);
  save('centralised', await fit(pooled, init, totalEpochs, t.seed));

  const results: Record<string, SegEvaluation> = {};
  for (const [name, dir] of Object.entries(models)) {
    log(`evaluating ${name} on ${heldOut.length} held-out patients`);
    results[name] = await evaluateSegmentation(dir, opts.dataDir, 'PET', { patients: heldOut });
  }
  const anyRes = Object.values(results)[0];
  const rows = [
    ...Object.entries(results).map(([name, r]) => ({ regime: name, n: r.n, meanDice: r.meanDice, medianDice: r.medianDice, meanHd95Mm: r.meanHd95Mm })),
    { regime: 'threshold-40%-SUVmax', n: anyRes.n, meanDice: anyRes.threshold.meanDice, medianDice: anyRes.threshold.medianDice, meanHd95Mm: anyRes.threshold.meanHd95Mm },
  ];
  const report = { heldOut, rounds: opts.rounds, epochsTotal: totalEpochs, backend: backend.name, rows, perPatient: Object.fromEntries(Object.entries(results).map(([k, r]) => [k, r.patients])) };
  writeFileSync(join(opts.outDir, 'report.json'), JSON.stringify(report, null, 2) + '\n');
  return report;
}
