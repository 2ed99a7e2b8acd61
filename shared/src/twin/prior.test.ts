import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fitPatient, makeRng, mergeStats, predictFit, priorFromStats, simulate, subtractStats, sufficientStats, type Fit } from './index.js';

const DAYS = [0, 40, 80, 120, 160, 200];

/** A synthetic cohort of Gompertz patients around β = 0.02/day, K = 1.5·V(0)... with 5% diameter noise. */
function cohort(n: number, seed: number): Fit[] {
  const rng = makeRng(seed);
  const fits: Fit[] = [];
  for (let i = 0; i < n; i++) {
    const beta = 0.02 * Math.exp(0.2 * rng.normal());
    const K = 1 * Math.exp(0.2 * rng.normal());
    const y = simulate('gompertz', [beta, K], 0.3, 0, DAYS).map((v) => 1000 * v * Math.pow(1 + 0.03 * rng.normal(), 3));
    fits.push(fitPatient('gompertz', { days: DAYS, volumesMm3: y }, { seed: i }));
  }
  return fits;
}

describe('population prior from sufficient statistics', () => {
  const fits = cohort(20, 5);

  it('stats merged from two halves equal the stats of the whole', () => {
    const whole = sufficientStats(fits);
    const merged = mergeStats(sufficientStats(fits.slice(0, 8)), sufficientStats(fits.slice(8)));
    assert.equal(merged.n, whole.n);
    assert.deepEqual(merged.paramNames, ['V0', 'beta', 'K']);
    merged.sum.forEach((v, i) => assert.ok(Math.abs(v - whole.sum[i]) < 1e-9));
    merged.sumSq.forEach((row, i) => row.forEach((v, j) => assert.ok(Math.abs(v - whole.sumSq[i][j]) < 1e-9)));
    assert.ok(Math.abs(merged.rss - whole.rss) < 1e-12 && merged.dof === whole.dof);
    // and subtracting a part gives the other part back
    const back = subtractStats(whole, sufficientStats(fits.slice(0, 8)));
    back.sum.forEach((v, i) => assert.ok(Math.abs(v - sufficientStats(fits.slice(8)).sum[i]) < 1e-9));
    assert.throws(() => mergeStats(whole, sufficientStats([fitPatient('exponential', { days: DAYS, volumesMm3: [1, 2, 3, 4, 5, 6] })])));
  });

  it('prior mean and covariance equal the sample mean and covariance of the transformed parameters', () => {
    const prior = priorFromStats(sufficientStats(fits), { minVariance: 0 });
    const p = 3;
    const mean = Array.from({ length: p }, (_, j) => fits.reduce((s, f) => s + f.z[j], 0) / fits.length);
    mean.forEach((m, j) => assert.ok(Math.abs(m - prior.mean[j]) < 1e-9));
    for (let i = 0; i < p; i++)
      for (let j = 0; j < p; j++) {
        const c = fits.reduce((s, f) => s + (f.z[i] - mean[i]) * (f.z[j] - mean[j]), 0) / (fits.length - 1);
        assert.ok(Math.abs(c - prior.cov[i][j]) < 1e-8, `cov ${i},${j}`);
      }
    assert.ok(Math.abs(Math.exp(prior.mean[1]) - 0.02) < 0.006, `prior β ${Math.exp(prior.mean[1])}`);
  });

  it('MAP with a tight prior pulls a 2-point fit towards the prior mean and forecasts sensibly', () => {
    const prior = priorFromStats(sufficientStats(fits), { inflate: 0.25 });
    // two measurements of a patient growing much faster than the cohort
    const obs = { days: [0, 40], volumesMm3: [300, 900] };
    const plain = fitPatient('gompertz', obs);
    const map = fitPatient('gompertz', obs, { prior });
    assert.ok(map.map && !plain.map);
    for (const j of [1, 2]) {
      assert.ok(Math.abs(map.z[j] - prior.mean[j]) < Math.abs(plain.z[j] - prior.mean[j]), `${map.paramNames[j]} pulled to the prior`);
      assert.ok(Math.abs(map.z[j] - prior.mean[j]) < 3 * Math.sqrt(prior.cov[j][j]));
    }
    const f = predictFit(map, [120, 200]);
    f.forEach((v) => assert.ok(Number.isFinite(v) && v > 300 && v < 5000, `MAP forecast ${v}`));
    // the MAP covariance is proper and tighter than the prior in the constrained directions
    assert.ok(map.cov[1][1] <= prior.cov[1][1] + 1e-12);
  });
});
