import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import { describe, it } from 'node:test';
import { ImagingError, readNiftiImage } from './index.js';

const here = path.dirname(fileURLToPath(import.meta.url));
// The project's own copies of the real test files (fixtures/README.md lists sources and licences).
const DATA = path.resolve(here, '../../../fixtures');
const read = (rel: string) => readFileSync(path.join(DATA ?? '', rel));
const isImagingError = (code: string) => (e: unknown) => e instanceof ImagingError && e.code === code;

describe('NIfTI', () => {
  it('reads big-endian NIfTI-1 anatomical.nii: dims, spacing, orientation and voxels match the raw bytes', () => {
    const b = read('formats/nibabel/anatomical.nii');
    const v = readNiftiImage(b, 'anatomical.nii');
    assert.deepEqual(v.dims, [33, 41, 25]);
    assert.deepEqual(v.spacingMm, [2, 2, 2]);
    assert.equal(v.source.format, 'nifti1');
    assert.equal(v.source.littleEndian, false);
    // Independent: header fields and int16 voxels straight from the big-endian bytes.
    assert.equal(b.readInt32BE(0), 348);
    assert.equal(b.readInt16BE(70), 4); // int16
    const voxOffset = b.readFloatBE(108);
    const slope = b.readFloatBE(112) || 1;
    const inter = b.readFloatBE(112) ? b.readFloatBE(116) : 0;
    let maxIdx = 0;
    for (let i = 0; i < v.data.length; i++) if (b.readInt16BE(voxOffset + 2 * i) > b.readInt16BE(voxOffset + 2 * maxIdx)) maxIdx = i;
    for (const [x, y, z] of [
      [0, 0, 0],
      [16, 20, 12],
      [32, 40, 24],
      [5, 33, 7],
    ]) {
      const i = x + 33 * (y + 41 * z);
      assert.equal(v.data[i], b.readInt16BE(voxOffset + 2 * i) * slope + inter, `voxel ${x},${y},${z}`);
    }
    assert.equal(v.data[maxIdx], Math.max(...v.data));
    // sform (RAS) from the raw srow, converted to LPS: negate world x and y.
    const srow = Array.from({ length: 12 }, (_, k) => b.readFloatBE(280 + 4 * k));
    assert.deepEqual(v.originMm, [-srow[3], -srow[7], srow[11]]);
    assert.deepEqual(
      v.direction.map((x) => x + 0),
      [-Math.sign(srow[0]), 0, 0, 0, -Math.sign(srow[5]), 0, 0, 0, Math.sign(srow[10])],
    );
  });

  it('qform gives the same geometry as sform (quaternion path, qfac = -1)', () => {
    const b = Buffer.from(read('formats/nibabel/anatomical.nii'));
    const ref = readNiftiImage(b, 'a.nii');
    b.writeInt16BE(0, 254); // sform_code = 0 -> qform is used
    const q = readNiftiImage(b, 'a-qform.nii');
    assert.deepEqual(q.spacingMm, ref.spacingMm);
    q.originMm.forEach((x, i) => assert.ok(Math.abs(x - ref.originMm[i]) < 1e-6));
    q.direction.forEach((x, i) => assert.ok(Math.abs(x - ref.direction[i]) < 1e-6));
  });

  it('reads NIfTI-2 (example_nifti2.nii.gz): dims, volume 0 of 2 with a warning', () => {
    const v = readNiftiImage(read('formats/nibabel/example_nifti2.nii.gz'), 'example_nifti2.nii.gz');
    assert.equal(v.source.format, 'nifti2');
    assert.deepEqual(v.dims, [32, 20, 12]);
    assert.ok(Math.abs(v.spacingMm[2] - 2.2) < 1e-4);
    assert.match(v.warnings?.join() ?? '', /volume 0 only/);
  });

  it('4D example4d.nii.gz: volume 0 is taken', () => {
    const gz = read('formats/nibabel/example4d.nii.gz');
    const v = readNiftiImage(gz, 'example4d.nii.gz');
    assert.deepEqual(v.dims, [128, 96, 24]);
    const raw = gunzipSync(gz);
    const le = raw.readInt32LE(0) === 348;
    const off = le ? raw.readFloatLE(108) : raw.readFloatBE(108);
    const n = 128 * 96 * 24;
    const at = (i: number) => (le ? raw.readInt16LE(off + 2 * i) : raw.readInt16BE(off + 2 * i));
    for (const i of [0, 1000, 150000, n - 1]) assert.equal(v.data[i], at(i));
    assert.notDeepEqual(
      Array.from(v.data.subarray(100000, 100100)),
      Array.from({ length: 100 }, (_, k) => at(n + 100000 + k)),
    );
  });

  it('standard.nii.gz dims and spacing', () => {
    const v = readNiftiImage(read('formats/nibabel/standard.nii.gz'), 'standard.nii.gz');
    assert.deepEqual(v.dims, [4, 5, 7]);
    assert.deepEqual(v.spacingMm, [1, 3, 2]);
  });

  it('STS_002 PET NIfTI: orientation converted to LPS (origin equals the DICOM ImagePositionPatient)', () => {
    const v = readNiftiImage(read('sts/nifti/STS_002/PET_image.nii.gz'), 'PET_image.nii.gz');
    assert.deepEqual(v.dims, [30, 27, 48]);
    [2.73438, 57.42188, -629.02].forEach((x, i) => assert.ok(Math.abs(v.originMm[i] - x) < 1e-3));
  });

  it('a corrupted .nii.gz, a truncated .nii.gz and a truncated .nii throw ImagingError TWF_E_IMPORT_CORRUPT', () => {
    const gz = Buffer.from(read('sts/nifti/STS_002/PET_image.nii.gz'));
    const bad = Buffer.from(gz);
    for (let i = 0; i < 16; i++) bad[Math.floor(gz.length / 2) + i] ^= 0x5a;
    assert.throws(() => readNiftiImage(bad, 'bad.nii.gz'), isImagingError('TWF_E_IMPORT_CORRUPT'));
    assert.throws(() => readNiftiImage(gz.subarray(0, gz.length >> 1), 'half.nii.gz'), isImagingError('TWF_E_IMPORT_CORRUPT'));
    const nii = read('formats/nibabel/anatomical.nii');
    assert.throws(
      () => readNiftiImage(nii.subarray(0, nii.length >> 1), 'half.nii'),
      (e: unknown) => isImagingError('TWF_E_IMPORT_CORRUPT')(e) && /truncated/.test((e as Error).message),
    );
    assert.throws(() => readNiftiImage(nii.subarray(0, 200), 'tiny.nii'), isImagingError('TWF_E_IMPORT_CORRUPT'));
  });

  it('refuses .hdr/.img pairs and Analyze headers with TWF_E_IMPORT_UNSUPPORTED', () => {
    assert.throws(() => readNiftiImage(read('formats/nibabel/nifti1.hdr'), 'nifti1.hdr'), isImagingError('TWF_E_IMPORT_UNSUPPORTED'));
    assert.throws(() => readNiftiImage(read('formats/nibabel/nifti2.hdr'), 'nifti2.hdr'), isImagingError('TWF_E_IMPORT_UNSUPPORTED'));
    assert.throws(() => readNiftiImage(read('formats/nibabel/analyze.hdr'), 'analyze.hdr'), isImagingError('TWF_E_IMPORT_UNSUPPORTED'));
    assert.throws(() => readNiftiImage(new Uint8Array(400), 'zeros.nii'), isImagingError('TWF_E_IMPORT_UNKNOWN_FORMAT'));
  });
});
