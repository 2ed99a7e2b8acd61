/**
 * Grey level size zone matrix (GLSZM) and its 16 features: IBSI reference manual (arXiv:1612.07003)
 * section 3.8; Thibault et al., Pattern Recognit. Image Anal. 2014. The zone labelling here is shared with
 * the GLDZM (IBSI 3.9).
 */
import { type LevelGrid, type SizeMatrix, SizeMatrixBuilder, averageFeatures, countRoiVoxels, mergeSizeMatrices, renameSizeFeatures, sizeMatrixFeatures, tagged } from './common.js';

/** "2D": zones and neighbourhoods within one slice (8-connected); "3D": in the volume (26-connected). */
export type TextureMode = '2D' | '3D';

/**
 * Connected zones of equal grey level (IBSI 3.8: 8-connectedness in 2D, 26-connectedness in 3D).
 * label[v] = zone id + 1 for ROI voxels, 0 outside. Per zone: its grey level, its size in voxels and its
 * slice (k of its first voxel; a 2D zone never leaves its slice).
 */
export interface Zones {
  label: Int32Array;
  level: Int32Array;
  size: Int32Array;
  slice: Int32Array;
  count: number;
}

export function labelZones(grid: LevelGrid, mode: TextureMode): Zones {
  const [nx, ny, nz] = grid.dims;
  const n = nx * ny * nz;
  const lv = grid.levels;
  const label = new Int32Array(n);
  const level = new Int32Array(n);
  const size = new Int32Array(n);
  const slice = new Int32Array(n);
  const stack = new Int32Array(n);
  const dzMax = mode === '2D' ? 0 : 1;
  let count = 0;
  for (let seed = 0; seed < n; seed++) {
    const g = lv[seed];
    if (g === 0 || label[seed] !== 0) continue;
    const id = count++;
    let sp = 0;
    stack[sp++] = seed;
    label[seed] = id + 1;
    let zsize = 0;
    while (sp > 0) {
      const v = stack[--sp];
      zsize++;
      const i = v % nx;
      const j = ((v - i) / nx) % ny;
      const k = (v - i - nx * j) / (nx * ny);
      for (let dz = -dzMax; dz <= dzMax; dz++) {
        const kk = k + dz;
        if (kk < 0 || kk >= nz) continue;
        for (let dy = -1; dy <= 1; dy++) {
          const jj = j + dy;
          if (jj < 0 || jj >= ny) continue;
          for (let dx = -1; dx <= 1; dx++) {
            const ii = i + dx;
            if (ii < 0 || ii >= nx) continue;
            const w = ii + nx * (jj + ny * kk);
            if (label[w] !== 0 || lv[w] !== g) continue;
            label[w] = id + 1;
            stack[sp++] = w;
          }
        }
      }
    }
    level[id] = g;
    size[id] = zsize;
    slice[id] = Math.floor(seed / (nx * ny));
  }
  return { label, level, size, slice: slice.subarray(0, count), count };
}

/**
 * Count matrix over zones (IBSI 3.8 / 3.9): row = zone grey level, column = value(zone) (its size for GLSZM,
 * its distance for GLDZM). N_v = ROI voxels of the grid.
 */
export function zoneMatrix(grid: LevelGrid, zones: Zones, value: (zone: number) => number): SizeMatrix {
  const b = new SizeMatrixBuilder(grid.nLevels);
  for (let z = 0; z < zones.count; z++) b.add(zones.level[z], value(z));
  b.nVoxels = countRoiVoxels(grid, { k0: 0, k1: grid.dims[2] });
  return b.build();
}

/**
 * One count matrix per slice that has ROI voxels (2D zones: each zone lies in one slice); N_v of each =
 * ROI voxels in that slice.
 */
export function zoneMatricesPerSlice(grid: LevelGrid, zones: Zones, value: (zone: number) => number): SizeMatrix[] {
  const nz = grid.dims[2];
  const builders: SizeMatrixBuilder[] = [];
  for (let k = 0; k < nz; k++) {
    const b = new SizeMatrixBuilder(grid.nLevels);
    b.nVoxels = countRoiVoxels(grid, { k0: k, k1: k + 1 });
    builders.push(b);
  }
  for (let z = 0; z < zones.count; z++) builders[zones.slice[z]].add(zones.level[z], value(z));
  return builders.filter((b) => b.nVoxels > 0).map((b) => b.build());
}

/** Size zone matrix of the whole grid (IBSI 3.8); with mode "2D" this is the 2.5D (slice-merged) matrix. */
export function glszmMatrix(grid: LevelGrid, mode: TextureMode): SizeMatrix {
  const zones = labelZones(grid, mode);
  return zoneMatrix(grid, zones, (z) => zones.size[z]);
}

/** IBSI 3.8.1-3.8.16 features of a size zone matrix (keys: tag stems without "szm_"); null when empty. */
export function glszmFeatures(m: SizeMatrix): Record<string, number> | null {
  const f = sizeMatrixFeatures(m);
  if (f === null) return null;
  return renameSizeFeatures(f, {
    smallEmph: 'sze', // 3.8.1 small zone emphasis
    largeEmph: 'lze', // 3.8.2
    lowGreyEmph: 'lgze', // 3.8.3
    highGreyEmph: 'hgze', // 3.8.4
    smallLowGreyEmph: 'szlge', // 3.8.5
    smallHighGreyEmph: 'szhge', // 3.8.6
    largeLowGreyEmph: 'lzlge', // 3.8.7
    largeHighGreyEmph: 'lzhge', // 3.8.8
    greyNonUniformity: 'glnu', // 3.8.9
    greyNonUniformityNorm: 'glnu_norm', // 3.8.10
    sizeNonUniformity: 'zsnu', // 3.8.11
    sizeNonUniformityNorm: 'zsnu_norm', // 3.8.12
    percentage: 'z_perc', // 3.8.13 zone percentage N_s / N_v
    greyVariance: 'gl_var', // 3.8.14
    sizeVariance: 'zs_var', // 3.8.15
    entropy: 'zs_entr', // 3.8.16
  });
}

/**
 * Per-slice matrices (2D), their merge (2.5D) and the 3D matrix for a zone-based family, as features:
 * _2D = per-slice features averaged over slices with ROI voxels; _2_5D = one matrix merged over slices;
 * _3D = one matrix with 3D zones (IBSI 3.1.x aggregation).
 */
export function zoneFamilyFeatures(
  grid: LevelGrid,
  prefix: string,
  matrixOf: (mode: TextureMode) => { zones: Zones; value: (zone: number) => number },
  features: (m: SizeMatrix) => Record<string, number> | null,
): Record<string, number> {
  const z2 = matrixOf('2D');
  const perSlice = zoneMatricesPerSlice(grid, z2.zones, z2.value);
  const f2d = averageFeatures(perSlice.map(features));
  const f25 = averageFeatures([features(mergeSizeMatrices(perSlice, grid.nLevels))]);
  const z3 = matrixOf('3D');
  const f3 = averageFeatures([features(zoneMatrix(grid, z3.zones, z3.value))]);
  return { ...tagged(prefix, f2d, '_2D'), ...tagged(prefix, f25, '_2_5D'), ...tagged(prefix, f3, '_3D') };
}

/** GLSZM features with 2D, 2.5D and 3D aggregation; `zones` may hand in labellings made already. */
export function glszmTextureFeatures(grid: LevelGrid, zonesIn?: Partial<Record<TextureMode, Zones>>): Record<string, number> {
  return zoneFamilyFeatures(
    grid,
    'szm_',
    (mode) => {
      const zones = zonesIn?.[mode] ?? labelZones(grid, mode);
      return { zones, value: (z) => zones.size[z] };
    },
    glszmFeatures,
  );
}
