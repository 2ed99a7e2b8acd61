import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PREDICTED_COLOUR, REFERENCE_COLOUR, maskBoundary, renderGradCamOverlay, upscaleMask, viridis } from './overlay.js';

const px = (img: { width: number; rgb: Uint8Array }, x: number, y: number) => [...img.rgb.subarray((y * img.width + x) * 3, (y * img.width + x) * 3 + 3)];

describe('Grad-CAM overlay', () => {
  it('boundaries: inner pixels of the mask and outer pixels around it, 4-connected', () => {
    const N = 5;
    const m = new Uint8Array(N * N);
    for (let y = 1; y <= 3; y++) for (let x = 1; x <= 3; x++) m[y * N + x] = 1;
    const inner = maskBoundary(m, N, 'inner');
    const outer = maskBoundary(m, N, 'outer');
    assert.equal(
      inner.reduce((a, b) => a + b, 0),
      8,
      'the 3x3 square minus its centre',
    );
    assert.equal(inner[2 * N + 2], 0);
    assert.equal(
      outer.reduce((a, b) => a + b, 0),
      12,
      'the 4-neighbours of the square outside it (corners excluded)',
    );
    assert.equal(outer[0], 0);
    assert.deepEqual([...upscaleMask([1, 0, 0, 1], 2, 2)], [1, 1, 0, 0, 1, 1, 0, 0, 0, 0, 1, 1, 0, 0, 1, 1]);
  });

  it('draws grey PET, heat only where the CAM is positive, and both contours in their colours', () => {
    const size = 8;
    const scale = 4;
    const suv = Float32Array.from({ length: size * size }, (_, i) => (i % size) / (size - 1)); // SUV 0..1 left to right
    const cam = new Float32Array(size * size);
    cam[5 * size + 5] = 1;
    const reference = new Uint8Array(size * size);
    for (let y = 2; y <= 4; y++) for (let x = 2; x <= 4; x++) reference[y * size + x] = 1;
    const predicted = Uint8Array.from(reference);
    const img = renderGradCamOverlay({ size, suv, cam, reference, predicted, scale, suvWindow: [0, 1], heatAlpha: 0.5, title: 'STS_001 Z=3' });
    assert.equal(img.width, size * scale);
    assert.ok(img.height > size * scale, 'legend strip below the image');
    // Far from the CAM's support: pure grey = 255 x SUV.
    assert.deepEqual(px(img, 0, 0), [0, 0, 0]);
    assert.deepEqual(px(img, 31, 0), [255, 255, 255]);
    // Reference contour on the mask's inner edge (pixel 8 = first upscaled pixel of column 2), predicted just outside.
    assert.deepEqual(px(img, 8, 12), [...REFERENCE_COLOUR]);
    assert.deepEqual(px(img, 7, 12), [...PREDICTED_COLOUR]);
    assert.notDeepEqual(px(img, 12, 12), [...REFERENCE_COLOUR], 'the mask interior is not contour');
    // Near the CAM peak: output pixel 22 maps to source coordinate (22.5 x 8/32 - 0.5) = 5.125 on
    // both axes, so the bilinear heat is 0.875^2 and the opacity 0.5 x that over grey 255 x 5/7.
    const c = 0.875 * 0.875;
    const a = 0.5 * c;
    const grey = (255 * 5) / 7;
    const want = viridis(c).map((v) => Math.round((1 - a) * grey + a * v));
    assert.deepEqual(px(img, 22, 22), want);
    assert.throws(() => renderGradCamOverlay({ size, suv, cam: new Float32Array(3), reference, predicted }), /cam has 3 values, expected 8 x 8 = 64/);
  });

  it('viridis runs from dark purple to yellow and clamps', () => {
    assert.deepEqual(viridis(0), [68, 1, 84]);
    assert.deepEqual(viridis(1), [253, 231, 37]);
    assert.deepEqual(viridis(-3), viridis(0));
    const lum = (c: number[]) => 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
    for (let t = 0; t < 1; t += 0.05) assert.ok(lum(viridis(t + 0.05)) > lum(viridis(t)), 'luminance increases monotonically');
  });
});
