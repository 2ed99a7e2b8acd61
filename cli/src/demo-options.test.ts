import assert from 'node:assert/strict';
import Database from '@twinfed/shared/db/driver';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ResponseSpecSchema, SegmentationSpecSchema } from '@twinfed/protocols';
import { epsilonFor, rdpSubsampledGaussian, rdpToBuffer } from '@twinfed/shared/dp/accountant';
import { Command } from 'commander';
import { DEMO_STRATEGIES, importProgress, parseConsoleLine, readSitePrivacy, trainedLine, type TrainProgressEvent } from './demo-kit.js';
import { addDemoOptions, type DemoCommonFlags } from './demo-cli.js';
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

describe('demo --serve and the live lines', () => {
  const parse = (...args: string[]) => {
    const c = addDemoOptions(
      new Command('demo')
        .exitOverride()
        .configureOutput({ writeErr: () => {} })
        .option('--rounds <n>', 'rounds', Number, 5),
    );
    c.parse(args, { from: 'user' });
    return c.opts<DemoCommonFlags & { rounds: number }>();
  };

  it('--serve is off unless given, and combines with the other demo options', () => {
    assert.equal(parse().serve, undefined);
    assert.deepEqual(parse('--serve', '--epsilon', '3', '--dp-level', 'site', '--strategy', 'fedprox', '--rounds', '2'), {
      serve: true,
      epsilon: 3,
      dpLevel: 'site',
      strategy: 'fedprox',
      rounds: 2,
    });
    assert.throws(() => parse('--serve', '--epsilon', '0'), /expected a number in \(0, 100\]/);
    assert.throws(() => parse('--serve=1'), /unknown option|does not take an argument/);
  });

  it("parseConsoleLine: the site's console line, plain or inside a JSON log event; null for anything else", () => {
    assert.deepEqual(parseConsoleLine('console: http://127.0.0.1:41234/ (token: /tmp/out/site-a/console.token)'), {
      url: 'http://127.0.0.1:41234/',
      tokenFile: '/tmp/out/site-a/console.token',
    });
    assert.deepEqual(parseConsoleLine('[info] console: https://127.0.0.1:8443/ (token: out/demo/site b/console.token)'), {
      url: 'https://127.0.0.1:8443/',
      tokenFile: 'out/demo/site b/console.token',
    });
    assert.deepEqual(parseConsoleLine(JSON.stringify({ event: 'log', level: 'info', msg: 'console: http://127.0.0.1:5000/ (token: /d/console.token)' })), {
      url: 'http://127.0.0.1:5000/',
      tokenFile: '/d/console.token',
    });
    for (const line of ['', 'site s-1: backend wasm (SIMD)', '{"event":"uploaded","round":1}', 'console: not a url (token: x)']) assert.equal(parseConsoleLine(line), null, line);
  });

  it("importProgress: a line every 4 patients imported from `site import --json`'s file lines, not the last, nothing for other lines", () => {
    const said: string[] = [];
    const on = importProgress('Hospital A', 9, (x) => said.push(x));
    on('not json');
    on(JSON.stringify({ type: 'file', index: 1, total: 20, status: 'skipped' }));
    for (let i = 0; i < 9; i++) on(JSON.stringify({ type: 'file', index: i + 2, total: 20, status: i === 3 ? 'unchanged' : 'imported' }));
    on(JSON.stringify({ type: 'summary', imported: 8 }));
    assert.deepEqual(said, ['Hospital A: 4 of 9 patients imported...', 'Hospital A: 8 of 9 patients imported...']);
  });

  it('trainedLine: a line when a site finishes a round that took a while; none per epoch, for fast training or for other events', () => {
    const e: TrainProgressEvent = { event: 'train-progress', round: 3, epoch: 2, epochs: 2, loss: 0.41234, elapsedMs: 12_400 };
    assert.match(trainedLine('Hospital A', e)!, /^round 3: Hospital A trained 2 epoch\(s\) on its own data, loss 0\.412 \(12 s\)/);
    assert.equal(trainedLine('Hospital A', { ...e, epoch: 1 }), null);
    assert.equal(trainedLine('Study1', { ...e, elapsedMs: 3 }), null);
    assert.equal(trainedLine('Hospital A', { event: 'uploaded', round: 3 }), null);
  });
});
