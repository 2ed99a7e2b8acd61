/**
 * The Grad-CAM overlay picture: a PET slice in grey, the CAM as an alpha-blended heat map, the
 * reference mask's contour and the predicted mask's contour, and a legend strip. Pure: returns an
 * RGB buffer (encode it with imaging/png.ts).
 *
 * - Grey: SUV linearly windowed to [lo, hi] (default [0, slice SUVmax]), upscaled nearest-neighbour
 *   so each PET voxel stays a visible square.
 * - Heat: the CAM (already at input resolution) upscaled bilinearly, coloured with viridis
 *   (van der Walt & Smith, matplotlib 1.5, 2015: perceptually uniform, readable in greyscale and by
 *   colour-blind readers), blended with alpha = heatAlpha x CAM, so pixels without evidence show
 *   the PET unchanged.
 * - Contours at the upscaled resolution: the reference contour is the mask's inner boundary (mask
 *   pixels with a 4-neighbour outside), the predicted contour the outer boundary (pixels outside
 *   with a 4-neighbour inside), so where the two masks agree the lines run side by side instead of
 *   hiding each other.
 */
import { resizeBilinear } from './gradcam.js';
import type { RgbImage } from '../imaging/png.js';

type Rgb = readonly [number, number, number];

/** Reference-mask contour colour (cyan). */
export const REFERENCE_COLOUR: Rgb = [0, 255, 255];
/** Predicted-mask contour colour (red). */
export const PREDICTED_COLOUR: Rgb = [255, 48, 48];

/** matplotlib viridis sampled at 0, 1/8, ..., 1 (from _cm_listed._viridis_data); linear in between. */
const VIRIDIS: Rgb[] = [
  [68, 1, 84],
  [71, 44, 122],
  [59, 81, 139],
  [44, 113, 142],
  [33, 144, 141],
  [39, 173, 129],
  [92, 200, 99],
  [170, 220, 50],
  [253, 231, 37],
];

/** Viridis colour for t in [0, 1] (clamped). */
export function viridis(t: number): [number, number, number] {
  const c = Number.isFinite(t) ? Math.min(1, Math.max(0, t)) : 0;
  const x = c * (VIRIDIS.length - 1);
  const i = Math.min(VIRIDIS.length - 2, Math.floor(x));
  const f = x - i;
  const a = VIRIDIS[i];
  const b = VIRIDIS[i + 1];
  return [a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f, a[2] + (b[2] - a[2]) * f];
}

/** Nearest-neighbour upscale of a 0/1 mask by an integer factor. */
export function upscaleMask(mask: ArrayLike<number>, size: number, scale: number): Uint8Array {
  const N = size * scale;
  const out = new Uint8Array(N * N);
  for (let v = 0; v < N; v++) for (let u = 0; u < N; u++) out[v * N + u] = mask[Math.floor(v / scale) * size + Math.floor(u / scale)] > 0 ? 1 : 0;
  return out;
}

/**
 * Boundary pixels of a 0/1 mask (N x N), 4-connectivity. 'inner': mask pixels with a neighbour
 * outside the mask or on the image border; 'outer': non-mask pixels with a mask neighbour.
 */
export function maskBoundary(mask: Uint8Array, N: number, side: 'inner' | 'outer'): Uint8Array {
  const out = new Uint8Array(N * N);
  const at = (x: number, y: number) => (x < 0 || y < 0 || x >= N || y >= N ? 0 : mask[y * N + x]);
  for (let y = 0; y < N; y++) {
    for (let x = 0; x < N; x++) {
      const m = mask[y * N + x];
      const nb = [at(x - 1, y), at(x + 1, y), at(x, y - 1), at(x, y + 1)];
      if (side === 'inner' ? m === 1 && nb.includes(0) : m === 0 && nb.includes(1)) out[y * N + x] = 1;
    }
  }
  return out;
}

// A 3 x 5 pixel font (rows top to bottom, '#' = ink) for the legend; lower case prints as upper case.
const GLYPHS: Record<string, string> = {
  A: '.#.#.#####.##.#',
  B: '##.#.###.#.###.',
  C: '.###..#..#...##',
  D: '##.#.##.##.###.',
  E: '####..##.#..###',
  F: '####..##.#..#..',
  G: '.###..#.##.#.##',
  H: '#.##.#####.##.#',
  I: '###.#..#..#.###',
  J: '..#..#..##.#.#.',
  K: '#.##.###.#.##.#',
  L: '#..#..#..#..###',
  M: '#.########.##.#',
  N: '##.#.##.##.##.#',
  O: '.#.#.##.##.#.#.',
  P: '##.#.###.#..#..',
  Q: '.#.#.##.###..##',
  R: '##.#.###.#.##.#',
  S: '.###...#...###.',
  T: '###.#..#..#..#.',
  U: '#.##.##.##.####',
  V: '#.##.##.##.#.#.',
  W: '#.##.########.#',
  X: '#.##.#.#.#.##.#',
  Y: '#.##.#.#..#..#.',
  Z: '###..#.#.#..###',
  '0': '####.##.##.####',
  '1': '.#.##..#..#.###',
  '2': '##...#.#.#..###',
  '3': '##...#.#...###.',
  '4': '#.##.####..#..#',
  '5': '####..##...###.',
  '6': '.###..####.####',
  '7': '###..#.#..#..#.',
  '8': '####.#####.####',
  '9': '####.####..###.',
  '-': '......###......',
  '=': '...###...###...',
  '.': '.............#.',
  ':': '....#.....#....',
  '/': '..#..#.#.#..#..',
  '%': '#.#..#.#.#..#.#',
  '(': '.#.#..#..#...#.',
  ')': '.#...#..#..#.#.',
  ' ': '...............',
  _: '............###',
  '+': '....#.###.#....',
};
function glyph(ch: string): string {
  return GLYPHS[ch.toUpperCase()] ?? GLYPHS[' ']; // characters without a glyph print as a space
}

/** Draws `text` with the 3 x 5 font at (x, y), each font cell `px` pixels; returns the end x. */
export function drawText(img: RgbImage, text: string, x: number, y: number, colour: Rgb, px = 2): number {
  let cx = x;
  for (const ch of text) {
    const g = glyph(ch);
    for (let r = 0; r < 5; r++) {
      for (let c = 0; c < 3; c++) {
        if (g[r * 3 + c] !== '#') continue;
        fillRect(img, cx + c * px, y + r * px, px, px, colour);
      }
    }
    cx += 4 * px;
  }
  return cx;
}

function fillRect(img: RgbImage, x0: number, y0: number, w: number, h: number, colour: Rgb): void {
  for (let y = Math.max(0, y0); y < Math.min(img.height, y0 + h); y++) {
    for (let x = Math.max(0, x0); x < Math.min(img.width, x0 + w); x++) {
      const o = (y * img.width + x) * 3;
      img.rgb[o] = colour[0];
      img.rgb[o + 1] = colour[1];
      img.rgb[o + 2] = colour[2];
    }
  }
}

export interface OverlayInput {
  /** Slice side in pixels (the model's input size). */
  size: number;
  /** Display image, SUV (g/mL), size x size row-major. */
  suv: Float32Array;
  /** Grad-CAM in [0, 1], size x size. */
  cam: Float32Array;
  reference: Uint8Array;
  predicted: Uint8Array;
  /** Integer upscale factor (default 6). */
  scale?: number;
  /** Grey window in SUV (default [0, slice SUVmax], at least [0, 1]). */
  suvWindow?: [number, number];
  /** Heat-map opacity at CAM = 1 (default 0.6). */
  heatAlpha?: number;
  /** First legend line, e.g. the patient and slice. */
  title?: string;
  /** Second legend line, e.g. the layer. */
  subtitle?: string;
}

export interface Overlay extends RgbImage {
  suvWindow: [number, number];
}

/** Renders the overlay: the image panel (size*scale square) above a legend strip. */
export function renderGradCamOverlay(input: OverlayInput): Overlay {
  const { size, suv, cam, reference, predicted } = input;
  const scale = input.scale ?? 6;
  const heatAlpha = input.heatAlpha ?? 0.6;
  const px = size * size;
  for (const [name, a] of [
    ['suv', suv],
    ['cam', cam],
    ['reference', reference],
    ['predicted', predicted],
  ] as const) {
    if (a.length !== px) throw new Error(`renderGradCamOverlay: ${name} has ${a.length} values, expected ${size} x ${size} = ${px}`);
  }
  if (!(Number.isInteger(scale) && scale >= 1 && scale <= 32)) throw new Error(`renderGradCamOverlay: scale must be an integer in 1..32, got ${scale}`);
  let suvMax = 0;
  for (const v of suv) if (v > suvMax) suvMax = v;
  const win: [number, number] = input.suvWindow ?? [0, Math.max(1, suvMax)];
  if (!(win[1] > win[0])) throw new Error(`renderGradCamOverlay: SUV window [${win}] must have upper > lower`);

  const N = size * scale;
  const legendH = 62;
  const img: Overlay = { width: N, height: N + legendH, rgb: new Uint8Array(N * (N + legendH) * 3), suvWindow: win };
  const heat = resizeBilinear(cam, size, size, N, N);
  for (let v = 0; v < N; v++) {
    for (let u = 0; u < N; u++) {
      const s = suv[Math.floor(v / scale) * size + Math.floor(u / scale)];
      const g = 255 * Math.min(1, Math.max(0, (s - win[0]) / (win[1] - win[0])));
      const c = Math.min(1, Math.max(0, heat[v * N + u]));
      const a = heatAlpha * c;
      const col = viridis(c);
      const o = (v * N + u) * 3;
      for (let k = 0; k < 3; k++) img.rgb[o + k] = Math.round((1 - a) * g + a * col[k]);
    }
  }
  const paint = (m: Uint8Array, colour: Rgb) => {
    for (let i = 0; i < m.length; i++) {
      if (!m[i]) continue;
      img.rgb[i * 3] = colour[0];
      img.rgb[i * 3 + 1] = colour[1];
      img.rgb[i * 3 + 2] = colour[2];
    }
  };
  paint(maskBoundary(upscaleMask(reference, size, scale), N, 'inner'), REFERENCE_COLOUR);
  paint(maskBoundary(upscaleMask(predicted, size, scale), N, 'outer'), PREDICTED_COLOUR);

  // Legend strip: title, contour swatches, colour bar.
  const white: Rgb = [235, 235, 235];
  let y = N + 4;
  drawText(img, input.title ?? '', 4, y, white);
  y += 14;
  fillRect(img, 4, y + 3, 14, 4, REFERENCE_COLOUR);
  let x = drawText(img, 'REFERENCE', 22, y, white);
  fillRect(img, x + 10, y + 3, 14, 4, PREDICTED_COLOUR);
  drawText(img, 'PREDICTED', x + 28, y, white);
  y += 14;
  x = drawText(img, 'CAM 0', 4, y, white) + 2;
  const barW = Math.max(20, N - x - 16);
  for (let i = 0; i < barW; i++) fillRect(img, x + i, y, 1, 10, viridis(i / (barW - 1)));
  drawText(img, '1', x + barW + 4, y, white);
  y += 14;
  drawText(img, input.subtitle ?? '', 4, y, white);
  return img;
}
