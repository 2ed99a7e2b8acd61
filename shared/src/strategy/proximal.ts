/**
 * The FedProx local objective (Li et al., "Federated Optimization in Heterogeneous Networks",
 * MLSys 2020, eq. 2): a site minimises
 *   h(w) = F_local(w) + (mu/2) · ||w − w_global||²
 * where w_global (the anchor) is the global model the round started from. Its gradient adds
 *   mu · (w − w_global)
 * to the data gradient, pulling the local trajectory back towards the global model so that
 * heterogeneous sites drift less. mu = 0 is FedAvg's local objective.
 *
 * Pure (no tfjs): used by trainLogReg (float64) and by trainLocal's flat-weight paths (float32).
 * Under DP-SGD the term is added AFTER privatisation: it depends on the public anchor and the
 * current (already private) weights only, so it is post-processing.
 */
export interface ProximalOptions {
  /** mu ≥ 0: weight of the proximal term (mu/2)·||w − anchor||². */
  mu: number;
  /** w_global: the weights this round's local training started from (wire order). */
  anchor: Float32Array;
}

export function checkProximal(p: ProximalOptions, nWeights: number, where: string): void {
  if (!(p.mu >= 0 && Number.isFinite(p.mu))) throw new Error(`${where}: proximal.mu must be finite and ≥ 0, got ${p.mu}`);
  if (p.anchor.length !== nWeights) throw new Error(`${where}: proximal.anchor has ${p.anchor.length} weights, the model ${nWeights}`);
}

/** grad += mu · (w − anchor), in float64. */
export function addProximalGradient(grad: Float64Array, w: ArrayLike<number>, p: ProximalOptions): void {
  const { mu, anchor } = p;
  for (let i = 0; i < grad.length; i++) grad[i] += mu * (w[i] - anchor[i]);
}

/** grad += mu · (w − anchor) with every operation rounded to float32 (the flat U-Net paths). */
export function addProximalGradientF32(grad: Float32Array, w: Float32Array, p: ProximalOptions): void {
  const f = Math.fround;
  const mu = f(p.mu),
    anchor = p.anchor;
  for (let i = 0; i < grad.length; i++) grad[i] = f(grad[i] + f(mu * f(w[i] - anchor[i])));
}
