/**
 * The per-shard pieces of segmentationLoss (model/unet.ts) that make a data-parallel
 * step equal to the single-thread one. Pure tfjs maths; parallel-worker.ts runs it.
 *
 * segmentationLoss over a batch of N = B·H·W pixels is
 *   L = -(1/N) Σ_pixels Σ_c y·log p  +  w · (1 - (1/F) Σ_{c≥1} (2·I_c + ε) / (P_c + Y_c + ε))
 * with I_c = Σ p·y, P_c = Σ p, Y_c = Σ y over the whole batch (F = C - 1 foreground
 * classes, ε = 1; Milletari et al., "V-Net", 3DV 2016). The cross-entropy is a sum over
 * pixels, so each shard contributes its own sum divided by the global N. The soft-Dice
 * term is not a sum over shards, but it depends on the weights only through the sums
 * I_c and P_c, so by the chain rule
 *   ∂L/∂θ = Σ_shards ∂/∂θ [ CE_shard/N + Σ_c (gI_c · I_c,shard + gP_c · P_c,shard) ]
 * with the global constants gI_c = ∂L/∂I_c = -(w/F) · 2 / (D_c + ε) and
 * gP_c = ∂L/∂P_c = (w/F) · (2·I_c + ε) / (D_c + ε)^2, D_c = P_c + Y_c. A shard therefore
 * needs the global I, P, Y first: one forward pass per shard (diceStats), then the
 * gradient pass (shardLossForGradient). With w = 0 the first pass is skipped.
 */
import * as tf from '@tensorflow/tfjs-core';
import { unetLogits, type UNet } from '../model/unet.js';

/** Must equal the ε of segmentationLoss. */
export const DICE_EPS = 1;

export interface DiceSums {
  /** Σ p·y per foreground class (length C - 1). */
  inter: Float64Array;
  /** Σ p per foreground class. */
  pSum: Float64Array;
  /** Σ y per foreground class. */
  ySum: Float64Array;
}

/** I, P, Y of this shard (forward pass only, no tape). */
export function diceStats(model: UNet, x: tf.Tensor4D, oneHot: tf.Tensor4D): DiceSums {
  const C = oneHot.shape[3];
  const [inter, pSum, ySum] = tf.tidy(() => {
    const p = tf.slice(tf.exp(tf.logSoftmax(unetLogits(model, x))), [0, 0, 0, 1], [-1, -1, -1, C - 1]);
    const y = tf.slice(oneHot, [0, 0, 0, 1], [-1, -1, -1, C - 1]);
    return [tf.sum(tf.mul(p, y), [0, 1, 2]), tf.sum(p, [0, 1, 2]), tf.sum(y, [0, 1, 2])];
  });
  const out = {
    inter: Float64Array.from(inter.dataSync()),
    pSum: Float64Array.from(pSum.dataSync()),
    ySum: Float64Array.from(ySum.dataSync()),
  };
  tf.dispose([inter, pSum, ySum]);
  return out;
}

/** Adds shard sums into `acc` (or returns a copy of `s` when acc is undefined). */
export function addDiceSums(acc: DiceSums | undefined, s: DiceSums): DiceSums {
  if (acc == null) return { inter: s.inter.slice(), pSum: s.pSum.slice(), ySum: s.ySum.slice() };
  for (let c = 0; c < s.inter.length; c++) {
    acc.inter[c] += s.inter[c];
    acc.pSum[c] += s.pSum[c];
    acc.ySum[c] += s.ySum[c];
  }
  return acc;
}

export interface DiceCoefficients {
  /** ∂L/∂I_c. */
  gI: Float64Array;
  /** ∂L/∂P_c. */
  gP: Float64Array;
  /** The soft-Dice part of L, w · (1 - mean_c Dice_c). */
  diceLoss: number;
}

/** The global constants of the chain rule above, from the whole batch's sums. */
export function diceCoefficients(sums: DiceSums, diceWeight: number): DiceCoefficients {
  const F = sums.inter.length;
  const gI = new Float64Array(F),
    gP = new Float64Array(F);
  let meanDice = 0;
  for (let c = 0; c < F; c++) {
    const d = sums.pSum[c] + sums.ySum[c] + DICE_EPS;
    const num = 2 * sums.inter[c] + DICE_EPS;
    meanDice += num / d / F;
    gI[c] = (-diceWeight / F) * (2 / d);
    gP[c] = (diceWeight / F) * (num / (d * d));
  }
  return { gI, gP, diceLoss: diceWeight * (1 - meanDice) };
}

/**
 * The scalar whose gradient is this shard's share of ∂L/∂θ: CE_shard / nPixelsTotal plus,
 * when `coef` is given, Σ_c gI_c·I_c + gP_c·P_c. Its value is not a loss; returns also
 * the shard's cross-entropy share so the caller can add up the true loss.
 */
export function shardLossForGradient(model: UNet, x: tf.Tensor4D, oneHot: tf.Tensor4D, nPixelsTotal: number, coef: DiceCoefficients | undefined): { surrogate: tf.Scalar; ce: tf.Scalar } {
  return tf.tidy(() => {
    const logits = unetLogits(model, x);
    const logp = tf.logSoftmax(logits);
    const ce = tf.div(tf.neg(tf.sum(tf.mul(oneHot, logp))), nPixelsTotal) as tf.Scalar;
    if (coef == null) return { surrogate: ce, ce: tf.clone(ce) };
    const C = oneHot.shape[3];
    const p = tf.slice(tf.exp(logp), [0, 0, 0, 1], [-1, -1, -1, C - 1]);
    const y = tf.slice(oneHot, [0, 0, 0, 1], [-1, -1, -1, C - 1]);
    const inter = tf.sum(tf.mul(p, y), [0, 1, 2]);
    const pSum = tf.sum(p, [0, 1, 2]);
    const lin = tf.add(tf.sum(tf.mul(inter, tf.tensor1d(Float32Array.from(coef.gI)))), tf.sum(tf.mul(pSum, tf.tensor1d(Float32Array.from(coef.gP)))));
    return { surrogate: tf.add(ce, lin) as tf.Scalar, ce: tf.clone(ce) };
  });
}
