import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { AuditLog } from '@twinfed/shared/audit/index';
import { generateIdentity } from '@twinfed/shared/crypto/identity';
import { initSodium } from '@twinfed/shared/crypto/sodium';
import { readNiftiImage } from '@twinfed/shared/imaging/index';
import { openSiteDb, type SiteDb } from '../db/index.js';
import { importPath } from './index.js';
import { radiomicsForMask } from './radiomics.js';

// Real PET + tumour mask of one soft-tissue sarcoma patient, kept in the repository (examples/sts-pet, CC BY 3.0).
const STS_010 = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../../examples/sts-pet/STS_010');

describe('radiomics at import', () => {
  const dir = mkdtempSync(join(tmpdir(), 'twf-import-radiomics-'));
  let db: SiteDb;
  let audit: AuditLog;
  before(async () => {
    await initSodium();
    const id = generateIdentity();
    db = openSiteDb(join(dir, 'site.db'));
    audit = new AuditLog(db, 'site-test', id.ed25519SecretKey, id.ed25519PublicKey);
  });
  after(() => {
    db?.$client.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const rows = (patient: string) =>
    db.$client.prepare('select r.tag, r.value, r.settings, r.mask_id maskId from radiomics_features r where r.patient_id = ?').all(patient) as {
      tag: string;
      value: number | null;
      settings: string;
      maskId: number;
    }[];

  it('an imported PET mask gets its IBSI features, stored once per tag and linked to the mask row', async () => {
    const r = await importPath(db, audit, STS_010, { patient: 'P1', day: 0, refit: false });
    assert.equal(r.rows.filter((x) => x.status === 'imported').length, 1, JSON.stringify(r.rows));
    assert.match(r.rows[0].detail, /radiomics features \(pyradiomics-default-pet\)/);
    const f = rows('P1');
    const byTag = new Map(f.map((x) => [x.tag, x.value]));
    assert.equal(byTag.size, f.length, 'one row per tag');
    for (const fam of ['morph_', 'loc_', 'stat_', 'ih_', 'ivh_', 'cm_', 'rlm_', 'szm_', 'dzm_', 'ngt_', 'ngl_'])
      assert.ok(
        f.some((x) => x.tag.startsWith(fam)),
        fam,
      );
    assert.ok(f.every((x) => x.settings === 'pyradiomics-default-pet'));
    const mask = db.$client.prepare('select id, voxels, volume_mm3 v from masks').get() as { id: number; voxels: number; v: number };
    assert.ok(f.every((x) => x.maskId === mask.id));
    // Cross-checks against independent code paths: the mask table's volume (imaging/measure) and the image itself.
    assert.ok(Math.abs(byTag.get('morph_vol_approx')! - mask.v) < 1e-6 * mask.v);
    const image = readNiftiImage(readFileSync(join(STS_010, 'PET_image.nii.gz')));
    const m = readNiftiImage(readFileSync(join(STS_010, 'PET_mask.nii.gz')));
    let max = -Infinity,
      n = 0;
    m.data.forEach((v, q) => {
      if (v) {
        n++;
        max = Math.max(max, image.data[q]);
      }
    });
    assert.equal(n, mask.voxels);
    assert.ok(Math.abs(byTag.get('stat_max')! - max) < 1e-6 * Math.abs(max));
    // PET in SUV with bin width 0.25: more than one grey level, so texture is not degenerate.
    assert.ok(byTag.get('ih_max')! > 4, `ih_max ${byTag.get('ih_max')}`);
  });

  it('a ROI the features cannot handle gives a reason instead of an exception', () => {
    const grid = {
      spacingMm: [1, 1, 1] as [number, number, number],
      originMm: [0, 0, 0] as [number, number, number],
      direction: [1, 0, 0, 0, 1, 0, 0, 0, 1],
      source: { format: 'nifti1' as const, files: [] },
    };
    // MR-like intensities over 0..100000: bin width 25 gives 4000 grey levels, more than the texture matrices take.
    const image = { ...grid, dims: [4, 4, 4] as [number, number, number], data: Float32Array.from({ length: 64 }, (_, i) => (i * 100000) / 63) };
    const mask = { ...grid, dims: [4, 4, 4] as [number, number, number], data: new Float32Array(64).fill(1), labels: [] };
    const r = radiomicsForMask(image, mask, 1, 'MR');
    assert.equal(r.ok, false);
    assert.match((r as { reason: string }).reason, /TWF_E_TEXTURE/);
    const offGrid = radiomicsForMask(image, { ...mask, spacingMm: [2, 2, 2] }, 1, 'MR');
    assert.match((offGrid as { reason: string }).reason, /TWF_E_RADIOMICS_GRID/);
  });

  it('re-importing the same bytes adds nothing; radiomics: false skips the features', async () => {
    const before = rows('P1').length;
    const again = await importPath(db, audit, STS_010, { patient: 'P1', day: 0, refit: false });
    assert.equal(again.rows[0].status, 'unchanged');
    assert.equal(rows('P1').length, before);
    const dir2 = mkdtempSync(join(tmpdir(), 'twf-import-radiomics-db2-'));
    try {
      const db2 = openSiteDb(join(dir2, 'site.db'));
      const id = generateIdentity();
      const r = await importPath(db2, new AuditLog(db2, 'site-2', id.ed25519SecretKey, id.ed25519PublicKey), STS_010, { patient: 'P2', day: 0, refit: false, radiomics: false });
      assert.equal(r.rows[0].status, 'imported');
      assert.equal((db2.$client.prepare('select count(*) n from radiomics_features').get() as { n: number }).n, 0);
      assert.equal((db2.$client.prepare('select count(*) n from masks').get() as { n: number }).n, 1);
      db2.$client.close();
    } finally {
      rmSync(dir2, { recursive: true, force: true });
    }
  });
});
