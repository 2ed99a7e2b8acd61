import { eq } from 'drizzle-orm';
import { WireError, type SegmentationManifest, type StudyManifest } from '@twinfed/protocols';
import { createUNet, deriveSeed, disposeUNet, getFlatWeights, initialWeights, setFlatWeights, type UNetConfig } from '@twinfed/shared/model/index';
import type { SliceSet } from '@twinfed/shared/data/index';
import { TrainError, closeSharedTrainingPool, evaluateDice, selectBackend, siteTrainingWorkers, trainLocal } from '@twinfed/shared/train/index';
import type { SiteDb } from './db/index.js';
import { segSlices } from './db/schema.js';
import { dpReport, epochProgress, localObjective, type LocalEvalResult, type LocalTrainResult, type LocalTrainer } from './trainer.js';

/** The manifest narrowed to segmentation; a response study handed to this trainer is a wiring bug. */
function seg(m: StudyManifest): SegmentationManifest {
  if (m.task !== 'segmentation') throw new WireError('TWF_E_BAD_REQUEST', `the U-Net trainer runs segmentation studies, study ${m.studyId} is task '${m.task}' (use the response trainer)`);
  return m;
}

function unetConfig(mIn: StudyManifest): UNetConfig {
  const m = seg(mIn);
  return { inChannels: m.model.inChannels, nClasses: m.model.nClasses, base: m.model.base, depth: m.model.depth, size: m.model.size };
}

/**
 * The segmentation trainer: the study's U-Net on this site's PET slices
 * (split by patient into train/validation at import). Data are read from the
 * site database for each call, so a new import is used in the next round.
 *
 * Local objective (localObjective in trainer.ts): strategy 'fedprox' adds mu·(w − w_global)
 * to every step's gradient, w_global = the weights handed to train(); dp.level 'patient' runs
 * patient-level DP-SGD (shared/src/train/train.ts, trainLocalDp): dpStepsPerRound(epochsPerRound,
 * q) noisy steps, each patient's gradient over all of its training slices clipped to C, on the
 * calling thread. The result then carries `dp` (steps actually taken) and nSamples = training
 * PATIENTS, not slices (the slice count would be an exact release outside the accountant).
 *
 * Threads: `workers` data-parallel worker threads (default siteTrainingWorkers(): env
 * TWINFED_TRAIN_WORKERS when set, else one per core, for a site that has its machine to
 * itself; 0 = train on the calling thread). The workers are the process's training pool,
 * started by the first round and kept for the next ones; close() stops them. DP-SGD rounds
 * train on the calling thread whatever `workers` says.
 */
export async function createUNetTrainer(db: SiteDb, opts: { backend?: 'tensorflow' | 'wasm' | 'cpu'; workers?: number } = {}): Promise<LocalTrainer & { backendReason: string; workers: number }> {
  const choice = await selectBackend(opts.backend);
  const workers = opts.workers ?? siteTrainingWorkers();
  if (!(Number.isInteger(workers) && workers >= 0)) throw new TrainError('TWF_E_TRAIN_WORKERS', `createUNetTrainer: workers must be a whole number ≥ 0, got ${workers}`);

  const load = (split: 'train' | 'val', mIn: StudyManifest): SliceSet & { patientIds: string[] } => {
    const m = seg(mIn);
    const rows = db
      .select()
      .from(segSlices)
      .where(eq(segSlices.split, split))
      .all()
      .filter((r) => r.modality === m.data.modality && r.size === m.model.size)
      .sort((a, b) => a.patientId.localeCompare(b.patientId));
    const size = m.model.size;
    const n = rows.reduce((s, r) => s + r.nSlices, 0);
    const images = new Float32Array(n * size * size);
    const masks = new Uint8Array(n * size * size);
    const patient = new Int32Array(n);
    const z = new Int32Array(n);
    let o = 0;
    rows.forEach((r, pi) => {
      images.set(new Float32Array(new Uint8Array(r.images).buffer), o * size * size);
      masks.set(new Uint8Array(r.masks), o * size * size);
      patient.fill(pi, o, o + r.nSlices);
      o += r.nSlices;
    });
    const spacingMm: [number, number, number] = rows.length ? [rows[0].pixelSpacingMm, rows[0].pixelSpacingMm, rows[0].sliceThicknessMm] : [1, 1, 1];
    return { images, masks, n, size, patient, z, spacingMm, maskVoxelsOutside: 0, patientIds: rows.map((r) => r.patientId) };
  };

  let usedPool = false;
  return {
    backend: choice.name,
    backendReason: choice.reason,
    workers,
    dataSummary(m) {
      const tr = load('train', m);
      const va = load('val', m);
      return { trainSlices: tr.n, valPatients: va.patientIds.length };
    },
    initialWeights(m) {
      return initialWeights(unetConfig(m), seg(m).model.initSeed);
    },
    async train(m, weights, round, onProgress): Promise<LocalTrainResult> {
      const data = load('train', m);
      const model = createUNet(unetConfig(m), seg(m).model.initSeed);
      try {
        setFlatWeights(model, weights);
        const { proximal, dp } = localObjective(m, weights);
        usedPool ||= !dp && workers > 0;
        const r = await trainLocal(model, data, {
          epochs: m.training.epochsPerRound,
          batchSize: m.training.batchSize,
          learningRate: m.training.learningRate,
          seed: deriveSeed(m.training.seed, `round-${round}`),
          proximal,
          dp,
          workers: dp ? 0 : workers,
          onProgress: epochProgress(m.training.epochsPerRound, onProgress),
        });
        return { weights: getFlatWeights(model), nSamples: dp ? r.nPatients : data.n, loss: r.loss, ms: r.ms, ...(dp && { dp: dpReport(dp, r.steps) }) };
      } finally {
        disposeUNet(model);
      }
    },
    async evaluate(m, weights): Promise<LocalEvalResult> {
      const data = load('val', m);
      if (data.n === 0) return { meanDice: null, valPatients: 0, perPatient: [] };
      const model = createUNet(unetConfig(m), seg(m).model.initSeed);
      try {
        setFlatWeights(model, weights);
        const r = await evaluateDice(model, data);
        return { meanDice: r.mean, valPatients: data.patientIds.length, perPatient: r.perPatient.map((d) => ({ patientId: data.patientIds[d.patient], dice: d.dice })) };
      } finally {
        disposeUNet(model);
      }
    },
    async close() {
      if (usedPool) await closeSharedTrainingPool();
    },
  };
}
