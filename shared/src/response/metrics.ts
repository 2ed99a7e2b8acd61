import { deriveSeed, mulberry32 } from '../model/prng.js';

/**
 * Discrimination metrics for the response model.
 *
 * AUC = P(score of a random positive > score of a random negative) + ½·P(tie), computed with the
 * Mann–Whitney U statistic on mid-ranks (Hanley & McNeil, "The meaning and use of the area under a
 * receiver operating characteristic (ROC) curve", Radiology 143:29–36, 1982):
 *   AUC = (R₊ − n₊(n₊+1)/2) / (n₊·n₋), R₊ = sum of the positives' mid-ranks among all scores.
 * Multi-class: one-vs-rest AUC per class, macro-averaged over the classes that have at least one
 * positive and one negative in the evaluated set (Hand & Till 2001 discuss the alternatives); the
 * classes skipped are reported, never silently averaged as 0.5.
 * Balanced accuracy = mean over the classes present in the truth of their recall (Brodersen et al.,
 * "The balanced accuracy and its posterior distribution", ICPR 2010).
 */

/** Binary AUC with ties counted ½; null when there is no positive or no negative. */
export function binaryAuc(scores: ArrayLike<number>, positive: ArrayLike<boolean>): number | null {
  const n = scores.length;
  if (positive.length !== n) throw new Error(`binaryAuc: ${n} scores but ${positive.length} labels`);
  const idx = Array.from({ length: n }, (_, i) => i).sort((a, b) => scores[a] - scores[b]);
  const rank = new Float64Array(n);
  for (let i = 0; i < n;) {
    let j = i;
    while (j + 1 < n && scores[idx[j + 1]] === scores[idx[i]]) j++;
    const mid = (i + j) / 2 + 1; // ranks are 1-based
    for (let k = i; k <= j; k++) rank[idx[k]] = mid;
    i = j + 1;
  }
  let nPos = 0;
  let rPos = 0;
  for (let i = 0; i < n; i++)
    if (positive[i]) {
      nPos++;
      rPos += rank[i];
    }
  const nNeg = n - nPos;
  if (nPos === 0 || nNeg === 0) return null;
  return (rPos - (nPos * (nPos + 1)) / 2) / (nPos * nNeg);
}

export interface MacroAuc {
  /** Macro mean over the classes scored; null when none could be. */
  auc: number | null;
  perClass: (number | null)[];
  /** Class indices without a positive or without a negative in the set (not averaged). */
  skipped: number[];
}

/** One-vs-rest macro AUC; probs[i] are the K class scores of example i, y[i] its class. */
export function macroAucOvr(probs: readonly ArrayLike<number>[], y: readonly number[], nClasses: number): MacroAuc {
  const perClass: (number | null)[] = [];
  const skipped: number[] = [];
  for (let k = 0; k < nClasses; k++) {
    const a = binaryAuc(
      probs.map((p) => p[k]),
      y.map((c) => c === k),
    );
    perClass.push(a);
    if (a === null) skipped.push(k);
  }
  const ok = perClass.filter((a): a is number => a !== null);
  return { auc: ok.length ? ok.reduce((s, a) => s + a, 0) / ok.length : null, perClass, skipped };
}

/** Mean recall over the classes present in y; null for an empty set. */
export function balancedAccuracy(pred: readonly number[], y: readonly number[], nClasses: number): number | null {
  const tp = new Array(nClasses).fill(0);
  const n = new Array(nClasses).fill(0);
  y.forEach((c, i) => {
    n[c]++;
    if (pred[i] === c) tp[c]++;
  });
  const present = n.map((c, k) => k).filter((k) => n[k] > 0);
  return present.length ? present.reduce((s, k) => s + tp[k] / n[k], 0) / present.length : null;
}

export function argmax(p: ArrayLike<number>): number {
  let b = 0;
  for (let i = 1; i < p.length; i++) if (p[i] > p[b]) b = i;
  return b;
}

/**
 * Percentile bootstrap 95 % interval of the macro one-vs-rest AUC over patients (Efron & Tibshirani,
 * "An Introduction to the Bootstrap", 1993, ch. 13): resample patients with replacement, recompute,
 * take the 2.5th and 97.5th percentiles. Seeded (mulberry32), so the interval is reproducible.
 * Resamples in which no class can be scored are dropped.
 */
export function bootstrapMacroAucCi(probs: readonly ArrayLike<number>[], y: readonly number[], nClasses: number, opts: { resamples?: number; seed?: number } = {}): [number, number] | null {
  const n = y.length;
  if (n < 2) return null;
  const rand = mulberry32(deriveSeed(opts.seed ?? 0, 'bootstrap-auc'));
  const vals: number[] = [];
  for (let b = 0; b < (opts.resamples ?? 1000); b++) {
    const idx = Array.from({ length: n }, () => Math.floor(rand() * n));
    const a = macroAucOvr(
      idx.map((i) => probs[i]),
      idx.map((i) => y[i]),
      nClasses,
    ).auc;
    if (a !== null) vals.push(a);
  }
  if (vals.length === 0) return null;
  vals.sort((a, b) => a - b);
  const q = (p: number) => vals[Math.min(vals.length - 1, Math.max(0, Math.round(p * (vals.length - 1))))];
  return [q(0.025), q(0.975)];
}
