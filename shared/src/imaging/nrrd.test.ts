import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync, gzipSync } from 'node:zlib';
import { describe, it } from 'node:test';
import { ImagingError, readNrrdImage } from './index.js';

const here = path.dirname(fileURLToPath(import.meta.url));
// The project's own copies of the real test files (fixtures/README.md lists sources and licences).
const DATA = path.resolve(here, '../../../fixtures');
const read = (rel: string) => readFileSync(path.join(DATA ?? '', rel));
const isImagingError = (code: string) => (e: unknown) => e instanceof ImagingError && e.code === code;
const nrrd = (header: string, data: Uint8Array) => Buffer.concat([Buffer.from(header, 'latin1'), data]);

describe('NRRD (real files)', () => {
  it('brain1_image.nrrd (gzip, LPS): dims, spacing, origin, direction, voxels', () => {
    const b = read('pyradiomics-cases/brain1_image.nrrd');
    const v = readNrrdImage(b, 'brain1_image.nrrd');
    assert.deepEqual(v.dims, [256, 256, 25]);
    [0.78125, 0.78125, 6.5].forEach((s, i) => assert.ok(Math.abs(v.spacingMm[i] - s) < 1e-9));
    [-99.609375, 99.609375, -78].forEach((o, i) => assert.ok(Math.abs(v.originMm[i] - o) < 1e-9));
    assert.deepEqual(
      v.direction.map((x) => x + 0),
      [1, 0, 0, 0, -1, 0, 0, 0, 1],
    );
    // Independent decode: find the blank line, gunzip, int16 little endian.
    const end = b.indexOf('\n\n') + 2;
    const raw = gunzipSync(b.subarray(end));
    for (const i of [0, 12345, 256 * 256 * 12 + 128 * 256 + 128, v.data.length - 1]) assert.equal(v.data[i], raw.readInt16LE(2 * i));
    const label = readNrrdImage(read('pyradiomics-cases/brain1_label.nrrd'), 'brain1_label.nrrd');
    assert.deepEqual(label.dims, v.dims);
    assert.ok(label.data.some((x) => x === 1));
  });

  it('a truncated gzip NRRD throws TWF_E_IMPORT_CORRUPT', () => {
    const b = read('pyradiomics-cases/breast1_image.nrrd');
    assert.throws(() => readNrrdImage(b.subarray(0, b.length - 500), 'cut.nrrd'), isImagingError('TWF_E_IMPORT_CORRUPT'));
    assert.throws(() => readNrrdImage(b.subarray(0, 100), 'cut-header.nrrd'), isImagingError('TWF_E_IMPORT_CORRUPT'));
  });
});

describe('NRRD (made here)', () => {
  const values = [1, -2, 300, -400, 5, 6, 7, 8];
  const be = Buffer.alloc(16);
  values.forEach((x, i) => be.writeInt16BE(x, 2 * i));
  const header = (extra: string) => `NRRD0004\n# comment\ntype: short\ndimension: 3\nsizes: 2 2 2\n${extra}\n\n`;

  it('raw big-endian, RAS space converted to LPS, quoted "space units" (crashes nrrd-js) handled', () => {
    const v = readNrrdImage(
      nrrd(header('endian: big\nencoding: raw\nspace: right-anterior-superior\nspace directions: (2,0,0) (0,3,0) (0,0,4)\nspace units: "mm" "mm" "mm"\nspace origin: (10,20,30)'), be),
      'be.nrrd',
    );
    assert.deepEqual(Array.from(v.data), values);
    assert.deepEqual(v.spacingMm, [2, 3, 4]);
    assert.deepEqual(v.originMm, [-10, -20, 30]);
    assert.deepEqual(
      v.direction.map((x) => x + 0),
      [-1, 0, 0, 0, -1, 0, 0, 0, 1],
    );
    assert.equal(v.source.littleEndian, false);
  });

  it('gzip, ascii, byte skip, hex and volume 0 of a 4-axis file', () => {
    const le = Buffer.alloc(16);
    values.forEach((x, i) => le.writeInt16LE(x, 2 * i));
    const g = readNrrdImage(nrrd(header('endian: little\nencoding: gzip\nspacings: 1 1 2'), gzipSync(le)), 'g.nrrd');
    assert.deepEqual(Array.from(g.data), values);
    assert.deepEqual(g.spacingMm, [1, 1, 2]);
    const a = readNrrdImage(nrrd(header('encoding: ascii'), Buffer.from(values.join(' ') + '\n')), 'a.nrrd');
    assert.deepEqual(Array.from(a.data), values);
    const s = readNrrdImage(nrrd(header('endian: little\nencoding: raw\nbyte skip: 4'), Buffer.concat([Buffer.alloc(4, 0xff), le])), 's.nrrd');
    assert.deepEqual(Array.from(s.data), values);
    const h = readNrrdImage(nrrd(header('endian: little\nencoding: hex'), Buffer.from(le.toString('hex').replace(/(.{8})/g, '$1\n'))), 'h.nrrd');
    assert.deepEqual(Array.from(h.data), values);
    const four = readNrrdImage(nrrd('NRRD0004\ntype: short\ndimension: 4\nsizes: 2 2 1 2\nkinds: domain domain domain list\nendian: little\nencoding: raw\n\n', le), '4d.nrrd');
    assert.deepEqual(four.dims, [2, 2, 1]);
    assert.deepEqual(Array.from(four.data), values.slice(0, 4));
    assert.match(four.warnings?.join() ?? '', /volume 0/);
  });

  it('refuses detached data, bzip2 and multi-component voxels; truncated raw is CORRUPT', () => {
    assert.throws(() => readNrrdImage(Buffer.from(header('endian: little\nencoding: raw\ndata file: x.raw')), 'x.nhdr'), isImagingError('TWF_E_IMPORT_UNSUPPORTED'));
    assert.throws(() => readNrrdImage(nrrd(header('endian: little\nencoding: bzip2'), Buffer.alloc(20)), 'b.nrrd'), isImagingError('TWF_E_IMPORT_UNSUPPORTED'));
    assert.throws(
      () => readNrrdImage(nrrd('NRRD0004\ntype: short\ndimension: 3\nsizes: 2 2 2\nkinds: vector domain domain\nendian: little\nencoding: raw\n\n', be), 'v.nrrd'),
      isImagingError('TWF_E_IMPORT_UNSUPPORTED'),
    );
    assert.throws(() => readNrrdImage(nrrd(header('endian: little\nencoding: raw'), be.subarray(0, 10)), 't.nrrd'), isImagingError('TWF_E_IMPORT_CORRUPT'));
  });
});
