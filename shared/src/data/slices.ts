/**
 * Axial 2D training slices from a PET volume and its tumour mask. Pure functions.
 *
 * Geometry: slices are centre-cropped or zero-padded in-plane to size x size
 * without resampling. The STS volumes are already cropped 5 cm around the
 * tumour (see the data README), 26-63 pixels wide at 3.9-5.5 mm, so a 48-pixel
 * window keeps the tumour and most of its surroundings; pixels outside the
 * window are counted in `maskVoxelsOutside` so callers can see what a crop lost.
 *
 * Intensity: PET voxels are SUV (body-weight standardised uptake, already
 * converted by the data provider). We divide by a fixed SUV scale (default 5)
 * and clip to [0, clip] (default 3, i.e. SUV 15). A fixed scale keeps SUV's
 * absolute meaning across patients and sites (FDG-avid sarcoma is typically
 * SUV > 2.5 while soft tissue is ~1), which a per-patient SUVmax division
 * destroys: a patient with a hot bladder or a very avid rim would have their
 * tumour squashed towards 0. The clip stops a few very hot voxels (SUVmax up
 * to ~50 here) from dominating the input range. Measured with the 5-round
 * federated bench (shared/src/bench/train-sts.ts): scale 5 → validation Dice
 * 0.73, scale 10 → 0.67, per-patient SUVmax → 0.73; 'patientMax' is kept as
 * an option.
 */
import type { NiftiVolume } from './nifti.js';

export type SuvNormalisation = { kind: 'fixed'; scale: number; clip: number } | { kind: 'patientMax' };

export const DEFAULT_SUV_NORMALISATION: SuvNormalisation = { kind: 'fixed', scale: 5, clip: 3 };

export interface ExtractOptions {
  /** Output slice size in pixels (size x size). */
  size: number;
  /** Keep only the slices from the first to the last tumour slice, widened by marginSlices (default true). */
  onlyTumourSlices?: boolean;
  /** Non-tumour neighbours kept on each side of the tumour extent (default 2). */
  marginSlices?: number;
  normalisation?: SuvNormalisation;
}

export interface SliceSet {
  /** n x size x size images, row-major (y, then x fastest); one channel. */
  images: Float32Array;
  /** n x size x size class labels (0 background, 1 tumour). */
  masks: Uint8Array;
  n: number;
  size: number;
  /** Voxel size of the (first) source volume, mm. */
  spacingMm: [number, number, number];
  /** Source axial index of each slice. */
  z: Int32Array;
  /** Patient index of each slice (0 for a single-patient set; see concatSlices). */
  patient: Int32Array;
  /** Mask voxels of the selected slices that fell outside the size x size window. */
  maskVoxelsOutside: number;
}

/** Axial indices holding at least one tumour voxel. */
export function tumourSliceIndices(mask: NiftiVolume): number[] {
  const [nx, ny, nz] = mask.dims;
  const out: number[] = [];
  for (let z = 0; z < nz; z++) {
    const base = z * nx * ny;
    for (let i = 0; i < nx * ny; i++) {
      if (mask.data[base + i] > 0.5) {
        out.push(z);
        break;
      }
    }
  }
  return out;
}

export function extractSlices(image: NiftiVolume, mask: NiftiVolume, opts: ExtractOptions): SliceSet {
  const { size } = opts;
  const onlyTumour = opts.onlyTumourSlices ?? true;
  const margin = opts.marginSlices ?? 2;
  const norm = opts.normalisation ?? DEFAULT_SUV_NORMALISATION;
  const [nx, ny, nz] = image.dims;
  if (mask.dims[0] !== nx || mask.dims[1] !== ny || mask.dims[2] !== nz) {
    throw new Error(`extractSlices: image ${image.dims} and mask ${mask.dims} differ`);
  }
  if (!(size > 0 && Number.isInteger(size))) throw new Error(`extractSlices: bad size ${size}`);

  let zs: number[];
  if (onlyTumour) {
    const t = tumourSliceIndices(mask);
    if (t.length === 0) zs = [];
    else {
      zs = [];
      for (let z = Math.max(0, t[0] - margin); z <= Math.min(nz - 1, t[t.length - 1] + margin); z++) zs.push(z);
    }
  } else {
    zs = Array.from({ length: nz }, (_, z) => z);
  }

  let scale: number;
  let clip: number;
  if (norm.kind === 'fixed') {
    scale = norm.scale;
    clip = norm.clip;
  } else {
    let max = 0;
    for (const v of image.data) if (v > max) max = v;
    scale = max > 0 ? max : 1;
    clip = 1;
  }

  const n = zs.length;
  const images = new Float32Array(n * size * size);
  const masks = new Uint8Array(n * size * size);
  // Centred window: source coordinate = output coordinate + offset (negative offset = padding).
  const ox = Math.floor((nx - size) / 2);
  const oy = Math.floor((ny - size) / 2);
  let outside = 0;
  zs.forEach((z, s) => {
    const src = z * nx * ny;
    const dst = s * size * size;
    for (let y = 0; y < ny; y++) {
      const yo = y - oy;
      for (let x = 0; x < nx; x++) {
        const xo = x - ox;
        const m = mask.data[src + y * nx + x] > 0.5 ? 1 : 0;
        if (yo < 0 || yo >= size || xo < 0 || xo >= size) {
          outside += m;
          continue;
        }
        const v = image.data[src + y * nx + x] / scale;
        images[dst + yo * size + xo] = v < 0 ? 0 : v > clip ? clip : v;
        masks[dst + yo * size + xo] = m;
      }
    }
  });
  return {
    images,
    masks,
    n,
    size,
    spacingMm: [...image.spacingMm],
    z: Int32Array.from(zs),
    patient: new Int32Array(n),
    maskVoxelsOutside: outside,
  };
}

/** Stacks several patients' slice sets; `patient` becomes the index in `sets`. */
export function concatSlices(sets: readonly SliceSet[]): SliceSet {
  if (sets.length === 0) throw new Error('concatSlices: no sets');
  const size = sets[0].size;
  if (sets.some((s) => s.size !== size)) throw new Error('concatSlices: sizes differ');
  const n = sets.reduce((a, s) => a + s.n, 0);
  const px = size * size;
  const out: SliceSet = {
    images: new Float32Array(n * px),
    masks: new Uint8Array(n * px),
    n,
    size,
    spacingMm: [...sets[0].spacingMm],
    z: new Int32Array(n),
    patient: new Int32Array(n),
    maskVoxelsOutside: 0,
  };
  let o = 0;
  sets.forEach((s, p) => {
    out.images.set(s.images, o * px);
    out.masks.set(s.masks, o * px);
    out.z.set(s.z, o);
    out.patient.fill(p, o, o + s.n);
    out.maskVoxelsOutside += s.maskVoxelsOutside;
    o += s.n;
  });
  return out;
}
