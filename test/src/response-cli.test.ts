import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeModelDir } from '@twinfed/site-node';
import { initialWeights } from '@twinfed/shared/model/index';
import { parseLalehCsv } from '@twinfed/shared/twin/index';
import { buildExamples, evaluateResponse, featureNames, initLogReg, responsePatientsFromLaleh, responseStudySpec, splitOf, trainLogReg } from '@twinfed/shared/response/index';
import { tempDir } from './harness.js';

const BIN = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../cli/dist/bin.js');
const FIX = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../fixtures/growth-laleh2022');
const twinfed = (...args: string[]) =>
  new Promise<{ code: number | null; out: string; err: string }>((res) => {
    execFile(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 60_000 }, (e, out, err) => res({ code: e ? (typeof e.code === 'number' ? e.code : null) : 0, out, err }));
  });

describe('twinfed response evaluate', () => {
  const tmp = tempDir('resp-cli');
  after(() => tmp.cleanup());
  const spec = responseStudySpec(1);
  const arms = spec.model.arms;
  const cfg = { nFeatures: featureNames(arms).length, nClasses: 3, l2: spec.model.l2 };
  const load = (s: string) => buildExamples(responsePatientsFromLaleh(parseLalehCsv(readFileSync(join(FIX, `${s}.csv`), 'utf8'))), arms).examples;
  // A model trained here on Study1 + Study3, scored by the CLI on Study2 (another trial).
  const w = trainLogReg(cfg, initLogReg(cfg, 7), [...load('Study1'), ...load('Study3')], { epochs: 200, batchSize: 1024, learningRate: 0.5, seed: 1 }).weights;
  const modelDir = join(tmp.dir, 'model');
  const split = { splitSalt: spec.data.splitSalt, trainPercent: spec.data.trainPercent, minMeasurements: 5 };
  writeModelDir(modelDir, { studyId: 't', title: 't', manifestHash: '-', model: spec.model, version: 1, meanDiceAtSite: null, decryptedAt: 'test', createdAt: new Date(0).toISOString(), split }, w);
  const study2 = load('Study2');

  it('--json prints { n, auc, balancedAccuracy } on the last line, equal to the library on the same patients', async () => {
    const r = await twinfed('response', 'evaluate', '--model', modelDir, '--csv', join(FIX, 'Study2.csv'), '--format', 'laleh', '--json');
    assert.equal(r.code, 0, r.err);
    const j = JSON.parse(r.out.trim().split('\n').pop()!) as { n: number; auc: number; balancedAccuracy: number; importance: { feature: string }[] };
    const expected = evaluateResponse(cfg, w, study2);
    assert.equal(j.n, study2.length);
    assert.ok(Math.abs(j.auc - expected.auc!) < 1e-12 && Math.abs(j.balancedAccuracy - expected.balancedAccuracy!) < 1e-12);
    assert.ok(j.auc > 0.5, `a model from two other trials still ranks Study2 patients better than chance: ${j.auc}`);
    assert.deepEqual(new Set(j.importance.map((i) => i.feature)), new Set(featureNames(arms)));
  });

  it('--held-out keeps to the patients the recorded split held out; the text output names the importance method', async () => {
    const r = await twinfed('response', 'evaluate', '--model', modelDir, '--csv', join(FIX, 'Study2.csv'), '--held-out', '--json');
    const j = JSON.parse(r.out.trim().split('\n').pop()!) as { n: number };
    assert.equal(j.n, study2.filter((e) => splitOf(e.id, split.splitSalt, split.trainPercent) === 'test').length);
    const t = await twinfed('response', 'evaluate', '--model', modelDir, '--csv', join(FIX, 'Study2.csv'));
    assert.match(t.out, /macro one-vs-rest AUC/);
    assert.match(t.out, /permutation importance/);
  });

  it('says what is wrong: a U-Net folder, an unknown format', async () => {
    const unet = join(tmp.dir, 'unet');
    const m = { arch: 'unet2d' as const, inChannels: 1, nClasses: 2, base: 4, depth: 1, size: 16, initSeed: 1 };
    writeModelDir(unet, { studyId: 'u', title: 'u', manifestHash: '-', model: m, version: 0, meanDiceAtSite: null, decryptedAt: 'test', createdAt: new Date(0).toISOString() }, initialWeights(m, 1));
    const a = await twinfed('response', 'evaluate', '--model', unet, '--csv', join(FIX, 'Study2.csv'));
    assert.equal(a.code, 1);
    assert.match(a.err, /TWF_E_MODEL_KIND/);
    const b = await twinfed('response', 'evaluate', '--model', modelDir, '--csv', join(FIX, 'Study2.csv'), '--format', 'recist-xml');
    assert.match(b.err, /TWF_E_BAD_REQUEST: unknown --format recist-xml/);
  });
});
