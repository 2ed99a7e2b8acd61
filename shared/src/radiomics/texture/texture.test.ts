/**
 * Tests of the IBSI texture families (IBSI reference manual arXiv:1612.07003, sections 3.6-3.11):
 * (a) the IBSI-1 digital phantom against the consensus values with IBSI's pass rule;
 * (b) small images whose matrices are worked out by hand in the comments.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { DIRECTIONS_3D, type LevelGrid, MAX_TEXTURE_LEVELS, type SizeMatrix, TextureError } from './common.js';
import { glcmFeatures, glcmMatrix } from './glcm.js';
import { distanceToRoiEdge, gldzmMatrix } from './gldzm.js';
import { glrlmFeatures, glrlmMatrix } from './glrlm.js';
import { glszmFeatures, glszmMatrix } from './glszm.js';
import { PHANTOM_DIMS, PHANTOM_IMAGE, PHANTOM_MASK, PHANTOM_SPACING_MM, PHANTOM_TEXTURE_REFERENCE } from './ibsi-phantom.fixture.js';
import { type DiscretisedRoi, textureFeatures } from './index.js';
import { ngldmFeatures, ngldmMatrices } from './ngldm.js';
import { ngtdmFeatures, ngtdmMatrices } from './ngtdm.js';

// ---------------------------------------------------------------------------------------------------------
// helpers

/** Grid from rows of grey levels, one array of rows per slice (rows are y, entries x). */
function grid(slices: number[][][], nLevels: number): LevelGrid {
  const nz = slices.length,
    ny = slices[0].length,
    nx = slices[0][0].length;
  const levels = new Int32Array(nx * ny * nz);
  for (let k = 0; k < nz; k++) for (let j = 0; j < ny; j++) for (let i = 0; i < nx; i++) levels[i + nx * (j + ny * k)] = slices[k][j][i];
  return { dims: [nx, ny, nz], levels, nLevels };
}

/** Sparse size matrix as { level: { size: count } } without zero entries, for readable assertions. */
function sparse(m: SizeMatrix): Record<number, Record<number, number>> {
  const out: Record<number, Record<number, number>> = {};
  const nS = m.sizes.length;
  for (let g = 0; g < m.nLevels; g++) {
    for (let c = 0; c < nS; c++) {
      const v = m.counts[g * nS + c];
      if (v === 0) continue;
      (out[g + 1] ??= {})[m.sizes[c]] = v;
    }
  }
  return out;
}

function close(actual: number, expected: number, what: string, tol = 1e-9): void {
  assert.ok(Math.abs(actual - expected) <= tol * Math.max(1, Math.abs(expected)), `${what}: got ${actual}, expected ${expected}`);
}

// ---------------------------------------------------------------------------------------------------------
// (a) IBSI digital phantom

function phantomRoi(): DiscretisedRoi {
  const n = PHANTOM_IMAGE.length;
  const levels = new Int32Array(n);
  const morphMask = new Uint8Array(n);
  for (let v = 0; v < n; v++) {
    morphMask[v] = PHANTOM_MASK[v];
    levels[v] = PHANTOM_MASK[v] === 1 ? PHANTOM_IMAGE[v] : 0;
  }
  // Grey levels are used as they are (no discretisation); the phantom's levels run 1..6 inside the ROI.
  return { dims: PHANTOM_DIMS, spacingMm: PHANTOM_SPACING_MM, levels, morphMask, nLevels: 6 };
}

/** IBSI pass rule: round the computed value to 3 significant figures, then |value - reference| <= tolerance. */
function passesIbsi(value: number | undefined, reference: number, tolerance: number): boolean {
  if (value === undefined || !Number.isFinite(value)) return false;
  return Math.abs(Number(value.toPrecision(3)) - reference) <= tolerance;
}

describe('IBSI digital phantom: every texture tag matches the consensus value', () => {
  const features = textureFeatures(phantomRoi());
  const families = ['cm', 'rlm', 'szm', 'dzm', 'ngt', 'ngl'];
  for (const family of families) {
    const rows = PHANTOM_TEXTURE_REFERENCE.filter(([tag]) => tag.startsWith(`${family}_`));
    it(`${family}: ${rows.length} tags`, () => {
      assert.ok(rows.length > 0);
      const failures = rows.filter(([tag, ref, tol]) => !passesIbsi(features[tag], ref, tol)).map(([tag, ref, tol]) => `${tag}: got ${features[tag]}, reference ${ref} +- ${tol}`);
      assert.deepEqual(failures, []);
    });
  }
  it('returns exactly the phantom tags (no missing, no extra keys)', () => {
    assert.deepEqual(Object.keys(features).sort(), PHANTOM_TEXTURE_REFERENCE.map(([t]) => t).sort());
  });
});

// ---------------------------------------------------------------------------------------------------------
// (b) hand-computed small cases

/**
 * 4x4 single-slice image (y down, x right) used for GLCM, GLRLM, GLSZM and GLDZM:
 *     1 2 2 3
 *     1 2 3 3
 *     4 2 4 1
 *     4 1 2 3
 */
const IMG4 = grid(
  [
    [
      [1, 2, 2, 3],
      [1, 2, 3, 3],
      [4, 2, 4, 1],
      [4, 1, 2, 3],
    ],
  ],
  4,
);

/** 2x2x2 cube: level 1 at (0,0,0) and (1,1,1), level 2 at the 6 other corners. */
const CUBE = grid(
  [
    [
      [1, 2],
      [2, 2],
    ],
    [
      [2, 2],
      [2, 1],
    ],
  ],
  2,
);

describe('GLCM (IBSI 3.6) by hand', () => {
  it('direction (1,0): symmetric counts and features', () => {
    // Ordered horizontal pairs: row0 (1,2)(2,2)(2,3); row1 (1,2)(2,3)(3,3); row2 (4,2)(2,4)(4,1);
    // row3 (4,1)(1,2)(2,3). Symmetric counts M_ij = #(i,j) + #(j,i) (diagonal counted twice):
    //   i=1: 0 3 0 2
    //   i=2: 3 2 3 2
    //   i=3: 0 3 2 0
    //   i=4: 2 2 0 0      total 24
    const m = glcmMatrix(IMG4, [1, 0, 0]);
    assert.deepEqual([...m], [0, 3, 0, 2, 3, 2, 3, 2, 0, 3, 2, 0, 2, 2, 0, 0]);
    const f = glcmFeatures(m, 4);
    assert.ok(f);
    close(f.joint_max, 3 / 24, 'joint_max'); // largest count 3
    // row sums 5, 10, 5, 4 -> joint average (5*1 + 10*2 + 5*3 + 4*4) / 24
    close(f.joint_avg, 56 / 24, 'joint_avg');
    // contrast: (i-j)^2 weights: four 3s at |i-j| = 1 -> 12; (2,4),(4,2) 2 each * 4 -> 16; (1,4),(4,1) 2 each * 9 -> 36
    close(f.contrast, 64 / 24, 'contrast');
    // energy: four 3s -> 36, six 2s -> 24; over 24^2
    close(f.energy, 60 / 576, 'energy');
    // dissimilarity: 12*1 + 4*2 + 4*3 = 32
    close(f.dissimilarity, 32 / 24, 'dissimilarity');
    // inverse variance: p_{x-y}(1) = 12/24, (2) = 4/24, (3) = 4/24 -> 12/24 + 4/24/4 + 4/24/9
    close(f.inv_var, 12 / 24 + 1 / 24 + 4 / 216, 'inv_var');
    // symmetric matrix: E[i + j] = 2 E[i]
    close(f.sum_avg, 2 * (56 / 24), 'sum_avg (= 2 * joint average for a symmetric GLCM)');
  });
  it('distance 2 along x pairs voxels two apart', () => {
    // Pairs (x, x+2): row0 (1,2)(2,3); row1 (1,3)(2,3); row2 (4,4)(2,1); row3 (4,2)(1,3): 8 pairs, 16 counts.
    const m = glcmMatrix(IMG4, [1, 0, 0], 2);
    const at = (i: number, j: number): number => m[(i - 1) * 4 + (j - 1)];
    assert.equal(at(1, 2), 2); // (1,2) + (2,1)
    assert.equal(at(2, 3), 2);
    assert.equal(at(1, 3), 2);
    assert.equal(at(4, 4), 2);
    assert.equal(at(2, 4), 1);
    assert.equal(at(3, 3), 0);
    assert.equal(
      m.reduce((a, b) => a + b, 0),
      16,
    );
  });
  it('voxels outside the ROI (level 0) take no part', () => {
    const g = grid([[[1, 0, 1]]], 1);
    assert.equal(glcmFeatures(glcmMatrix(g, [1, 0, 0]), 1), null);
  });
});

describe('GLRLM (IBSI 3.7) by hand', () => {
  it('runs along x', () => {
    // row0: 1 | 2 2 | 3     row1: 1 | 2 | 3 3     row2: 4 | 2 | 4 | 1     row3: 4 | 1 | 2 | 3
    // level 1: four runs of 1; level 2: three of 1, one of 2; level 3: two of 1, one of 2; level 4: three of 1.
    const m = glrlmMatrix(IMG4, [1, 0, 0]);
    assert.deepEqual(sparse(m), { 1: { 1: 4 }, 2: { 1: 3, 2: 1 }, 3: { 1: 2, 2: 1 }, 4: { 1: 3 } });
    assert.equal(m.nVoxels, 16);
    const f = glrlmFeatures(m);
    assert.ok(f);
    close(f.sre, (12 + 2 / 4) / 14, 'sre'); // 12 runs of 1, 2 runs of 2; N_s = 14
    close(f.lre, (12 + 2 * 4) / 14, 'lre');
    close(f.r_perc, 14 / 16, 'r_perc');
    close(f.glnu, (16 + 16 + 9 + 9) / 14, 'glnu'); // runs per level 4, 4, 3, 3
    close(f.rlnu, (144 + 4) / 14, 'rlnu'); // runs per length 12, 2
  });
  it('3D diagonal direction (1,1,1)', () => {
    // 2x2x2 cube, level 1 at (0,0,0) and (1,1,1), level 2 elsewhere. Along (1,1,1) the two level-1 voxels form
    // one run of 2; each of the 6 others is alone on its diagonal line.
    const g = CUBE;
    assert.deepEqual(sparse(glrlmMatrix(g, [1, 1, 1])), { 1: { 2: 1 }, 2: { 1: 6 } });
    // Along x: every row of the cube is (1,2), (2,2), (2,2), (2,1) -> level 1 runs 1,1; level 2: 1, 2, 2, 1.
    assert.deepEqual(sparse(glrlmMatrix(g, [1, 0, 0])), { 1: { 1: 2 }, 2: { 1: 2, 2: 2 } });
  });
});

describe('GLSZM (IBSI 3.8) by hand', () => {
  it('8-connected zones of the 4x4 image', () => {
    // level 1: {(0,0),(0,1)} size 2, (3,2) and (1,3) alone; level 2: (1,0),(2,0),(1,1),(1,2) and (2,3), which
    // touches (1,2) diagonally -> size 5; level 3: {(3,0),(2,1),(3,1)} size 3 and (3,3); level 4: {(0,2),(0,3)}
    // and (2,2).
    const m = glszmMatrix(IMG4, '2D');
    assert.deepEqual(sparse(m), { 1: { 1: 2, 2: 1 }, 2: { 5: 1 }, 3: { 1: 1, 3: 1 }, 4: { 1: 1, 2: 1 } });
    const f = glszmFeatures(m);
    assert.ok(f);
    // small zone emphasis: (2 + 1/4 + 1/25 + 1 + 1/9 + 1 + 1/4) / 8 zones
    close(f.sze, (2 + 0.25 + 0.04 + 1 + 1 / 9 + 1 + 0.25) / 8, 'sze');
    close(f.z_perc, 8 / 16, 'z_perc');
    close(f.zsnu, (16 + 4 + 1 + 1) / 8, 'zsnu'); // zones per size: 1 -> 4, 2 -> 2, 3 -> 1, 5 -> 1
  });
  it('26-connectivity joins voxels touching at a corner across slices; 2D does not', () => {
    const g = CUBE;
    assert.deepEqual(sparse(glszmMatrix(g, '3D')), { 1: { 2: 1 }, 2: { 6: 1 } });
    // 2D: each slice has one level-1 voxel and a level-2 zone of 3.
    assert.deepEqual(sparse(glszmMatrix(g, '2D')), { 1: { 1: 2 }, 2: { 3: 2 } });
  });
});

describe('GLDZM (IBSI 3.9) by hand', () => {
  it('city-block distance to the ROI edge', () => {
    // 5x5 mask with a hole at (1,1). Border voxels 1; voxels next to the hole 1; the rest 2 (the centre (2,2)
    // is 2 steps from the hole).
    const mask = Uint8Array.from([1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]);
    assert.deepEqual([...distanceToRoiEdge(mask, [5, 5, 1], '2D')], [1, 1, 1, 1, 1, 1, 0, 1, 2, 1, 1, 1, 2, 2, 1, 1, 2, 2, 2, 1, 1, 1, 1, 1, 1]);
    // Full 5x5x1: the centre is 3 steps from the grid edge in 2D, but 1 in 3D (one step out of the single slice).
    const full = new Uint8Array(25).fill(1);
    assert.equal(distanceToRoiEdge(full, [5, 5, 1], '2D')[12], 3);
    assert.equal(distanceToRoiEdge(full, [5, 5, 1], '3D')[12], 1);
    // 3x3x3 cube: only the centre voxel is at distance 2 in 3D.
    const cube = distanceToRoiEdge(new Uint8Array(27).fill(1), [3, 3, 3], '3D');
    assert.deepEqual(
      [...cube].map((d, v) => (d === 2 ? v : -1)).filter((v) => v >= 0),
      [13],
    );
  });
  it('zone distance is the smallest distance of its voxels', () => {
    // 4x4 image, mask all ones: border distance 1, the inner 2x2 ((1,1),(2,1),(1,2),(2,2)) distance 2. Zones as in
    // the GLSZM test: only the level-4 zone (2,2) lies wholly inside -> distance 2; the level-2 zone contains
    // (1,1) and (1,2) (distance 2) but also border voxels -> distance 1.
    const m = gldzmMatrix(IMG4, new Uint8Array(16).fill(1), '2D');
    assert.deepEqual(sparse(m), { 1: { 1: 3 }, 2: { 1: 1 }, 3: { 1: 2 }, 4: { 1: 1, 2: 1 } });
  });
  it('an intensity ROI outside the morphological mask is refused with a clear error', () => {
    const mask = new Uint8Array(16).fill(1);
    mask[0] = 0;
    assert.throws(
      () => gldzmMatrix(IMG4, mask, '2D'),
      (e: unknown) => e instanceof TextureError && e.code === 'TWF_E_TEXTURE_INPUT',
    );
  });
});

/**
 * 3x3 single-slice image for NGTDM and NGLDM:
 *     1 2 1
 *     2 3 2
 *     1 2 1
 */
const IMG3 = grid(
  [
    [
      [1, 2, 1],
      [2, 3, 2],
      [1, 2, 1],
    ],
  ],
  3,
);

describe('NGTDM (IBSI 3.10) by hand', () => {
  it('3x3 image, 8-neighbourhood', () => {
    // corner (1): neighbours 2, 2, 3 -> mean 7/3, |1 - 7/3| = 4/3, four corners -> s_1 = 16/3
    // edge (2): neighbours 1, 1, 2, 3, 2 -> mean 9/5, |2 - 1.8| = 0.2, four edges -> s_2 = 0.8
    // centre (3): neighbours 1 x4 and 2 x4 -> mean 1.5 -> s_3 = 1.5
    const [m] = ngtdmMatrices(IMG3, '2D');
    assert.deepEqual([...m.n], [4, 4, 1]);
    close(m.s[0], 16 / 3, 's_1');
    close(m.s[1], 0.8, 's_2');
    close(m.s[2], 1.5, 's_3');
    assert.equal(m.nValid, 9);
    const f = ngtdmFeatures(m);
    assert.ok(f);
    const p = [4 / 9, 4 / 9, 1 / 9];
    const s = [16 / 3, 0.8, 1.5];
    close(f.coarseness, 1 / (p[0] * s[0] + p[1] * s[1] + p[2] * s[2]), 'coarseness');
    // contrast = [2 (p1 p2 1 + p1 p3 4 + p2 p3 1) / (3 * 2)] * [(s1 + s2 + s3) / 9]
    close(f.contrast, ((2 * (p[0] * p[1] + 4 * p[0] * p[2] + p[1] * p[2])) / 6) * ((s[0] + s[1] + s[2]) / 9), 'contrast');
    // strength = sum_ij (p_i + p_j)(i - j)^2 / sum s = 2 [(p1+p2) + 4 (p1+p3) + (p2+p3)] / sum s
    close(f.strength, (2 * (p[0] + p[1] + 4 * (p[0] + p[2]) + (p[1] + p[2]))) / (s[0] + s[1] + s[2]), 'strength');
  });
  it('a voxel without ROI neighbours is left out; a flat ROI has coarseness 10^6', () => {
    const g = grid([[[2, 0, 2]]], 2);
    assert.equal(ngtdmFeatures(ngtdmMatrices(g, '2D')[0]), null);
    const flat = grid([[[2, 2, 2]]], 2);
    const f = ngtdmFeatures(ngtdmMatrices(flat, '2D')[0]);
    assert.ok(f);
    assert.equal(f.coarseness, 1e6);
    assert.equal(f.contrast, 0);
    assert.equal(f.busyness, 0);
  });
});

describe('3D neighbourhoods by hand (2x2x2 cube, every voxel touches the 7 others)', () => {
  it('GLCM along (1,1,1): the one pair is the two level-1 voxels', () => {
    assert.deepEqual([...glcmMatrix(CUBE, [1, 1, 1])], [2, 0, 0, 0]);
  });
  it('NGTDM 3D', () => {
    // level 1: neighbours one 1 and six 2s -> mean 13/7, |1 - 13/7| = 6/7, two voxels -> s_1 = 12/7
    // level 2: neighbours two 1s and five 2s -> mean 12/7, |2 - 12/7| = 2/7, six voxels -> s_2 = 12/7
    const [m] = ngtdmMatrices(CUBE, '3D');
    assert.deepEqual([...m.n], [2, 6]);
    close(m.s[0], 12 / 7, 's_1');
    close(m.s[1], 12 / 7, 's_2');
  });
  it('NGLDM 3D and 2D', () => {
    // 3D, alpha 0: a level-1 voxel has one level-1 neighbour -> j = 2; a level-2 voxel five -> j = 6.
    assert.deepEqual(sparse(ngldmMatrices(CUBE, '3D')[0]), { 1: { 2: 2 }, 2: { 6: 6 } });
    // 2D: each slice has one level-1 voxel (j = 1) and three level-2 voxels that see each other (j = 3).
    const perSlice = ngldmMatrices(CUBE, '2D');
    assert.equal(perSlice.length, 2);
    for (const m of perSlice) assert.deepEqual(sparse(m), { 1: { 1: 1 }, 2: { 3: 3 } });
  });
});

describe('NGLDM (IBSI 3.11) by hand', () => {
  it('3x3 image, alpha 0 and alpha 1', () => {
    // alpha 0: corners (1) have no neighbour of level 1 -> j = 1; each edge (2) touches two other edges diagonally
    // -> j = 3; the centre has none -> j = 1.
    const [m0] = ngldmMatrices(IMG3, '2D', 1, 0);
    assert.deepEqual(sparse(m0), { 1: { 1: 4 }, 2: { 3: 4 }, 3: { 1: 1 } });
    const f0 = ngldmFeatures(m0);
    assert.ok(f0);
    close(f0.lde, (4 + 4 / 9 + 1) / 9, 'lde');
    close(f0.hde, (4 + 4 * 9 + 1) / 9, 'hde');
    close(f0.dc_perc, 1, 'dc_perc');
    // alpha 1: corner neighbours 2, 2 (within 1) and 3 (not) -> j = 3; edge neighbours 1, 1, 2, 3, 2 all within 1
    // -> j = 6; centre: four 2s within, four 1s not -> j = 5.
    const [m1] = ngldmMatrices(IMG3, '2D', 1, 1);
    assert.deepEqual(sparse(m1), { 1: { 3: 4 }, 2: { 6: 4 }, 3: { 5: 1 } });
  });
});

describe('textureFeatures', () => {
  it('for a single-slice ROI the 2D and 2.5D aggregations coincide', () => {
    const roi: DiscretisedRoi = { ...IMG4, spacingMm: [1, 1, 1], morphMask: new Uint8Array(16).fill(1) };
    const f = textureFeatures(roi);
    for (const [k, v] of Object.entries(f)) {
      if (!k.includes('_2D')) continue;
      const other = f[k.replace('_2D', '_2_5D')];
      if (Number.isNaN(v)) assert.ok(Number.isNaN(other), k);
      else close(other, v, k, 1e-12);
    }
  });
  it('an empty ROI gives no features instead of NaNs or a crash; a one-voxel ROI has no GLCM', () => {
    const empty: DiscretisedRoi = { dims: [3, 3, 2], spacingMm: [1, 1, 1], levels: new Int32Array(18), morphMask: new Uint8Array(18), nLevels: 4 };
    assert.deepEqual(textureFeatures(empty), {});
    const one = { ...empty, levels: new Int32Array(18), morphMask: new Uint8Array(18) };
    one.levels[4] = 2;
    one.morphMask[4] = 1;
    const f = textureFeatures(one);
    assert.ok(!Object.keys(f).some((k) => k.startsWith('cm_')));
    assert.equal(f.szm_sze_3D, 1); // one zone of one voxel
    assert.equal(f.rlm_r_perc_3D_avg, 1); // every direction: one run over one voxel
  });
  it('all features are unchanged by a 90-degree in-plane rotation and a flip along z (direction sets are closed under both)', () => {
    const roi = phantomRoi();
    const [nx, ny, nz] = roi.dims;
    const n = nx * ny * nz;
    const rot = { ...roi, dims: [ny, nx, nz] as [number, number, number], levels: new Int32Array(n), morphMask: new Uint8Array(n) };
    const flip = { ...roi, levels: new Int32Array(n), morphMask: new Uint8Array(n) };
    for (let k = 0; k < nz; k++)
      for (let j = 0; j < ny; j++)
        for (let i = 0; i < nx; i++) {
          const v = i + nx * (j + ny * k);
          const r = ny - 1 - j + ny * (i + nx * k); // (i, j) -> (ny-1-j, i)
          rot.levels[r] = roi.levels[v];
          rot.morphMask[r] = roi.morphMask[v];
          const f = i + nx * (j + ny * (nz - 1 - k));
          flip.levels[f] = roi.levels[v];
          flip.morphMask[f] = roi.morphMask[v];
        }
    const a = textureFeatures(roi);
    for (const other of [textureFeatures(rot), textureFeatures(flip)]) {
      assert.deepEqual(Object.keys(other).sort(), Object.keys(a).sort());
      for (const [k, v] of Object.entries(a)) close(other[k], v, k, 1e-10);
    }
  });
  it('the 13 3D directions are distinct up to sign', () => {
    assert.equal(DIRECTIONS_3D.length, 13);
    const seen = new Set(DIRECTIONS_3D.map((d) => d.join(',')));
    for (const d of DIRECTIONS_3D) assert.ok(!seen.has(d.map((x) => -x).join(',')), `${d} and its opposite both listed`);
  });
  it('refuses grey levels out of range and bad settings with TextureError codes', () => {
    const roi = phantomRoi();
    assert.throws(
      () => textureFeatures({ ...roi, nLevels: MAX_TEXTURE_LEVELS + 1 }),
      (e: unknown) => e instanceof TextureError && /discretise/.test(e.message),
    );
    assert.throws(
      () => textureFeatures({ ...roi, nLevels: 5 }),
      (e: unknown) => e instanceof TextureError && e.code === 'TWF_E_TEXTURE_INPUT',
    );
    assert.throws(
      () => textureFeatures(roi, { distance: 0 }),
      (e: unknown) => e instanceof TextureError && e.code === 'TWF_E_TEXTURE_SETTINGS',
    );
    assert.throws(
      () => textureFeatures(roi, { ngldmAlpha: -1 }),
      (e: unknown) => e instanceof TextureError && e.code === 'TWF_E_TEXTURE_SETTINGS',
    );
    assert.throws(
      () => textureFeatures({ ...roi, morphMask: new Uint8Array(3) }),
      (e: unknown) => e instanceof TextureError && e.code === 'TWF_E_TEXTURE_INPUT',
    );
  });
  it('distance and alpha settings reach the GLCM and NGLDM', () => {
    const roi = phantomRoi();
    const d1 = textureFeatures(roi);
    const d2 = textureFeatures(roi, { distance: 2, ngldmAlpha: 1 });
    assert.notEqual(d1.cm_contrast_3D_comb, d2.cm_contrast_3D_comb);
    assert.notEqual(d1.ngl_hde_3D, d2.ngl_hde_3D);
    assert.equal(d1.rlm_sre_3D_comb, d2.rlm_sre_3D_comb); // runs do not depend on the distance
  });
});
