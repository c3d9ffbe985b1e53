/**
 * The non-zero eigenvalues of Σ₁ Σ₂ for symmetric positive semi-definite Σ₁ and Σ₂, without
 * eigenvectors, for tr (Σ₁ Σ₂)^½ = Σ √λ:
 *
 * 1. Σ₁ = P L Lᵀ Pᵀ by Cholesky with complete pivoting (LAPACK dpstrf), L n × r, r the numerical
 *    rank (pivots stop at n·ε·max diag Σ₁), so rank-deficient statistics need no special case;
 * 2. Σ₁ Σ₂ = P L (Lᵀ Pᵀ Σ₂) and Lᵀ (Pᵀ Σ₂ P) L have the same non-zero eigenvalues (AB and BA do),
 *    and M = Lᵀ (Pᵀ Σ₂ P) L is r × r, symmetric and positive semi-definite;
 * 3. M's eigenvalues by Householder tridiagonalisation (dsytrd) and the QL iteration.
 *
 * About 2.7n³ floating-point operations for r = n (n³/3 + n³ + 4n³/3), against the ~9n³ of an
 * eigendecomposition with vectors; all of it in the wasm kernels (linalg-wasm.ts), which call
 * `onProgress` between blocks.
 */
import { performance } from 'node:perf_hooks';

import { evalError } from '../errors';
import { type Arena, type LinalgOptions, type LinalgPhase, putSymmetric, withArena } from './linalg-wasm';

/** Σ = P L Lᵀ Pᵀ: a rank-revealing Cholesky factorisation of a covariance. */
export interface PivotedCholesky {
  readonly dim: number;
  /** Columns of L: the numerical rank of Σ. */
  readonly rank: number;
  /** pivots[j] is the row of Σ that became row j of L. */
  readonly pivots: Int32Array;
  /** L (dim × rank, zero above its diagonal) by columns: L(i, j) = factor[j·dim + i]. */
  readonly factor: Float64Array;
}

/** Nominal operation counts of each phase for order n and rank r. */
const FLOPS = {
  factorisation: (n: number, r: number): number => n * n * r - n * r * r + (r * r * r) / 3,
  products: (n: number, r: number): number => n * n * r + n * r * r - r * r * r,
  tridiagonalisation: (r: number): number => (4 * r * r * r) / 3,
  /** About 17 operations a plane rotation (a square root counted as one). */
  ql: (rotations: number): number => 17 * rotations,
};

function timed<T>(
  options: LinalgOptions,
  name: LinalgPhase['name'],
  arena: Arena,
  fn: () => T,
  flops: (result: T) => number,
): T {
  const start = performance.now();
  const result = arena.run(options.onProgress, fn);
  options.onPhase?.({ name, ms: performance.now() - start, flops: flops(result) });
  return result;
}

/** Σ's factor: reads the lower triangle of the n × n row-major `covariance`. */
export function pivotedCholesky(covariance: Float64Array, n: number, options: LinalgOptions = {}): PivotedCholesky {
  return withArena((arena) => {
    const a = arena.doubles(n * n);
    const piv = arena.doubles(n / 2);
    const work = arena.doubles(2 * n + arena.k.gemm_work_size(n));
    putSymmetric(arena, a, covariance, n);
    const rank = timed(
      options,
      'factorisation',
      arena,
      () => arena.k.pstrf(n, a, n, piv, work),
      (r) => FLOPS.factorisation(n, r),
    );
    const heap = arena.view();
    return {
      dim: n,
      rank,
      pivots: new Int32Array(heap.buffer, piv, n).slice(),
      factor: heap.slice(a / 8, a / 8 + n * rank),
    };
  });
}

/** The eigenvalues (d, r of them) of the symmetric r × r matrix at m, by dsytrd and the QL iteration. */
function symmetricValues(
  arena: Arena,
  options: LinalgOptions,
  m: number,
  r: number,
  at: { work: number; d: number; e: number; counts: number },
): Float64Array {
  timed(
    options,
    'tridiagonalisation',
    arena,
    () => arena.k.sytrd(r, m, r, at.d, at.e, at.work),
    () => FLOPS.tridiagonalisation(r),
  );
  const status = timed(
    options,
    'ql',
    arena,
    () => arena.k.tridiagonal_ql(r, at.d, at.e, at.counts),
    () => FLOPS.ql(new Int32Array(arena.view().buffer, at.counts, 1)[0]!),
  );
  if (status < 0)
    throw evalError(
      'DDPM_EVAL_NO_CONVERGENCE',
      `the QL iteration did not converge for eigenvalue ${-1 - status} of ${r} after 60 sweeps`,
    );
  return arena.view().slice(at.d / 8, at.d / 8 + r);
}

/**
 * The eigenvalues of M = Lᵀ (Pᵀ Σ₂ P) L, unordered (r of them, r = Σ₁'s numerical rank): the
 * non-zero eigenvalues of Σ₁ Σ₂, up to rounding (those of a semi-definite M may come out
 * slightly negative). `reference` is Σ₁ (n × n row-major, lower triangle read) or its factor;
 * `other` is Σ₂ (lower triangle read).
 */
export function productEigenvalues(
  reference: Float64Array | PivotedCholesky,
  other: Float64Array,
  n: number,
  options: LinalgOptions = {},
): { values: Float64Array; rank: number } {
  if (!(reference instanceof Float64Array) && reference.dim !== n)
    throw evalError(
      'DDPM_EVAL_INCOMPARABLE',
      `a factor of dimension ${reference.dim} cannot be used at dimension ${n}`,
    );
  return withArena((arena) => {
    // Σ₁ then L in a; Σ₂ then Y = s L in b; s = tril(Pᵀ Σ₂ P) then M in c.
    const [a, b, c] = [arena.doubles(n * n), arena.doubles(n * n), arena.doubles(n * n)];
    const piv = arena.doubles(n / 2);
    const at = {
      work: arena.doubles(Math.max(2 * n + arena.k.gemm_work_size(n), arena.k.sytrd_work_size(n))),
      d: arena.doubles(n),
      e: arena.doubles(n),
      counts: arena.doubles(1),
    };
    let r: number;
    if (reference instanceof Float64Array) {
      putSymmetric(arena, a, reference, n);
      r = timed(
        options,
        'factorisation',
        arena,
        () => arena.k.pstrf(n, a, n, piv, at.work),
        (rank) => FLOPS.factorisation(n, rank),
      );
    } else {
      r = reference.rank;
      const heap = arena.view();
      heap.set(reference.factor, a / 8);
      new Int32Array(heap.buffer, piv, n).set(reference.pivots);
    }
    const rank = r;
    const products = (): void => {
      putSymmetric(arena, b, other, n);
      arena.k.gather_lower_half(n, b, piv, c);
      arena.k.sandwich(n, rank, a, c, b, c, at.work);
    };
    timed(options, 'products', arena, products, () => FLOPS.products(n, rank));
    return { values: symmetricValues(arena, options, c, rank, at), rank };
  });
}

/** Eigenvalues (unordered) of the symmetric n × n row-major `a` (lower triangle read), by the kernels' dsytrd and QL. */
export function tridiagonalEigenvalues(a: Float64Array, n: number, options: LinalgOptions = {}): Float64Array {
  return withArena((arena) => {
    const m = arena.doubles(n * n);
    const at = {
      work: arena.doubles(arena.k.sytrd_work_size(n)),
      d: arena.doubles(n),
      e: arena.doubles(n),
      counts: arena.doubles(1),
    };
    putSymmetric(arena, m, a, n);
    return symmetricValues(arena, options, m, n, at);
  });
}
