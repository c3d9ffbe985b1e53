/**
 * Eigenvalues (and optionally eigenvectors) of a real symmetric matrix in float64, in plain
 * JavaScript: Householder reduction to tridiagonal form, then the implicit QL iteration with
 * Wilkinson-style shifts (the EISPACK tred/tql pair, as described in Golub & Van Loan, "Matrix
 * Computations", §8.3). The Fréchet distance needs no eigenvectors and runs on the wasm kernels
 * (product-eigenvalues.ts), whose tests check them against this solver.
 *
 * Matrices are row-major `Float64Array`s, the reduction touches only the lower triangle of the
 * trailing block (one pass for the symmetric product, one for the rank-2 update), and eigenvectors
 * are kept as rows so that every plane rotation of the QL iteration mixes two contiguous rows.
 */
import { evalError } from '../errors';

export interface SymmetricEigen {
  /** Eigenvalues in ascending order. */
  readonly values: Float64Array;
  /**
   * Eigenvectors as rows, row-major n × n: row m is the unit eigenvector of `values[m]`.
   * Present when asked for.
   */
  readonly vectorRows?: Float64Array;
}

/**
 * Checks that `a` is an n × n matrix of finite numbers, symmetric to rounding. The loops see n²
 * entries and call no Math functions (which jest's sandbox makes slow); the symmetry check goes
 * by 32 × 32 tiles so that the transposed side stays in cache.
 */
export function checkSymmetric(a: Float64Array, n: number, what: string): void {
  if (!Number.isInteger(n) || n < 1 || a.length !== n * n)
    throw evalError('DDPM_EVAL_SHAPE', `${what}: ${a.length} values are not a ${n} × ${n} matrix`);
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    const v = a[i]!;
    // v − v is 0 for a finite v, NaN for NaN and ±∞.
    if (v - v !== 0) throw evalError('DDPM_EVAL_NOT_FINITE', `${what}: entry (${Math.floor(i / n)}, ${i % n}) is ${v}`);
    const magnitude = v < 0 ? -v : v;
    if (magnitude > scale) scale = magnitude;
  }
  const tolerance = 1e-9 * Math.max(scale, Number.MIN_VALUE);
  for (let i0 = 0; i0 < n; i0 += 32) {
    const i1 = Math.min(n, i0 + 32);
    for (let j0 = 0; j0 <= i0; j0 += 32) {
      for (let i = i0; i < i1; i++) {
        const j1 = Math.min(i, j0 + 32);
        for (let j = j0; j < j1; j++) {
          const diff = a[i * n + j]! - a[j * n + i]!;
          if (diff > tolerance || diff < -tolerance) {
            throw evalError(
              'DDPM_EVAL_NOT_SYMMETRIC',
              `${what}: entries (${i}, ${j}) = ${a[i * n + j]} and (${j}, ${i}) = ${a[j * n + i]} differ; a covariance matrix is symmetric`,
            );
          }
        }
      }
    }
  }
}

interface Tridiagonal {
  /** Diagonal, n. */
  readonly diagonal: Float64Array;
  /** Sub-diagonal: offDiagonal[k] = T[k + 1][k], k < n − 1; offDiagonal[n − 1] = 0. */
  readonly offDiagonal: Float64Array;
  /** Qᵀ as rows (A = Q T Qᵀ), when asked for. */
  readonly qTransposed?: Float64Array;
}

/**
 * Householder reduction A = Q T Qᵀ. Reads the lower triangle of `a` (n × n, row-major); `a` is
 * overwritten (its lower triangle ends up holding the Householder vectors).
 */
function tridiagonalize(a: Float64Array, n: number, wantQ: boolean, onProgress?: () => void): Tridiagonal {
  const diagonal = new Float64Array(n);
  const offDiagonal = new Float64Array(n);
  const betas = new Float64Array(n);
  const v = new Float64Array(n);
  const p = new Float64Array(n);
  for (let k = 0; k < n - 2; k++) {
    if ((k & 31) === 0) onProgress?.();
    diagonal[k] = a[k * n + k]!;
    // x = A[k+1 .., k]: the column below the diagonal (row entries, lower triangle).
    let norm2 = 0;
    let scale = 0;
    for (let i = k + 1; i < n; i++) scale = Math.max(scale, Math.abs(a[i * n + k]!));
    if (scale === 0) {
      offDiagonal[k] = 0;
      betas[k] = 0;
      continue;
    }
    for (let i = k + 1; i < n; i++) {
      const x = a[i * n + k]! / scale;
      v[i] = x;
      norm2 += x * x;
    }
    const x0 = v[k + 1]!;
    const alpha = -(x0 >= 0 ? 1 : -1) * Math.sqrt(norm2);
    // v = x − α e₁ (no cancellation: α has x₀'s opposite sign); H = I − β v vᵀ maps x to α e₁.
    v[k + 1] = x0 - alpha;
    const vv = norm2 - x0 * x0 + v[k + 1]! * v[k + 1]!;
    const beta = 2 / vv;
    offDiagonal[k] = alpha * scale;
    betas[k] = beta;
    // p = β A v over the trailing block, from its lower triangle (each stored entry serves twice).
    for (let i = k + 1; i < n; i++) p[i] = 0;
    for (let i = k + 1; i < n; i++) {
      const row = i * n;
      const vi = v[i]!;
      let acc = a[row + i]! * vi;
      for (let j = k + 1; j < i; j++) {
        const aij = a[row + j]!;
        acc += aij * v[j]!;
        p[j] = p[j]! + aij * vi;
      }
      p[i] = p[i]! + acc;
    }
    let pv = 0;
    for (let i = k + 1; i < n; i++) {
      p[i] = p[i]! * beta;
      pv += p[i]! * v[i]!;
    }
    // w = p − (β pᵀv / 2) v; A ← A − v wᵀ − w vᵀ (lower triangle), reusing p for w.
    const half = (beta * pv) / 2;
    for (let i = k + 1; i < n; i++) p[i] = p[i]! - half * v[i]!;
    for (let i = k + 1; i < n; i++) {
      const row = i * n;
      const vi = v[i]!;
      const wi = p[i]!;
      for (let j = k + 1; j <= i; j++) a[row + j] = a[row + j]! - vi * p[j]! - wi * v[j]!;
    }
    // Keep v where the eliminated column was (the reduction never reads it again).
    for (let i = k + 1; i < n; i++) a[i * n + k] = v[i]!;
  }
  if (n >= 2) {
    diagonal[n - 2] = a[(n - 2) * n + (n - 2)]!;
    offDiagonal[n - 2] = a[(n - 1) * n + (n - 2)]!;
  }
  diagonal[n - 1] = a[(n - 1) * n + (n - 1)]!;
  offDiagonal[n - 1] = 0;
  if (!wantQ) return { diagonal, offDiagonal };
  return { diagonal, offDiagonal, qTransposed: householderProduct(a, n, betas, onProgress) };
}

/**
 * Qᵀ as rows for the reflections the reduction left in `a`'s lower triangle (H_k's vector in
 * column k) with their `betas`.
 */
function householderProduct(a: Float64Array, n: number, betas: Float64Array, onProgress?: () => void): Float64Array {
  // Q = H₀ H₁ ⋯ H_{n−3}, accumulated from the right end (each H_k touches rows and columns > k
  // only), then transposed so that eigenvectors can be rotated as rows.
  const q = new Float64Array(n * n);
  for (let i = 0; i < n; i++) q[i * n + i] = 1;
  const u = new Float64Array(n);
  for (let k = n - 3; k >= 0; k--) {
    if ((k & 31) === 0) onProgress?.();
    const beta = betas[k]!;
    if (beta === 0) continue;
    // Q[k+1.., k+1..] ← (I − β v vᵀ) Q[k+1.., k+1..]: u = vᵀ Q (row combination), Q −= β v uᵀ.
    for (let j = k + 1; j < n; j++) u[j] = 0;
    for (let i = k + 1; i < n; i++) {
      const vi = a[i * n + k]!;
      if (vi === 0) continue;
      const row = i * n;
      for (let j = k + 1; j < n; j++) u[j] = u[j]! + vi * q[row + j]!;
    }
    for (let i = k + 1; i < n; i++) {
      const f = beta * a[i * n + k]!;
      if (f === 0) continue;
      const row = i * n;
      for (let j = k + 1; j < n; j++) q[row + j] = q[row + j]! - f * u[j]!;
    }
  }
  // In place transpose.
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < i; j++) {
      const t = q[i * n + j]!;
      q[i * n + j] = q[j * n + i]!;
      q[j * n + i] = t;
    }
  }
  return q;
}

/**
 * The implicit QL iteration on a symmetric tridiagonal matrix (diagonal d, sub-diagonal e with
 * e[n − 1] = 0), in place: d becomes the eigenvalues. When `rows` is given (n × n, row-major,
 * rows = the basis the tridiagonal matrix is expressed in), each plane rotation is applied to it,
 * so its rows become the eigenvectors.
 */
function tridiagonalQl(
  d: Float64Array,
  e: Float64Array,
  n: number,
  rows?: Float64Array,
  onProgress?: () => void,
): void {
  const eps = Number.EPSILON;
  let shift = 0;
  let tst = 0;
  for (let l = 0; l < n; l++) {
    if (rows && (l & 7) === 0) onProgress?.();
    tst = Math.max(tst, Math.abs(d[l]!) + Math.abs(e[l]!));
    let m = l;
    while (m < n - 1 && Math.abs(e[m]!) > eps * tst) m++;
    if (m > l) {
      let iterations = 0;
      do {
        if (++iterations > 60)
          throw evalError(
            'DDPM_EVAL_NO_CONVERGENCE',
            `the QL iteration did not converge for eigenvalue ${l} of ${n} after 60 sweeps`,
          );
        // Shift from the leading 2 × 2 block (Wilkinson), applied to everything below.
        const g0 = d[l]!;
        let p = (d[l + 1]! - g0) / (2 * e[l]!);
        let r = Math.hypot(p, 1);
        if (p < 0) r = -r;
        d[l] = e[l]! / (p + r);
        d[l + 1] = e[l]! * (p + r);
        const dl1 = d[l + 1]!;
        let h = g0 - d[l]!;
        for (let i = l + 2; i < n; i++) d[i] = d[i]! - h;
        shift += h;
        // Chase the bulge from m up to l with plane rotations.
        p = d[m]!;
        let c = 1;
        let c2 = 1;
        let c3 = 1;
        const el1 = e[l + 1]!;
        let s = 0;
        let s2 = 0;
        for (let i = m - 1; i >= l; i--) {
          c3 = c2;
          c2 = c;
          s2 = s;
          const g = c * e[i]!;
          h = c * p;
          r = Math.hypot(p, e[i]!);
          e[i + 1] = s * r;
          s = e[i]! / r;
          c = p / r;
          p = c * d[i]! - s * g;
          d[i + 1] = h + s * (c * g + s * d[i]!);
          if (rows) {
            const ri = i * n;
            const rj = (i + 1) * n;
            for (let k = 0; k < n; k++) {
              const x = rows[rj + k]!;
              const y = rows[ri + k]!;
              rows[rj + k] = s * y + c * x;
              rows[ri + k] = c * y - s * x;
            }
          }
        }
        p = (-s * s2 * c3 * el1 * e[l]!) / dl1;
        e[l] = s * p;
        d[l] = c * p;
      } while (Math.abs(e[l]!) > eps * tst);
    }
    d[l] = d[l]! + shift;
    e[l] = 0;
  }
}

/**
 * Eigen-decomposition of the symmetric n × n matrix `a` (row-major; only its lower triangle is
 * read, and the input is not modified). Eigenvalues ascending; eigenvectors as rows when asked.
 * `onProgress` is called now and then during the long synchronous stretches (a heartbeat's sign
 * of life: seconds at n = 2048).
 */
export function symmetricEigen(
  a: Float64Array,
  n: number,
  options: { vectors?: boolean; onProgress?: () => void } = {},
): SymmetricEigen {
  if (!Number.isInteger(n) || n < 1 || a.length !== n * n)
    throw evalError('DDPM_EVAL_SHAPE', `${a.length} values are not a ${n} × ${n} matrix`);
  const work = Float64Array.from(a);
  const wantVectors = options.vectors ?? false;
  const { diagonal, offDiagonal, qTransposed } = tridiagonalize(work, n, wantVectors, options.onProgress);
  tridiagonalQl(diagonal, offDiagonal, n, qTransposed, options.onProgress);
  const order = Array.from({ length: n }, (_, i) => i).sort((i, j) => diagonal[i]! - diagonal[j]!);
  const values = Float64Array.from(order, (i) => diagonal[i]!);
  if (!qTransposed) return { values };
  const vectorRows = new Float64Array(n * n);
  order.forEach((from, to) => vectorRows.set(qTransposed.subarray(from * n, from * n + n), to * n));
  return { values, vectorRows };
}
