/**
 * Segmentation quality in 3D, per patient (pure functions over flat masks,
 * x fastest: index = x + nx*(y + ny*z)).
 *
 * Dice: 2|A∩B| / (|A|+|B|) (Dice 1945). HD95: the 95th percentile Hausdorff
 * distance between the surfaces of A and B in millimetres, computed as
 * max(P95 of distances from A's surface to B's, P95 from B's surface to A's),
 * the definition MONAI's compute_hausdorff_distance(percentile=95) uses
 * (see also Taha & Hanbury, BMC Med Imaging 2015).
 */

export type Dims3 = [number, number, number];
export type Spacing3 = [number, number, number];

export function dice3d(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let inter = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    const x = a[i] > 0 ? 1 : 0;
    const y = b[i] > 0 ? 1 : 0;
    inter += x & y;
    na += x;
    nb += y;
  }
  return na + nb === 0 ? 1 : (2 * inter) / (na + nb);
}

/** Voxels of the mask with at least one 6-neighbour outside it (or on the volume border). */
export function surfaceVoxels(m: ArrayLike<number>, dims: Dims3): number[] {
  const [nx, ny, nz] = dims;
  const out: number[] = [];
  const at = (x: number, y: number, z: number) => (x < 0 || y < 0 || z < 0 || x >= nx || y >= ny || z >= nz ? 0 : m[x + nx * (y + ny * z)] > 0 ? 1 : 0);
  for (let z = 0; z < nz; z++) {
    for (let y = 0; y < ny; y++) {
      for (let x = 0; x < nx; x++) {
        if (!at(x, y, z)) continue;
        if (!at(x - 1, y, z) || !at(x + 1, y, z) || !at(x, y - 1, z) || !at(x, y + 1, z) || !at(x, y, z - 1) || !at(x, y, z + 1)) out.push(x + nx * (y + ny * z));
      }
    }
  }
  return out;
}

function percentile(values: Float64Array, p: number): number {
  const s = Float64Array.from(values).sort();
  if (s.length === 0) return NaN;
  // Linear interpolation between closest ranks (numpy's default, as MONAI uses).
  const r = (p / 100) * (s.length - 1);
  const lo = Math.floor(r);
  const hi = Math.ceil(r);
  return s[lo] + (s[hi] - s[lo]) * (r - lo);
}

function directed(from: number[], to: number[], dims: Dims3, sp: Spacing3): Float64Array {
  const [nx, ny] = dims;
  const tx = new Float64Array(to.length);
  const ty = new Float64Array(to.length);
  const tz = new Float64Array(to.length);
  to.forEach((i, k) => {
    tx[k] = (i % nx) * sp[0];
    ty[k] = (Math.floor(i / nx) % ny) * sp[1];
    tz[k] = Math.floor(i / (nx * ny)) * sp[2];
  });
  const d = new Float64Array(from.length);
  from.forEach((i, k) => {
    const x = (i % nx) * sp[0];
    const y = (Math.floor(i / nx) % ny) * sp[1];
    const z = Math.floor(i / (nx * ny)) * sp[2];
    let best = Infinity;
    for (let j = 0; j < to.length; j++) {
      const dd = (x - tx[j]) ** 2 + (y - ty[j]) ** 2 + (z - tz[j]) ** 2;
      if (dd < best) best = dd;
    }
    d[k] = Math.sqrt(best);
  });
  return d;
}

/**
 * HD95 in mm; null when exactly one mask is empty (undefined distance), 0 when both are.
 * Brute force over surface voxels: fine for lesion-sized volumes (thousands of voxels).
 */
export function hd95Mm(a: ArrayLike<number>, b: ArrayLike<number>, dims: Dims3, spacingMm: Spacing3): number | null {
  const sa = surfaceVoxels(a, dims);
  const sb = surfaceVoxels(b, dims);
  if (sa.length === 0 && sb.length === 0) return 0;
  if (sa.length === 0 || sb.length === 0) return null;
  return Math.max(percentile(directed(sa, sb, dims, spacingMm), 95), percentile(directed(sb, sa, dims, spacingMm), 95));
}

/**
 * The classic PET baseline: inside a box around the lesion (the ground-truth
 * bounding box widened by `marginMm`, standing in for the box a reader draws),
 * voxels at or above `fraction` (default 40%) of the box's SUVmax
 * (Erdi et al., Cancer 1997: fixed-threshold 40-43% of SUVmax).
 */
export function thresholdBaseline(suv: ArrayLike<number>, truth: ArrayLike<number>, dims: Dims3, spacingMm: Spacing3, opts: { fraction?: number; marginMm?: number } = {}): Uint8Array {
  const [nx, ny, nz] = dims;
  const frac = opts.fraction ?? 0.4;
  const margin = opts.marginMm ?? 10;
  let x0 = nx,
    y0 = ny,
    z0 = nz,
    x1 = -1,
    y1 = -1,
    z1 = -1;
  for (let z = 0; z < nz; z++)
    for (let y = 0; y < ny; y++)
      for (let x = 0; x < nx; x++) {
        if (truth[x + nx * (y + ny * z)] > 0) {
          x0 = Math.min(x0, x);
          x1 = Math.max(x1, x);
          y0 = Math.min(y0, y);
          y1 = Math.max(y1, y);
          z0 = Math.min(z0, z);
          z1 = Math.max(z1, z);
        }
      }
  const out = new Uint8Array(nx * ny * nz);
  if (x1 < 0) return out;
  const mx = Math.round(margin / spacingMm[0]);
  const my = Math.round(margin / spacingMm[1]);
  const mz = Math.round(margin / spacingMm[2]);
  x0 = Math.max(0, x0 - mx);
  x1 = Math.min(nx - 1, x1 + mx);
  y0 = Math.max(0, y0 - my);
  y1 = Math.min(ny - 1, y1 + my);
  z0 = Math.max(0, z0 - mz);
  z1 = Math.min(nz - 1, z1 + mz);
  let max = -Infinity;
  for (let z = z0; z <= z1; z++) for (let y = y0; y <= y1; y++) for (let x = x0; x <= x1; x++) max = Math.max(max, suv[x + nx * (y + ny * z)]);
  const thr = frac * max;
  for (let z = z0; z <= z1; z++)
    for (let y = y0; y <= y1; y++)
      for (let x = x0; x <= x1; x++) {
        const i = x + nx * (y + ny * z);
        if (suv[i] >= thr) out[i] = 1;
      }
  return out;
}
