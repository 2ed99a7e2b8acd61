import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, describe, it } from 'node:test';
import { readNiftiImage, readNrrdImage } from '@twinfed/shared/imaging/index';
import { extractRadiomics, parseRadiomicsSettings } from '@twinfed/shared/radiomics/index';

const here = fileURLToPath(new URL('.', import.meta.url));
const BIN = resolve(here, 'bin.js');
const FIX = resolve(here, '../../fixtures');
const PHANTOM = join(FIX, 'ibsi-phantom/nifti');
const twinfed = (...args: string[]) =>
  new Promise<{ code: number | null; out: string; err: string }>((res) => {
    execFile(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 120_000 }, (e, out, err) => res({ code: e ? (typeof e.code === 'number' ? e.code : null) : 0, out, err }));
  });

describe('twinfed radiomics extract', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'twf-radiomics-'));
  after(() => rmSync(tmp, { recursive: true, force: true }));

  it('--json prints one object tag -> value, the same numbers as the library, on the IBSI phantom', async () => {
    const settingsFile = join(FIX, 'radiomics/ibsi-phantom.json');
    const r = await twinfed('radiomics', 'extract', '--image', join(PHANTOM, 'image/phantom.nii.gz'), '--mask', join(PHANTOM, 'mask/mask.nii.gz'), '--settings', settingsFile, '--json');
    assert.equal(r.code, 0, r.err);
    const out = JSON.parse(r.out) as Record<string, number>;
    const image = readNiftiImage(readFileSync(join(PHANTOM, 'image/phantom.nii.gz')));
    const mask = readNiftiImage(readFileSync(join(PHANTOM, 'mask/mask.nii.gz')));
    const lib = extractRadiomics(image, mask, parseRadiomicsSettings(JSON.parse(readFileSync(settingsFile, 'utf8')))).features;
    assert.deepEqual(Object.keys(out), Object.keys(lib));
    for (const [tag, v] of Object.entries(lib)) assert.equal(out[tag], v, tag);
    assert.equal(out.morph_vol_approx, 74 * 8, '74 phantom voxels of 2 x 2 x 2 mm');
    assert.equal(out.stat_max, 6);
  });

  it('text output lists tags with values; default settings are the PyRadiomics-like file, 3D texture only', async () => {
    const image = join(FIX, 'pyradiomics-cases/breast1_image.nrrd');
    const label = join(FIX, 'pyradiomics-cases/breast1_label.nrrd');
    const text = await twinfed('radiomics', 'extract', '--image', image, '--mask', label);
    assert.equal(text.code, 0, text.err);
    assert.match(text.out, /^morph_volume\s+\d+(\.\d+)?$/m);
    const dflt = JSON.parse((await twinfed('radiomics', 'extract', '--image', image, '--mask', label, '--json')).out) as Record<string, number>;
    const file = JSON.parse((await twinfed('radiomics', 'extract', '--image', image, '--mask', label, '--json', '--settings', join(FIX, 'radiomics/pyradiomics-default.json'))).out) as Record<
      string,
      number
    >;
    assert.deepEqual(dflt, file);
    const tags = Object.keys(dflt);
    assert.ok(
      tags.every((t) => !/_2D|_2_5D/.test(t)),
      'no 2D / 2.5D aggregations',
    );
    // Approximate volume = labelled voxels x voxel volume, counted here from the label file.
    const m = readNrrdImage(readFileSync(label));
    const n = m.data.reduce((a, v) => a + (v !== 0 ? 1 : 0), 0);
    const voxelMm3 = m.spacingMm[0] * m.spacingMm[1] * m.spacingMm[2];
    assert.ok(Math.abs(dflt.morph_vol_approx - n * voxelMm3) < 1e-6 * n * voxelMm3);
    // The mesh lies within the voxels' outer faces: its volume is below the voxel volume but not far below.
    assert.ok(dflt.morph_volume < dflt.morph_vol_approx && dflt.morph_volume > 0.8 * dflt.morph_vol_approx);
  });

  it('errors say what is wrong: mask on another grid, missing label, bad settings, missing file', async () => {
    const grid = await twinfed('radiomics', 'extract', '--image', join(PHANTOM, 'image/phantom.nii.gz'), '--mask', join(FIX, 'pyradiomics-cases/breast1_label.nrrd'));
    assert.equal(grid.code, 1);
    assert.match(grid.err, /TWF_E_RADIOMICS_GRID: image and mask grids differ: dims 5x4x4 vs 45x120x21/);
    const label = await twinfed('radiomics', 'extract', '--image', join(PHANTOM, 'image/phantom.nii.gz'), '--mask', join(PHANTOM, 'mask/mask.nii.gz'), '--label', '7');
    assert.equal(label.code, 1);
    assert.match(label.err, /TWF_E_RADIOMICS_EMPTY_ROI: .*no voxel with label 7/);
    const bad = join(tmp, 'bad.json');
    writeFileSync(bad, JSON.stringify({ discretisation: { method: 'fbn', bins: 0 } }));
    const settings = await twinfed('radiomics', 'extract', '--image', join(PHANTOM, 'image/phantom.nii.gz'), '--mask', join(PHANTOM, 'mask/mask.nii.gz'), '--settings', bad);
    assert.equal(settings.code, 1);
    assert.match(settings.err, /TWF_E_RADIOMICS_SETTINGS: .*bad\.json: discretisation\.bins/);
    const missing = await twinfed('radiomics', 'extract', '--image', join(tmp, 'nope.nii.gz'), '--mask', join(PHANTOM, 'mask/mask.nii.gz'));
    assert.equal(missing.code, 1);
    assert.match(missing.err, /TWF_E_RADIOMICS_FILE: cannot read the image .*nope\.nii\.gz/);
  });
});
