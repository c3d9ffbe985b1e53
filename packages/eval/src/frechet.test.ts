import { Rng } from '@ddpm/core';

import { FeatureAccumulator, type FeatureStatistics } from './feature-statistics';
import { frechetDistance, referenceRoot } from './frechet';

const stats = (mean: number[], covariance: number[]): FeatureStatistics => ({
  dim: mean.length,
  count: 100,
  mean: Float64Array.from(mean),
  covariance: Float64Array.from(covariance),
});

/** Statistics of `count` random d-dimensional vectors with correlated coordinates. */
function randomStatistics(d: number, count: number, seed: number, shift = 0): FeatureStatistics {
  const rng = Rng.fromSeed(seed);
  const acc = new FeatureAccumulator(d);
  const x = new Float64Array(count * d);
  for (let i = 0; i < count; i++) {
    let carry = 0;
    for (let k = 0; k < d; k++) {
      carry = 0.6 * carry + (2 * rng.uniform() - 1);
      x[i * d + k] = carry + shift;
    }
  }
  acc.add(x, count);
  return acc.statistics();
}

describe('frechetDistance', () => {
  it('reproduces the closed-form test vectors', () => {
    // 1-D: (0 − 1)² + 1 + 4 − 2·√4 = 2.
    expect(frechetDistance(stats([0], [1]), stats([1], [4])).distance).toBeCloseTo(2, 12);
    // diag(1, 4) and diag(4, 9), means 0 and (1, 2): 5 + 5 + 13 − 2·(2 + 6) = 7.
    expect(frechetDistance(stats([0, 0], [1, 0, 0, 4]), stats([1, 2], [4, 0, 0, 9])).distance).toBeCloseTo(7, 12);
    // [[2, 1], [1, 2]] and [[5, 4], [4, 5]] commute (eigenvalues 3, 1 and 9, 1): 14 − 2(√27 + 1).
    expect(frechetDistance(stats([0, 0], [2, 1, 1, 2]), stats([0, 0], [5, 4, 4, 5])).distance).toBeCloseTo(
      12 - 6 * Math.sqrt(3),
      12,
    );
  });

  it('is ~0 for identical statistics, symmetric, and scales as c² when the features do', () => {
    const a = randomStatistics(24, 300, 1);
    const b = randomStatistics(24, 300, 2, 0.1);
    const same = frechetDistance(a, a);
    expect(Math.abs(same.distance)).toBeLessThan(1e-9);
    const ab = frechetDistance(a, b).distance;
    const ba = frechetDistance(b, a).distance;
    expect(ab).toBeGreaterThan(0.1);
    expect(Math.abs(ab - ba)).toBeLessThan(1e-9 * ab);
    const c = 3.5;
    const scale = (s: FeatureStatistics): FeatureStatistics => ({
      ...s,
      mean: s.mean.map((v) => c * v),
      covariance: s.covariance.map((v) => c * c * v),
    });
    expect(frechetDistance(scale(a), scale(b)).distance).toBeCloseTo(c * c * ab, 8);
  });

  it('reuses a cached reference root to the same result', () => {
    const a = randomStatistics(16, 200, 5);
    const b = randomStatistics(16, 200, 6, -0.2);
    const root = referenceRoot(a);
    expect(frechetDistance(root, b).distance).toBe(frechetDistance(root, b).distance);
    // The cached factor is the one computed inside: the same bits.
    expect(frechetDistance(root, b).distance).toBe(frechetDistance(a, b).distance);
    // P L Lᵀ Pᵀ = Σ.
    const n = 16;
    const { factor, pivots, rank } = root.cholesky;
    expect(rank).toBe(n);
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let k = 0; k < rank; k++) s += factor[k * n + i]! * factor[k * n + j]!;
        expect(s).toBeCloseTo(a.covariance[pivots[i]! * n + pivots[j]!]!, 12);
      }
    }
  });

  it('shows it is alive during its long synchronous stretches, and the result does not depend on it', () => {
    const a = randomStatistics(200, 400, 11);
    const b = randomStatistics(200, 400, 12, 0.1);
    let calls = 0;
    const seen: Record<string, number> = {};
    const watched = frechetDistance(a, b, {
      onProgress: () => void calls++,
      onPhase: (phase) => {
        seen[phase.name] = calls;
        calls = 0;
      },
    });
    // The factorisation, the products, the reduction and the QL iteration all report.
    expect(Object.keys(seen)).toEqual(['factorisation', 'products', 'tridiagonalisation', 'ql']);
    for (const count of Object.values(seen)) expect(count).toBeGreaterThan(0);
    expect(seen['factorisation']! + seen['products']! + seen['tridiagonalisation']!).toBeGreaterThan(10);
    expect(watched.distance).toBe(frechetDistance(a, b).distance);
  });

  it('clamps the negative rounding eigenvalues of rank-deficient statistics instead of failing', () => {
    // 10 vectors in 40 dimensions: both covariances are singular.
    const a = randomStatistics(40, 10, 7);
    const b = randomStatistics(40, 10, 8);
    const r = frechetDistance(a, b);
    expect(Number.isFinite(r.distance)).toBe(true);
    expect(r.distance).toBeGreaterThan(0);
    // Centred on their mean, 10 vectors span 9 dimensions: the factor stops there.
    expect(r.rank).toBe(9);
    expect(referenceRoot(a).cholesky.rank).toBe(9);
    expect(Math.abs(r.distance - frechetDistance(b, a).distance)).toBeLessThan(1e-9 * r.distance);
    // A zero covariance has rank 0: the distance is then the mean term plus tr Σ₂.
    const zero = { ...a, covariance: new Float64Array(40 * 40) };
    const z = frechetDistance(zero, b);
    expect(z.rank).toBe(0);
    let traceB = 0;
    for (let i = 0; i < 40; i++) traceB += b.covariance[i * 40 + i]!;
    expect(z.covarianceTerm).toBeCloseTo(traceB, 12);
  });

  it('gives 2048 for 2048-d identity covariances with means 0 and 1', () => {
    const d = 2048;
    const identity = new Float64Array(d * d);
    for (let i = 0; i < d; i++) identity[i * d + i] = 1;
    const r = frechetDistance(
      { dim: d, count: 10_000, mean: new Float64Array(d), covariance: identity },
      { dim: d, count: 10_000, mean: new Float64Array(d).fill(1), covariance: identity },
    );
    expect(r.distance).toBeCloseTo(2048, 8);
    expect(r.meanTerm).toBe(2048);
    expect(r.rank).toBe(2048);
  }, 30_000);

  it('refuses incomparable or broken statistics with a message that names the problem', () => {
    expect(() => frechetDistance(stats([0], [1]), stats([0, 0], [1, 0, 0, 1]))).toThrow(
      /dimension 2 cannot be compared with a reference of dimension 1/,
    );
    expect(() => frechetDistance(stats([0, 0], [1, 0.5, 0, 1]), stats([0, 0], [1, 0, 0, 1]))).toThrow(
      /differ; a covariance matrix is symmetric/,
    );
    expect(() => frechetDistance(stats([0], [1]), stats([Number.NaN], [1]))).toThrow(/mean\[0\] is NaN/);
  });
});
