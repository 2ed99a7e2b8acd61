/**
 * Scores for probabilistic forecasts of the twin: the RECIST 1.1 progression rule, AUC, Brier score,
 * reliability table, the interval (Winkler) score, and a small ridge-logistic regression for the
 * honest baseline. Pure functions, no I/O.
 */

/** Diameter (mm) of the ellipsoid volume V = 0.52·d³ (laleh.ts `volumeFromDiameter`), the inverse. */
export const diameterFromVolume = (volumeMm3: number): number => Math.cbrt(Math.max(volumeMm3, 0) / 0.52);

/**
 * RECIST 1.1 progression of the target lesions (Eisenhauer et al., Eur J Cancer 45:228, 2009,
 * section 4.3.1): the sum of diameters is at least 20 % above the smallest sum on study (the nadir,
 * baseline included) AND at least 5 mm above it in absolute terms. Both limits are inclusive
 * ("at least"); compared as 5·d ≥ 6·nadir so that exactly 20 % is not lost to floating point.
 */
export function recistProgression(sumDiametersMm: number, nadirMm: number): boolean {
  const eps = 1e-6;
  return 5 * sumDiametersMm >= 6 * nadirMm - eps && sumDiametersMm - nadirMm >= 5 - eps;
}

/**
 * Area under the ROC curve = Mann–Whitney U / (n1·n0), ties between a positive and a negative counted
 * one half (Hanley & McNeil, Radiology 143:29, 1982). Computed from mid-ranks. NaN when either class
 * is empty.
 */
export function auc(scores: readonly number[], labels: readonly boolean[]): number {
  if (scores.length !== labels.length) throw new Error('auc: scores and labels differ in length');
  const idx = scores.map((_, i) => i).sort((a, b) => scores[a] - scores[b]);
  const rank = new Array<number>(scores.length);
  for (let i = 0; i < idx.length;) {
    let j = i;
    while (j + 1 < idx.length && scores[idx[j + 1]] === scores[idx[i]]) j++;
    const mid = (i + j) / 2 + 1;
    for (let k = i; k <= j; k++) rank[idx[k]] = mid;
    i = j + 1;
  }
  let n1 = 0;
  let sumRank = 0;
  labels.forEach((y, i) => {
    if (y) {
      n1++;
      sumRank += rank[i];
    }
  });
  const n0 = labels.length - n1;
  if (n1 === 0 || n0 === 0) return NaN;
  const u = sumRank - (n1 * (n1 + 1)) / 2;
  return u / (n1 * n0);
}

/** Brier score: mean squared difference between the forecast probability and the 0/1 outcome (Brier, Mon Weather Rev 78:1, 1950). */
export function brier(probabilities: readonly number[], labels: readonly boolean[]): number {
  if (probabilities.length !== labels.length) throw new Error('brier: probabilities and labels differ in length');
  if (probabilities.length === 0) return NaN;
  let s = 0;
  probabilities.forEach((p, i) => (s += (p - (labels[i] ? 1 : 0)) ** 2));
  return s / probabilities.length;
}

export interface ReliabilityBin {
  /** Bin [from, to) of predicted probability (the last bin includes 1). */
  from: number;
  to: number;
  n: number;
  meanPredicted: number;
  observedFrequency: number;
}

/**
 * Reliability table (Murphy & Winkler, Appl Stat 36:41, 1987): fixed bins of predicted probability
 * (default 10 of width 0.1) with, per bin, the count, the mean forecast and the observed frequency.
 * Empty bins are kept (n = 0, NaN means) so tables line up across methods.
 */
export function reliabilityTable(probabilities: readonly number[], labels: readonly boolean[], bins = 10): ReliabilityBin[] {
  const out: ReliabilityBin[] = Array.from({ length: bins }, (_, b) => ({ from: b / bins, to: (b + 1) / bins, n: 0, meanPredicted: 0, observedFrequency: 0 }));
  probabilities.forEach((p, i) => {
    const b = Math.min(bins - 1, Math.max(0, Math.floor(p * bins)));
    out[b].n++;
    out[b].meanPredicted += p;
    out[b].observedFrequency += labels[i] ? 1 : 0;
  });
  for (const b of out) {
    b.meanPredicted = b.n ? b.meanPredicted / b.n : NaN;
    b.observedFrequency = b.n ? b.observedFrequency / b.n : NaN;
  }
  return out;
}

/**
 * Interval score of a central (1 − α) prediction interval [l, u] for an observation x
 * (Gneiting & Raftery, JASA 102:359, 2007, eq. 43; Winkler, JASA 67:187, 1972):
 * (u − l) + (2/α)(l − x)·1{x < l} + (2/α)(x − u)·1{x > u}. Lower is better; it rewards a narrow
 * band and penalises misses in proportion to how far they fall outside.
 */
export function intervalScore(lower: number, upper: number, observed: number, alpha = 0.1): number {
  let s = upper - lower;
  if (observed < lower) s += (2 / alpha) * (lower - observed);
  if (observed > upper) s += (2 / alpha) * (observed - upper);
  return s;
}

export interface LogisticModel {
  /** Intercept first, then one coefficient per feature (on the standardised features). */
  coef: number[];
  featureMean: number[];
  featureSd: number[];
}

/**
 * Logistic regression by Newton–Raphson (IRLS) with a ridge penalty λ·‖β‖²/2 on the slopes of the
 * standardised features (not the intercept), which keeps it finite under separation on small
 * samples. λ = 1 by default (fixed a priori, not tuned).
 */
export function fitLogistic(x: readonly (readonly number[])[], y: readonly boolean[], lambda = 1): LogisticModel {
  const n = x.length;
  const q = n ? x[0].length : 0;
  const mean = Array.from({ length: q }, (_, j) => (n ? x.reduce((s, r) => s + r[j], 0) / n : 0));
  const sd = Array.from({ length: q }, (_, j) => {
    const v = n > 1 ? x.reduce((s, r) => s + (r[j] - mean[j]) ** 2, 0) / (n - 1) : 1;
    return v > 0 ? Math.sqrt(v) : 1;
  });
  const Z = x.map((r) => [1, ...r.map((v, j) => (v - mean[j]) / sd[j])]);
  const p = q + 1;
  const beta = new Array<number>(p).fill(0);
  for (let it = 0; it < 50; it++) {
    const g = new Array<number>(p).fill(0);
    const H = Array.from({ length: p }, () => new Array<number>(p).fill(0));
    Z.forEach((z, i) => {
      const eta = z.reduce((s, v, j) => s + v * beta[j], 0);
      const mu = 1 / (1 + Math.exp(-eta));
      const w = Math.max(mu * (1 - mu), 1e-12);
      for (let a = 0; a < p; a++) {
        g[a] += z[a] * ((y[i] ? 1 : 0) - mu);
        for (let b = 0; b < p; b++) H[a][b] += w * z[a] * z[b];
      }
    });
    for (let a = 1; a < p; a++) {
      g[a] -= lambda * beta[a];
      H[a][a] += lambda;
    }
    H[0][0] += 1e-9;
    const step = solve(H, g);
    let maxStep = 0;
    for (let a = 0; a < p; a++) {
      beta[a] += step[a];
      maxStep = Math.max(maxStep, Math.abs(step[a]));
    }
    if (maxStep < 1e-10) break;
  }
  return { coef: beta, featureMean: mean, featureSd: sd };
}

export function predictLogistic(m: LogisticModel, features: readonly number[]): number {
  let eta = m.coef[0];
  features.forEach((v, j) => (eta += m.coef[j + 1] * ((v - m.featureMean[j]) / m.featureSd[j])));
  return 1 / (1 + Math.exp(-eta));
}

/** Gaussian elimination with partial pivoting (tiny systems). */
function solve(A: number[][], b: number[]): number[] {
  const n = b.length;
  const M = A.map((r, i) => [...r, b[i]]);
  for (let c = 0; c < n; c++) {
    let piv = c;
    for (let r = c + 1; r < n; r++) if (Math.abs(M[r][c]) > Math.abs(M[piv][c])) piv = r;
    [M[c], M[piv]] = [M[piv], M[c]];
    const d = M[c][c] || 1e-12;
    for (let r = c + 1; r < n; r++) {
      const f = M[r][c] / d;
      for (let k = c; k <= n; k++) M[r][k] -= f * M[c][k];
    }
  }
  const out = new Array<number>(n).fill(0);
  for (let r = n - 1; r >= 0; r--) {
    let s = M[r][n];
    for (let k = r + 1; k < n; k++) s -= M[r][k] * out[k];
    out[r] = s / (M[r][r] || 1e-12);
  }
  return out;
}
