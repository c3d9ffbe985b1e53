import { Rng } from '@ddpm/core';

import { symmetricEigen } from './symmetric-eigen';

/** A random symmetric n × n matrix with entries in (−1, 1). */
function randomSymmetric(n: number, seed: number): Float64Array {
  const rng = Rng.fromSeed(seed);
  const a = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) {
      const v = 2 * rng.uniform() - 1;
      a[i * n + j] = v;
      a[j * n + i] = v;
    }
  }
  return a;
}

/** max |A v − λ v| over the eigenpairs and max |vᵢ·vⱼ − δᵢⱼ|. */
function residuals(
  a: Float64Array,
  n: number,
  values: Float64Array,
  rows: Float64Array,
): { eigen: number; orthogonality: number } {
  let eigen = 0;
  let orthogonality = 0;
  for (let m = 0; m < n; m++) {
    for (let i = 0; i < n; i++) {
      let s = 0;
      for (let k = 0; k < n; k++) s += a[i * n + k]! * rows[m * n + k]!;
      eigen = Math.max(eigen, Math.abs(s - values[m]! * rows[m * n + i]!));
    }
    for (let p = 0; p <= m; p++) {
      let dot = 0;
      for (let k = 0; k < n; k++) dot += rows[m * n + k]! * rows[p * n + k]!;
      orthogonality = Math.max(orthogonality, Math.abs(dot - (m === p ? 1 : 0)));
    }
  }
  return { eigen, orthogonality };
}

describe('symmetricEigen', () => {
  it('solves 1 × 1 and 2 × 2 matrices exactly', () => {
    expect(Array.from(symmetricEigen(Float64Array.of(-3), 1).values)).toEqual([-3]);
    // [[2, 1], [1, 2]]: eigenvalues 1 and 3, eigenvectors (1, −1)/√2 and (1, 1)/√2.
    const { values, vectorRows } = symmetricEigen(Float64Array.of(2, 1, 1, 2), 2, { vectors: true });
    expect(values[0]).toBeCloseTo(1, 14);
    expect(values[1]).toBeCloseTo(3, 14);
    expect(Math.abs(vectorRows![2]! * vectorRows![3]!)).toBeCloseTo(0.5, 14);
    expect(vectorRows![0]! * vectorRows![1]!).toBeCloseTo(-0.5, 14);
  });

  it('returns a diagonal matrix’s entries, sorted, and handles repeated and zero eigenvalues', () => {
    const n = 6;
    const d = [4, -1, 0, 4, 2.5, 0];
    const a = new Float64Array(n * n);
    d.forEach((v, i) => (a[i * n + i] = v));
    const { values, vectorRows } = symmetricEigen(a, n, { vectors: true });
    expect(Array.from(values)).toEqual([...d].sort((x, y) => x - y));
    const r = residuals(a, n, values, vectorRows!);
    expect(r.eigen).toBeLessThan(1e-14);
    expect(r.orthogonality).toBeLessThan(1e-14);
    expect(Array.from(symmetricEigen(new Float64Array(16), 4).values)).toEqual([0, 0, 0, 0]);
  });

  it.each([3, 17, 64, 121])('decomposes a random symmetric n × n matrix (n = %i) to rounding', (n) => {
    const a = randomSymmetric(n, n);
    const copy = Float64Array.from(a);
    const { values, vectorRows } = symmetricEigen(a, n, { vectors: true });
    expect(a).toEqual(copy); // the input is left alone
    const r = residuals(a, n, values, vectorRows!);
    expect(r.eigen).toBeLessThan(1e-12 * n);
    expect(r.orthogonality).toBeLessThan(1e-13 * n);
    for (let m = 1; m < n; m++) expect(values[m]).toBeGreaterThanOrEqual(values[m - 1]!);
    // Trace and Frobenius norm are the sum of the eigenvalues and of their squares.
    let trace = 0;
    let frobenius = 0;
    for (let i = 0; i < n; i++) trace += a[i * n + i]!;
    for (const v of a) frobenius += v * v;
    expect(values.reduce((s, v) => s + v, 0)).toBeCloseTo(trace, 10);
    expect(values.reduce((s, v) => s + v * v, 0)).toBeCloseTo(frobenius, 9);
    // The values-only path gives the same eigenvalues.
    const valuesOnly = symmetricEigen(a, n).values;
    for (let m = 0; m < n; m++) expect(Math.abs(valuesOnly[m]! - values[m]!)).toBeLessThan(1e-12 * n);
  });

  it('keeps the tiny eigenvalues of a rank-deficient covariance near zero', () => {
    // X is 5 samples of dimension 12: the covariance has rank ≤ 4.
    const n = 12;
    const rng = Rng.fromSeed(3);
    const x = Array.from({ length: 5 }, () => Array.from({ length: n }, () => rng.uniform()));
    const a = new Float64Array(n * n);
    for (const row of x)
      for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) a[i * n + j] = a[i * n + j]! + row[i]! * row[j]!;
    const { values } = symmetricEigen(a, n);
    const largest = values[n - 1]!;
    for (let m = 0; m < n - 5; m++) expect(Math.abs(values[m]!)).toBeLessThan(1e-13 * largest);
  });

  it('names a wrong shape', () => {
    expect(() => symmetricEigen(new Float64Array(5), 2)).toThrow(/5 values are not a 2 × 2 matrix/);
  });
});
