import { deriveSeed, mulberry32 } from '../model/prng.js';
import type { ResponseExample } from './features.js';
import { RESPONSE_CLASSES } from './labels.js';
import { argmax, balancedAccuracy, macroAucOvr } from './metrics.js';
import { predictProba, type LogRegConfig } from './model.js';

export interface ResponseEvaluation {
  n: number;
  /** Macro one-vs-rest AUC over the classes present (with ≥ 1 negative); null if none. */
  auc: number | null;
  perClassAuc: Record<string, number | null>;
  /** Classes not scored by AUC (absent, or the only class, in this set). */
  skippedClasses: string[];
  balancedAccuracy: number | null;
  classCounts: Record<string, number>;
  /** confusion[true][predicted], RESPONSE_CLASSES order. */
  confusion: number[][];
}

export function evaluateResponse(c: LogRegConfig, w: ArrayLike<number>, ex: readonly ResponseExample[]): ResponseEvaluation {
  return evaluateProbs(
    ex.map((e) => predictProba(c, w, e.x)),
    ex.map((e) => e.y),
    c.nClasses,
  );
}

/** Metrics from class probabilities (one row per example) and true classes. */
export function evaluateProbs(probs: readonly ArrayLike<number>[], y: readonly number[], nClasses: number): ResponseEvaluation {
  const pred = probs.map(argmax);
  const m = macroAucOvr(probs, y, nClasses);
  const confusion = RESPONSE_CLASSES.map(() => RESPONSE_CLASSES.map(() => 0));
  y.forEach((t, i) => confusion[t][pred[i]]++);
  return {
    n: y.length,
    auc: m.auc,
    perClassAuc: Object.fromEntries(RESPONSE_CLASSES.map((k, i) => [k, m.perClass[i]])),
    skippedClasses: m.skipped.map((k) => RESPONSE_CLASSES[k]),
    balancedAccuracy: balancedAccuracy(pred, y, nClasses),
    classCounts: Object.fromEntries(RESPONSE_CLASSES.map((k, i) => [k, y.filter((t) => t === i).length])),
    confusion,
  };
}

export interface FeatureImportance {
  feature: string;
  /** Mean drop of macro AUC when this feature's column is permuted (higher = more important). */
  meanAucDrop: number;
  sdAucDrop: number;
}

/**
 * Permutation importance (Breiman, "Random forests", Mach Learn 45:5–32, 2001, §10; model-agnostic
 * form of Fisher, Rudin & Dominici, JMLR 20(177), 2019): the drop of macro AUC when one feature's
 * column is shuffled across the evaluated patients, mean and SD over `repeats` seeded shuffles.
 * Not SHAP values. Sorted by decreasing mean drop.
 */
export function permutationImportance(
  c: LogRegConfig,
  w: ArrayLike<number>,
  ex: readonly ResponseExample[],
  names: readonly string[],
  opts: { repeats?: number; seed?: number } = {},
): FeatureImportance[] {
  const repeats = opts.repeats ?? 20;
  const base = evaluateResponse(c, w, ex).auc;
  if (base === null || ex.length < 2) return [];
  const out: FeatureImportance[] = [];
  for (let j = 0; j < c.nFeatures; j++) {
    const rand = mulberry32(deriveSeed(opts.seed ?? 0, `perm-${j}`));
    const drops: number[] = [];
    for (let r = 0; r < repeats; r++) {
      const col = ex.map((e) => e.x[j]);
      for (let i = col.length - 1; i > 0; i--) {
        const k = Math.floor(rand() * (i + 1));
        [col[i], col[k]] = [col[k], col[i]];
      }
      const perm = ex.map((e, i) => {
        const x = Float64Array.from(e.x);
        x[j] = col[i];
        return { ...e, x };
      });
      drops.push(base - (evaluateResponse(c, w, perm).auc ?? base));
    }
    const mean = drops.reduce((a, b) => a + b, 0) / drops.length;
    const sd = Math.sqrt(drops.reduce((a, b) => a + (b - mean) ** 2, 0) / Math.max(1, drops.length - 1));
    out.push({ feature: names[j] ?? `x${j}`, meanAucDrop: mean, sdAucDrop: sd });
  }
  return out.sort((a, b) => b.meanAucDrop - a.meanAucDrop);
}

/** Sample-weighted average of weight vectors (FedAvg, McMahan et al., AISTATS 2017), plaintext. */
export function weightedAverage(ups: readonly { weights: Float32Array; nSamples: number }[]): Float32Array {
  const n = ups.reduce((s, u) => s + u.nSamples, 0);
  if (!ups.length || n <= 0) throw new Error('weightedAverage: no samples');
  const out = new Float64Array(ups[0].weights.length);
  for (const u of ups) for (let i = 0; i < out.length; i++) out[i] += (u.nSamples / n) * u.weights[i];
  return Float32Array.from(out);
}
