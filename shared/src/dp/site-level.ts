/**
 * Site-level differential privacy with the distributed discrete Gaussian (Kairouz, Liu & Steinke,
 * "The Distributed Discrete Gaussian Mechanism for Federated Learning with Secure Aggregation",
 * ICML 2021): each site clips its whole update to L2 norm C, contributes with weight 1, quantises
 * it with the study's fixed-point scale S = 2^p / B (shared/src/he/quantize.ts), and adds discrete
 * Gaussian noise N_Z(0, sigmaQ²) with sigmaQ = sigma·C·S / sqrt(minSites) before masking. A round
 * of k ≥ minSites contributors then carries noise of variance ≥ (sigma·C·S)² in the sum, which is
 * the Gaussian mechanism with sensitivity C·S (one site's clipped update) and noise multiplier
 * sigma; the secure sum is the only thing anyone sees. Kairouz et al. bound the gap between a sum
 * of discrete Gaussians and one discrete Gaussian; at these sigmaQ (≫ 1) it is negligible and is
 * not added to the accountant (docs/privacy.md). Pure: no I/O.
 */

/** A copy of v scaled down to L2 norm ≤ c (unchanged when already inside); `scale` is the factor applied. */
export function clipL2(v: Float32Array, c: number): { vector: Float32Array; scale: number; normBefore: number } {
  if (!(c > 0 && Number.isFinite(c))) throw new Error(`clipL2: the clip norm must be positive, got ${c}`);
  let s = 0;
  for (let i = 0; i < v.length; i++) s += v[i] * v[i];
  const norm = Math.sqrt(s);
  const scale = norm > c ? c / norm : 1;
  const out = new Float32Array(v.length);
  for (let i = 0; i < v.length; i++) out[i] = v[i] * scale;
  return { vector: out, scale, normBefore: norm };
}

export interface SiteLevelNoise {
  noiseMultiplier: number;
  /** C: L2 bound of a site's update. */
  clipNorm: number;
  /** B and p of the study's quantisation (training.clipBound, encryption.precisionBits). */
  clipBound: number;
  precisionBits: number;
  /** Fewest contributors of a round (the manifest's quorum): the noise shares add up to sigma·C over that many. */
  minSites: number;
}

/** sigmaQ = sigma·C·(2^p/B)/sqrt(minSites): one site's share of the noise, in quantised units. */
export function siteNoiseSigmaQ(p: SiteLevelNoise): number {
  return (p.noiseMultiplier * p.clipNorm * (2 ** p.precisionBits / p.clipBound)) / Math.sqrt(p.minSites);
}

/**
 * Allowance for the noise when checking an unmasked sum of k contributions: `z` standard deviations
 * of the summed noise, in quantised units (the sum's bound N·2^p grows by this) and in model units
 * (each averaged element's bound grows by this / (S·k)). With z = 12 an honest element exceeds it
 * with probability below 1e-32.
 */
export function siteNoiseAllowance(p: SiteLevelNoise, contributors: number, z = 12): { sumQ: number; averaged: number } {
  const sumQ = z * Math.sqrt(contributors) * siteNoiseSigmaQ(p);
  return { sumQ, averaged: sumQ / ((2 ** p.precisionBits / p.clipBound) * contributors) };
}
