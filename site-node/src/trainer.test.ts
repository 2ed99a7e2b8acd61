import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { StudyManifest } from '@twinfed/protocols';
import { initialWeights } from '@twinfed/shared/model/index';
import { siteTrainingWorkers } from '@twinfed/shared/train/index';
import { openSiteDb } from './db/index.js';
import { measurements, segSlices, treatments } from './db/schema.js';
import { createResponseTrainer } from './response-trainer.js';
import { epochProgress, localObjective, type LocalTrainProgress } from './trainer.js';
import { createUNetTrainer } from './unet-trainer.js';

const training = { epochsPerRound: 1, batchSize: 4, learningRate: 0.01, clipBound: 1, seed: 1, maxSamplesPerSite: 10_000 };
const patientDp = { level: 'patient' as const, epsilon: 4, delta: 1e-5, clipNorm: 1, samplingRate: 0.5, noiseMultiplier: 1.1 };

/** Only the fields the trainers read; the wire schema is tested in protocols. */
function segManifest(extra: Partial<StudyManifest> = {}): StudyManifest {
  return {
    studyId: 'study-t',
    task: 'segmentation',
    title: 't',
    training,
    rounds: 1,
    minSites: 3,
    roundDeadlineS: 60,
    model: { arch: 'unet2d', inChannels: 1, nClasses: 2, base: 2, depth: 1, size: 16, initSeed: 1 },
    data: { modality: 'PET', labels: ['bg', 'tumour'], minTrainSlices: 1 },
    ...extra,
  } as unknown as StudyManifest;
}

describe('localObjective: what the manifest asks of local training', () => {
  const anchor = new Float32Array(3);
  it("fedprox → the proximal term anchored at the round's weights; other strategies → none", () => {
    assert.deepEqual(localObjective(segManifest({ strategy: { name: 'fedprox', mu: 0.01 } }), anchor), { proximal: { mu: 0.01, anchor } });
    assert.equal(localObjective(segManifest({ strategy: { name: 'fedprox', mu: 0.01 } }), anchor).proximal?.anchor, anchor);
    assert.deepEqual(localObjective(segManifest({ strategy: { name: 'fedadam', serverLearningRate: 0.01, beta1: 0.9, beta2: 0.99, tau: 1e-3 } }), anchor), { proximal: undefined });
    assert.deepEqual(localObjective(segManifest(), anchor), { proximal: undefined });
  });

  it('patient-level DP → DP-SGD with steps = max(1, round(epochsPerRound / q)); site-level DP → plain training', () => {
    const m = segManifest({ dp: patientDp, training: { ...training, epochsPerRound: 2 } });
    assert.deepEqual(localObjective(m, anchor).dp, { samplingRate: 0.5, clipNorm: 1, noiseMultiplier: 1.1, steps: 4 });
    assert.equal(localObjective(segManifest({ dp: { ...patientDp, samplingRate: 0.3 } }), anchor).dp?.steps, 3);
    assert.equal(localObjective(segManifest({ dp: { level: 'site', epsilon: 4, delta: 1e-5, clipNorm: 1, noiseMultiplier: 1 } }), anchor).dp, undefined);
  });

  it('patient-level DP without a noise multiplier is refused (the coordinator fills it at creation)', () => {
    const { noiseMultiplier: _, ...noSigma } = patientDp;
    assert.throws(
      () => localObjective(segManifest({ dp: noSigma }), anchor),
      (e: Error & { code?: string }) => e.code === 'TWF_E_DP_PARAMS' && /noiseMultiplier is missing/.test(e.message),
    );
  });
});

describe('site trainers under FedProx and patient-level DP', () => {
  const dir = mkdtempSync(join(tmpdir(), 'twinfed-trainer-'));
  const db = openSiteDb(join(dir, 'site.db'));
  after(() => {
    db.$client.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('the U-Net trainer reports the DP steps taken and weights the update by training patients', async () => {
    const size = 16,
      perPatient = 4;
    for (let p = 0; p < 3; p++) {
      const images = Float32Array.from({ length: perPatient * size * size }, (_, i) => ((i * 7 + p) % 13) / 13);
      db.insert(segSlices)
        .values({
          patientId: `P${p}`,
          split: 'train',
          modality: 'PET',
          sourceDigest: `d${p}`,
          nSlices: perPatient,
          size,
          images: Buffer.from(images.buffer),
          masks: Buffer.from(Uint8Array.from(images, (v) => (v > 0.7 ? 1 : 0))),
          pixelSpacingMm: 1,
          sliceThicknessMm: 1,
          importedAtMs: 0,
        })
        .run();
    }
    // The site default: TWINFED_TRAIN_WORKERS, else one data-parallel worker per core.
    const trainer = await createUNetTrainer(db, { backend: 'wasm' });
    assert.equal(trainer.workers, siteTrainingWorkers());
    const w0 = initialWeights({ inChannels: 1, nClasses: 2, base: 2, depth: 1, size }, 1);
    const plain = await trainer.train(segManifest(), w0, 1);
    assert.equal(plain.nSamples, 12, 'without DP: training slices');
    assert.equal(plain.dp, undefined);
    // Worker threads or not, the same step up to float summation order.
    const oneThread = await (await createUNetTrainer(db, { backend: 'wasm', workers: 0 })).train(segManifest(), w0, 1);
    assert.ok(Math.abs(oneThread.loss - plain.loss) <= 1e-3 * plain.loss, `loss ${plain.loss} with ${trainer.workers} workers vs ${oneThread.loss} on one thread`);
    const dp = await trainer.train(segManifest({ dp: patientDp, strategy: { name: 'fedprox', mu: 0.1 } }), w0, 1);
    assert.deepEqual(dp.dp, { steps: 2, samplingRate: 0.5, noiseMultiplier: 1.1, clipNorm: 1 });
    assert.equal(dp.nSamples, 3, 'under patient-level DP: training patients');
    assert.equal(dp.weights.length, w0.length);
    assert.notDeepEqual(dp.weights, w0);

    // Progress: one report per epoch as it ends (12 slices, batch 4: 3 steps an epoch), and under
    // DP-SGD one per epoch-equivalent of noisy steps (epochs / q = 4 steps at q 0.5: 2 a report).
    const seen: LocalTrainProgress[] = [];
    await trainer.train(segManifest({ training: { ...training, epochsPerRound: 2 } }), w0, 2, (p) => seen.push(p));
    assert.deepEqual(
      seen.map((p) => `${p.epoch}/${p.epochs}`),
      ['1/2', '2/2'],
    );
    assert.ok(seen.every((p) => Number.isFinite(p.loss) && p.loss > 0 && p.elapsedMs >= 0));
    assert.ok(seen[1].elapsedMs >= seen[0].elapsedMs);
    const dpSeen: LocalTrainProgress[] = [];
    await trainer.train(segManifest({ dp: patientDp, training: { ...training, epochsPerRound: 2 } }), w0, 3, (p) => dpSeen.push(p));
    assert.deepEqual(
      dpSeen.map((p) => `${p.epoch}/${p.epochs}`),
      ['1/2', '2/2'],
    );
    await trainer.close?.();
  });

  it('epochProgress: mean loss of each epoch; the last, short epoch is reported at the last step; nothing without a sink', () => {
    assert.equal(epochProgress(2, undefined), undefined);
    const got: LocalTrainProgress[] = [];
    const step = epochProgress(2, (p) => got.push(p))!;
    [1, 3, 5, 7, 9].forEach((loss, i) => step({ step: i + 1, steps: 5, loss }));
    assert.deepEqual(
      got.map((p) => [p.epoch, p.epochs, p.loss]),
      [
        [1, 2, 3],
        [2, 2, 8],
      ],
    );
  });

  it('the response trainer runs DP-SGD and reports its steps', async () => {
    for (let p = 0; p < 40; p++) {
      const shrink = p % 3 === 0;
      for (let t = 0; t < 5; t++) {
        db.insert(measurements)
          .values({
            patientId: `R${p}`,
            lesionId: 1,
            timepointId: t,
            day: 30 * t,
            volumeMm3: 1,
            longestDiameterMm: 50 * (shrink ? 1 - 0.15 * t : 1 + 0.1 * t) + (p % 5),
            source: 'csv',
            sourceDigest: 'x',
          })
          .run();
      }
      db.insert(treatments)
        .values({ patientId: `R${p}`, kind: 'systemic', startDay: 0, agentClass: p % 2 ? 'chemo' : 'immuno', sourceDigest: 'x' })
        .run();
    }
    const m = {
      studyId: 'study-r',
      task: 'response',
      title: 'r',
      rounds: 1,
      minSites: 3,
      roundDeadlineS: 60,
      training: { ...training, learningRate: 0.1, epochsPerRound: 1 },
      model: { arch: 'logreg', features: 'first3-v1', nClasses: 3, arms: ['chemo', 'immuno'], l2: 0.001, initSeed: 1 },
      data: { source: 'twin-measurements', minMeasurements: 4, trainPercent: 70, splitSalt: 's', minTrainPatients: 1 },
      dp: { ...patientDp, samplingRate: 0.25 },
    } as unknown as StudyManifest;
    const trainer = createResponseTrainer(db);
    const w0 = trainer.initialWeights(m);
    const r = await trainer.train(m, w0, 1);
    assert.deepEqual(r.dp, { steps: 4, samplingRate: 0.25, noiseMultiplier: 1.1, clipNorm: 1 });
    assert.equal(r.nSamples, trainer.dataSummary(m).trainSlices, 'one example per patient');
    assert.ok(r.nSamples > 10);
  });
});
