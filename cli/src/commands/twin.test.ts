import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { fitPatient, parseLalehCsv, sufficientStats, type HoldoutResult } from '@twinfed/shared/twin/index';
import { formatTwinEvaluation } from './twin.js';

const BIN = fileURLToPath(new URL('../bin.js', import.meta.url));
const ROOT = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../..');
const twinfed = (...args: string[]) => {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 180_000, cwd: ROOT });
  return { code: r.status, out: r.stdout, err: r.stderr };
};

/** `twinfed twin evaluate` on the real Study 1 file (Ghaffari Laleh et al. 2022), with a prior from Study 2 patients. */
describe('twinfed twin evaluate: progression, calibrated band, interval score, given prior', () => {
  const dir = mkdtempSync(join(tmpdir(), 'twf-twin-eval-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const priorFile = join(dir, 'prior.json');
  const other = parseLalehCsv(readFileSync(join(ROOT, 'fixtures/growth-laleh2022/Study2.csv'), 'utf8'))
    .filter((p) => p.days.length >= 5)
    .slice(0, 25);
  const { model: _m, ...stats } = sufficientStats(other.map((p) => fitPatient('gompertz', p, { seed: 1, starts: 2 })));
  writeFileSync(priorFile, JSON.stringify({ models: { gompertz: stats } }));

  it('--json has the new top-level fields, all in range', () => {
    const r = twinfed('twin', 'evaluate', '--csv', 'fixtures/growth-laleh2022/Study1.csv', '--format', 'laleh', '--holdout-last', '1', '--prior', priorFile, '--json');
    assert.equal(r.code, 0, r.err);
    const j = JSON.parse(r.out.trim().split('\n').pop()!) as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
    const p = j.progression;
    for (const k of ['auc', 'brier', 'baselineAuc', 'baselineBrier', 'logisticAuc', 'logisticBrier']) assert.ok(p[k] >= 0 && p[k] <= 1, `${k} = ${p[k]}`);
    assert.equal(p.n, j.meta.patientsEvaluated);
    assert.ok(j.coverage90Calibrated >= 0 && j.coverage90Calibrated <= 1);
    for (const k of ['twin', 'locfEmpirical']) {
      assert.ok(j.intervalScore90[k] >= j.meanWidth90[k] && j.meanWidth90[k] > 0, k);
    }
    assert.equal(j.sparse.model, 'gompertz');
    assert.ok(j.sparse.n >= 20, `${j.sparse.n} sparse patients`);
    for (const k of ['maeWithPrior', 'maeLocalPrior', 'maeNoPrior']) assert.ok(Number.isFinite(j.sparse[k]) && j.sparse[k] >= 0, k);
    assert.ok(j.sparseTwoPoint.n > 0);
    // The human-readable output of the same result: the band table, the progression table and a reliability table with counts.
    const text = formatTwinEvaluation(j as HoldoutResult, 'Study1.csv', 1);
    assert.match(text, /twin, calibrated +\d\.\d{3} +\d\.\d{3} +\d\.\d{3}/);
    assert.match(text, /LOCF, empirical band/);
    assert.match(text, new RegExp(`RECIST 1\\.1 progression at the next visit .*: ${p.events} of ${p.n} patients`));
    assert.match(text, /reliability, twin \(calibrated draws\):\n {2}predicted +n +mean predicted +observed\n {2}0\.\d-/);
    assert.match(text, /sparse patients \(2-3 fitted points\), n = \d+, MAE \(gompertz\): given prior/);
  });

  it('refuses a prior file that is not one, saying what it should look like', () => {
    const bad = join(dir, 'bad.json');
    writeFileSync(bad, JSON.stringify({ models: { gompertz: { mean: [1] } } }));
    const r = twinfed('twin', 'evaluate', '--csv', 'fixtures/growth-laleh2022/Study1.csv', '--holdout-last', '1', '--prior', bad);
    assert.notEqual(r.code, 0);
    assert.match(r.err, /TWF_E_BAD_REQUEST: --prior .*bad\.json is not a prior file: .*Expected \{ "models"/);
  });
});
