import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { StudyManifestSchema, WireError, type StudyManifest } from '@twinfed/protocols';
import { epsilonFor, noiseMultiplierFor } from '@twinfed/shared/dp/accountant';
import { DEFAULT_HE_PARAMS, PACKED_HE_PARAMS, maxTotalSamples } from '@twinfed/shared/he/index';
import { priorVectorLength, twinPriorStudySpec } from '@twinfed/shared/twin/index';
import type { SiteRow } from './store/index.js';
import { buildRoster, changedRoster, parseStudySpec, resolveDp, studyDraft, validateHeParams } from './study-rules.js';

const SPEC = {
  title: 'rules',
  task: 'segmentation',
  model: { arch: 'unet2d', inChannels: 1, nClasses: 2, base: 4, depth: 1, size: 16, initSeed: 1 },
  training: { epochsPerRound: 1, batchSize: 4, learningRate: 0.01, clipBound: 1, seed: 1 },
  data: { modality: 'PET', labels: ['background', 'tumour'] },
  rounds: 4,
  minSites: 3,
  roundDeadlineS: 30,
};
const DP = { epsilon: 8, delta: 1e-5, clipNorm: 1 };

const code = (c: string, detail?: RegExp) => (e: unknown) => e instanceof WireError && e.code === c && (!detail || detail.test(e.detail));
const draftOf = (over: Record<string, unknown> = {}) => studyDraft(parseStudySpec({ ...SPEC, ...over }), DEFAULT_HE_PARAMS, { studyId: 'study-1', coordinatorId: 'coord', createdAtMs: 0 });
const key = (c: string) => `${c.repeat(43)}=`;
const site = (id: string, revokedAtMs: number | null = null): SiteRow => ({
  siteId: id,
  siteName: `name of ${id}`,
  ed25519PublicKey: key('A'),
  x25519PublicKey: key('B'),
  enrolledAtMs: 0,
  lastSeq: 0,
  lastSeenAtMs: null,
  revokedAtMs,
});
const rowsOf = (...rows: SiteRow[]) => new Map(rows.map((r) => [r.siteId, r]));
const ids = (n: number) => Array.from({ length: n }, (_, i) => `s${i + 1}`);

/** The pure rules of creating and starting a study (no store, no HE context except where named). */
describe('study rules', () => {
  it('parseStudySpec maps minSites < 3, a non-linear strategy and other bad fields to their codes', () => {
    for (const minSites of [1, 2]) assert.throws(() => parseStudySpec({ ...SPEC, minSites }), code('TWF_E_TOO_FEW_CONTRIBUTORS', /minSites/));
    assert.throws(() => parseStudySpec({ ...SPEC, strategy: { name: 'krum' } }), code('TWF_E_STRATEGY_NOT_LINEAR', /strategy/));
    assert.throws(() => parseStudySpec({ ...SPEC, rounds: 0 }), code('TWF_E_BAD_REQUEST', /^rounds: /));
    assert.throws(() => parseStudySpec(null), code('TWF_E_BAD_REQUEST'));
    assert.throws(() => parseStudySpec({ ...SPEC, strategy: { name: 'fedprox' } }), code('TWF_E_BAD_REQUEST', /strategy/), 'a linear strategy with a missing field is a bad request');
    const ok = parseStudySpec(SPEC);
    assert.equal(ok.training.maxSamplesPerSite, 10_000, 'defaults applied');
    assert.equal(ok.dp, undefined);
  });

  it('a twin-prior spec: fedavg only, no dp, at least 5 patients per site, update length from its models', () => {
    const tp = twinPriorStudySpec(['exponential', 'gompertz']);
    const d = studyDraft(parseStudySpec(tp), DEFAULT_HE_PARAMS, { studyId: 'study-1', coordinatorId: 'coord', createdAtMs: 0 });
    assert.equal(d.updateLength, priorVectorLength(['exponential', 'gompertz']));
    assert.equal(d.updateLength, 8 + 12);
    assert.throws(() => parseStudySpec({ ...tp, strategy: { name: 'fedadam' } }), code('TWF_E_BAD_REQUEST', /only fedavg/));
    assert.throws(() => parseStudySpec({ ...tp, dp: { level: 'site', ...DP } }), code('TWF_E_DP_PARAMS', /not implemented for twin-prior/));
    assert.throws(() => parseStudySpec({ ...tp, data: { ...tp.data, minPatients: 4 } }), code('TWF_E_BAD_REQUEST', /minPatients/));
    assert.throws(() => parseStudySpec({ ...tp, model: { ...tp.model, models: ['gompertz', 'gompertz'] } }), code('TWF_E_BAD_REQUEST', /twice/));
  });

  it('parseStudySpec derives a missing DP sigma and refuses one that overspends the budget', () => {
    const derived = parseStudySpec({ ...SPEC, dp: { level: 'patient', samplingRate: 0.1, ...DP } }).dp!;
    assert.ok(derived.noiseMultiplier !== undefined && derived.noiseMultiplier > 0.3);
    const steps = 4 * 10; // rounds × round(epochsPerRound / samplingRate)
    assert.equal(derived.noiseMultiplier, noiseMultiplierFor({ samplingRate: 0.1, steps, delta: DP.delta, epsilon: DP.epsilon }));
    assert.ok(epsilonFor({ samplingRate: 0.1, noiseMultiplier: derived.noiseMultiplier, steps, delta: DP.delta }).epsilon <= DP.epsilon * (1 + 1e-9));
    assert.throws(
      () => parseStudySpec({ ...SPEC, dp: { level: 'patient', samplingRate: 0.1, ...DP, noiseMultiplier: 0.3 } }),
      code('TWF_E_DP_PARAMS', /^dp\.noiseMultiplier: 0\.3 over 4 rounds \(40 compositions/),
    );
    const generous = { level: 'patient' as const, samplingRate: 0.1, ...DP, noiseMultiplier: 50 };
    assert.deepEqual(parseStudySpec({ ...SPEC, dp: generous }).dp, generous, 'a sigma within budget is kept as given');
  });

  it('resolveDp composes once per round at site level', () => {
    const training = parseStudySpec(SPEC).training;
    const dp = resolveDp({ rounds: 7, training, dp: { level: 'site', ...DP } });
    assert.equal(dp.noiseMultiplier, noiseMultiplierFor({ samplingRate: 1, steps: 7, delta: DP.delta, epsilon: DP.epsilon }));
  });

  it('validateHeParams refuses parameters the HE layer or secure aggregation cannot use, naming encryption', async () => {
    // The HE layer's own check (checkHeParams) first, then secure aggregation's float64 bound on t; both before any HE context is built.
    await assert.rejects(validateHeParams({ ...DEFAULT_HE_PARAMS, plainModulusBits: 51 }), code('TWF_E_HE_PARAMS', /^encryption: .*no noise budget/));
    await assert.rejects(validateHeParams({ ...DEFAULT_HE_PARAMS, polyModulusDegree: 3000 }), code('TWF_E_HE_PARAMS', /^encryption: .*polyModulusDegree/));
    await assert.rejects(validateHeParams({ ...DEFAULT_HE_PARAMS, coeffModulusBits: [40, 60], plainModulusBits: 51 }), code('TWF_E_HE_PARAMS', /^encryption: plainModulusBits: .*at most 48 bits/));
    // 49 bits passed before and failed at the first upload (maskInput needs t < 2^48)
    await assert.rejects(validateHeParams({ ...DEFAULT_HE_PARAMS, coeffModulusBits: [40, 60], plainModulusBits: 49 }), code('TWF_E_HE_PARAMS', /at most 48 bits/));
    await validateHeParams({ ...DEFAULT_HE_PARAMS, coeffModulusBits: [40, 60], plainModulusBits: 48 });
    await validateHeParams(PACKED_HE_PARAMS);
    await assert.rejects(validateHeParams({ ...PACKED_HE_PARAMS, lanes: 4 }), code('TWF_E_HE_PARAMS', /^encryption: .*less than one sample/));
  });

  it('studyDraft stamps id, coordinator, time, encryption and the update length', () => {
    const d = draftOf();
    assert.equal(d.studyId, 'study-1');
    assert.equal(d.coordinatorId, 'coord');
    assert.equal(d.createdAt, '1970-01-01T00:00:00.000Z');
    assert.equal(d.secureAggregation, 'double-mask-v1');
    assert.deepEqual(d.encryption, DEFAULT_HE_PARAMS);
    assert.ok(d.updateLength > 0);
  });

  it("studyDraft: 8 ciphertexts per chunk by default from 64 ciphertexts up, none below, a spec's own value kept", () => {
    assert.equal(draftOf().ciphertextsPerChunk, undefined, 'a small model keeps one ciphertext per chunk (manifest unchanged)');
    const big = { ...SPEC.model, base: 64, depth: 3 };
    const d = draftOf({ model: big });
    assert.ok(d.updateLength >= 64 * 4096, `${d.updateLength} parameters`);
    assert.equal(d.ciphertextsPerChunk, 8);
    assert.equal(draftOf({ model: big, ciphertextsPerChunk: 1 }).ciphertextsPerChunk, 1);
    assert.equal(draftOf({ ciphertextsPerChunk: 5 }).ciphertextsPerChunk, 5);
    assert.throws(() => draftOf({ ciphertextsPerChunk: 65 }), code('TWF_E_BAD_REQUEST', /ciphertextsPerChunk/));
    assert.throws(() => draftOf({ ciphertextsPerChunk: 0 }), code('TWF_E_BAD_REQUEST', /ciphertextsPerChunk/));
  });

  it('buildRoster returns the entries with their enrolled keys and the dealer order', () => {
    const r = buildRoster(draftOf(), ids(3), ['s2', 's1'], rowsOf(...ids(3).map((id) => site(id))));
    assert.deepEqual(
      r.participants.map((p) => p.siteId),
      ids(3),
    );
    assert.deepEqual(r.participants[0], { siteId: 's1', siteName: 'name of s1', ed25519PublicKey: key('A'), x25519PublicKey: key('B') });
    assert.deepEqual(r.keyDealers, ['s2', 's1']);
  });

  it('buildRoster refuses duplicates, unknown and revoked sites, too few or too many, and quorum or sample bounds the roster cannot meet', () => {
    const all = rowsOf(...ids(256).map((id) => site(id)));
    const d = draftOf();
    assert.throws(() => buildRoster(d, ['s1', 's2', 's1'], [], all), code('TWF_E_BAD_REQUEST', /listed twice/));
    assert.throws(() => buildRoster(d, ['s1', 's2', 'nobody'], [], all), code('TWF_E_UNKNOWN_SITE', /^nobody is not enrolled/));
    assert.throws(() => buildRoster(d, ids(3), [], rowsOf(site('s1'), site('s2', 5), site('s3'))), code('TWF_E_SITE_REVOKED', /^s2 was revoked/));
    assert.throws(() => buildRoster(d, ids(2), [], all), code('TWF_E_TOO_FEW_CONTRIBUTORS', /has 2 sites/));
    assert.throws(() => buildRoster(draftOf({ minSites: 255 }), ids(256), [], all), code('TWF_E_BAD_REQUEST', /at most 255/));
    assert.throws(() => buildRoster(draftOf({ minSites: 4 }), ids(3), [], all), code('TWF_E_TOO_FEW_CONTRIBUTORS', /more than the 3 sites/));
    assert.throws(() => buildRoster(d, ids(6), [], all), code('TWF_E_TOO_FEW_CONTRIBUTORS', /threshold t = 4 of a 6-site roster/));
    const maxTotal = maxTotalSamples(DEFAULT_HE_PARAMS);
    const big = Math.floor(maxTotal / 3) + 1;
    assert.ok(big <= 10_000_000, 'the schema allows a maxSamplesPerSite above the encrypted sum bound');
    assert.throws(() => buildRoster(draftOf({ training: { ...SPEC.training, maxSamplesPerSite: big } }), ids(3), [], all), code('TWF_E_BAD_REQUEST', /maxSamplesPerSite/));
    assert.throws(() => buildRoster(d, ids(3), ['s4'], all), code('TWF_E_BAD_REQUEST', /key dealer s4 is not in the roster/));
  });

  it('buildRoster: packed encryption (2 lanes) holds 511 samples per round, and the site-level DP noise tail takes its share', () => {
    const all = rowsOf(...ids(100).map((id) => site(id)));
    const packed = (over: Record<string, unknown>) => studyDraft(parseStudySpec({ ...SPEC, minSites: 51, ...over }), PACKED_HE_PARAMS, { studyId: 'study-1', coordinatorId: 'coord', createdAtMs: 0 });
    const cap = (w: number, dp?: unknown) => packed({ training: { ...SPEC.training, maxSamplesPerSite: w }, ...(dp ? { dp } : {}) });
    assert.equal(buildRoster(cap(5), ids(100), [], all).participants.length, 100, '100 × 5 = 500 <= 511');
    assert.throws(
      () => buildRoster(cap(6), ids(100), [], all),
      code('TWF_E_BAD_REQUEST', /^training\.maxSamplesPerSite 6 × 100 sites exceeds 511, .*; lower it to 5 \(or lower encryption\.lanes 2, encryption\.precisionBits 13 or the roster\)$/),
    );
    // site-level DP: 12 standard deviations of the summed noise come off the lane
    assert.throws(
      () => buildRoster(cap(5, { level: 'site', ...DP }), ids(100), [], all),
      code('TWF_E_BAD_REQUEST', /exceeds 511, .* beside the site-level DP noise \(\d+ samples' worth\); lower it to [1-4] \(or lower .*dp\.clipNorm/),
    );
    // a noise tail beyond the lane: not even one sample fits
    assert.throws(() => buildRoster(cap(1, { level: 'site', ...DP, clipNorm: 100 }), ids(100), [], all), code('TWF_E_BAD_REQUEST', /^even one sample per site × 100 sites exceeds/));
    // the same spec on the default encryption is far inside (t - 1)/2
    buildRoster(draftOf({ minSites: 51, training: { ...SPEC.training, maxSamplesPerSite: 5 }, dp: { level: 'site', ...DP } }), ids(100), [], all);
  });

  it('changedRoster drops removed sites, appends new ones, keeps the dealer order and refuses removing a stranger', () => {
    const d = draftOf();
    const roster = buildRoster(d, ['s1', 's2', 's3'], ['s3', 's1', 's2'], rowsOf(...ids(5).map((id) => site(id))));
    const m: StudyManifest = StudyManifestSchema.parse({ ...d, manifestVersion: 3, ...roster });
    const c = changedRoster(m, { add: ['s4', 's1', 's5'], remove: ['s2'] });
    assert.deepEqual(c.siteIds, ['s1', 's3', 's4', 's5']);
    assert.deepEqual(c.keyDealers, ['s3', 's1', 's4', 's5']);
    assert.deepEqual([...c.remove], ['s2']);
    assert.ok(!('participants' in c.draftPart) && !('keyDealers' in c.draftPart) && !('manifestVersion' in c.draftPart));
    assert.equal(c.draftPart.studyId, 'study-1');
    assert.throws(() => changedRoster(m, { remove: ['s9'] }), code('TWF_E_BAD_REQUEST', /s9 is not in the roster/));
    assert.deepEqual(changedRoster(m, {}).siteIds, ['s1', 's2', 's3']);
  });
});
