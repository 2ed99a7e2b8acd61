import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { after, before, describe, it } from 'node:test';
import { AuditLog } from '@twinfed/shared/audit/index';
import { generateIdentity } from '@twinfed/shared/crypto/identity';
import { initSodium } from '@twinfed/shared/crypto/sodium';
import { gzipZeros, niftiGz, nrrdGz } from '@twinfed/shared/imaging/bombs';
import { openSiteDb, type SiteDb } from '../db/index.js';
import { importPath } from './index.js';

const HERE = fileURLToPath(new URL('.', import.meta.url));
// Real PET + tumour mask of one soft-tissue sarcoma patient, kept in the repository (examples/sts-pet, CC BY 3.0).
const STS_010 = resolve(HERE, '../../../examples/sts-pet/STS_010');
const CT_SMALL = resolve(HERE, '../../../fixtures/formats/pydicom/CT_small.dcm');
const MiB = 2 ** 20;

describe('site import: files beyond the import limits', () => {
  const dir = mkdtempSync(join(tmpdir(), 'twf-import-limits-'));
  let db: SiteDb;
  let audit: AuditLog;
  let key: ReturnType<typeof generateIdentity>;
  /** A fresh site database (each test starts from empty tables). */
  const freshDb = (name: string) => {
    db?.$client.close();
    db = openSiteDb(join(dir, `${name}.db`));
    audit = new AuditLog(db, 'site-test', key.ed25519SecretKey, key.ed25519PublicKey);
  };
  const TABLES = ['twin_patients', 'timepoints', 'lesions', 'imaging_series', 'masks', 'measurements', 'radiomics_features', 'imported_files', 'seg_slices'];
  const counts = () => Object.fromEntries(TABLES.map((t) => [t, (db.$client.prepare(`select count(*) n from ${t}`).get() as { n: number }).n]));
  before(async () => {
    await initSodium();
    key = generateIdentity();
  });
  after(() => {
    db?.$client.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('limits given to importPath apply: a real patient over a lowered voxel limit fails, then imports with the default', async () => {
    freshDb('lowered');
    const r = await importPath(db, audit, STS_010, { patient: 'P-LIMIT', day: 0, refit: false, radiomics: false, limits: { maxVoxels: 1000 } });
    assert.equal(r.rows[0].status, 'failed', JSON.stringify(r.rows));
    assert.match(r.rows[0].detail, /^TWF_E_IMPORT_TOO_LARGE: .*voxels: .* more than the limit of 1000 voxels.*--max-voxels/);
    assert.equal((db.$client.prepare("select count(*) n from imaging_series where patient_id = 'P-LIMIT'").get() as { n: number }).n, 0);
    const again = await importPath(db, audit, STS_010, { patient: 'P-LIMIT', day: 0, refit: false, radiomics: false });
    assert.equal(again.rows[0].status, 'imported', 'refused once, imported after: nothing of the refusal was recorded as imported');
  });

  it('a gzipped DICOM bomb is refused while the folder is scanned, and reported failed, not skipped', async () => {
    freshDb('scan');
    const inbox = join(dir, 'scan-inbox');
    mkdirSync(inbox);
    // CT_small.dcm, then 64 MiB of zeros, as one gzip stream (two members); the ratio floor lowered to 16 MiB keeps the test quick.
    writeFileSync(join(inbox, 'CT.dcm.gz'), Buffer.concat([gzipSync(readFileSync(CT_SMALL)), gzipZeros(64 * MiB)]));
    const r = await importPath(db, audit, inbox, { refit: false, radiomics: false, limits: { compressionRatioFloorBytes: 16 * MiB } });
    assert.equal(r.rows.length, 1, JSON.stringify(r.rows));
    assert.equal(r.rows[0].status, 'failed');
    assert.match(r.rows[0].detail, /^TWF_E_IMPORT_TOO_LARGE: .*CT\.dcm\.gz: compression ratio: .* inflate to more than [\d.]+ MiB \(over 200:1\).*--max-compression-ratio/);
    assert.equal(counts().imported_files, 0);
  });

  it('a folder with bombs: each is reported failed with TWF_E_IMPORT_TOO_LARGE, stores nothing, and the good patient imports', async () => {
    freshDb('bombs');
    const inbox = join(dir, 'inbox');
    const sub = (p: string) => {
      mkdirSync(join(inbox, p), { recursive: true });
      return join(inbox, p);
    };
    copyFileSync(join(STS_010, 'PET_image.nii.gz'), join(sub('GOOD'), 'PET_image.nii.gz'));
    copyFileSync(join(STS_010, 'PET_mask.nii.gz'), join(inbox, 'GOOD', 'PET_mask.nii.gz'));
    // 2048x2048x512 int16 declared, 512 MiB of zeros: about 510 KB.
    writeFileSync(join(sub('BOMB_NII'), 'PET_image.nii.gz'), niftiGz({ dims: [2048, 2048, 512], datatype: 4, bitpix: 16 }, 512 * MiB));
    writeFileSync(join(sub('BOMB_NRRD'), 'CT.nrrd'), nrrdGz([2048, 2048, 512], 'short', 512 * MiB));
    // A real image whose mask is the bomb: the pair is one unit, so the image is not stored either.
    copyFileSync(join(STS_010, 'PET_image.nii.gz'), join(sub('BOMB_MASK'), 'PET_image.nii.gz'));
    writeFileSync(join(inbox, 'BOMB_MASK', 'PET_mask.nii.gz'), niftiGz({ dims: [1024, 1024, 512], datatype: 2, bitpix: 8 }, 512 * MiB));
    // A DICOM slice whose header claims 65535 x 65535 pixels.
    const ct = Buffer.from(readFileSync(CT_SMALL));
    for (const elem of [0x10, 0x11]) ct.writeUInt16LE(65535, ct.indexOf(Buffer.from([0x28, 0x00, elem, 0x00, 0x55, 0x53, 0x02, 0x00])) + 8);
    writeFileSync(join(sub('BOMB_DICOM'), 'CT.dcm'), ct);

    const before = counts();
    const rss0 = process.memoryUsage().rss;
    const r = await importPath(db, audit, inbox, { refit: false, radiomics: false });
    const growthMiB = (process.resourceUsage().maxRSS * 1024 - rss0) / MiB;

    const row = (p: string) => r.rows.find((x) => x.unit.includes(`${p}/`) || x.unit.includes(`${p} (`));
    assert.equal(row('GOOD')?.status, 'imported', JSON.stringify(r.rows));
    for (const [p, limit] of [
      ['BOMB_NII', /voxels: dims 2048x2048x512/],
      ['BOMB_NRRD', /voxels: sizes 2048x2048x512/],
      ['BOMB_MASK', /PET_mask\.nii\.gz: voxels: dims 1024x1024x512/],
      ['BOMB_DICOM', /voxels: Columns x Rows x slices 65535x65535x1/],
    ] as const) {
      assert.equal(row(p)?.status, 'failed', `${p}: ${JSON.stringify(row(p))}`);
      assert.match(row(p)!.detail, /^TWF_E_IMPORT_TOO_LARGE: /);
      assert.match(row(p)!.detail, limit);
    }
    assert.equal(r.rows.length, 5, JSON.stringify(r.rows));
    // Only the good patient's rows were written: one series, one mask, one measurement, one imported file.
    const after = counts();
    assert.deepEqual(Object.fromEntries(TABLES.map((t) => [t, after[t] - before[t]])), {
      twin_patients: 1,
      timepoints: 1,
      lesions: 1,
      imaging_series: 1,
      masks: 1,
      measurements: 1,
      radiomics_features: 0,
      imported_files: 1,
      seg_slices: 1,
    });
    assert.deepEqual(db.$client.prepare('select distinct patient_id p from imaging_series').all(), [{ p: 'GOOD' }]);
    assert.ok(!audit.entries().some((e) => /BOMB/.test(e.detail ?? '')), 'no audit entry for a refused file');
    assert.ok(growthMiB < 512, `peak RSS grew ${growthMiB.toFixed(0)} MiB during the import`);
  });
});
