/** Small dense linear algebra (p ≤ ~6) for least squares and Gaussian priors. Row-major number[][]. */

export type Matrix = number[][];

export function zeros(r: number, c: number): Matrix {
  return Array.from({ length: r }, () => new Array<number>(c).fill(0));
}

export function identity(n: number): Matrix {
  const m = zeros(n, n);
  for (let i = 0; i < n; i++) m[i][i] = 1;
  return m;
}

/**
 * Cholesky factor L (lower) of a symmetric positive (semi)definite matrix. Adds the smallest
 * diagonal jitter (relative to the largest diagonal) that makes the factorisation succeed.
 */
export function cholesky(a: Matrix): Matrix {
  const n = a.length;
  let maxDiag = 0;
  for (let i = 0; i < n; i++) maxDiag = Math.max(maxDiag, Math.abs(a[i][i]));
  if (!(maxDiag > 0)) maxDiag = 1;
  for (let jitter = 0; jitter <= 1; jitter = jitter === 0 ? 1e-12 : jitter * 10) {
    const L = zeros(n, n);
    let ok = true;
    for (let i = 0; i < n && ok; i++) {
      for (let j = 0; j <= i; j++) {
        let s = a[i][j] + (i === j ? jitter * maxDiag : 0);
        for (let k = 0; k < j; k++) s -= L[i][k] * L[j][k];
        if (i === j) {
          if (!(s > 0) || !Number.isFinite(s)) {
            ok = false;
            break;
          }
          L[i][i] = Math.sqrt(s);
        } else {
          L[i][j] = s / L[j][j];
        }
      }
    }
    if (ok) return L;
  }
  throw new Error('cholesky: matrix is not positive definite');
}

/** Solves (L Lᵀ) x = b given the Cholesky factor L. */
export function cholSolve(L: Matrix, b: readonly number[]): number[] {
  const n = L.length;
  const y = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    let s = b[i];
    for (let k = 0; k < i; k++) s -= L[i][k] * y[k];
    y[i] = s / L[i][i];
  }
  const x = new Array<number>(n);
  for (let i = n - 1; i >= 0; i--) {
    let s = y[i];
    for (let k = i + 1; k < n; k++) s -= L[k][i] * x[k];
    x[i] = s / L[i][i];
  }
  return x;
}

/** Inverse of a symmetric positive definite matrix through its Cholesky factor. */
export function spdInverse(a: Matrix): Matrix {
  const n = a.length;
  const L = cholesky(a);
  const inv = zeros(n, n);
  for (let j = 0; j < n; j++) {
    const e = new Array<number>(n).fill(0);
    e[j] = 1;
    const col = cholSolve(L, e);
    for (let i = 0; i < n; i++) inv[i][j] = col[i];
  }
  // symmetrise
  for (let i = 0; i < n; i++)
    for (let j = 0; j < i; j++) {
      const m = 0.5 * (inv[i][j] + inv[j][i]);
      inv[i][j] = m;
      inv[j][i] = m;
    }
  return inv;
}

/** log det of an SPD matrix. */
export function logDetSpd(a: Matrix): number {
  const L = cholesky(a);
  let s = 0;
  for (let i = 0; i < L.length; i++) s += 2 * Math.log(L[i][i]);
  return s;
}

/** JᵀJ for J given as rows (n × p). */
export function gram(J: readonly (readonly number[])[], p: number): Matrix {
  const g = zeros(p, p);
  for (const row of J)
    for (let i = 0; i < p; i++) {
      const ri = row[i];
      if (ri === 0) continue;
      for (let j = 0; j <= i; j++) g[i][j] += ri * row[j];
    }
  for (let i = 0; i < p; i++) for (let j = 0; j < i; j++) g[j][i] = g[i][j];
  return g;
}
