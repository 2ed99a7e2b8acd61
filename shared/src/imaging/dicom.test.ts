import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { deflatedDicom } from './bombs.js';
import { ImagingError, dicomSeriesToVolume, parseDicomFile, readDicomSeries, readImageFile, readNiftiImage, type FileBytes } from './index.js';

const here = path.dirname(fileURLToPath(import.meta.url));
// The project's own copies of the real test files (fixtures/README.md lists sources and licences).
const DATA = path.resolve(here, '../../../fixtures');
const read = (rel: string) => readFileSync(path.join(DATA ?? '', rel));
const isImagingError = (code: string) => (e: unknown) => e instanceof ImagingError && e.code === code;
const series = (rel: string): FileBytes[] =>
  readdirSync(path.join(DATA ?? '', rel))
    .sort()
    .map((n) => ({ name: `${rel}/${n}`, bytes: read(`${rel}/${n}`) }));
/** Deterministic shuffle, so sorting cannot rely on the input order. */
const shuffled = <T>(a: T[]): T[] => {
  const out = a.slice();
  let s = 7;
  for (let i = out.length - 1; i > 0; i--) {
    s = (s * 16807) % 2147483647;
    const j = s % (i + 1);
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
};

describe('DICOM', () => {
  it('CT_small: rescale applied (HU), values match the raw int16 pixels - 1024', () => {
    const b = read('formats/pydicom/CT_small.dcm');
    const v = readImageFile('CT_small.dcm', b);
    assert.deepEqual(v.dims, [128, 128, 1]);
    assert.equal(v.modality, 'CT');
    assert.equal(v.source.transferSyntaxUid, '1.2.840.10008.1.2.1');
    let min = Infinity,
      max = -Infinity;
    for (const x of v.data) {
      min = Math.min(min, x);
      max = Math.max(max, x);
    }
    assert.ok(min >= -1100 && max <= 3100 && max > 0 && min < -500, `HU range ${min}..${max}`);
    // Independent: find the PixelData element (7FE0,0010) OW by its bytes; slope 1, intercept -1024.
    const px = b.indexOf(Buffer.from([0xe0, 0x7f, 0x10, 0x00, 0x4f, 0x57, 0, 0])) + 12;
    assert.equal(b.readUInt32LE(px - 4), 128 * 128 * 2);
    for (const i of [0, 4000, 8256, 16383]) assert.equal(v.data[i], b.readInt16LE(px + 2 * i) - 1024);
    assert.deepEqual(
      v.spacingMm.map((x) => +x.toFixed(6)),
      [0.661468, 0.661468, 5],
    );
  });

  it('MR_small: explicit LE = explicit big endian = implicit LE = RLE (decoded) pixel data', () => {
    const names = ['MR_small.dcm', 'MR_small_bigendian.dcm', 'MR_small_implicit.dcm', 'MR_small_RLE.dcm'];
    const vols = names.map((n) => readImageFile(n, read(`formats/pydicom/${n}`)));
    assert.equal(vols[1].source.littleEndian, false);
    assert.equal(vols[1].source.transferSyntaxUid, '1.2.840.10008.1.2.2');
    assert.equal(vols[2].source.transferSyntaxUid, '1.2.840.10008.1.2');
    assert.equal(vols[3].source.transferSyntaxUid, '1.2.840.10008.1.2.5');
    for (const v of vols) {
      assert.deepEqual(v.dims, [64, 64, 1]);
      assert.deepEqual(Array.from(v.data), Array.from(vols[0].data));
    }
    assert.ok(new Set(vols[0].data).size > 100);
  });

  it('Deflated Explicit VR Little Endian (made here from MR_small) gives the same pixels', () => {
    const b = read('formats/pydicom/MR_small.dcm');
    const deflated = deflatedDicom(b);
    const v = readImageFile('MR_small_deflated.dcm', deflated);
    assert.equal(v.source.transferSyntaxUid, '1.2.840.10008.1.2.1.99');
    assert.deepEqual(Array.from(v.data), Array.from(readImageFile('MR_small.dcm', b).data));
  });

  it('JPEG-LS is refused with TWF_E_IMPORT_UNSUPPORTED naming the transfer syntax', () => {
    assert.throws(
      () => readImageFile('MR_small_jpeg_ls_lossless.dcm', read('formats/pydicom/MR_small_jpeg_ls_lossless.dcm')),
      (e: unknown) => isImagingError('TWF_E_IMPORT_UNSUPPORTED')(e) && /JPEG-LS Lossless \(1\.2\.840\.10008\.1\.2\.4\.80\)/.test((e as Error).message),
    );
  });

  it('STS_002 PET series: 48 slices sorted by position whatever the file order; spacing, origin and SUVs match the NIfTI', () => {
    const files = series('formats/ibsi_sts_dicom/STS_002/PET/image');
    assert.equal(files.length, 48);
    const v = readDicomSeries(shuffled(files));
    const w = readDicomSeries(files);
    assert.deepEqual(v.source.files, w.source.files);
    assert.deepEqual(v.dims, [30, 27, 48]);
    assert.equal(v.modality, 'PT');
    // Slices ascend along the normal (z here).
    const z = v.source.files.map((f) => Number(parseDicomFile(read(f), f, { headerOnly: true }).dataSet.string('x00200032')!.split('\\')[2]));
    for (let k = 1; k < z.length; k++) assert.ok(z[k] > z[k - 1]);
    const nii = readNiftiImage(read('sts/nifti/STS_002/PET_image.nii.gz'), 'PET_image.nii.gz');
    assert.deepEqual(v.dims, nii.dims);
    v.spacingMm.forEach((s, i) => assert.ok(Math.abs(s / nii.spacingMm[i] - 1) < 0.01, `spacing ${i}: ${s} vs ${nii.spacingMm[i]}`));
    v.originMm.forEach((o, i) => assert.ok(Math.abs(o - nii.originMm[i]) < 0.01, `origin ${i}: ${o} vs ${nii.originMm[i]}`));
    let maxRel = 0;
    for (let i = 0; i < v.data.length; i++) maxRel = Math.max(maxRel, Math.abs(v.data[i] - nii.data[i]) / Math.max(1, Math.abs(nii.data[i])));
    assert.ok(maxRel < 1e-4, `per-slice RescaleSlope applied: max relative difference ${maxRel}`);
  });

  it('STS_002 MR_T1 series: 35 slices, geometry matches the NIfTI', () => {
    const v = readDicomSeries(shuffled(series('formats/ibsi_sts_dicom/STS_002/MR_T1/image')));
    const nii = readNiftiImage(read('sts/nifti/STS_002/MR_T1_image.nii.gz'), 'MR_T1_image.nii.gz');
    assert.deepEqual(v.dims, [115, 90, 35]);
    v.spacingMm.forEach((s, i) => assert.ok(Math.abs(s / nii.spacingMm[i] - 1) < 0.01));
    v.originMm.forEach((o, i) => assert.ok(Math.abs(o - nii.originMm[i]) < 0.01));
  });

  it('a missing slice is reported as non-uniform spacing (TWF_E_IMPORT_GEOMETRY) unless accepted; duplicates and mixed series are refused', () => {
    const parsed = series('formats/ibsi_sts_dicom/STS_002/PET/image').map((f) => parseDicomFile(f.bytes, f.name));
    const gap = parsed.filter((_, i) => i !== 20);
    assert.throws(
      () => dicomSeriesToVolume(gap),
      (e: unknown) => isImagingError('TWF_E_IMPORT_GEOMETRY')(e) && /not uniform/.test((e as Error).message),
    );
    const v = dicomSeriesToVolume(gap, { allowNonUniformSpacing: true });
    assert.equal(v.dims[2], 47);
    assert.match(v.warnings?.join() ?? '', /not uniform/);
    assert.throws(
      () => dicomSeriesToVolume([...parsed, parsed[3]]),
      (e: unknown) => isImagingError('TWF_E_IMPORT_GEOMETRY')(e) && /same position/.test((e as Error).message),
    );
    const mixed = [...series('formats/ibsi_sts_dicom/STS_002/PET/image'), ...series('formats/ibsi_sts_dicom/STS_002/MR_T1/image')];
    assert.throws(() => readDicomSeries(mixed), isImagingError('TWF_E_IMPORT_REFERENCE'));
    assert.equal(readDicomSeries(mixed, { seriesUid: v.seriesUid! }).dims[2], 48);
  });

  it('a truncated file (first half of CT_small) and damaged files throw ImagingError', () => {
    const b = read('formats/pydicom/CT_small.dcm');
    assert.throws(() => readImageFile('CT_small-half.dcm', b.subarray(0, b.length >> 1)), isImagingError('TWF_E_IMPORT_CORRUPT'));
    assert.throws(() => parseDicomFile(b.subarray(0, b.length >> 1), 'CT_small-half.dcm'), isImagingError('TWF_E_IMPORT_CORRUPT'));
    const rs = read('formats/ibsi_sts_dicom/STS_002/PET/mask/RS.dcm');
    assert.throws(() => parseDicomFile(rs.subarray(0, Math.floor(rs.length * 0.7)), 'RS-cut.dcm'), isImagingError('TWF_E_IMPORT_CORRUPT'));
    // Pixel data cut short by a damaged length field must not yield a partial image.
    assert.throws(() => readImageFile('CT_small-cut.dcm', b.subarray(0, b.length - 1000)), isImagingError('TWF_E_IMPORT_CORRUPT'));
    assert.throws(() => readImageFile('noise.dcm', Buffer.alloc(300, 7)), isImagingError('TWF_E_IMPORT_UNKNOWN_FORMAT'));
  });
});

describe('DICOM import limits (sizes from the header checked before allocation)', () => {
  const tooLarge = (what: RegExp) => (e: unknown) => isImagingError('TWF_E_IMPORT_TOO_LARGE')(e) && what.test((e as Error).message);
  const US = (elem: number) => Buffer.from([0x28, 0x00, elem, 0x00, 0x55, 0x53, 0x02, 0x00]); // (0028,elem) US, explicit VR LE
  /** A fixture with Rows (0028,0010), Columns (0028,0011) and optionally BitsAllocated (0028,0100) overwritten. */
  const withSize = (rel: string, rows: number, cols: number, bitsAllocated?: number) => {
    const b = Buffer.from(read(rel));
    b.writeUInt16LE(rows, b.indexOf(US(0x10)) + 8);
    b.writeUInt16LE(cols, b.indexOf(US(0x11)) + 8);
    if (bitsAllocated !== undefined) b.writeUInt16LE(bitsAllocated, b.indexOf(Buffer.from([0x28, 0x00, 0x00, 0x01, 0x55, 0x53])) + 8);
    return b;
  };

  it('Rows x Columns, x frames, x bits beyond the caps: TWF_E_IMPORT_TOO_LARGE naming the limit', () => {
    assert.throws(() => readImageFile('huge.dcm', withSize('formats/pydicom/CT_small.dcm', 65535, 65535)), tooLarge(/voxels: Columns x Rows x slices 65535x65535x1 = 4294836225 voxels.*--max-voxels/));
    // NumberOfFrames (0028,0008) IS "20000" inserted before Rows: 128 x 128 x 20000 voxels.
    const ct = read('formats/pydicom/CT_small.dcm');
    const at = ct.indexOf(US(0x10));
    const frames = Buffer.concat([ct.subarray(0, at), Buffer.from([0x28, 0x00, 0x08, 0x00, 0x49, 0x53, 0x06, 0x00]), Buffer.from('20000 ', 'latin1'), ct.subarray(at)]);
    assert.throws(() => readImageFile('frames.dcm', frames), tooLarge(/voxels: Columns x Rows x frames 128x128x20000 = 327680000 voxels/));
    // 16384 x 16384 is 2^28 voxels (at the cap); at 64 bits allocated that is 2 GiB of pixel data.
    assert.throws(
      () => readImageFile('bits.dcm', withSize('formats/pydicom/CT_small.dcm', 16384, 16384, 64)),
      tooLarge(/decompressed bytes: Columns x Rows x frames 16384x16384x1 at 64 bits is 2\.00 GiB.*--max-decompressed-mib/),
    );
    // A lowered limit applies to a real series.
    const files = series('formats/ibsi_sts_dicom/STS_002/PET/image');
    assert.throws(() => readDicomSeries(files, { limits: { maxVoxels: 30 * 27 * 47 } }), tooLarge(/voxels: Columns x Rows x slices 30x27x48 = 38880 voxels/));
  });

  it('RLE: a frame too small for its Rows x Columns is refused before the planes are allocated; a run past the frame is damage', () => {
    const t0 = performance.now();
    // 16000 x 16000 pixels pass the voxel cap, but 64 bytes of PackBits decode to at most 4096.
    assert.throws(
      () => readImageFile('rle-big.dcm', withSize('formats/pydicom/MR_small_RLE.dcm', 16000, 16000)),
      (e: unknown) => isImagingError('TWF_E_IMPORT_CORRUPT')(e) && /segment 0 holds \d+ bytes, which decode to at most \d+; the image needs 256000000/.test((e as Error).message),
    );
    assert.ok(performance.now() - t0 < 1000, 'no 1 GiB of planes was allocated and filled');
    // 63 x 63 = 3969 pixels: the encoded 64-pixel rows do not end there, so a run would write past the frame.
    assert.throws(
      () => readImageFile('rle-over.dcm', withSize('formats/pydicom/MR_small_RLE.dcm', 63, 63)),
      (e: unknown) => isImagingError('TWF_E_IMPORT_CORRUPT')(e) && /run of segment 0 would expand past the frame \(\d+ of 3969 bytes\)/.test((e as Error).message),
    );
  });

  it('a deflated data set that inflates 1000:1 past the ratio floor is refused: compression ratio', () => {
    const bomb = deflatedDicom(read('formats/pydicom/MR_small.dcm'), 24 * 2 ** 20);
    assert.ok(bomb.length < 100_000, `${bomb.length} bytes`);
    assert.throws(
      () => parseDicomFile(bomb, 'deflate-bomb.dcm', { limits: { compressionRatioFloorBytes: 8 * 2 ** 20 } }),
      tooLarge(/compression ratio: .* of deflated data inflate to more than 8\.0 MiB/),
    );
    assert.equal(parseDicomFile(bomb, 'deflate-bomb.dcm').kind, 'image', 'under the default 320 MiB floor it parses');
  });
});
