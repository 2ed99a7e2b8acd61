import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readNifti } from '@twinfed/shared/data/index';
import { tempDir } from './harness.js';

const ROOT = resolve(fileURLToPath(new URL('.', import.meta.url)), '../..');
const BIN = join(ROOT, 'cli/dist/bin.js');
// The project's copies: a U-Net trained by `npm run demo` and one STS patient (fixtures/README.md).
const MODEL = join(ROOT, 'fixtures/models/demo-unet');
const DATA = join(ROOT, 'fixtures/sts/nifti');

const twinfed = (...args: string[]) =>
  new Promise<{ code: number | null; out: string; err: string }>((res) => {
    execFile(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 60_000 }, (e, out, err) => res({ code: e ? (typeof e.code === 'number' ? e.code : null) : 0, out, err }));
  });

describe('twinfed seg explain', () => {
  const tmp = tempDir('explain');
  after(() => tmp.cleanup());

  it('writes an overlay PNG of the largest tumour slice and reports Dice and where the heat lies', async () => {
    const out = join(tmp.dir, 'sts002.png');
    const r = await twinfed('seg', 'explain', '--model', MODEL, '--data', DATA, '--patient', 'STS_002', '--out', out, '--json');
    assert.equal(r.code, 0, r.err);
    const j = JSON.parse(r.out.trim().split('\n').pop()!) as Record<string, number | string>;
    // Default slice = the largest reference-mask area, computed here independently.
    const mask = readNifti(new Uint8Array(readFileSync(join(DATA, 'STS_002/PET_mask.nii.gz'))));
    const [nx, ny, nz] = mask.dims;
    const areas = Array.from({ length: nz }, (_, z) => mask.data.subarray(z * nx * ny, (z + 1) * nx * ny).reduce((a, v) => a + (v > 0.5 ? 1 : 0), 0));
    assert.equal(j.slice, areas.indexOf(Math.max(...areas)));
    assert.equal(j.layer, 'bottleneck');
    assert.equal(j.targetRegion, 'predicted');
    assert.ok((j.sliceDice as number) > 0.6, `Dice on the slice ${j.sliceDice}`);
    assert.ok((j.camMassInReference as number) > 5 * (j.referenceAreaShare as number), `heat in the reference ${j.camMassInReference} vs area ${j.referenceAreaShare}`);
    const png = readFileSync(out);
    assert.deepEqual([...png.subarray(0, 8)], [137, 80, 78, 71, 13, 10, 26, 10]);
    assert.equal(png.readUInt32BE(16), 48 * 6, 'width = 48 px x 6');
    assert.equal(png.length, j.bytes);

    const text = await twinfed('seg', 'explain', '--model', MODEL, '--data', DATA, '--patient', 'STS_002', '--slice', '10', '--layer', 'up0', '--out', join(tmp.dir, 'z10.png'));
    assert.equal(text.code, 0, text.err);
    assert.match(text.out, /^wrote .*z10\.png/m);
    assert.match(text.out, /STS_002 slice z=10 \(given\); layer up0/);
    assert.match(text.out, /Dice on this slice \d\.\d{3}/);
    assert.match(text.out, /Grad-CAM target: tumour logits summed over (the \d+ predicted tumour pixels|the whole slice \(2304 px\): no tumour pixel predicted)/);
    assert.match(text.out, /heat mass inside reference mask|heat map is empty/);
  });

  it('refuses an unknown layer, a slice outside the volume and a missing patient, saying what to do', async () => {
    const layer = await twinfed('seg', 'explain', '--model', MODEL, '--data', DATA, '--patient', 'STS_002', '--layer', 'conv9', '--out', join(tmp.dir, 'x.png'));
    assert.equal(layer.code, 1);
    assert.match(layer.err, /TWF_E_BAD_OPTION: --layer conv9 .* one of down0, down1, bottleneck, up1, up0/);
    const slice = await twinfed('seg', 'explain', '--model', MODEL, '--data', DATA, '--patient', 'STS_002', '--slice', '999', '--out', join(tmp.dir, 'x.png'));
    assert.match(slice.err, /TWF_E_BAD_OPTION: --slice 999 is outside 0\.\.\d+/);
    const who = await twinfed('seg', 'explain', '--model', MODEL, '--data', DATA, '--patient', 'STS_999', '--out', join(tmp.dir, 'x.png'));
    assert.match(who.err, /TWF_E_NOT_FOUND: .*STS_999.*PET_image\.nii\.gz missing/);
    assert.equal(existsSync(join(tmp.dir, 'x.png')), false, 'nothing written on error');
  });
});
