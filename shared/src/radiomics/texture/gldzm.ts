/**
 * Grey level distance zone matrix (GLDZM) and its 16 features: IBSI reference manual (arXiv:1612.07003)
 * section 3.9; Thibault et al., Proc. ICIT 2009.
 */
import { type LevelGrid, type SizeMatrix, TextureError, renameSizeFeatures, sizeMatrixFeatures } from './common.js';
import { type TextureMode, type Zones, labelZones, zoneFamilyFeatures, zoneMatrix } from './glszm.js';

/**
 * Distance of each mask voxel to the ROI edge (IBSI 3.9): the least number of face-neighbour steps
 * (city block: 4-connectedness in 2D, 6-connectedness in 3D) needed to leave the mask, so voxels on the
 * border have distance 1. Positions outside the grid count as outside the mask. In "2D" each slice is
 * treated on its own (steps in-plane only). 0 outside the mask. Multi-source breadth-first search, O(N).
 */
export function distanceToRoiEdge(mask: Uint8Array, dims: [number, number, number], mode: TextureMode): Int32Array {
  const [nx, ny, nz] = dims;
  const n = nx * ny * nz;
  const dist = new Int32Array(n);
  const queue = new Int32Array(n);
  let head = 0,
    tail = 0;
  const threeD = mode === '3D';
  const isOut = (i: number, j: number, k: number): boolean => i < 0 || i >= nx || j < 0 || j >= ny || k < 0 || k >= nz || mask[i + nx * (j + ny * k)] === 0;
  for (let k = 0; k < nz; k++) {
    for (let j = 0; j < ny; j++) {
      for (let i = 0; i < nx; i++) {
        const v = i + nx * (j + ny * k);
        if (mask[v] === 0) continue;
        if (isOut(i - 1, j, k) || isOut(i + 1, j, k) || isOut(i, j - 1, k) || isOut(i, j + 1, k) || (threeD && (isOut(i, j, k - 1) || isOut(i, j, k + 1)))) {
          dist[v] = 1;
          queue[tail++] = v;
        }
      }
    }
  }
  const steps = threeD
    ? [
        [1, 0, 0],
        [-1, 0, 0],
        [0, 1, 0],
        [0, -1, 0],
        [0, 0, 1],
        [0, 0, -1],
      ]
    : [
        [1, 0, 0],
        [-1, 0, 0],
        [0, 1, 0],
        [0, -1, 0],
      ];
  while (head < tail) {
    const v = queue[head++];
    const i = v % nx;
    const j = ((v - i) / nx) % ny;
    const k = (v - i - nx * j) / (nx * ny);
    for (const [dx, dy, dz] of steps) {
      const ii = i + dx,
        jj = j + dy,
        kk = k + dz;
      if (isOut(ii, jj, kk)) continue;
      const w = ii + nx * (jj + ny * kk);
      if (dist[w] !== 0) continue;
      dist[w] = dist[v] + 1;
      queue[tail++] = w;
    }
  }
  return dist;
}

/** Zones (as for the GLSZM) with their distance: the smallest edge distance of the zone's voxels. */
export function zoneDistances(grid: LevelGrid, morphMask: Uint8Array, mode: TextureMode, zones: Zones = labelZones(grid, mode)): { zones: Zones; distance: Int32Array } {
  const dmap = distanceToRoiEdge(morphMask, grid.dims, mode);
  const distance = new Int32Array(zones.count).fill(0x7fffffff);
  const lab = zones.label;
  for (let v = 0; v < lab.length; v++) {
    const z = lab[v];
    if (z === 0) continue;
    const d = dmap[v];
    if (d === 0) {
      throw new TextureError('TWF_E_TEXTURE_INPUT', `voxel ${v} is in the intensity ROI (level ${grid.levels[v]}) but outside the morphological mask; the intensity ROI must lie inside morphMask`);
    }
    if (d < distance[z - 1]) distance[z - 1] = d;
  }
  return { zones, distance };
}

/** Distance zone matrix of the whole grid (IBSI 3.9); with mode "2D" the slice-merged (2.5D) matrix. */
export function gldzmMatrix(grid: LevelGrid, morphMask: Uint8Array, mode: TextureMode): SizeMatrix {
  const { zones, distance } = zoneDistances(grid, morphMask, mode);
  return zoneMatrix(grid, zones, (z) => distance[z]);
}

/** IBSI 3.9.1-3.9.16 features of a distance zone matrix (keys: tag stems without "dzm_"); null when empty. */
export function gldzmFeatures(m: SizeMatrix): Record<string, number> | null {
  const f = sizeMatrixFeatures(m);
  if (f === null) return null;
  return renameSizeFeatures(f, {
    smallEmph: 'sde', // 3.9.1 small distance emphasis
    largeEmph: 'lde', // 3.9.2
    lowGreyEmph: 'lgze', // 3.9.3
    highGreyEmph: 'hgze', // 3.9.4
    smallLowGreyEmph: 'sdlge', // 3.9.5
    smallHighGreyEmph: 'sdhge', // 3.9.6
    largeLowGreyEmph: 'ldlge', // 3.9.7
    largeHighGreyEmph: 'ldhge', // 3.9.8
    greyNonUniformity: 'glnu', // 3.9.9
    greyNonUniformityNorm: 'glnu_norm', // 3.9.10
    sizeNonUniformity: 'zdnu', // 3.9.11
    sizeNonUniformityNorm: 'zdnu_norm', // 3.9.12
    percentage: 'z_perc', // 3.9.13
    greyVariance: 'gl_var', // 3.9.14
    sizeVariance: 'zd_var', // 3.9.15
    entropy: 'zd_entr', // 3.9.16
  });
}

/**
 * GLDZM features with 2D, 2.5D and 3D aggregation (distances from the morphological mask). `zones` may hand
 * in the zone labelling already made for the GLSZM (the same zones, IBSI 3.9) to save a pass.
 */
export function gldzmTextureFeatures(grid: LevelGrid, morphMask: Uint8Array, zones?: Partial<Record<TextureMode, Zones>>): Record<string, number> {
  return zoneFamilyFeatures(
    grid,
    'dzm_',
    (mode) => {
      const { zones: z, distance } = zoneDistances(grid, morphMask, mode, zones?.[mode]);
      return { zones: z, value: (i) => distance[i] };
    },
    gldzmFeatures,
  );
}
