import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { auc, brier, diameterFromVolume, fitLogistic, intervalScore, predictLogistic, recistProgression, reliabilityTable, volumeFromDiameter } from './index.js';

/** AUC by definition: over all (positive, negative) pairs, 1 if the positive scores higher, ½ for a tie. */
function aucPairs(s: number[], y: boolean[]): number {
  let u = 0;
  let pairs = 0;
  s.forEach((a, i) =>
    s.forEach((b, j) => {
      if (y[i] && !y[j]) {
        pairs++;
        u += a > b ? 1 : a === b ? 0.5 : 0;
      }
    }),
  );
  return u / pairs;
}

describe('RECIST 1.1 progression (Eisenhauer et al. 2009): >= 20% AND >= 5 mm above the nadir', () => {
  it('exactly 20% and exactly 5 mm is progression (both limits inclusive)', () => {
    assert.equal(recistProgression(30, 25), true); // +20 %, +5 mm
    assert.equal(recistProgression(42, 35), true); // +20 % (1.2·35 is 41.99999… in floating point), +7 mm
  });
  it('20% but under 5 mm is not progression (small lesions)', () => {
    assert.equal(recistProgression(12, 10), false); // +20 %, +2 mm
    assert.equal(recistProgression(24.9, 20), false); // +24.5 %, +4.9 mm
  });
  it('5 mm but under 20% is not progression (large lesions)', () => {
    assert.equal(recistProgression(105, 100), false); // +5 %, +5 mm
    assert.equal(recistProgression(119.9, 100), false);
    assert.equal(recistProgression(120, 100), true);
  });
  it('a nadir of 0 (complete response): 5 mm is enough', () => {
    assert.equal(recistProgression(5, 0), true);
    assert.equal(recistProgression(4, 0), false);
  });
  it('diameters from the Laleh volumes V = 0.52·d³ round-trip', () => {
    for (const d of [0, 1, 7, 33, 120]) assert.ok(Math.abs(diameterFromVolume(volumeFromDiameter(d)) - d) < 1e-9);
  });
});

describe('AUC, Brier, reliability, interval score', () => {
  it('AUC: hand cases and ties counted one half', () => {
    assert.equal(auc([0.1, 0.2, 0.8, 0.9], [false, false, true, true]), 1);
    assert.equal(auc([0.9, 0.8, 0.2, 0.1], [false, false, true, true]), 0);
    assert.equal(auc([0.5, 0.5], [true, false]), 0.5);
    // positives 0.4, 0.7; negatives 0.4, 0.2, 0.9 → pairs: (0.4: ½, 1, 0) + (0.7: 1, 1, 0) = 3.5 of 6
    assert.equal(auc([0.4, 0.7, 0.4, 0.2, 0.9], [true, true, false, false, false]), 3.5 / 6);
    assert.ok(Number.isNaN(auc([0.1, 0.2], [true, true])));
  });
  it('AUC equals Mann–Whitney U / (n1·n0) on random data with many ties', () => {
    let seed = 7;
    const r = () => (seed = (seed * 16807) % 2147483647) / 2147483647;
    const s = Array.from({ length: 200 }, () => Math.round(r() * 10) / 10);
    const y = s.map((v) => r() < 0.3 + 0.4 * v);
    assert.ok(Math.abs(auc(s, y) - aucPairs(s, y)) < 1e-12);
  });
  it('Brier: hand case', () => {
    assert.ok(Math.abs(brier([1, 0, 0.5, 0.2], [true, false, true, false]) - (0 + 0 + 0.25 + 0.04) / 4) < 1e-15);
  });
  it('reliability: fixed bins with counts, mean forecast and observed frequency; 1.0 falls in the last bin', () => {
    const t = reliabilityTable([0.05, 0.05, 0.15, 1, 0.95], [false, true, true, true, false]);
    assert.equal(t.length, 10);
    assert.deepEqual([t[0].n, t[0].meanPredicted, t[0].observedFrequency], [2, 0.05, 0.5]);
    assert.deepEqual([t[1].n, t[1].observedFrequency], [1, 1]);
    assert.deepEqual([t[9].n, t[9].meanPredicted, t[9].observedFrequency], [2, 0.975, 0.5]);
    assert.equal(t[5].n, 0);
    assert.equal(
      t.reduce((s, b) => s + b.n, 0),
      5,
    );
  });
  it('interval score (Gneiting & Raftery 2007): width inside, width + 2/α·miss outside', () => {
    assert.equal(intervalScore(1, 3, 2), 2);
    assert.equal(intervalScore(1, 3, 0.5), 2 + 20 * 0.5);
    assert.ok(Math.abs(intervalScore(1, 3, 3.25) - (2 + 20 * 0.25)) < 1e-12);
    assert.equal(intervalScore(1, 3, 4, 0.5), 2 + 4 * 1);
  });
  it('ridge logistic: recovers the direction and orders probabilities; finite under separation', () => {
    const x = Array.from({ length: 40 }, (_, i) => [i / 10, (i % 3) - 1]);
    const y = x.map(([a], i) => a + (i % 5 === 0 ? 1 : 0) > 2.2);
    const m = fitLogistic(x, y);
    assert.ok(m.coef[1] > 0);
    assert.ok(predictLogistic(m, [3.5, 0]) > 0.8 && predictLogistic(m, [0.2, 0]) < 0.2);
    const sep = fitLogistic([[0], [1], [2], [3]], [false, false, true, true]);
    assert.ok(sep.coef.every(Number.isFinite));
  });
});
