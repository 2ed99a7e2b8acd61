import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { dice3d, hd95Mm, surfaceVoxels, thresholdBaseline, type Dims3 } from './metrics.js';

/** A box [x0,x1)×[y0,y1)×[z0,z1) in a volume. */
function box(dims: Dims3, x0: number, x1: number, y0: number, y1: number, z0: number, z1: number): Uint8Array {
  const [nx, ny, nz] = dims;
  const m = new Uint8Array(nx * ny * nz);
  for (let z = z0; z < z1; z++) for (let y = y0; y < y1; y++) for (let x = x0; x < x1; x++) m[x + nx * (y + ny * z)] = 1;
  return m;
}

describe('segmentation metrics', () => {
  const dims: Dims3 = [20, 20, 20];
  it('Dice of hand-built masks', () => {
    const a = box(dims, 0, 10, 0, 10, 0, 10); // 1000 voxels
    const b = box(dims, 5, 15, 0, 10, 0, 10); // 1000, overlap 500
    assert.equal(dice3d(a, b), 0.5);
    assert.equal(dice3d(a, a), 1);
    assert.equal(dice3d(new Uint8Array(8000), new Uint8Array(8000)), 1);
  });
  it('surface of a 3x3x3 cube is its 26 outer voxels', () => {
    assert.equal(surfaceVoxels(box(dims, 5, 8, 5, 8, 5, 8), dims).length, 26);
  });
  it('HD95 of a box shifted by 3 voxels is 3 voxel spacings (in mm)', () => {
    const a = box(dims, 2, 8, 2, 8, 2, 8);
    const b = box(dims, 5, 11, 2, 8, 2, 8);
    assert.equal(hd95Mm(a, a, dims, [1, 1, 1]), 0);
    assert.equal(hd95Mm(a, b, dims, [2, 1, 1]), 6);
    assert.equal(hd95Mm(a, new Uint8Array(a.length), dims, [1, 1, 1]), null);
  });
  it('40% SUVmax threshold recovers a synthetic hot blob and ignores a hot spot outside the box', () => {
    const [nx, ny, nz] = dims;
    const suv = new Float32Array(nx * ny * nz).fill(1);
    const truth = new Uint8Array(suv.length);
    for (let z = 0; z < nz; z++)
      for (let y = 0; y < ny; y++)
        for (let x = 0; x < nx; x++) {
          const r = Math.hypot(x - 10, y - 10, z - 10);
          const i = x + nx * (y + ny * z);
          if (r <= 4) {
            truth[i] = 1;
            suv[i] = 10 - r;
          } // SUV 6..10 inside, 1 outside
        }
    suv[0] = 50; // bladder-like hot voxel far from the lesion
    const pred = thresholdBaseline(suv, truth, dims, [2, 2, 2], { marginMm: 4 });
    assert.equal(pred[0], 0);
    assert.ok(dice3d(pred, truth) > 0.95, `dice ${dice3d(pred, truth)}`);
  });
});
