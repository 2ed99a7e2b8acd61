import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { inflateSync } from 'node:zlib';
import { crc32, encodePngRgb } from './png.js';
import { mulberry32 } from '../model/prng.js';

/**
 * Bit-by-bit CRC-32 (reflected polynomial 0xEDB88320, init and final XOR 0xFFFFFFFF), written
 * independently of the table-driven one under test. (node's zlib.crc32 exists only from Node 20.15,
 * and package.json allows 20.10.)
 */
function bitwiseCrc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0xedb88320 : c >>> 1;
  }
  return (c ^ 0xffffffff) >>> 0;
}

/** An independent PNG reader for the test: chunks, CRCs (checked bit by bit), IHDR, inflate, all five filters. */
function decodePng(bytes: Uint8Array) {
  assert.deepEqual([...bytes.subarray(0, 8)], [137, 80, 78, 71, 13, 10, 26, 10], 'PNG signature');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const chunks: { type: string; data: Uint8Array }[] = [];
  let o = 8;
  while (o < bytes.length) {
    const len = view.getUint32(o);
    const type = String.fromCharCode(...bytes.subarray(o + 4, o + 8));
    const data = bytes.subarray(o + 8, o + 8 + len);
    const crc = view.getUint32(o + 8 + len);
    assert.equal(crc, bitwiseCrc32(bytes.subarray(o + 4, o + 8 + len)), `CRC of ${type}`);
    chunks.push({ type, data });
    o += 12 + len;
  }
  assert.equal(o, bytes.length, 'no trailing bytes');
  assert.deepEqual(
    chunks.map((c) => c.type),
    ['IHDR', 'IDAT', 'IEND'],
  );
  const ih = new DataView(chunks[0].data.buffer, chunks[0].data.byteOffset, 13);
  const width = ih.getUint32(0);
  const height = ih.getUint32(4);
  assert.deepEqual([...chunks[0].data.subarray(8)], [8, 2, 0, 0, 0], 'bit depth 8, truecolour, deflate, adaptive filter, no interlace');
  const raw = new Uint8Array(inflateSync(chunks[1].data));
  const stride = width * 3;
  assert.equal(raw.length, height * (stride + 1));
  const out = new Uint8Array(height * stride);
  for (let y = 0; y < height; y++) {
    const f = raw[y * (stride + 1)];
    for (let i = 0; i < stride; i++) {
      const x = raw[y * (stride + 1) + 1 + i];
      const a = i >= 3 ? out[y * stride + i - 3] : 0;
      const b = y > 0 ? out[(y - 1) * stride + i] : 0;
      const c = i >= 3 && y > 0 ? out[(y - 1) * stride + i - 3] : 0;
      const p = a + b - c;
      const paeth = Math.abs(p - a) <= Math.abs(p - b) && Math.abs(p - a) <= Math.abs(p - c) ? a : Math.abs(p - b) <= Math.abs(p - c) ? b : c;
      const pred = [0, a, b, (a + b) >> 1, paeth][f];
      assert.ok(pred !== undefined, `filter type ${f}`);
      out[y * stride + i] = (x + pred) & 0xff;
    }
  }
  return { width, height, rgb: out };
}

describe('PNG writer', () => {
  it('round-trips an RGB image: signature, IHDR, CRCs and every pixel', () => {
    const rand = mulberry32(7);
    const width = 37;
    const height = 11;
    const rgb = Uint8Array.from({ length: width * height * 3 }, (_, i) => (i % 5 === 0 ? 255 : Math.floor(rand() * 256)));
    const png = encodePngRgb({ width, height, rgb });
    const back = decodePng(png);
    assert.equal(back.width, width);
    assert.equal(back.height, height);
    assert.deepEqual(back.rgb, rgb);
  });

  it('CRC-32 matches the PNG reference value and a bitwise implementation', () => {
    assert.equal(crc32(new TextEncoder().encode('IEND')), 0xae426082);
    const bytes = Uint8Array.from({ length: 1000 }, (_, i) => (i * 31) & 0xff);
    assert.equal(crc32(bytes), bitwiseCrc32(bytes));
  });

  it('refuses a buffer whose length does not match width x height x 3', () => {
    assert.throws(() => encodePngRgb({ width: 4, height: 4, rgb: new Uint8Array(47) }), /expected 4 x 4 x 3 = 48 bytes, got 47/);
    assert.throws(() => encodePngRgb({ width: 0, height: 4, rgb: new Uint8Array(0) }), /width and height/);
  });
});
