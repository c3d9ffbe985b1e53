/**
 * The Kernel Inception Distance (Bińkowski et al., 2018): the unbiased estimate of the squared
 * maximum mean discrepancy with the cubic polynomial kernel k(x, y) = (xᵀy / d + 1)³, averaged
 * over random subsets of both sets (as their code and torch-fidelity do: 100 subsets of 1000).
 * Unlike FID it is unbiased in the sample size, so small evaluations are fair to compare.
 */
import { Rng } from '@ddpm/core';

import { evalError } from './errors';

export interface KidOptions {
  /** Default 100. */
  readonly subsets?: number;
  /** Default 1000, or the smaller set's size if that is smaller. */
  readonly subsetSize?: number;
  readonly seed?: number;
  /** Called after every subset (a heartbeat's sign of life). */
  readonly onProgress?: () => void;
}

export interface KidResult {
  readonly mean: number;
  readonly std: number;
  readonly subsets: number;
  readonly subsetSize: number;
}

/** Rows `rows` of `x` ([*, d]) copied into a float64 block [rows.length, d]. */
function gather(x: Float32Array, d: number, rows: Int32Array): Float64Array {
  const out = new Float64Array(rows.length * d);
  for (let i = 0; i < rows.length; i++) for (let k = 0; k < d; k++) out[i * d + k] = x[rows[i]! * d + k]!;
  return out;
}

/** Σ over pairs of k(a_i, b_j), skipping i = j when `offDiagonal` (a and b the same set). */
function kernelSum(a: Float64Array, b: Float64Array, m: number, d: number, offDiagonal: boolean): number {
  let total = 0;
  for (let i = 0; i < m; i++) {
    const ai = i * d;
    for (let j = offDiagonal ? i + 1 : 0; j < m; j++) {
      const bj = j * d;
      let dot = 0;
      for (let k = 0; k < d; k++) dot += a[ai + k]! * b[bj + k]!;
      const base = dot / d + 1;
      total += base * base * base;
    }
  }
  // The symmetric sets count each unordered pair once above; the estimator sums ordered pairs.
  return offDiagonal ? 2 * total : total;
}

/** KID between features x [n, d] and y [m, d] (row-major). */
export function kernelInceptionDistance(
  x: Float32Array,
  n: number,
  y: Float32Array,
  m: number,
  d: number,
  options: KidOptions = {},
): KidResult {
  if (x.length !== n * d || y.length !== m * d)
    throw evalError(
      'DDPM_EVAL_SHAPE',
      `KID: ${x.length} and ${y.length} values are not ${n} and ${m} vectors of dimension ${d}`,
    );
  const size = Math.min(options.subsetSize ?? 1000, n, m);
  if (size < 2)
    throw evalError('DDPM_EVAL_TOO_FEW', `KID needs at least 2 feature vectors on each side, got ${n} and ${m}`);
  const subsets = options.subsets ?? 100;
  if (!Number.isInteger(subsets) || subsets < 1)
    throw evalError('DDPM_EVAL_SHAPE', `KID subsets must be a positive integer, got ${subsets}`);
  const rng = Rng.fromSeed(options.seed ?? 0);
  const values: number[] = [];
  for (let s = 0; s < subsets; s++) {
    const a = gather(x, d, rng.permutation(n).subarray(0, size));
    const b = gather(y, d, rng.permutation(m).subarray(0, size));
    const kxx = kernelSum(a, a, size, d, true);
    const kyy = kernelSum(b, b, size, d, true);
    const kxy = kernelSum(a, b, size, d, false);
    values.push((kxx + kyy) / (size * (size - 1)) - (2 * kxy) / (size * size));
    options.onProgress?.();
  }
  const mean = values.reduce((p, v) => p + v, 0) / values.length;
  const std = Math.sqrt(values.reduce((p, v) => p + (v - mean) ** 2, 0) / values.length);
  return { mean, std, subsets, subsetSize: size };
}
