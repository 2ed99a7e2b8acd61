import { extractSlices, type NiftiVolume } from '../data/index.js';
import type { UNet } from '../model/index.js';
import { predictMasks } from '../train/index.js';

/**
 * Segments a whole volume slice by slice with a 2D model: every axial slice
 * goes through the same centred crop/pad and SUV normalisation as training
 * (extractSlices), predictions are put back at their source voxels; voxels
 * outside the model's window are background.
 */
export async function segmentVolume(model: UNet, image: NiftiVolume, size: number): Promise<Uint8Array> {
  const [nx, ny, nz] = image.dims;
  const blank: NiftiVolume = { ...image, data: new Float32Array(image.data.length) };
  const s = extractSlices(image, blank, { size, onlyTumourSlices: false });
  const pred = await predictMasks(model, s);
  const out = new Uint8Array(nx * ny * nz);
  const ox = Math.floor((nx - size) / 2);
  const oy = Math.floor((ny - size) / 2);
  for (let k = 0; k < s.n; k++) {
    const z = s.z[k];
    for (let yo = 0; yo < size; yo++) {
      const y = yo + oy;
      if (y < 0 || y >= ny) continue;
      for (let xo = 0; xo < size; xo++) {
        const x = xo + ox;
        if (x < 0 || x >= nx) continue;
        out[x + nx * (y + ny * z)] = pred[k * size * size + yo * size + xo];
      }
    }
  }
  return out;
}
