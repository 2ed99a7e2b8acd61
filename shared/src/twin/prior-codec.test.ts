import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { averageFromCentred, DEFAULT_HE_PARAMS, quantizeToZt } from '../he/index.js';
import { plainModulus } from '../he/params.js';
import {
  boxStats,
  decodePriorStats,
  encodePriorStats,
  fitPatient,
  implausibleBoxStats,
  makeRng,
  mergeStats,
  modelBox,
  priorCodecErrorBound,
  priorVectorLength,
  simulate,
  sufficientStats,
  zStatsFromBox,
  getModel,
  type BoxStats,
  type Fit,
  type ModelName,
  type PriorCodecConfig,
} from './index.js';

const MODELS: ModelName[] = ['exponential', 'gompertz'];
const CFG: PriorCodecConfig = { models: MODELS, maxPatientsPerSite: 500, maxRssPerPatient: 1, maxDofPerPatient: 50, clipBound: 1 };

/** A site's Gompertz/exponential fits of a synthetic cohort (diameter noise 5 %). */
function siteFits(model: ModelName, n: number, seed: number): Fit[] {
  const rng = makeRng(seed);
  const days = [0, 40, 80, 120, 160];
  const g = getModel('gompertz');
  return Array.from({ length: n }, () => {
    const v = simulate(g, [0.02 * Math.exp(0.3 * rng.normal()), 1.5], 0.3 * Math.exp(0.3 * rng.normal()), 0, days).map((x) => x * (1 + 0.15 * rng.normal()) ** 3);
    return fitPatient(model, { days, volumesMm3: v.map((x) => Math.max(x, 0) * 1000) }, { seed: 1 });
  });
}

/** What the encrypted path computes, without SEAL: per site quantise (float32 input), sum in Z_t, centre, average. */
function secureSum(vectors: Float32Array[], precisionBits: number): Float32Array {
  const t = plainModulus({ ...DEFAULT_HE_PARAMS, precisionBits });
  const tn = Number(t);
  const sums = new Float64Array(vectors[0].length);
  for (const v of vectors) {
    const q = quantizeToZt(v, 1, CFG.clipBound, precisionBits, t);
    for (let i = 0; i < sums.length; i++) sums[i] = (sums[i] + q.values[i]) % tn;
  }
  for (let i = 0; i < sums.length; i++) if (sums[i] > (tn - 1) / 2) sums[i] -= tn;
  return averageFromCentred(sums, vectors.length, CFG.clipBound, precisionBits);
}

describe('fixed-point codec of the population prior statistics', () => {
  const sites = [40, 90, 250].map((n, s) => new Map(MODELS.map((m) => [m, boxStats(siteFits(m, n, 100 + s), modelBox(m), CFG).stats] as const)));

  for (const p of [20, 14]) {
    it(`round trip through quantisation and the sum of 3 sites stays within N·nMax·(2^-(p+1) + 2^-23) (p = ${p})`, () => {
      const avg = secureSum(
        sites.map((s) => encodePriorStats(s, CFG)),
        p,
      );
      assert.equal(avg.length, priorVectorLength(MODELS));
      const dec = decodePriorStats(avg, 3, CFG);
      const bound = priorCodecErrorBound(3, p) * CFG.maxPatientsPerSite;
      for (const m of MODELS) {
        const exact = sites.map((s) => s.get(m)!).reduce((a, b) => mergeStats(a, b));
        const got = dec.get(m)!;
        assert.equal(got.n, exact.n, 'n is an exact integer after rounding');
        // dof is exact while its bound N·nMax·dofMax·(2^-(p+1) + 2^-23) < 0.5 (p = 20: 0.045), else within it + 0.5 of rounding.
        const dofBound = bound * CFG.maxDofPerPatient;
        if (dofBound < 0.5) assert.equal(got.dof, exact.dof, 'dof is an exact integer after rounding');
        else assert.ok(Math.abs(got.dof - exact.dof) <= dofBound + 0.5, `dof ${got.dof} vs ${exact.dof} (bound ${dofBound})`);
        let worst = 0;
        exact.sum.forEach((v, i) => (worst = Math.max(worst, Math.abs(v - got.sum[i]))));
        exact.sumSq.forEach((row, i) => row.forEach((v, j) => (worst = Math.max(worst, Math.abs(v - got.sumSq[i][j])))));
        assert.ok(worst <= bound, `${m}: worst error ${worst} > bound ${bound}`);
        assert.ok(Math.abs(got.rss - exact.rss) <= bound * CFG.maxRssPerPatient);
        assert.ok(implausibleBoxStats(got, { contributors: 3, minPatients: 5, tol: bound, ...CFG }) === null);
      }
    });
  }

  it('box statistics map exactly onto the sufficient statistics of the clipped z', () => {
    const fits = siteFits('gompertz', 30, 7);
    const box = modelBox('gompertz');
    const z = zStatsFromBox(boxStats(fits, box, CFG).stats, box);
    const direct = sufficientStats(fits);
    // Least-squares fits are projected onto the box, so clipping changes nothing here.
    assert.equal(z.n, direct.n);
    z.sum.forEach((v, i) => assert.ok(Math.abs(v - direct.sum[i]) < 1e-9 * (1 + Math.abs(v))));
    z.sumSq.forEach((row, i) => row.forEach((v, j) => assert.ok(Math.abs(v - direct.sumSq[i][j]) < 1e-9 * (1 + Math.abs(v)))));
  });

  it('clips one patient outside the box, so its contribution to every |Σu| and |Σuu| is at most 1', () => {
    const f = siteFits('exponential', 1, 3)[0];
    const wild = { ...f, z: [50, -40], rss: 1e6, n: 1e4 } as Fit;
    const { stats, clipped } = boxStats([wild], modelBox('exponential'), CFG);
    assert.equal(clipped, 2);
    assert.deepEqual(stats.sum, [1, -1]);
    assert.ok(stats.sumSq.flat().every((v) => Math.abs(v) <= 1));
    assert.equal(stats.rss, CFG.maxRssPerPatient);
    assert.equal(stats.dof, CFG.maxDofPerPatient);
    assert.ok(encodePriorStats(new Map(MODELS.map((m) => [m, m === 'exponential' ? stats : sites[0].get(m)!] as const)), CFG).every((v) => Math.abs(v) <= CFG.clipBound));
  });

  it('refuses sums no set of honest sites produces: n beyond the sites, Σu beyond n, Cauchy-Schwarz', () => {
    const ok = sites[0].get('exponential')!;
    const o = { contributors: 3, minPatients: 5, tol: 1e-3, ...CFG };
    const bad = (s: Partial<BoxStats>) => implausibleBoxStats({ ...ok, ...s }, o);
    assert.match(bad({ n: 3 * 500 + 1 })!, /outside/);
    assert.match(bad({ n: 4 })!, /outside/);
    assert.match(bad({ sum: [ok.n + 5, 0] })!, /above n/);
    assert.match(
      bad({
        sum: [ok.n * 0.9, 0],
        sumSq: [
          [ok.n * 0.1, 0],
          [0, ok.sumSq[1][1]],
        ],
      })!,
      /Cauchy-Schwarz/,
    );
  });
});
