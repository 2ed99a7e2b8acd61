import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { fileDigest, loadImportUnit, maskVolumeMm3, readNiftiImage, scanFolder, sniffFormat } from './index.js';

const here = path.dirname(fileURLToPath(import.meta.url));
// The project's own copies of the real test files (fixtures/README.md lists sources and licences).
const DATA = path.resolve(here, '../../../fixtures');
const read = (rel: string) => readFileSync(path.join(DATA ?? '', rel));

describe('sniffFormat, fileDigest', () => {
  it('fileDigest is SHA-256 hex', () => {
    assert.equal(fileDigest(new TextEncoder().encode('abc')), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  });
  it('small made-up inputs', () => {
    assert.equal(sniffFormat('x.csv', new TextEncoder().encode('a,b\n1,2\n')), 'csv');
    assert.equal(sniffFormat('x.bin', new Uint8Array(10)), 'unknown');
    assert.equal(sniffFormat('x.nrrd', new TextEncoder().encode('NRRD0004\ntype: short\n')), 'nrrd');
  });
});

describe('sniffFormat and scanFolder on real files', () => {
  it('detects NIfTI-1 (both byte orders), NIfTI-2, gzip, NRRD, DICOM with and without preamble', () => {
    const cases: [string, string][] = [
      ['formats/nibabel/anatomical.nii', 'nifti'],
      ['formats/nibabel/example_nifti2.nii.gz', 'nifti'],
      ['formats/nibabel/functional.nii', 'nifti'],
      ['sts/nifti/STS_002/PET_mask.nii.gz', 'nifti'],
      ['pyradiomics-cases/brain1_image.nrrd', 'nrrd'],
      ['formats/pydicom/CT_small.dcm', 'dicom'],
      ['formats/pydicom/rtstruct.dcm', 'dicom'],
      ['growth-laleh2022/Study1.csv', 'csv'],
      ['README.md', 'unknown'],
      ['formats/nibabel/test.mgz', 'unknown'],
    ];
    for (const [rel, want] of cases) assert.equal(sniffFormat(rel, read(rel)), want, rel);
    // Only the first bytes are needed, gzip included.
    assert.equal(sniffFormat('PET_image.nii.gz', read('sts/nifti/STS_002/PET_image.nii.gz').subarray(0, 4096)), 'nifti');
  });

  it('scans a folder into units: DICOM series with their RTSTRUCT, NIfTI, NRRD; duplicates and .hdr skipped', async () => {
    const scan = await scanFolder(path.join(DATA!, 'formats'));
    const pet = scan.units.find((u) => u.kind === 'dicom-series' && u.modality === 'PT');
    const mr = scan.units.find((u) => u.kind === 'dicom-series' && u.seriesDescription?.includes('MR_T1'));
    assert.equal(pet?.files.length, 48);
    assert.equal(mr?.files.length, 35);
    assert.deepEqual(
      pet?.rtstructs?.map((f) => path.relative(DATA!, f)),
      ['formats/ibsi_sts_dicom/STS_002/PET/mask/RS.dcm'],
    );
    assert.deepEqual(
      mr?.rtstructs?.map((f) => path.relative(DATA!, f)),
      ['formats/ibsi_sts_dicom/STS_002/MR_T1/mask/RS.dcm'],
    );
    assert.ok(scan.units.some((u) => u.kind === 'nifti' && u.files[0].endsWith('anatomical.nii')));
    assert.ok(!scan.units.some((u) => u.files[0].endsWith('.hdr')));
    assert.ok(scan.skipped.some((s) => s.file.endsWith('nifti1.hdr') && /hdr\/\.img pair/.test(s.reason)));
    assert.equal(scan.skipped.filter((s) => /same SOPInstanceUID/.test(s.reason)).length, 4); // MR_small in 5 encodings
    assert.deepEqual(
      scan.unattachedRtstructs.map((f) => path.basename(f)),
      ['rtstruct.dcm'],
    );

    const { image, masks } = await loadImportUnit(pet!);
    assert.deepEqual(image.dims, [30, 27, 48]);
    assert.equal(masks.length, 1);
    const nii = readNiftiImage(read('sts/nifti/STS_002/PET_mask.nii.gz'), 'PET_mask.nii.gz');
    assert.ok(Math.abs(maskVolumeMm3(masks[0]) / maskVolumeMm3(nii) - 1) < 0.03);
  });
});
