import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import {
  ImagingError,
  checkMaskVoxels,
  importLimits,
  fillPolygonEvenOdd,
  longestDiameter,
  longestDiameterMm,
  maskVolumeMm3,
  maskVoxelCount,
  parseRtStruct,
  readDicomSeries,
  readNiftiImage,
  rtStructToMasks,
  type ImageVolume,
} from './index.js';

const here = path.dirname(fileURLToPath(import.meta.url));
// The project's own copies of the real test files (fixtures/README.md lists sources and licences).
const DATA = path.resolve(here, '../../../fixtures');
const read = (rel: string) => readFileSync(path.join(DATA ?? '', rel));

describe('RTSTRUCT', () => {
  for (const [mod, roiName] of [
    ['PET', 'GTV_Mass_PET'],
    ['MR_T1', 'GTV_Mass_MR_T1'],
  ] as const) {
    it(`STS_002 ${mod}: rasterised GTV volume matches the NIfTI mask within 3%`, () => {
      const dir = `formats/ibsi_sts_dicom/STS_002/${mod}`;
      const image = readDicomSeries(readdirSync(path.join(DATA!, dir, 'image')).map((n) => ({ name: n, bytes: read(`${dir}/image/${n}`) })));
      const rt = parseRtStruct(read(`${dir}/mask/RS.dcm`), `${dir}/mask/RS.dcm`);
      assert.equal(rt.rois.length, 1);
      assert.equal(rt.rois[0].name, roiName);
      assert.equal(rt.rois[0].contours.length, 16);
      assert.ok(rt.referencedSeriesUids.includes(image.seriesUid!));
      const [mask] = rtStructToMasks(rt, image);
      assert.deepEqual(mask.labels, [{ value: 1, name: roiName }]);
      const nii = readNiftiImage(read(`sts/nifti/STS_002/${mod}_mask.nii.gz`), `${mod}_mask.nii.gz`);
      const vRt = maskVolumeMm3(mask);
      const vNii = maskVolumeMm3(nii);
      assert.ok(Math.abs(vRt / vNii - 1) < 0.03, `${mod}: RTSTRUCT ${vRt.toFixed(1)} mm³ vs NIfTI ${vNii.toFixed(1)} mm³`);
      let both = 0;
      for (let i = 0; i < nii.data.length; i++) if (nii.data[i] > 0 && mask.data[i] > 0) both++;
      const dice = (2 * both) / (maskVoxelCount(mask) + maskVoxelCount(nii));
      assert.ok(dice > 0.95, `Dice ${dice}`);
      const d = longestDiameterMm(mask);
      assert.ok(Math.abs(d - longestDiameterMm(nii)) < 1 && d > 30 && d < 100, `in-plane diameter ${d}`);
      assert.ok(longestDiameterMm(mask, '3d') >= d);
    });
  }

  it('pydicom rtstruct.dcm (no preamble, implicit VR): ROI names/numbers, point ROIs skipped when rasterising', () => {
    const rt = parseRtStruct(read('formats/pydicom/rtstruct.dcm'), 'rtstruct.dcm');
    assert.deepEqual(
      rt.rois.map((r) => [r.number, r.name]),
      [
        [1, 'patient'],
        [2, 'Isocenter 1'],
        [3, 'Isocenter 2'],
      ],
    );
    assert.equal(rt.rois[0].contours[0].points.length, 15);
    assert.equal(rt.rois[1].contours[0].geometricType, 'POINT');
    // A 40x30x3 grid, 10 mm voxels, centred on the patient contour planes z = -200, -190, -180.
    const grid: ImageVolume = {
      dims: [40, 30, 3],
      spacingMm: [10, 10, 10],
      originMm: [-195, -145, -200],
      direction: [1, 0, 0, 0, 1, 0, 0, 0, 1],
      data: new Float32Array(3600),
      source: { format: 'dicom', files: [] },
    };
    const masks = rtStructToMasks(rt, grid, { ignoreFrameOfReference: true });
    assert.equal(masks.length, 1);
    // Contour 1 is the rectangle x -200..200, y -150..150: all 40x30 centres inside.
    assert.equal(maskVoxelCount({ ...masks[0], data: masks[0].data.subarray(0, 1200) }), 1200);
  });
});

describe('RTSTRUCT import limits', () => {
  const tooLarge = (what: RegExp) => (e: unknown) => e instanceof ImagingError && e.code === 'TWF_E_IMPORT_TOO_LARGE' && what.test(e.message);
  const dir = 'formats/ibsi_sts_dicom/STS_002/PET';
  const rs = () => read(`${dir}/mask/RS.dcm`);

  it('contour points are counted before any is parsed: one over maxContourPoints is refused', () => {
    const rt = parseRtStruct(rs(), 'RS.dcm');
    const points = rt.rois.reduce((n, r) => n + r.contours.reduce((m, c) => m + c.points.length / 3, 0), 0);
    assert.ok(points > 100, `${points} points`);
    assert.equal(parseRtStruct(rs(), 'RS.dcm', { maxContourPoints: points }).rois[0].contours.length, 16);
    assert.throws(
      () => parseRtStruct(rs(), 'RS.dcm', { maxContourPoints: points - 1 }),
      tooLarge(new RegExp(`contour points: ${points} contour points, more than the limit of ${points - 1} per RTSTRUCT.*--max-contour-points`)),
    );
  });

  it('ROIs x grid voxels beyond maxMaskVoxels is refused before the first mask is made, across the RTSTRUCTs of a series', () => {
    const image = readDicomSeries(readdirSync(path.join(DATA!, dir, 'image')).map((n) => ({ name: n, bytes: read(`${dir}/image/${n}`) })));
    const rt = parseRtStruct(rs(), 'RS.dcm');
    const grid = image.dims[0] * image.dims[1] * image.dims[2];
    assert.equal(rtStructToMasks(rt, image, { limits: { maxMaskVoxels: grid } }).length, 1);
    assert.throws(() => rtStructToMasks(rt, image, { limits: { maxMaskVoxels: grid - 1 } }), tooLarge(/mask voxels: 1 ROIs x 30x27x48 grid = 38880 mask voxels.*--max-mask-voxels/));
    assert.throws(() => checkMaskVoxels([rt, rt], image, importLimits({ maxMaskVoxels: grid })), tooLarge(/2 ROIs x 30x27x48 grid/));
  });
});

describe('rasterisation and measurements (made here)', () => {
  it('even-odd fill with a hole, pixel centres', () => {
    const out = new Uint8Array(100);
    fillPolygonEvenOdd(Float64Array.from([0.5, 8.5, 8.5, 0.5]), Float64Array.from([0.5, 0.5, 8.5, 8.5]), 10, 10, out); // 8x8 centres 1..8
    fillPolygonEvenOdd(Float64Array.from([2.5, 6.5, 6.5, 2.5]), Float64Array.from([2.5, 2.5, 6.5, 6.5]), 10, 10, out); // XOR 4x4 hole
    assert.equal(
      out.reduce((a, b) => a + b, 0),
      64 - 16,
    );
    assert.equal(out[4 + 10 * 4], 0);
    assert.equal(out[1 + 10 * 1], 1);
  });

  it('volume and longest diameters of a box; largest component only', () => {
    const dims: [number, number, number] = [20, 10, 5];
    const data = new Float32Array(1000);
    for (let z = 1; z < 4; z++) for (let y = 2; y < 6; y++) for (let x = 1; x < 11; x++) data[x + 20 * (y + 10 * z)] = 1; // 10x4x3 box
    data[19 + 20 * (9 + 10 * 4)] = 1; // far single voxel: another component
    const m = { dims, spacingMm: [1, 2, 3] as [number, number, number], originMm: [0, 0, 0] as [number, number, number], direction: [1, 0, 0, 0, 1, 0, 0, 0, 1], data };
    assert.equal(maskVolumeMm3(m), 121 * 6);
    assert.ok(Math.abs(longestDiameterMm(m) - Math.hypot(9, 3 * 2)) < 1e-9);
    assert.ok(Math.abs(longestDiameterMm(m, '3d') - Math.hypot(9, 6, 6)) < 1e-9);
    assert.equal(longestDiameter(m, '3d').from.length, 3);
    assert.equal(longestDiameterMm({ ...m, data: new Float32Array(1000) }), 0);
  });
});
