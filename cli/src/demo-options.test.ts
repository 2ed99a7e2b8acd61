import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ResponseSpecSchema, SegmentationSpecSchema } from '@twinfed/protocols';
import { epsilonFor, rdpSubsampledGaussian, rdpToBuffer } from '@twinfed/shared/dp/accountant';
import { DEMO_STRATEGIES, readSitePrivacy } from './demo-kit.js';
import { DEMO_DP, demoStudySpec } from './demo.js';
import { RESPONSE_DEMO_DP, responseDemoSpec } from './demo-response.js';

describe('demo --strategy / --epsilon', () => {
  it('without flags the specs carry neither strategy nor dp (default behaviour unchanged)', () => {
    assert.equal(demoStudySpec(5).strategy, undefined);
    assert.equal(demoStudySpec(5).dp, undefined);
    assert.equal(responseDemoSpec(20).dp, undefined);
    assert.equal(responseDemoSpec(20).training.epochsPerRound, 20);
  });

  it('every strategy and an epsilon give specs the manifest schema accepts, with sigma meeting the budget', () => {
    for (const name of DEMO_STRATEGIES) {
      const seg = SegmentationSpecSchema.parse(demoStudySpec(5, { strategy: name, epsilon: 8 }));
      assert.equal(seg.strategy?.name, name);
      const resp = ResponseSpecSchema.parse(responseDemoSpec(20, { strategy: name, epsilon: 3 }));
      assert.equal(resp.strategy?.name, name);
    }
    const seg = demoStudySpec(5, { epsilon: 8 });
    assert.ok(seg.dp?.level === 'patient' && seg.dp.noiseMultiplier !== undefined);
    const steps = 5 * Math.round(DEMO_DP.epochsPerRound / DEMO_DP.samplingRate);
    assert.ok(epsilonFor({ samplingRate: seg.dp.samplingRate, noiseMultiplier: seg.dp.noiseMultiplier, steps, delta: 1e-5 }).epsilon <= 8);
    const resp = responseDemoSpec(20, { epsilon: 8 });
    assert.ok(resp.dp?.level === 'patient');
    assert.equal(resp.dp.samplingRate, RESPONSE_DEMO_DP.samplingRate);
    assert.equal(resp.training.epochsPerRound, RESPONSE_DEMO_DP.epochsPerRound);
  });

  it('readSitePrivacy: latest ledger row of the study, site cap from site.json; nulls without rows or table', () => {
    const dir = mkdtempSync(join(tmpdir(), 'twf-demo-priv-'));
    try {
      writeFileSync(join(dir, 'site.json'), JSON.stringify({ siteId: 's', privacy: { maxEpsilon: 10, delta: 1e-5, requireDp: false } }));
      const db = new Database(join(dir, 'site.db'));
      db.exec('create table other (x int)');
      db.close();
      assert.deepEqual(readSitePrivacy(dir, 'A', 'st', 8), { site: 'A', epsilonSpent: null, epsilonDataset: null, datasetKey: null, roundsRecorded: 0, studyBudget: 8, siteMaxEpsilon: 10 });
      const db2 = new Database(join(dir, 'site.db'));
      db2.exec(`create table dp_ledger (id integer primary key autoincrement, dataset_key text not null, study_id text not null, round integer not null, level text not null, steps integer not null,
        sampling_rate real not null, noise_multiplier real not null, rdp blob not null, epsilon_study real not null, epsilon_dataset real not null, delta_dataset real not null, recorded_at_ms integer not null)`);
      const ins = db2.prepare(
        'insert into dp_ledger (dataset_key, study_id, round, level, steps, sampling_rate, noise_multiplier, rdp, epsilon_study, epsilon_dataset, delta_dataset, recorded_at_ms) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
      );
      const rdp = rdpToBuffer(rdpSubsampledGaussian(0.5, 1.7));
      ins.run('segmentation:PET', 'st', 1, 'patient', 4, 0.5, 1.7, rdp, 2.5, 3.5, 1e-5, 1);
      ins.run('segmentation:PET', 'st', 2, 'patient', 4, 0.5, 1.7, rdp, 4.0, 5.0, 1e-5, 2);
      ins.run('segmentation:PET', 'other', 1, 'patient', 4, 0.5, 1.7, rdp, 9.0, 9.5, 1e-5, 3);
      db2.close();
      const p = readSitePrivacy(dir, 'A', 'st', 8);
      assert.equal(p.epsilonSpent, 4.0);
      assert.equal(p.epsilonDataset, 5.0);
      assert.equal(p.roundsRecorded, 2);
      assert.equal(p.datasetKey, 'segmentation:PET');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
