/**
 * The wasm kernels (c/linalg_f64.c) against plain JavaScript references: the packed GEMM on
 * odd sizes with every flag, the pivoted Cholesky factorisation on random positive definite and
 * rank-deficient matrices, the tridiagonal reduction's eigenvalues against symmetric-eigen.ts;
 * then that the committed module is what clang makes of the source, and that repeated use does
 * not grow the memory.
 */
import { join } from 'node:path';

import { Rng } from '@ddpm/core';

import { describeGeneratedModule } from '../../../../test/support/generated-module';
import { GEMM, gemmF64, linalgMemoryBytes } from './linalg-wasm';
import { pivotedCholesky, productEigenvalues, tridiagonalEigenvalues } from './product-eigenvalues';
import { symmetricEigen } from './symmetric-eigen';

function random(count: number, seed: number): Float64Array {
  const rng = Rng.fromSeed(seed);
  return Float64Array.from({ length: count }, () => 2 * rng.uniform() - 1);
}

/** Xᵀ X for X of `rows` × n random entries (row-major n × n): rank min(rows, n). */
function gram(rows: number, n: number, seed: number): Float64Array {
  const x = random(rows * n, seed);
  const out = new Float64Array(n * n);
  for (let r = 0; r < rows; r++)
    for (let i = 0; i < n; i++)
      for (let j = 0; j < n; j++) out[i * n + j] = out[i * n + j]! + x[r * n + i]! * x[r * n + j]!;
  return out;
}

/** The bits of Σ √λ in the pinned-result test (little-endian hex of the double). */
const PINNED = '87059a84b18bbd40';

/** Column-major element access with or without transposition. */
const at = (m: Float64Array, ld: number, trans: boolean, i: number, k: number): number =>
  trans ? m[k + i * ld]! : m[i + k * ld]!;

describe('gemm', () => {
  const cases: [number, number, number][] = [
    [1, 1, 1],
    [5, 7, 3],
    [37, 29, 300],
    [130, 9, 17],
    [66, 66, 513],
  ];
  it.each(cases)('C(%i × %i) ± op(A) op(B) with k = %i, every transposition, to rounding', (m, n, k) => {
    for (const flags of [0, GEMM.TRANS_A, GEMM.TRANS_B, GEMM.TRANS_A | GEMM.TRANS_B | GEMM.NEGATE]) {
      const ta = (flags & GEMM.TRANS_A) !== 0;
      const tb = (flags & GEMM.TRANS_B) !== 0;
      const lda = (ta ? k : m) + 3;
      const ldb = (tb ? n : k) + 1;
      const ldc = m + 2;
      const a = random(lda * (ta ? m : k), m + k);
      const b = random(ldb * (tb ? k : n), n + 7);
      const c = random(ldc * n, 3);
      const out = gemmF64(flags, m, n, k, a, lda, b, ldb, c, ldc);
      const sign = flags & GEMM.NEGATE ? -1 : 1;
      let error = 0;
      let padding = 0;
      for (let j = 0; j < n; j++) {
        for (let i = 0; i < ldc; i++) {
          if (i >= m) {
            padding = Math.max(padding, Math.abs(out[i + j * ldc]! - c[i + j * ldc]!));
            continue;
          }
          let s = 0;
          for (let p = 0; p < k; p++) s += at(a, lda, ta, i, p) * at(b, ldb, tb, p, j);
          error = Math.max(error, Math.abs(out[i + j * ldc]! - (c[i + j * ldc]! + sign * s)));
        }
      }
      expect(error).toBeLessThan(1e-13 * k);
      expect(padding).toBe(0); // rows past m are left alone
    }
  });

  it('updates only the lower half of a symmetric result, and skips the zero blocks of triangular operands', () => {
    const n = 141;
    const k = 300;
    const x = random(n * k, 1);
    const c = random(n * n, 2);
    const lower = gemmF64(GEMM.TRANS_B | GEMM.NEGATE | GEMM.LOWER, n, n, k, x, n, x, n, c, n);
    let error = 0;
    let above = 0;
    for (let j = 0; j < n; j++) {
      for (let i = 0; i < n; i++) {
        if (i < j) {
          above = Math.max(above, Math.abs(lower[i + j * n]! - c[i + j * n]!));
          continue;
        }
        let s = 0;
        for (let p = 0; p < k; p++) s += x[i + p * n]! * x[j + p * n]!;
        error = Math.max(error, Math.abs(lower[i + j * n]! - (c[i + j * n]! - s)));
      }
    }
    expect(error).toBeLessThan(1e-12);
    expect(above).toBe(0);
    // L lower triangular (column-major, k × k with k > KC): S L, Lᵀ S and (tril S) L with their zero blocks skipped.
    const size = 300;
    const l = random(size * size, 3);
    for (let j = 0; j < size; j++) for (let i = 0; i < j; i++) l[i + j * size] = 0;
    const s = random(size * size, 4);
    const sl = gemmF64(GEMM.B_LOWER, size, size, size, s, size, l, size, new Float64Array(size * size), size);
    const ltt = gemmF64(
      GEMM.TRANS_A | GEMM.A_UPPER,
      size,
      size,
      size,
      l,
      size,
      s,
      size,
      new Float64Array(size * size),
      size,
    );
    const tril = Float64Array.from(s);
    for (let k = 0; k < size; k++) for (let i = 0; i < k; i++) tril[i + k * size] = 0;
    const y = gemmF64(
      GEMM.A_LOWER | GEMM.B_LOWER | GEMM.LOWER,
      size,
      size,
      size,
      tril,
      size,
      l,
      size,
      new Float64Array(size * size),
      size,
    );
    let triangular = 0;
    for (let j = 0; j < size; j += 7) {
      for (let i = 0; i < size; i += 3) {
        let p = 0;
        let q = 0;
        let u = 0;
        for (let t = 0; t < size; t++) {
          p += s[i + t * size]! * l[t + j * size]!;
          q += l[t + i * size]! * s[t + j * size]!;
          u += tril[i + t * size]! * l[t + j * size]!;
        }
        // The product of two lower-triangular matrices is lower triangular: above it, y stays 0.
        triangular = Math.max(
          triangular,
          Math.abs(sl[i + j * size]! - p),
          Math.abs(ltt[i + j * size]! - q),
          Math.abs(y[i + j * size]! - u),
        );
      }
    }
    expect(triangular).toBeLessThan(1e-12);
  });
});

/** max |(P L Lᵀ Pᵀ)(i, j) − Σ(i, j)| / max |Σ|. */
function reconstructionError(
  sigma: Float64Array,
  n: number,
): { rank: number; error: number; pivotsArePermutation: boolean; diagonalFalls: boolean } {
  const { factor, pivots, rank } = pivotedCholesky(sigma, n);
  let error = 0;
  let scale = 0;
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let k = 0; k < rank; k++) s += factor[k * n + i]! * factor[k * n + j]!;
      error = Math.max(error, Math.abs(s - sigma[pivots[i]! * n + pivots[j]!]!));
      scale = Math.max(scale, Math.abs(sigma[i * n + j]!));
    }
  }
  let diagonalFalls = true;
  for (let k = 1; k < rank; k++) if (factor[k * n + k]! > factor[(k - 1) * n + k - 1]!) diagonalFalls = false;
  const pivotsArePermutation = [...pivots].sort((p, q) => p - q).every((p, i) => p === i);
  return { rank, error: error / scale, pivotsArePermutation, diagonalFalls };
}

describe('pivoted Cholesky', () => {
  it.each([1, 2, 65, 150])('reconstructs P L Lᵀ Pᵀ = Σ for a random positive definite Σ of order %i', (n) => {
    const r = reconstructionError(gram(n + 20, n, n), n);
    expect(r.rank).toBe(n);
    expect(r.error).toBeLessThan(1e-14 * n);
    expect(r.pivotsArePermutation).toBe(true);
    expect(r.diagonalFalls).toBe(true); // complete pivoting: L's diagonal never rises
  });

  it.each([
    [40, 7],
    [150, 70],
    [200, 1],
  ])('finds the rank of a rank-deficient Σ of order %i and rank %i, and still reconstructs it', (n, rank) => {
    const r = reconstructionError(gram(rank, n, n + rank), n);
    expect(r.rank).toBe(rank);
    expect(r.error).toBeLessThan(1e-13 * n);
    expect(r.pivotsArePermutation).toBe(true);
  });

  it('gives rank 0 for a zero matrix', () => {
    expect(pivotedCholesky(new Float64Array(9), 3).rank).toBe(0);
  });
});

describe('tridiagonal reduction and QL', () => {
  it.each([1, 2, 3, 17, 129, 200, 301])('give the eigenvalues symmetric-eigen.ts gives, order %i', (n) => {
    const a = random(n * n, n);
    for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) a[j * n + i] = a[i * n + j]!;
    const ours = [...tridiagonalEigenvalues(a, n)].sort((p, q) => p - q);
    const reference = symmetricEigen(a, n).values;
    ours.forEach((v, i) => expect(Math.abs(v - reference[i]!)).toBeLessThan(1e-13 * n));
  });

  it('reads only the lower triangle', () => {
    const n = 150;
    const a = random(n * n, 5);
    const lowerOnly = Float64Array.from(a);
    for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) lowerOnly[j * n + i] = 0;
    expect(tridiagonalEigenvalues(lowerOnly, n)).toEqual(tridiagonalEigenvalues(a, n));
  });
});

describe('the module', () => {
  it('computes the same bits on every machine: a pinned result', () => {
    // Plain SIMD128 without fused multiply-adds, one thread, fixed blockings: the bits depend on
    // nothing but the inputs (exact: uniform() and products of its values). A deliberate change of
    // the kernels' arithmetic (block sizes, summation orders) changes them; then re-pin.
    const n = 150;
    const { values, rank } = productEigenvalues(gram(200, n, 1), gram(180, n, 2), n);
    let sum = 0;
    for (const v of values) sum += Math.sqrt(Math.max(v, 0));
    expect(rank).toBe(n);
    expect(Buffer.from(Float64Array.of(sum).buffer).toString('hex')).toBe(PINNED);
  });

  it('refuses to start a computation from a callback of another (they would share the memory)', () => {
    const a = gram(80, 64, 3);
    expect(() => productEigenvalues(a, a, 64, { onProgress: () => void productEigenvalues(a, a, 64) })).toThrow(
      /already in use/,
    );
    expect(() => productEigenvalues(a, a, 64, { onPhase: () => void pivotedCholesky(a, 64) })).toThrow(
      /already in use/,
    );
    expect(productEigenvalues(a, a, 64).rank).toBe(64); // and the module is usable afterwards
  });

  it('keeps its memory at the largest operation so far, however many operations run', () => {
    const small = gram(80, 64, 1);
    const big = gram(250, 200, 2);
    productEigenvalues(big, big, 200);
    const high = linalgMemoryBytes();
    for (let i = 0; i < 40; i++) productEigenvalues(small, small, 64);
    productEigenvalues(pivotedCholesky(big, 200), big, 200);
    expect(linalgMemoryBytes()).toBe(high);
  });

  describeGeneratedModule({
    build: join(__dirname, '..', '..', 'c', 'build.cjs'),
    committed: join(__dirname, 'linalg-wasm.generated.ts'),
    source: 'linalg_f64.c',
    tools: ['clang', 'wasm-ld'],
    packages: 'clang lld',
  });
});
