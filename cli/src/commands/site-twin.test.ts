import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from '@twinfed/shared/db/driver';
import { generateIdentity, initSodium, saveIdentity } from '@twinfed/shared/crypto/index';

const BIN = fileURLToPath(new URL('../bin.js', import.meta.url));
const ROOT = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../..');
const twinfed = (...args: string[]) => {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 120_000, cwd: ROOT });
  return { code: r.status, out: r.stdout, err: r.stderr };
};
/** Observed points of a twin SVG: circles with a day/volume tooltip (the legend's circle has none). */
const observedPoints = (svg: string) => (svg.match(/<circle [^>]*><title>day /g) ?? []).length;

/**
 * The README's twin lines, run as written on a site folder (site.json + identity.json as
 * `site enrol` leaves them; these commands never dial the coordinator).
 */
describe('twinfed site twin show on the longitudinal example', () => {
  const dir = mkdtempSync(join(tmpdir(), 'twf-site-twin-cli-'));
  const site = join(dir, 'site');
  before(async () => {
    await initSodium();
    mkdirSync(site, { recursive: true });
    saveIdentity(join(site, 'identity.json'), generateIdentity());
    writeFileSync(
      join(site, 'site.json'),
      JSON.stringify({ coordinatorUrl: 'https://coordinator.invalid', siteId: 'site-cli', siteName: 'CLI test site', coordinatorId: 'coord', coordinatorPublicKey: 'A'.repeat(44) }),
    );
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('site import accepts examples/twin-longitudinal and calibrates three twins', () => {
    const r = twinfed('site', 'import', 'examples/twin-longitudinal', '--data-dir', site);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /imported .*laleh-study2-excerpt\.csv: laleh: 3 patients, 25 measurements/);
    assert.equal((r.out.match(/^twin {6}/gm) ?? []).length, 3, r.out);
  });

  it('site twin show --svg writes a plot with every observed point, the fit and the band', () => {
    const svg = join(dir, 'twin.svg');
    const r = twinfed('site', 'twin', 'show', '1.427681197108524E+18', '--svg', svg, '--data-dir', site);
    assert.equal(r.code, 0, r.err);
    assert.ok(r.out.includes(`plot: ${svg}\n`) || r.out.endsWith(`plot: ${svg}\n`), r.out);
    const text = readFileSync(svg, 'utf8');
    assert.ok(observedPoints(text) >= 3, `${observedPoints(text)} observed points`);
    assert.equal(observedPoints(text), 9);
    assert.ok(text.includes('twin forecast') && text.includes('90% prediction'));
  });

  it('site twin simulate runs the example what-if file as the README writes it', () => {
    const w = join(dir, 'w.svg');
    const r = twinfed('site', 'twin', 'simulate', '1.427681197108524E+18', '--schedule', 'examples/twin-longitudinal/whatif.json', '--svg', w, '--data-dir', site);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /add RT 10 x 3 Gy at day 400/);
    assert.ok(existsSync(w));
  });

  it('a patient with one time point: the plot holds that point and says the twin is not calibrated', () => {
    const imp = twinfed('site', 'import', 'examples/sts-pet/STS_010', '--patient', 'STS_010', '--day', '0', '--no-radiomics', '--data-dir', site);
    assert.equal(imp.code, 0, imp.err);
    const svg = join(dir, 'one.svg');
    const r = twinfed('site', 'twin', 'show', 'STS_010', '--svg', svg, '--data-dir', site);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /plot: .*one\.svg \(observed point only: the twin is not calibrated \(1 measurement/);
    assert.equal(observedPoints(readFileSync(svg, 'utf8')), 1);
  });

  it('nothing to plot: says why, writes nothing, exits 1 (never "plot: FILE" for a file it did not write)', () => {
    // A patient whose only record is radiomics (its measurement removed by hand).
    const sqlite = new Database(join(site, 'site.db'));
    sqlite.prepare("delete from measurements where patient_id = 'STS_010'").run();
    sqlite
      .prepare(
        "insert into radiomics_features (mask_id, patient_id, lesion_id, settings, tag, value) select m.id, 'STS_010', m.lesion_id, 'manual', 'morph_volume', 1.0 from masks m join imaging_series s on s.id = m.series_id where s.patient_id = 'STS_010'",
      )
      .run();
    sqlite.close();
    const svg = join(dir, 'none.svg');
    const r = twinfed('site', 'twin', 'show', 'STS_010', '--svg', svg, '--data-dir', site);
    assert.equal(r.code, 1, r.out + r.err);
    assert.ok(!existsSync(svg));
    assert.ok(!r.out.includes('plot:'), r.out);
    assert.match(r.err, /no plot written to .*none\.svg: patient STS_010 has no tumour measurement to plot/);
  });
});

/**
 * The calibrated band is the default: below 10 completed follow-ups the model band is shown with a
 * note; once the site has scored 10 or more earlier forecasts, show, simulate and the plot use the
 * split-conformal band, with the calibration set size and factor.
 */
describe('twinfed site twin: the calibrated band from the site’s own follow-ups', () => {
  const dir = mkdtempSync(join(tmpdir(), 'twf-site-twin-cal-'));
  const site = join(dir, 'site');
  const early = join(dir, 'early');
  const full = join(dir, 'full');
  const id = '1.427681197108524E+18';
  before(async () => {
    await initSodium();
    mkdirSync(site, { recursive: true });
    saveIdentity(join(site, 'identity.json'), generateIdentity());
    writeFileSync(
      join(site, 'site.json'),
      JSON.stringify({ coordinatorUrl: 'https://coordinator.invalid', siteId: 'site-cal', siteName: 'calibration test site', coordinatorId: 'coord', coordinatorPublicKey: 'A'.repeat(44) }),
    );
    // The real excerpt (3 patients of Study 2), first with each patient's first 3 visits only, then in full.
    const text = readFileSync(join(ROOT, 'examples/twin-longitudinal/laleh-study2-excerpt.csv'), 'utf8').trim().split('\n');
    const seen = new Map<string, number>();
    const head = text.slice(1).filter((l) => {
      const p = l.split(',')[0];
      seen.set(p, (seen.get(p) ?? 0) + 1);
      return seen.get(p)! <= 3;
    });
    mkdirSync(early);
    mkdirSync(full);
    writeFileSync(join(early, 'early.csv'), [text[0], ...head].join('\n') + '\n');
    writeFileSync(join(full, 'all.csv'), text.join('\n') + '\n');
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('without completed follow-ups: the model band, and a note that says so', () => {
    assert.equal(twinfed('site', 'import', early, '--data-dir', site).code, 0);
    const r = twinfed('site', 'twin', 'show', id, '--data-dir', site, '--json');
    assert.equal(r.code, 0, r.err);
    const j = JSON.parse(r.out) as { calibration: { n: number; applied: boolean; note: string }; pendingForecasts: { lower90Mm3: number; modelLower90Mm3: number; band: string }[] };
    assert.deepEqual([j.calibration.n, j.calibration.applied], [0, false]);
    assert.match(j.calibration.note, /model band, not calibrated: this site has 0 completed follow-ups, calibration needs at least 10/);
    assert.ok(j.pendingForecasts.length > 0 && j.pendingForecasts.every((p) => p.band === 'model' && p.lower90Mm3 === p.modelLower90Mm3));
  });

  it('with the later visits scored: show, simulate and the plot use the calibrated band with n and factor', () => {
    assert.equal(twinfed('site', 'import', full, '--data-dir', site).code, 0);
    const r = twinfed('site', 'twin', 'show', id, '--data-dir', site, '--json');
    assert.equal(r.code, 0, r.err);
    const j = JSON.parse(r.out) as {
      calibration: { n: number; factor: number; applied: boolean };
      scoredForecasts: unknown[];
      pendingForecasts: { predictedMm3: number; lower90Mm3: number; upper90Mm3: number; modelLower90Mm3: number; modelUpper90Mm3: number; band: string }[];
    };
    assert.equal(j.calibration.applied, true);
    assert.ok(j.calibration.n >= 10, `${j.calibration.n} follow-ups`);
    assert.ok(Number.isFinite(j.calibration.factor) && j.calibration.factor > 0);
    for (const p of j.pendingForecasts) {
      assert.equal(p.band, 'calibrated');
      // widened (factor > 1) or narrowed around the same median on the diameter scale
      const g = (v: number) => Math.cbrt(v);
      const ratio = g(p.modelUpper90Mm3) - g(p.predictedMm3) > 0 ? (g(p.upper90Mm3) - g(p.predictedMm3)) / (g(p.modelUpper90Mm3) - g(p.predictedMm3)) : 1;
      assert.ok(Math.abs(ratio - j.calibration.factor) < 1e-6 || ratio === 1, `upper widened by ${ratio}, factor ${j.calibration.factor}`);
    }
    const text = twinfed('site', 'twin', 'show', id, '--data-dir', site);
    assert.match(text.out, new RegExp(`90% band: calibrated on ${j.calibration.n} completed follow-ups at this site \\(split conformal, factor ${j.calibration.factor.toFixed(2)}\\)`));
    const sim = twinfed('site', 'twin', 'simulate', id, '--schedule', 'examples/twin-longitudinal/whatif.json', '--data-dir', site, '--json');
    assert.equal(sim.code, 0, sim.err);
    assert.equal((JSON.parse(sim.out) as { calibration: { applied: boolean } }).calibration.applied, true);
    const svg = join(dir, 'cal.svg');
    assert.equal(twinfed('site', 'twin', 'show', id, '--svg', svg, '--data-dir', site).code, 0);
    assert.match(readFileSync(svg, 'utf8'), /calibrated \(n = \d+, factor \d/);
  });
});
