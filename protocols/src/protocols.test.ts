import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { canonicalJson, sha256Hex } from './canonical.js';
import { isCompatibleVersion } from './version.js';
import { packFrames, unpackFrames } from './messages.js';
import { StudyManifestSchema, manifestHash, secaggThresholdFor, type StudyManifest } from './manifest.js';
import { isSafeId } from './ids.js';

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
    assert.deepEqual(
      back.map((f) => Array.from(f)),
      frames.map((f) => Array.from(f)),
    );
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
  const key = (n: number) => Buffer.alloc(32, n).toString('base64');
  const roster = ['site-a', 'site-b', 'site-c'].map((siteId, i) => ({ siteId, siteName: `Hospital ${i}`, ed25519PublicKey: key(i + 1), x25519PublicKey: key(i + 11) }));
  const m: StudyManifest = StudyManifestSchema.parse({
    title: 't',
    task: 'segmentation',
    model: { arch: 'unet2d', inChannels: 1, nClasses: 2, base: 8, depth: 2, size: 48, initSeed: 1 },
    training: { epochsPerRound: 1, batchSize: 8, learningRate: 0.001, clipBound: 1, seed: 1 },
    data: { modality: 'PET', labels: ['bg', 'tumour'] },
    rounds: 3,
    minSites: 3,
    roundDeadlineS: 60,
    encryption: { scheme: 'bfv-sym-seeded', polyModulusDegree: 4096, coeffModulusBits: [60], plainModulusBits: 42, precisionBits: 20 },
    studyId: 's1',
    coordinatorId: 'c',
    createdAt: '2026-01-01T00:00:00.000Z',
    updateLength: 29330,
    secureAggregation: 'double-mask-v1',
    manifestVersion: 1,
    participants: roster,
    keyDealers: ['site-a', 'site-b', 'site-c'],
  });

  it('hash changes with any field, the roster included, so a changed manifest needs a new approval', () => {
    const h = manifestHash(m);
    assert.match(h, /^[0-9a-f]{64}$/);
    assert.equal(manifestHash(StudyManifestSchema.parse(JSON.parse(JSON.stringify(m)))), h);
    assert.notEqual(manifestHash({ ...m, rounds: 4 }), h);
    assert.notEqual(manifestHash({ ...m, training: { ...m.training, learningRate: 0.002 } }), h);
    assert.notEqual(manifestHash({ ...m, participants: [...m.participants, { ...roster[0], siteId: 'site-d' }] }), h, 'another site');
    assert.notEqual(manifestHash({ ...m, participants: [{ ...roster[0], x25519PublicKey: key(99) }, ...roster.slice(1)] }), h, 'another key for a site');
    assert.notEqual(manifestHash({ ...m, keyDealers: ['site-b', 'site-a', 'site-c'] }), h, 'another dealer order');
  });

  it('hashes a protocol-2.0 manifest as pinned here (approvals stay valid across releases)', () => {
    // Hash of this exact manifest computed when protocol 2.0 was introduced; a change here breaks every existing approval.
    assert.equal(manifestHash(m), PINNED_V2_HASH);
  });

  it('applies the documented defaults (maxSamplesPerSite)', () => {
    assert.equal(m.training.maxSamplesPerSite, 10_000);
  });

  it('accepts a response study and refuses a response task with a U-Net model', () => {
    const r = StudyManifestSchema.parse({
      ...m,
      task: 'response',
      model: { arch: 'logreg', features: 'first3-v1', nClasses: 3, arms: ['A', 'B'], l2: 0.001, initSeed: 7 },
      data: { source: 'twin-measurements', minMeasurements: 5, trainPercent: 70, splitSalt: 's', minTrainPatients: 5 },
    });
    assert.equal(r.task, 'response');
    assert.notEqual(manifestHash(r), manifestHash(m));
    const bad = StudyManifestSchema.safeParse({ ...m, task: 'response' });
    assert.equal(bad.success, false);
    assert.ok(
      bad.error!.issues.some((i) => i.path[0] === 'model' || i.path[0] === 'data'),
      JSON.stringify(bad.error!.issues),
    );
  });

  it('refuses out-of-range settings with the field named: minSites below 3, a roster under 3 sites or above minSites, a dealer outside it', () => {
    for (const [over, field] of [
      [{ minSites: 2 }, 'minSites'],
      [{ participants: roster.slice(0, 2) }, 'participants'],
      [{ minSites: 4 }, 'minSites'],
      [{ keyDealers: ['site-x'] }, 'keyDealers'],
      [{ participants: [roster[0], roster[0], roster[1]] }, 'participants'],
    ] as const) {
      const r = StudyManifestSchema.safeParse({ ...m, ...over });
      assert.equal(r.success, false, JSON.stringify(over));
      assert.ok(
        r.error!.issues.some((i) => i.path[0] === field),
        `${field}: ${JSON.stringify(r.error!.issues)}`,
      );
    }
    const low = StudyManifestSchema.safeParse({ ...m, minSites: 1 });
    assert.match(low.error!.issues[0].message, /TWF_E_TOO_FEW_CONTRIBUTORS/);
  });

  it('refuses ids that could name a path: study and site ids have a fixed pattern', () => {
    for (const bad of ['../etc', 'a/b', '.hidden', 'x'.repeat(65), 'a b', '']) {
      assert.equal(isSafeId(bad), false, bad);
      assert.equal(StudyManifestSchema.safeParse({ ...m, studyId: bad }).success, false, bad);
    }
    assert.equal(isSafeId('study-1a2b3c4d'), true);
  });

  it('secure-aggregation threshold: a strict majority, at least 3', () => {
    assert.deepEqual([3, 4, 5, 6, 7, 10, 100].map(secaggThresholdFor), [3, 3, 3, 4, 4, 6, 51]);
  });
});

// Cross-checked when pinned: Python's json.dumps(m, sort_keys=True, separators=(',', ':')) hashes to the same value.
const PINNED_V2_HASH = 'b790771dc695dca6f4cc11f351d3abd5044e8c9b585061cd1594c37f77ab66ed';
