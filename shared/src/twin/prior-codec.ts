import { fitSpecs, toZ } from './fit.js';
import { getModel, type ModelName } from './models.js';
import type { Fit } from './fit.js';
import type { SufficientStats } from './prior.js';

/**
 * Fixed-point codec of the additive sufficient statistics (prior.ts) for the federated
 * population-prior study (task 'twin-prior'). The vector a site uploads goes through the same
 * path as any model update: quantised to 2^p steps of [-B, B] (shared/src/he/quantize.ts),
 * masked, BFV-encrypted, summed by the coordinator, decrypted and unmasked at the sites.
 *
 * Box. Each patient's transformed parameter vector z is clipped to the model's parameter box in z
 * space (fitSpecs bounds: log for positive parameters) and mapped to u = (z − c)/h ∈ [−1, 1]ᵖ,
 * c = the box centre, h = its half-width. One patient then adds at most 1 to every |Σu_j| and
 * |Σu_j u_k|, min(RSS, rssMax) to Σrss and min(dof, dofMax) to Σdof: one patient's contribution is
 * bounded whatever its data (what fixed point, and any future DP noise, need).
 *
 * Layout, per model in the manifest's order: [n, Σu (p), upper triangle of Σuuᵀ (row-major,
 * p(p+1)/2), Σrss, Σdof], each divided by its largest value at a site (nMax = maxPatientsPerSite
 * patients: nMax, nMax, nMax, nMax·rssMax, nMax·dofMax) and multiplied by B = clipBound, so every
 * element lies in [−B, B]. Each site sends weight 1; the aggregate is the mean over the N
 * contributors, so the sum = mean × N (N = totalSamples of the round).
 *
 * Error bound (per element, in the normalised units above, i.e. before × nMax etc.): each site's
 * element is rounded to float32 (≤ 2^-24·B) and quantised (≤ 2^-(p+1)·B, half a step); the mean is
 * rounded to float32 once more (≤ 2^-24·B). The decoded sum is therefore within
 * N·(2^-(p+1) + 2^-23) of the exact normalised sum (priorCodecErrorBound), i.e. within
 * N·nMax·(2^-(p+1) + 2^-23) in u units. n and dof are integers: they are rounded, exact while that
 * bound × scale < 0.5 (N = 3, nMax = 500, p = 20: 9·10^-4 for n, 0.045 for dof with dofMax = 50;
 * at p = 14 dof is only within 2.3 + 0.5). The z-space statistics follow by the
 * exact affine map Σz = n·c + h·Σu, Σzzᵀ = n·ccᵀ + c(hΣu)ᵀ + (hΣu)cᵀ + diag(h)Σuuᵀdiag(h).
 */
export interface PriorCodecConfig {
  models: readonly ModelName[];
  /** nMax: most patients one site may put in the statistics. */
  maxPatientsPerSite: number;
  /** Cap of one patient's RSS (normalised error scale) in Σrss. */
  maxRssPerPatient: number;
  /** Cap of one patient's residual degrees of freedom in Σdof. */
  maxDofPerPatient: number;
  /** B of the manifest (training.clipBound). */
  clipBound: number;
}

export interface ModelBox {
  model: ModelName;
  paramNames: string[];
  centre: number[];
  half: number[];
}

/** The parameter box of a model in z space (no kill rate): what each patient's z is clipped to. */
export function modelBox(model: ModelName): ModelBox {
  const specs = fitSpecs(getModel(model), false);
  const lo = specs.map((s) => toZ(s, s.lower));
  const hi = specs.map((s) => toZ(s, s.upper));
  return { model, paramNames: specs.map((s) => s.name), centre: lo.map((l, j) => (l + hi[j]) / 2), half: lo.map((l, j) => (hi[j] - l) / 2) };
}

/** Elements one model takes in the vector: n, p sums, p(p+1)/2 products, rss, dof. */
export const modelBlockLength = (p: number): number => 3 + p + (p * (p + 1)) / 2;

/** Length of the whole update vector for these models (the manifest's updateLength). */
export function priorVectorLength(models: readonly ModelName[]): number {
  return models.reduce((s, m) => s + modelBlockLength(modelBox(m).paramNames.length), 0);
}

/** Statistics in box units u ∈ [−1, 1]ᵖ (what the codec carries); same shape as SufficientStats. */
export type BoxStats = SufficientStats;

/** One site's box statistics of its fits of one model: z clipped to the box, RSS and dof capped. Returns how many z elements were clipped. */
export function boxStats(fits: readonly Fit[], box: ModelBox, cfg: Pick<PriorCodecConfig, 'maxRssPerPatient' | 'maxDofPerPatient'>): { stats: BoxStats; clipped: number } {
  const p = box.paramNames.length;
  const s: BoxStats = {
    model: box.model,
    paramNames: [...box.paramNames],
    n: 0,
    sum: new Array<number>(p).fill(0),
    sumSq: Array.from({ length: p }, () => new Array<number>(p).fill(0)),
    rss: 0,
    dof: 0,
  };
  let clipped = 0;
  for (const f of fits) {
    if (f.modelName !== box.model || f.paramNames.join() !== box.paramNames.join()) throw new Error(`boxStats: a ${f.modelName}(${f.paramNames.join(',')}) fit for the ${box.model} box`);
    const u = f.z.map((z, j) => {
      const v = (z - box.centre[j]) / box.half[j];
      if (!(Math.abs(v) <= 1)) clipped++;
      return Number.isFinite(v) ? Math.max(-1, Math.min(1, v)) : 0;
    });
    s.n += 1;
    for (let i = 0; i < p; i++) {
      s.sum[i] += u[i];
      for (let j = 0; j < p; j++) s.sumSq[i][j] += u[i] * u[j];
    }
    s.rss += Math.min(Math.max(f.rss, 0), cfg.maxRssPerPatient);
    s.dof += Math.min(Math.max(f.n - f.p, 0), cfg.maxDofPerPatient);
  }
  return { stats: s, clipped };
}

/** Box statistics → the SufficientStats of z (prior.ts) by the exact affine map. */
export function zStatsFromBox(b: BoxStats, box: ModelBox): SufficientStats {
  const { centre: c, half: h } = box;
  const p = c.length;
  const hs = b.sum.map((v, j) => h[j] * v);
  return {
    model: box.model,
    paramNames: [...box.paramNames],
    n: b.n,
    sum: c.map((cj, j) => b.n * cj + hs[j]),
    sumSq: Array.from({ length: p }, (_, i) => Array.from({ length: p }, (_, j) => b.n * c[i] * c[j] + c[i] * hs[j] + hs[i] * c[j] + h[i] * h[j] * b.sumSq[i][j])),
    rss: b.rss,
    dof: b.dof,
  };
}

/** One site's update vector: per model its box statistics, normalised to [−B, B] (see the file comment). */
export function encodePriorStats(byModel: ReadonlyMap<ModelName, BoxStats>, cfg: PriorCodecConfig): Float32Array {
  const out = new Float32Array(priorVectorLength(cfg.models));
  const nMax = cfg.maxPatientsPerSite;
  const B = cfg.clipBound;
  let o = 0;
  for (const m of cfg.models) {
    const s = byModel.get(m);
    const p = modelBox(m).paramNames.length;
    if (!s) throw new Error(`encodePriorStats: no statistics for ${m}`);
    if (s.n > nMax) throw new Error(`encodePriorStats: ${s.n} patients for ${m}, above maxPatientsPerSite ${nMax}`);
    out[o++] = (B * s.n) / nMax;
    for (let i = 0; i < p; i++) out[o++] = (B * s.sum[i]) / nMax;
    for (let i = 0; i < p; i++) for (let j = i; j < p; j++) out[o++] = (B * s.sumSq[i][j]) / nMax;
    out[o++] = (B * s.rss) / (nMax * cfg.maxRssPerPatient);
    out[o++] = (B * s.dof) / (nMax * cfg.maxDofPerPatient);
  }
  return out;
}

/**
 * The largest error of a decoded sum element in normalised units (multiply by nMax for n, Σu,
 * Σuu; by nMax·rssMax for Σrss; by nMax·dofMax for Σdof): N·(2^-(p+1) + 2^-23).
 */
export function priorCodecErrorBound(contributors: number, precisionBits: number): number {
  return contributors * (2 ** -(precisionBits + 1) + 2 ** -23);
}

/**
 * The summed box statistics from the decrypted mean `avg` over `contributors` sites (weight 1
 * each). n and dof are rounded to integers (exact within the bound); rss is floored at 0.
 */
export function decodePriorStats(avg: Float32Array, contributors: number, cfg: PriorCodecConfig): Map<ModelName, BoxStats> {
  if (avg.length !== priorVectorLength(cfg.models)) throw new Error(`decodePriorStats: ${avg.length} elements, the models need ${priorVectorLength(cfg.models)}`);
  const k = (contributors * cfg.maxPatientsPerSite) / cfg.clipBound;
  const out = new Map<ModelName, BoxStats>();
  let o = 0;
  for (const m of cfg.models) {
    const box = modelBox(m);
    const p = box.paramNames.length;
    const n = Math.round(avg[o++] * k);
    const sum = Array.from({ length: p }, () => avg[o++] * k);
    const sumSq = Array.from({ length: p }, () => new Array<number>(p).fill(0));
    for (let i = 0; i < p; i++)
      for (let j = i; j < p; j++) {
        sumSq[i][j] = avg[o++] * k;
        sumSq[j][i] = sumSq[i][j];
      }
    const rss = Math.max(0, avg[o++] * k * cfg.maxRssPerPatient);
    const dof = Math.max(0, Math.round(avg[o++] * k * cfg.maxDofPerPatient));
    out.set(m, { model: m, paramNames: box.paramNames, n, sum, sumSq, rss, dof });
  }
  return out;
}

/**
 * Why summed box statistics cannot come from honest sites, or null: n outside
 * [minPatients·contributors, nMax·contributors]; |Σu_j| or Σu_j² above n (each |u| ≤ 1);
 * (Σu_j)² > n·Σu_j² (Cauchy–Schwarz) or Σu_iu_j beyond √(Σu_i²Σu_j²), each with the codec's
 * error allowance `tol` (u units); Σdof above n·dofMax, Σrss above n·rssMax.
 */
export function implausibleBoxStats(
  s: BoxStats,
  o: { contributors: number; minPatients: number; tol: number } & Pick<PriorCodecConfig, 'maxPatientsPerSite' | 'maxRssPerPatient' | 'maxDofPerPatient'>,
): string | null {
  const { tol } = o;
  if (s.n < o.minPatients * o.contributors || s.n > o.maxPatientsPerSite * o.contributors)
    return `${s.model}: n = ${s.n} patients outside [${o.minPatients * o.contributors}, ${o.maxPatientsPerSite * o.contributors}] for ${o.contributors} contributors`;
  const p = s.sum.length;
  for (let j = 0; j < p; j++) {
    if (Math.abs(s.sum[j]) > s.n + tol) return `${s.model}: |Σu_${j}| = ${Math.abs(s.sum[j]).toFixed(3)} above n = ${s.n} (every patient's u lies in [-1, 1])`;
    if (s.sumSq[j][j] < -tol || s.sumSq[j][j] > s.n + tol) return `${s.model}: Σu_${j}² = ${s.sumSq[j][j].toFixed(3)} outside [0, n = ${s.n}]`;
    if (s.sum[j] ** 2 > s.n * s.sumSq[j][j] + (2 * s.n + 1) * tol + 1e-9) return `${s.model}: (Σu_${j})² > n·Σu_${j}² (Cauchy-Schwarz): no set of patients has these sums`;
    for (let i = 0; i < j; i++)
      if (Math.abs(s.sumSq[i][j]) > Math.sqrt(Math.max(0, s.sumSq[i][i] + tol) * Math.max(0, s.sumSq[j][j] + tol)) + tol) return `${s.model}: |Σu_${i}u_${j}| beyond Cauchy-Schwarz`;
  }
  if (s.dof > s.n * o.maxDofPerPatient + 0.5) return `${s.model}: Σdof = ${s.dof} above n·maxDofPerPatient`;
  if (s.rss > s.n * o.maxRssPerPatient + tol * o.maxRssPerPatient) return `${s.model}: Σrss = ${s.rss.toFixed(3)} above n·maxRssPerPatient`;
  return null;
}
