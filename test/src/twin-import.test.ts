import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import type { Coordinator } from '@twinfed/coordinator';
import { TwinService, importPath, openSiteStore } from '@twinfed/site-node';
import { enrolNewSite, startCoordinator, tempDir } from './harness.js';

const FIX = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../fixtures');
const BIN = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../cli/dist/bin.js');
const twinfed = (...args: string[]) =>
  new Promise<{ code: number | null; out: string; err: string }>((res) => {
    execFile(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 60_000 }, (e, out, err) => res({ code: e ? (typeof e.code === 'number' ? e.code : null) : 0, out, err }));
  });

/**
 * The site's twin store: real files in, one transaction per file, a per-file
 * report, idempotent re-import, and a twin that scores its own forecasts.
 */
describe('site import and the patient twin', () => {
  const tmp = tempDir('twin');
  let c: Coordinator;
  let store: Awaited<ReturnType<typeof openSiteStore>>;
  const count = (table: string) => (store.db.$client.prepare(`select count(*) n from ${table}`).get() as { n: number }).n;

  before(async () => {
    const s = await startCoordinator(join(tmp.dir, 'c'));
    c = s.c;
    await enrolNewSite(s.url, join(tmp.dir, 'site'), 'Twin site');
    store = await openSiteStore(join(tmp.dir, 'site'));
  });
  after(async () => {
    store?.close();
    await c?.close();
    tmp.cleanup();
  });

  it('imports a DICOM series with its RTSTRUCT, and the same patient as NIfTI: tumour volumes agree', async () => {
    const dcm = await importPath(store.db, store.audit, join(FIX, 'formats/ibsi_sts_dicom/STS_002/PET'), { day: 0, refit: false });
    const imported = dcm.rows.filter((r) => r.status === 'imported');
    assert.equal(imported.length, 1, JSON.stringify(dcm.rows));
    const nii = await importPath(store.db, store.audit, resolve(FIX, '../examples/sts-pet/STS_002'), { patient: 'STS_002-nifti', day: 0, refit: false });
    assert.equal(nii.rows.filter((r) => r.status === 'imported').length, 1, JSON.stringify(nii.rows));
    const vols = store.db.$client.prepare('select m.volume_mm3 v, s.format f from masks m join imaging_series s on s.id = m.series_id').all() as { v: number; f: string }[];
    const fromDicom = vols.find((x) => x.f === 'dicom')!.v;
    const fromNifti = vols.find((x) => x.f === 'nifti1')!.v;
    assert.ok(Math.abs(fromDicom - fromNifti) / fromNifti < 0.05, `RTSTRUCT ${fromDicom} mm³ vs NIfTI mask ${fromNifti} mm³`);

    // Radiomics were computed at import for both masks and are part of the twin record; the
    // two routes to the same tumour give close shape and intensity features.
    const twin = new TwinService(store.db, store.audit);
    const [rd] = twin.radiomics(imported[0].patientId!);
    const [rn] = twin.radiomics('STS_002-nifti');
    assert.ok(rd && rn, 'both imports carry radiomics');
    assert.equal(rd.modality, 'PET');
    assert.ok(Object.keys(rn.features).length > 150, `${Object.keys(rn.features).length} features`);
    for (const tag of ['morph_volume', 'stat_mean', 'stat_max']) {
      const a = rd.features[tag]!;
      const b = rn.features[tag]!;
      assert.ok(Math.abs(a - b) / Math.abs(b) < 0.1, `${tag}: DICOM/RTSTRUCT ${a} vs NIfTI ${b}`);
    }
  });

  it('reports a truncated and a corrupted file, stores nothing of them, and imports the rest', async () => {
    const dir = join(tmp.dir, 'mixed');
    mkdirSync(dir);
    const ct = readFileSync(join(FIX, 'formats/pydicom/CT_small.dcm'));
    writeFileSync(join(dir, 'truncated.dcm'), ct.subarray(0, Math.floor(ct.length / 2)));
    const nii = gzipSync(readFileSync(join(FIX, 'formats/nibabel/anatomical.nii')));
    nii[Math.floor(nii.length / 2)] ^= 0xff;
    nii[Math.floor(nii.length / 2) + 1] ^= 0xff;
    writeFileSync(join(dir, 'corrupt.nii.gz'), nii);
    copyFileSync(join(FIX, 'formats/nibabel/example_nifti2.nii.gz'), join(dir, 'good_nifti2.nii.gz'));
    const before = count('imaging_series');
    const r = await importPath(store.db, store.audit, dir, { refit: false });
    const by = (name: string) => r.rows.find((x) => x.unit.includes(name) || x.detail.includes(name));
    assert.equal(by('truncated')?.status, 'failed', JSON.stringify(r.rows));
    assert.match(by('truncated')!.detail, /TWF_E_IMPORT/);
    assert.equal(by('corrupt')?.status, 'failed', JSON.stringify(r.rows));
    assert.equal(by('good_nifti2')?.status, 'imported');
    assert.equal(count('imaging_series'), before + 1, 'only the good file was stored');
    const again = await importPath(store.db, store.audit, dir, { refit: false });
    assert.equal(again.rows.find((x) => x.unit.includes('good_nifti2'))?.status, 'unchanged');
    assert.equal(count('imaging_series'), before + 1, 're-import is idempotent');
  });

  it('site import --max-voxels: a file over the flag fails with TWF_E_IMPORT_TOO_LARGE naming it (exit 3); a bad value is a usage error', async () => {
    const file = join(FIX, 'formats/nibabel/anatomical.nii'); // 33 x 41 x 25 = 33825 voxels
    const before = count('imaging_series');
    const r = await twinfed('site', 'import', file, '--data-dir', join(tmp.dir, 'site'), '--max-voxels', '33824', '--no-refit', '--json');
    assert.equal(r.code, 3, r.err);
    const rows = (JSON.parse(r.out.trim().split('\n').pop()!) as { rows: { status: string; detail: string }[] }).rows;
    assert.equal(rows[0].status, 'failed');
    assert.match(rows[0].detail, /^TWF_E_IMPORT_TOO_LARGE: .*voxels: dims 33x41x25 = 33825 voxels, more than the limit of 33824 voxels.*--max-voxels/);
    assert.equal(count('imaging_series'), before, 'nothing stored');
    const bad = await twinfed('site', 'import', file, '--data-dir', join(tmp.dir, 'site'), '--max-decompressed-mib', '0');
    assert.notEqual(bad.code, 0);
    assert.match(bad.err, /--max-decompressed-mib.*expected a positive number/);
  });

  it('refits the twin when a new time point arrives and records how its forecast for that day did', async () => {
    const csv = readFileSync(join(FIX, 'growth-laleh2022/Study2.csv'), 'utf8').split('\n');
    const pid = '3.6453858311503462E+18';
    const rows = csv.filter((l) => l.startsWith(`${pid},`));
    assert.ok(rows.length >= 9);
    writeFileSync(join(tmp.dir, 'early.csv'), [csv[0], ...rows.slice(0, 6)].join('\n'));
    writeFileSync(join(tmp.dir, 'later.csv'), [csv[0], ...rows.slice(0, 7)].join('\n'));
    const first = await importPath(store.db, store.audit, join(tmp.dir, 'early.csv'));
    assert.equal(first.refits[0].points, 6);
    assert.ok(first.refits[0].selected);
    assert.deepEqual(first.refits[0].scored, []);
    const twin = new TwinService(store.db, store.audit);
    assert.equal(twin.pendingForecasts(pid).length, 3, 'forecasts recorded for the coming days');
    const second = await importPath(store.db, store.audit, join(tmp.dir, 'later.csv'));
    const r = second.refits.find((x) => x.patientId === pid)!;
    assert.equal(r.points, 7);
    assert.equal(r.scored.length, 1, 'the new day was scored against the earlier forecast');
    const newDay = Number(rows[6].split(',')[1]);
    assert.equal(r.scored[0].day, newDay);
    const sheet = twin.scoreSheet(pid);
    assert.equal(sheet.length, 1);
    assert.ok(sheet[0].absErrorNorm! >= 0 && typeof sheet[0].inside90 === 'boolean');
    assert.ok(store.audit.entries().some((e) => e.action === 'twin.refit' && e.detail!.includes('scored 1 earlier forecast')));
  });

  it('what-if: adding radiotherapy to the plan predicts less tumour than the plan alone, with uncertainty bands', () => {
    const twin = new TwinService(store.db, store.audit);
    const pid = '3.6453858311503462E+18';
    const lastDay = Math.max(...twin.observations(pid).days);
    const r = twin.simulate(pid, { asPlanned: {}, rt: { radiotherapy: [{ dayStart: lastDay + 5, fractions: 10, doseGyPerFraction: 3 }] } }, 90);
    const end = r.alternatives.asPlanned.days.length - 1;
    assert.ok(r.alternatives.rt.median[end] < r.alternatives.asPlanned.median[end]);
    assert.ok(r.alternatives.rt.lower[end] <= r.alternatives.rt.median[end] && r.alternatives.rt.median[end] <= r.alternatives.rt.upper[end]);
  });
});
