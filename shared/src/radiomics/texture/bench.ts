/**
 * Speed of the IBSI texture families on a synthetic ROI, as a table (no assertions: timings vary by machine).
 *
 *   node shared/dist/radiomics/texture/bench.js [--nx 100] [--ny 100] [--nz 60] [--levels 32,64]
 *       [--shape box|ellipsoid] [--repeat 3]
 *
 * The ROI is the whole nx x ny x nz box (default, the worst case) or the ellipsoid inscribed in it (about
 * 52% of the voxels, with a ragged border). Grey levels come from a 3x3x3-smoothed deterministic noise
 * field (so runs and zones have a spread of sizes), discretised into `levels` bins of equal width (IBSI 2.7
 * fixed bin number). Each time is the median of `repeat` runs, in milliseconds; one untimed warm-up run
 * of textureFeatures goes first so the JIT does not bill the first family.
 */
import { glcmTextureFeatures } from './glcm.js';
import { gldzmTextureFeatures } from './gldzm.js';
import { glrlmTextureFeatures } from './glrlm.js';
import { glszmTextureFeatures } from './glszm.js';
import { type DiscretisedRoi, textureFeatures } from './index.js';
import { ngldmTextureFeatures } from './ngldm.js';
import { ngtdmTextureFeatures } from './ngtdm.js';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

/** Synthetic ROI: ellipsoid mask, box-smoothed xorshift noise discretised into nLevels bins. */
export function syntheticRoi(nx: number, ny: number, nz: number, nLevels: number, ellipsoid: boolean, seed = 12345): DiscretisedRoi {
  const n = nx * ny * nz;
  let s = seed >>> 0 || 1;
  const noise = new Float64Array(n);
  for (let v = 0; v < n; v++) {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    noise[v] = s / 4294967296;
  }
  // 3x3x3 box smoothing gives spatial correlation (runs and zones longer than one voxel).
  const smooth = new Float64Array(n);
  for (let k = 0; k < nz; k++)
    for (let j = 0; j < ny; j++)
      for (let i = 0; i < nx; i++) {
        let sum = 0,
          w = 0;
        for (let dz = -1; dz <= 1; dz++)
          for (let dy = -1; dy <= 1; dy++)
            for (let dx = -1; dx <= 1; dx++) {
              const ii = i + dx,
                jj = j + dy,
                kk = k + dz;
              if (ii < 0 || ii >= nx || jj < 0 || jj >= ny || kk < 0 || kk >= nz) continue;
              sum += noise[ii + nx * (jj + ny * kk)];
              w++;
            }
        smooth[i + nx * (j + ny * k)] = sum / w;
      }
  const levels = new Int32Array(n);
  const morphMask = new Uint8Array(n);
  let lo = Infinity,
    hi = -Infinity;
  const inside = (i: number, j: number, k: number): boolean => !ellipsoid || ((i + 0.5) / nx - 0.5) ** 2 + ((j + 0.5) / ny - 0.5) ** 2 + ((k + 0.5) / nz - 0.5) ** 2 <= 0.25;
  for (let k = 0; k < nz; k++)
    for (let j = 0; j < ny; j++)
      for (let i = 0; i < nx; i++) {
        if (!inside(i, j, k)) continue;
        const x = smooth[i + nx * (j + ny * k)];
        lo = Math.min(lo, x);
        hi = Math.max(hi, x);
      }
  for (let k = 0; k < nz; k++)
    for (let j = 0; j < ny; j++)
      for (let i = 0; i < nx; i++) {
        const v = i + nx * (j + ny * k);
        if (!inside(i, j, k)) continue;
        morphMask[v] = 1;
        // IBSI 2.7 fixed bin number: floor(N_g (x - min) / (max - min)) + 1, with x = max going to N_g.
        levels[v] = Math.min(nLevels, Math.floor((nLevels * (smooth[v] - lo)) / (hi - lo)) + 1);
      }
  return { dims: [nx, ny, nz], spacingMm: [1, 1, 1], levels, morphMask, nLevels };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

function time(f: () => unknown, repeat: number): number {
  const ts: number[] = [];
  for (let r = 0; r < repeat; r++) {
    const t0 = performance.now();
    f();
    ts.push(performance.now() - t0);
  }
  return median(ts);
}

function main(): void {
  const nx = Number(arg('nx', '100')),
    ny = Number(arg('ny', '100')),
    nz = Number(arg('nz', '60'));
  const levelList = arg('levels', '32,64').split(',').map(Number);
  const repeat = Number(arg('repeat', '3'));
  const ellipsoid = arg('shape', 'box') === 'ellipsoid';
  textureFeatures(syntheticRoi(20, 20, 10, 8, ellipsoid)); // warm-up
  const rows: string[][] = [];
  for (const nL of levelList) {
    const roi = syntheticRoi(nx, ny, nz, nL, ellipsoid);
    const nRoi = roi.morphMask.reduce((a, b) => a + b, 0);
    const t = {
      glcm: time(() => glcmTextureFeatures(roi), repeat),
      glrlm: time(() => glrlmTextureFeatures(roi), repeat),
      glszm: time(() => glszmTextureFeatures(roi), repeat),
      gldzm: time(() => gldzmTextureFeatures(roi, roi.morphMask), repeat),
      ngtdm: time(() => ngtdmTextureFeatures(roi), repeat),
      ngldm: time(() => ngldmTextureFeatures(roi), repeat),
      all: time(() => textureFeatures(roi), repeat),
    };
    rows.push([`${nx}x${ny}x${nz} ${ellipsoid ? 'ellipsoid' : 'box'}`, String(nRoi), String(nL), ...Object.values(t).map((x) => x.toFixed(0))]);
  }
  const head = ['grid', 'roiVoxels', 'levels', 'glcmMs', 'glrlmMs', 'glszmMs', 'gldzmMs', 'ngtdmMs', 'ngldmMs', 'allMs'];
  const widths = head.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c].length)));
  const line = (r: string[]): string => r.map((x, c) => x.padStart(widths[c])).join('  ');
  console.log(line(head));
  for (const r of rows) console.log(line(r));
}

main();
