/**
 * Adam on one flat weight vector, in plain JavaScript (Kingma & Ba, "Adam: A Method for
 * Stochastic Optimization", ICLR 2015, Algorithm 1), written exactly as tfjs-core 4.22's
 * AdamOptimizer.applyGradients computes it, float32 rounding of every operation included:
 *
 *   m ← β1·m + (1-β1)·g          v ← β2·v + (1-β2)·g²
 *   w ← w - lr · (m / (1-β1^t)) / (sqrt(v / (1-β2^t)) + ε)
 *
 * (ε outside the square root, added to the bias-corrected second moment; β^t kept as a
 * float32 running product, as tfjs' accBeta variables). The data-parallel trainer uses it
 * on the main thread: one loop over ~3·10^4 weights instead of ~10 tfjs kernel calls per
 * variable, so the workers wait less between steps.
 */
const f = Math.fround;

export interface FlatAdamOptions {
  learningRate: number;
  beta1?: number;
  beta2?: number;
  /** tfjs' default is the backend's epsilon, 1e-7 for float32 backends. */
  epsilon?: number;
}

export class FlatAdam {
  readonly learningRate: number;
  readonly beta1: number;
  readonly beta2: number;
  readonly epsilon: number;
  private readonly m: Float32Array;
  private readonly v: Float32Array;
  private accBeta1: number;
  private accBeta2: number;
  private t = 0;

  constructor(
    readonly size: number,
    o: FlatAdamOptions,
  ) {
    if (!(o.learningRate > 0)) throw new Error(`FlatAdam: learningRate must be > 0, got ${o.learningRate}`);
    this.learningRate = o.learningRate;
    this.beta1 = o.beta1 ?? 0.9;
    this.beta2 = o.beta2 ?? 0.999;
    this.epsilon = o.epsilon ?? 1e-7;
    this.m = new Float32Array(size);
    this.v = new Float32Array(size);
    this.accBeta1 = f(this.beta1);
    this.accBeta2 = f(this.beta2);
  }

  /** Optimiser steps taken. */
  get steps(): number {
    return this.t;
  }

  /** Updates `w` in place from gradient `g` (both of length `size`). */
  step(w: Float32Array, g: Float32Array): void {
    if (w.length !== this.size || g.length !== this.size) {
      throw new Error(`FlatAdam.step: expected ${this.size} weights and gradients, got ${w.length} and ${g.length}`);
    }
    const { m, v } = this;
    const b1 = f(this.beta1),
      b2 = f(this.beta2),
      c1 = f(1 - this.beta1),
      c2 = f(1 - this.beta2);
    const omb1 = f(1 - this.accBeta1),
      omb2 = f(1 - this.accBeta2);
    const eps = f(this.epsilon),
      nlr = f(-this.learningRate);
    for (let i = 0; i < w.length; i++) {
      const gi = g[i];
      const mi = f(f(m[i] * b1) + f(gi * c1));
      const vi = f(f(v[i] * b2) + f(f(gi * gi) * c2));
      m[i] = mi;
      v[i] = vi;
      const mh = f(mi / omb1),
        vh = f(vi / omb2);
      w[i] = f(f(f(mh / f(f(Math.sqrt(vh)) + eps)) * nlr) + w[i]);
    }
    this.accBeta1 = f(this.accBeta1 * b1);
    this.accBeta2 = f(this.accBeta2 * b2);
    this.t++;
  }
}
