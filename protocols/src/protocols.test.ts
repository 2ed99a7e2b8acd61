import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { canonicalJson, sha256Hex } from './canonical.js';
import { isCompatibleVersion } from './version.js';
import { packFrames, unpackFrames } from './messages.js';
import { StudyManifestSchema, manifestHash, type StudyManifest } from './manifest.js';

describe('canonical JSON', () => {
  it('sorts keys at every depth and drops undefined members', () => {
    assert.equal(canonicalJson({ b: 1, a: { d: [3, { z: 1, y: 2 }], c: undefined } }), '{"a":{"d":[3,{"y":2,"z":1}]},"b":1}');
    assert.equal(canonicalJson({ a: 1, b: 2 }), canonicalJson({ b: 2, a: 1 }));
  });
  it('refuses values two ends could print differently', () => {
    assert.throws(() => canonicalJson({ x: Number.NaN }), /non-finite/);
    assert.throws(() => canonicalJson({ x: new Uint8Array(2) }), /binary/);
  });
  it('hashes with SHA-256 (FIPS 180-4 test vector "abc")', () => {
    assert.equal(sha256Hex('abc'), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  });
});

describe('protocol version negotiation', () => {
  it('accepts the same major version and refuses another or garbage', () => {
    assert.equal(isCompatibleVersion('1.0', '1.3'), true);
    assert.equal(isCompatibleVersion('2.0', '1.0'), false);
    assert.equal(isCompatibleVersion('one', '1.0'), false);
  });
});

describe('binary frames', () => {
  it('round-trips several blobs, including an empty one', () => {
    const frames = [new Uint8Array([1, 2, 3]), new Uint8Array(0), new Uint8Array(1000).fill(7)];
    const back = unpackFrames(packFrames(frames));
    assert.deepEqual(back.map((f) => Array.from(f)), frames.map((f) => Array.from(f)));
  });
  it('refuses truncated or padded input', () => {
    const p = packFrames([new Uint8Array([1, 2, 3])]);
    assert.throws(() => unpackFrames(p.subarray(0, p.length - 1)), /truncated/);
    const padded = new Uint8Array(p.length + 1);
    padded.set(p);
    assert.throws(() => unpackFrames(padded), /trailing/);
  });
});

describe('study manifest', () => {
  const m: StudyManifest = StudyManifestSchema.parse({
    title: 't', task: 'segmentation',
    model: { arch: 'unet2d', inChannels: 1, nClasses: 2, base: 8, depth: 2, size: 48, initSeed: 1 },
    training: { epochsPerRound: 1, batchSize: 8, learningRate: 0.001, clipBound: 1, seed: 1 },
    data: { modality: 'PET', labels: ['bg', 'tumour'] },
    rounds: 3, minSites: 2, roundDeadlineS: 60,
    encryption: { scheme: 'bfv-sym-seeded', polyModulusDegree: 4096, coeffModulusBits: [60], plainModulusBits: 42, precisionBits: 20 },
    studyId: 's1', coordinatorId: 'c', createdAt: '2026-01-01T00:00:00.000Z',
  });
  it('hash changes with any field, so a changed manifest needs a new approval', () => {
    const h = manifestHash(m);
    assert.match(h, /^[0-9a-f]{64}$/);
    assert.equal(manifestHash(StudyManifestSchema.parse(JSON.parse(JSON.stringify(m)))), h);
    assert.notEqual(manifestHash({ ...m, rounds: 4 }), h);
    assert.notEqual(manifestHash({ ...m, training: { ...m.training, learningRate: 0.002 } }), h);
  });
  it('a segmentation manifest hashes as before the response task was added (approvals stay valid)', () => {
    // Hash of this exact manifest computed with the schema of commit de5eca0 (segmentation only).
    assert.equal(manifestHash(m), 'd779256fe60cadb249dab6dd8dce2f2b4e49a39b75d97fa4578ce2b2c1a88845');
  });
  it('accepts a response study and refuses a response task with a U-Net model', () => {
    const r = StudyManifestSchema.parse({
      ...m, task: 'response',
      model: { arch: 'logreg', features: 'first3-v1', nClasses: 3, arms: ['A', 'B'], l2: 0.001, initSeed: 7 },
      data: { source: 'twin-measurements', minMeasurements: 5, trainPercent: 70, splitSalt: 's', minTrainPatients: 5 },
    });
    assert.equal(r.task, 'response');
    assert.notEqual(manifestHash(r), manifestHash(m));
    const bad = StudyManifestSchema.safeParse({ ...m, task: 'response' });
    assert.equal(bad.success, false);
    assert.ok(bad.error!.issues.some((i) => i.path[0] === 'model' || i.path[0] === 'data'), JSON.stringify(bad.error!.issues));
  });
  it('refuses out-of-range settings with the field named', () => {
    const r = StudyManifestSchema.safeParse({ ...m, minSites: 0 });
    assert.equal(r.success, false);
    assert.equal(r.error!.issues[0].path[0], 'minSites');
  });
});
