/**
 * Federated averaging of flat weight vectors, weighted by each site's number of
 * training samples (McMahan et al., "Communication-Efficient Learning of Deep
 * Networks from Decentralized Data", AISTATS 2017, Algorithm 1). Plaintext
 * reference used by the simulation bench and tests; in deployment the sum runs
 * on ciphertexts at the coordinator.
 */
export function fedAvg(updates: readonly { weights: Float32Array; nSamples: number }[]): Float32Array {
  if (updates.length === 0) throw new Error('fedAvg: no updates');
  const len = updates[0].weights.length;
  const total = updates.reduce((a, u) => a + u.nSamples, 0);
  if (!(total > 0)) throw new Error('fedAvg: total sample count must be > 0');
  const acc = new Float64Array(len);
  for (const u of updates) {
    if (u.weights.length !== len) throw new Error('fedAvg: weight vectors differ in length');
    const f = u.nSamples / total;
    for (let i = 0; i < len; i++) acc[i] += f * u.weights[i];
  }
  return Float32Array.from(acc);
}
