import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { describe, it } from 'node:test';
import { concatSlices, extractSlices, loadStsCase, readNifti, tumourSliceIndices, type NiftiVolume } from './index.js';

/** A minimal single-file NIfTI-1 (.nii) with int16 or float32 voxels. */
function makeNifti(opts: { dims: number[]; pixdim: number[]; datatype: 4 | 16; le: boolean; values: number[]; slope?: number; inter?: number; units?: number }): Uint8Array {
  const bytesPer = opts.datatype === 4 ? 2 : 4;
  const buf = new ArrayBuffer(352 + opts.values.length * bytesPer);
  const v = new DataView(buf);
  const le = opts.le;
  v.setInt32(0, 348, le);
  v.setInt16(40, opts.dims.length, le);
  opts.dims.forEach((d, i) => v.setInt16(42 + 2 * i, d, le));
  v.setInt16(70, opts.datatype, le);
  v.setInt16(72, bytesPer * 8, le);
  v.setFloat32(76, 1, le);
  opts.pixdim.forEach((p, i) => v.setFloat32(80 + 4 * i, p, le));
  v.setFloat32(108, 352, le);
  v.setFloat32(112, opts.slope ?? 0, le);
  v.setFloat32(116, opts.inter ?? 0, le);
  v.setUint8(123, opts.units ?? 2);
  [...'n+1\0'].forEach((c, i) => v.setUint8(344 + i, c.charCodeAt(0)));
  opts.values.forEach((x, i) => (opts.datatype === 4 ? v.setInt16(352 + 2 * i, x, le) : v.setFloat32(352 + 4 * i, x, le)));
  return new Uint8Array(buf);
}

function volume(dims: [number, number, number], f: (x: number, y: number, z: number) => number): NiftiVolume {
  const data = new Float32Array(dims[0] * dims[1] * dims[2]);
  for (let z = 0; z < dims[2]; z++)
    for (let y = 0; y < dims[1]; y++)
      for (let x = 0; x < dims[0]; x++) {
        data[x + dims[0] * (y + dims[1] * z)] = f(x, y, z);
      }
  return { dims, spacingMm: [2, 2, 3], data, datatypeCode: 16 };
}

describe('readNifti', () => {
  const values = Array.from({ length: 3 * 2 * 2 }, (_, i) => i - 4);
  for (const le of [true, false]) {
    it(`reads ${le ? 'little' : 'big'}-endian int16 with scl_slope/inter, plain and gzipped`, () => {
      const bytes = makeNifti({ dims: [3, 2, 2], pixdim: [1.5, 2, 3.25], datatype: 4, le, values, slope: 0.5, inter: 10 });
      for (const b of [bytes, new Uint8Array(gzipSync(bytes))]) {
        const vol = readNifti(b);
        assert.deepEqual(vol.dims, [3, 2, 2]);
        assert.deepEqual(vol.spacingMm, [1.5, 2, 3.25]);
        assert.deepEqual(
          [...vol.data],
          values.map((x) => x * 0.5 + 10),
        );
      }
    });
  }
  it('treats scl_slope 0 as unscaled, converts metres to mm, and reads float32', () => {
    const vol = readNifti(makeNifti({ dims: [2, 1, 1], pixdim: [0.001, 0.002, 0.003], datatype: 16, le: true, values: [1.25, -2], units: 1 }));
    assert.deepEqual([...vol.data], [1.25, -2]);
    assert.deepEqual(
      vol.spacingMm.map((s) => Math.round(s * 1000) / 1000),
      [1, 2, 3],
    );
  });
  it('accepts a Uint8Array that is a view into a larger buffer', () => {
    const inner = makeNifti({ dims: [2, 1, 1], pixdim: [1, 1, 1], datatype: 16, le: true, values: [7, 8] });
    const big = new Uint8Array(inner.length + 10);
    big.set(inner, 5);
    assert.deepEqual([...readNifti(big.subarray(5, 5 + inner.length)).data], [7, 8]);
  });
  it('rejects non-NIfTI bytes', () => {
    assert.throws(() => readNifti(new Uint8Array(400)), /not a NIfTI/);
  });
});

describe('extractSlices', () => {
  // 5 x 4 x 6 volume, tumour on z = 2..3, image value encodes (x, y, z).
  const img = volume([5, 4, 6], (x, y, z) => x + 10 * y + 100 * z);
  const msk = volume([5, 4, 6], (x, y, z) => (z >= 2 && z <= 3 && x === 2 && y === 1 ? 1 : 0));

  it('keeps tumour slices plus margins, centre-pads, and normalises SUV', () => {
    assert.deepEqual(tumourSliceIndices(msk), [2, 3]);
    const s = extractSlices(img, msk, { size: 8, marginSlices: 1, normalisation: { kind: 'fixed', scale: 1000, clip: 10 } });
    assert.equal(s.n, 4);
    assert.deepEqual([...s.z], [1, 2, 3, 4]);
    assert.equal(s.images.length, 4 * 64);
    assert.equal(s.masks.length, 4 * 64);
    // Offsets: floor((5-8)/2) = -2 in x, floor((4-8)/2) = -2 in y, so source (x, y) lands at (x+2, y+2).
    const at = (k: number, x: number, y: number) => s.images[k * 64 + y * 8 + x];
    assert.equal(at(0, 2, 2), Math.fround((0 + 0 + 100) / 1000));
    assert.equal(at(1, 6, 5), Math.fround((4 + 30 + 200) / 1000));
    assert.equal(at(0, 0, 0), 0); // padding
    assert.equal(s.masks[1 * 64 + 3 * 8 + 4], 1);
    assert.equal(
      s.masks.reduce((a, b) => a + b, 0),
      2,
    );
    assert.equal(s.maskVoxelsOutside, 0);
  });

  it('centre-crops, counts lost mask voxels, clips, and can keep all slices', () => {
    const s = extractSlices(img, msk, { size: 2, onlyTumourSlices: false, normalisation: { kind: 'fixed', scale: 100, clip: 2 } });
    assert.equal(s.n, 6);
    // Offsets floor(3/2) = 1, floor(2/2) = 1: window x 1..2, y 1..2 holds the tumour voxel (2, 1).
    assert.equal(s.maskVoxelsOutside, 0);
    assert.equal(s.images[5 * 4], 2); // (1,1,5) = 511 / 100 clipped to 2
    const corner = volume([5, 4, 6], (x, y, z) => (z === 2 && x === 0 && y === 0 ? 1 : 0));
    const t = extractSlices(img, corner, { size: 2 });
    assert.equal(t.maskVoxelsOutside, 1);
    assert.equal(
      t.masks.reduce((a, b) => a + b, 0),
      0,
    );
  });

  it('concatSlices records patients', () => {
    const a = extractSlices(img, msk, { size: 8, marginSlices: 0 });
    const c = concatSlices([a, a]);
    assert.equal(c.n, 4);
    assert.deepEqual([...c.patient], [0, 0, 1, 1]);
  });
});

// The project's own copy of the data (examples/sts-pet, CC BY 3.0), so a clone alone runs this.
const STS = fileURLToPath(new URL('../../../examples/sts-pet/STS_001', import.meta.url));

describe('real STS data', () => {
  it('reads STS_001 PET image and mask', async () => {
    const c = await loadStsCase(path.resolve(STS!));
    assert.deepEqual(c.image.dims, [41, 43, 59]);
    assert.deepEqual(
      c.image.spacingMm.map((s) => Math.round(s * 100) / 100),
      [4.69, 4.69, 3.27],
    );
    const voxels = c.mask.data.reduce((a, v) => a + (v > 0.5 ? 1 : 0), 0);
    assert.equal(voxels, 5095);
    const suvMax = c.image.data.reduce((a, v) => Math.max(a, v), 0);
    assert.ok(suvMax > 20 && suvMax < 30, `SUVmax ${suvMax}`);
    const s = extractSlices(c.image, c.mask, { size: 48, marginSlices: 2 });
    const t = tumourSliceIndices(c.mask);
    assert.equal(s.n, t.at(-1)! - t[0] + 1 + 4);
    assert.equal(s.images.length, s.n * 48 * 48);
    assert.equal(
      s.masks.reduce((a, b) => a + b, 0),
      voxels,
    );
    assert.ok(s.images.every((v) => v >= 0 && v <= 3));
  });
});
