/**
 * Minimal PNG writer: 8-bit truecolour (RGB), no interlace, zlib-deflated scanlines.
 *
 * Format: PNG (Third Edition), W3C Recommendation / ISO/IEC 15948:2004 — signature
 * (§5.2), chunk layout length | type | data | CRC-32 over type+data (§5.3), IHDR (§11.2.2),
 * IDAT holding one zlib stream (RFC 1950/1951) of filtered scanlines (§7.3, §9), IEND.
 * Every scanline uses filter type 1 (Sub, §9.2: byte minus the same channel of the pixel to
 * its left), which suits smooth images such as heat maps better than no filter.
 * CRC-32: ISO 3309 / ITU-T V.42 polynomial 0xEDB88320 (reflected), as in PNG Annex D.
 */
import { deflateSync } from 'node:zlib';

export const PNG_SIGNATURE = Uint8Array.from([137, 80, 78, 71, 13, 10, 26, 10]);

let crcTable: Uint32Array | null = null;

/** CRC-32 of `bytes` (PNG Annex D). */
export function crc32(bytes: Uint8Array): number {
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = crcTable[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type: string, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, data.length);
  for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i);
  out.set(data, 8);
  view.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}

/** An RGB image, 8 bits per channel, row-major, 3 bytes per pixel. */
export interface RgbImage {
  width: number;
  height: number;
  rgb: Uint8Array;
}

/** Encodes an RGB image as PNG bytes. */
export function encodePngRgb(img: RgbImage): Uint8Array {
  const { width, height, rgb } = img;
  if (!(Number.isInteger(width) && Number.isInteger(height) && width >= 1 && height >= 1 && width < 2 ** 31 && height < 2 ** 31)) {
    throw new Error(`encodePngRgb: width and height must be integers in 1..2^31-1; got ${width} x ${height}`);
  }
  if (rgb.length !== width * height * 3) {
    throw new Error(`encodePngRgb: expected ${width} x ${height} x 3 = ${width * height * 3} bytes, got ${rgb.length}`);
  }
  const ihdr = new Uint8Array(13);
  const v = new DataView(ihdr.buffer);
  v.setUint32(0, width);
  v.setUint32(4, height);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // colour type 2 = truecolour
  ihdr[10] = 0; // compression method 0 = deflate
  ihdr[11] = 0; // filter method 0 = adaptive (five filter types)
  ihdr[12] = 0; // no interlace
  const stride = width * 3;
  const raw = new Uint8Array(height * (stride + 1));
  for (let y = 0; y < height; y++) {
    const o = y * (stride + 1);
    raw[o] = 1; // Sub
    const row = rgb.subarray(y * stride, (y + 1) * stride);
    for (let i = 0; i < stride; i++) raw[o + 1 + i] = (row[i] - (i >= 3 ? row[i - 3] : 0)) & 0xff;
  }
  const idat = new Uint8Array(deflateSync(raw, { level: 9 }));
  const parts = [PNG_SIGNATURE, chunk('IHDR', ihdr), chunk('IDAT', idat), chunk('IEND', new Uint8Array(0))];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}
