/**
 * The Fréchet distance between two Gaussians fitted to features (Heusel et al., 2017):
 *
 *   d² = ‖μ₁ − μ₂‖² + tr Σ₁ + tr Σ₂ − 2 tr (Σ₁ Σ₂)^½
 *
 * by the symmetric route: with R = Σ₁^½ (from Σ₁'s eigendecomposition, negative eigenvalues of
 * rounding clamped to 0), Σ₁ Σ₂ is similar to R Σ₂ R, which is symmetric positive semi-definite,
 * so tr (Σ₁ Σ₂)^½ = Σ √λᵢ(R Σ₂ R) with negative λᵢ clamped to 0. No complex square roots, no
 * ill-conditioned `sqrtm` iterations (the classic source of FIDs that disagree in the third digit),
 * and R depends on the reference alone, so it is computed once and cached with the reference.
 */
import { evalError } from './errors';
import { type FeatureStatistics } from './feature-statistics';
import { rowDots, symmetricSandwich } from './linalg/products';
import { checkSymmetric, symmetricEigen } from './linalg/symmetric-eigen';

/** A reference set's statistics with Σ^½, ready for any number of distances. */
export interface ReferenceRoot {
  readonly statistics: FeatureStatistics;
  /** Σ^½, [dim, dim], row-major, exactly symmetric. */
  readonly sqrtCovariance: Float64Array;
  /** tr Σ. */
  readonly trace: number;
  /** The eigenvalues of Σ that were negative (rounding; a valid covariance has none below −1e-6·max). */
  readonly clampedEigenvalues: number;
}

export interface FrechetResult {
  readonly distance: number;
  /** ‖μ₁ − μ₂‖². */
  readonly meanTerm: number;
  /** tr Σ₁ + tr Σ₂ − 2 tr (Σ₁ Σ₂)^½. */
  readonly covarianceTerm: number;
  /** Eigenvalues of R Σ₂ R below 0 that were clamped (a sign of rank-deficient statistics). */
  readonly clampedEigenvalues: number;
}

function checkStatistics(s: FeatureStatistics, what: string): void {
  if (s.mean.length !== s.dim) throw evalError('DDPM_EVAL_SHAPE', `${what}: a mean of ${s.mean.length} values for dimension ${s.dim}`);
  for (let i = 0; i < s.dim; i++) if (!Number.isFinite(s.mean[i]!)) throw evalError('DDPM_EVAL_NOT_FINITE', `${what}: mean[${i}] is ${s.mean[i]}`);
  checkSymmetric(s.covariance, s.dim, `${what} covariance`);
}

function trace(m: Float64Array, n: number): number {
  let t = 0;
  for (let i = 0; i < n; i++) t += m[i * n + i]!;
  return t;
}

/** Long synchronous stretches call `onProgress` now and then (a heartbeat's sign of life). */
export interface LinalgOptions {
  readonly onProgress?: () => void;
}

/** Σ^½ of a reference set's covariance (one eigendecomposition with vectors; cache the result). */
export function referenceRoot(statistics: FeatureStatistics, options: LinalgOptions = {}): ReferenceRoot {
  checkStatistics(statistics, 'reference statistics');
  const n = statistics.dim;
  const { values, vectorRows } = symmetricEigen(statistics.covariance, n, { vectors: true, ...options });
  let clamped = 0;
  // R = V diag(√λ) Vᵀ = Wᵀ W with W's row m = λ_m^¼ v_m: R[i][j] = Σ_m W[m][i] W[m][j].
  const wt = new Float64Array(n * n); // Wᵀ: row i holds column i of W
  for (let m = 0; m < n; m++) {
    const lambda = values[m]!;
    if (lambda < 0) clamped++;
    const f = Math.sqrt(Math.sqrt(Math.max(lambda, 0)));
    const row = m * n;
    for (let i = 0; i < n; i++) wt[i * n + m] = f * vectorRows![row + i]!;
  }
  const sqrtCovariance = rowDots(wt, wt, n, n, n, new Float64Array(n * n), true, options.onProgress);
  return { statistics, sqrtCovariance, trace: trace(statistics.covariance, n), clampedEigenvalues: clamped };
}

/**
 * The Fréchet distance of `generated` from `reference` (pass a {@link ReferenceRoot} to reuse
 * Σ_ref^½). Symmetric in its arguments up to rounding.
 */
export function frechetDistance(reference: FeatureStatistics | ReferenceRoot, generated: FeatureStatistics, options: LinalgOptions = {}): FrechetResult {
  const root = 'sqrtCovariance' in reference ? reference : referenceRoot(reference, options);
  const ref = root.statistics;
  checkStatistics(generated, 'generated statistics');
  if (generated.dim !== ref.dim) throw evalError('DDPM_EVAL_INCOMPARABLE', `features of dimension ${generated.dim} cannot be compared with a reference of dimension ${ref.dim}`);
  const n = ref.dim;
  let meanTerm = 0;
  for (let i = 0; i < n; i++) meanTerm += (ref.mean[i]! - generated.mean[i]!) ** 2;
  const { values } = symmetricEigen(symmetricSandwich(root.sqrtCovariance, generated.covariance, n, options.onProgress), n, options);
  let traceSqrt = 0;
  let clamped = 0;
  for (const lambda of values) {
    if (lambda < 0) clamped++;
    else traceSqrt += Math.sqrt(lambda);
  }
  const covarianceTerm = root.trace + trace(generated.covariance, n) - 2 * traceSqrt;
  return { distance: meanTerm + covarianceTerm, meanTerm, covarianceTerm, clampedEigenvalues: clamped };
}
