import { cholesky, cholSolve, gram } from './linalg.js';

/**
 * Bounded Levenberg–Marquardt (Levenberg 1944; Marquardt 1963) for min ½‖r(z)‖² subject to
 * lo ≤ z ≤ hi. Bounds are handled by projection with an active set: a parameter sitting on a bound
 * whose gradient pushes it outwards is frozen for that iteration, the step is solved for the free
 * parameters and the trial point is projected back into the box. Jacobian by forward differences
 * (stepping inwards at an upper bound). Marquardt scaling: (JᵀJ + λ·diag(JᵀJ)) δ = −Jᵀr.
 */
export interface LmOptions {
  maxIter?: number;
  /** Relative decrease of the cost below which we stop. */
  ftol?: number;
  /** Step size (max abs over z) below which we stop. */
  xtol?: number;
  /** Relative forward-difference step (default 1e-6; use ~1e-4 when r(z) comes from an adaptive ODE solve). */
  fdStep?: number;
}

export interface LmResult {
  z: number[];
  r: number[];
  /** Jacobian dr/dz at z (n × p). */
  J: number[][];
  cost: number;
  iterations: number;
  evaluations: number;
}

export function jacobian(res: (z: number[]) => number[], z: number[], r0: number[], hi: number[], step = 1e-6): number[][] {
  const n = r0.length;
  const p = z.length;
  const J: number[][] = Array.from({ length: n }, () => new Array<number>(p).fill(0));
  for (let j = 0; j < p; j++) {
    let h = step * (1 + Math.abs(z[j]));
    if (z[j] + h > hi[j]) h = -h;
    const zz = z.slice();
    zz[j] += h;
    const r1 = res(zz);
    for (let i = 0; i < n; i++) J[i][j] = (r1[i] - r0[i]) / h;
  }
  return J;
}

const sumSq = (r: number[]): number => {
  let s = 0;
  for (const v of r) s += v * v;
  return Number.isFinite(s) ? s : Infinity;
};

export function levenbergMarquardt(res: (z: number[]) => number[], z0: number[], lo: number[], hi: number[], opts: LmOptions = {}): LmResult {
  const maxIter = opts.maxIter ?? 100;
  const ftol = opts.ftol ?? 1e-8;
  const xtol = opts.xtol ?? 1e-7;
  const p = z0.length;
  const clip = (z: number[]): number[] => z.map((v, j) => Math.min(hi[j], Math.max(lo[j], v)));
  let z = clip(z0);
  let r = res(z);
  let cost = 0.5 * sumSq(r);
  let evaluations = 1;
  let lambda = 1e-3;
  let J = jacobian(res, z, r, hi, opts.fdStep);
  evaluations += p;
  let it = 0;
  for (; it < maxIter; it++) {
    const A = gram(J, p);
    const g = new Array<number>(p).fill(0);
    for (let i = 0; i < r.length; i++) for (let j = 0; j < p; j++) g[j] += J[i][j] * r[i];
    const free: number[] = [];
    for (let j = 0; j < p; j++) {
      const atLo = z[j] <= lo[j] + 1e-12 && g[j] > 0;
      const atHi = z[j] >= hi[j] - 1e-12 && g[j] < 0;
      if (!atLo && !atHi) free.push(j);
    }
    if (free.length === 0) break;
    let gnorm = 0;
    for (const j of free) gnorm = Math.max(gnorm, Math.abs(g[j]));
    if (gnorm < 1e-14 * (1 + cost)) break;
    let maxDiag = 0;
    for (const j of free) maxDiag = Math.max(maxDiag, A[j][j]);
    let accepted = false;
    let stepMax = 0;
    while (lambda < 1e12) {
      const M = free.map((i) => free.map((j) => A[i][j] + (i === j ? lambda * (A[i][i] + 1e-9 * maxDiag + 1e-15) : 0)));
      let delta: number[];
      try {
        delta = cholSolve(
          cholesky(M),
          free.map((j) => -g[j]),
        );
      } catch {
        lambda *= 10;
        continue;
      }
      const zt = z.slice();
      free.forEach((j, q) => (zt[j] += delta[q]));
      const zc = clip(zt);
      const rt = res(zc);
      evaluations++;
      const ct = 0.5 * sumSq(rt);
      if (ct < cost) {
        stepMax = 0;
        for (let j = 0; j < p; j++) stepMax = Math.max(stepMax, Math.abs(zc[j] - z[j]));
        const dec = cost - ct;
        z = zc;
        r = rt;
        cost = ct;
        lambda = Math.max(lambda / 3, 1e-12);
        accepted = true;
        if (dec <= ftol * (cost + 1e-300) || stepMax < xtol) {
          J = jacobian(res, z, r, hi, opts.fdStep);
          evaluations += p;
          return { z, r, J, cost, iterations: it + 1, evaluations };
        }
        break;
      }
      lambda *= 4;
    }
    if (!accepted) break;
    J = jacobian(res, z, r, hi, opts.fdStep);
    evaluations += p;
  }
  return { z, r, J, cost, iterations: it, evaluations };
}
