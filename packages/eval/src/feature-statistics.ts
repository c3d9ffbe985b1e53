/**
 * Streaming first and second moments of feature vectors in float64: the mean and the covariance
 * (with N − 1, as numpy.cov and pytorch-fid) of any number of features, of which only one batch
 * is in memory at a time. Batches are centred on their own mean before their scatter matrix is
 * formed and merged with Chan et al.'s pairwise update, so no large sums of squares cancel.
 */
import { Rng } from '@ddpm/core';

import { evalError } from './errors';
import { rowDots } from './linalg/products';

/** The Gaussian summary of a set of features that the Fréchet distance compares. */
export interface FeatureStatistics {
  readonly dim: number;
  readonly count: number;
  /** [dim] */
  readonly mean: Float64Array;
  /** [dim, dim], row-major, N − 1 normalisation. */
  readonly covariance: Float64Array;
}

/** A sample of feature vectors (for KID), [count, dim] row-major. */
export interface KeptFeatures {
  readonly featuresND: Float32Array;
  readonly count: number;
}

export interface AccumulatorOptions {
  /**
   * Keep a uniform random sample of up to this many feature vectors (reservoir sampling), for
   * metrics that need the features themselves (KID). Default 0.
   */
  readonly keep?: number;
  /** Seed of the reservoir's choices (default 0), so a result can be reproduced. */
  readonly seed?: number;
}

/** Accumulates features batch by batch; {@link statistics} summarises what it has seen. */
export class FeatureAccumulator {
  private count = 0;
  private readonly mean: Float64Array;
  /** Σ (x − mean)(x − mean)ᵀ over everything seen. */
  private readonly scatter: Float64Array;
  private readonly keep: number;
  private readonly kept: Float32Array;
  private keptCount = 0;
  private readonly rng: Rng;

  constructor(
    readonly dim: number,
    options: AccumulatorOptions = {},
  ) {
    if (!Number.isInteger(dim) || dim < 1)
      throw evalError('DDPM_EVAL_SHAPE', `a feature dimension must be a positive integer, got ${dim}`);
    this.mean = new Float64Array(dim);
    this.scatter = new Float64Array(dim * dim);
    this.keep = options.keep ?? 0;
    this.kept = new Float32Array(this.keep * dim);
    this.rng = Rng.fromSeed(options.seed ?? 0);
  }

  get size(): number {
    return this.count;
  }

  /** Adds `batch` feature vectors, row-major [batch, dim]. */
  add(featuresBD: Float32Array | Float64Array, batch: number): void {
    const d = this.dim;
    if (!Number.isInteger(batch) || batch < 1 || featuresBD.length !== batch * d) {
      throw evalError(
        'DDPM_EVAL_SHAPE',
        `${featuresBD.length} values are not ${batch} feature vectors of dimension ${d}`,
      );
    }
    const batchMean = new Float64Array(d);
    for (let b = 0; b < batch; b++) {
      for (let k = 0; k < d; k++) {
        const v = featuresBD[b * d + k]!;
        if (!Number.isFinite(v))
          throw evalError(
            'DDPM_EVAL_NOT_FINITE',
            `feature ${k} of vector ${b} of the batch is ${v} (a diverged model's samples?)`,
          );
        batchMean[k] = batchMean[k]! + v;
      }
    }
    for (let k = 0; k < d; k++) batchMean[k] = batchMean[k]! / batch;
    // Centred and transposed, [dim, batch], so that the scatter is a product of rows.
    const centredDB = new Float64Array(d * batch);
    for (let b = 0; b < batch; b++)
      for (let k = 0; k < d; k++) centredDB[k * batch + b] = featuresBD[b * d + k]! - batchMean[k]!;
    const batchScatter = rowDots(centredDB, centredDB, d, d, batch, new Float64Array(d * d), true);
    this.addMoments(batch, batchMean, batchScatter);
    this.sample(featuresBD, batch);
  }

  /**
   * Merges the moments of a batch computed elsewhere (on a tensor backend, say): its size, mean
   * [dim] and scatter Σ (x − batchMean)(x − batchMean)ᵀ [dim, dim].
   */
  addMoments(batch: number, batchMean: Float64Array | Float32Array, batchScatter: Float64Array | Float32Array): void {
    const d = this.dim;
    if (batchMean.length !== d || batchScatter.length !== d * d)
      throw evalError(
        'DDPM_EVAL_SHAPE',
        `moments of dimension ${batchMean.length} (scatter ${batchScatter.length} values) for features of dimension ${d}`,
      );
    const n = this.count + batch;
    const delta = new Float64Array(d);
    for (let k = 0; k < d; k++) delta[k] = batchMean[k]! - this.mean[k]!;
    const w = (this.count * batch) / n;
    // The upper triangle, mirrored: the scatter stays exactly symmetric.
    for (let i = 0; i < d; i++) {
      const row = i * d;
      const di = delta[i]! * w;
      for (let j = i; j < d; j++) {
        const v = this.scatter[row + j]! + batchScatter[row + j]! + di * delta[j]!;
        this.scatter[row + j] = v;
        this.scatter[j * d + i] = v;
      }
    }
    for (let k = 0; k < d; k++) this.mean[k] = this.mean[k]! + (delta[k]! * batch) / n;
    this.count = n;
  }

  /** Reservoir sampling (Vitter's algorithm R): every vector seen is kept with equal probability. */
  private sample(featuresBD: Float32Array | Float64Array, batch: number): void {
    if (this.keep === 0) return;
    const d = this.dim;
    const seenBefore = this.count - batch;
    for (let b = 0; b < batch; b++) {
      const seen = seenBefore + b;
      let slot: number;
      if (this.keptCount < this.keep) slot = this.keptCount++;
      else {
        slot = this.rng.int(seen + 1);
        if (slot >= this.keep) continue;
      }
      this.kept.set(featuresBD.subarray(b * d, b * d + d), slot * d);
    }
  }

  statistics(): FeatureStatistics {
    if (this.count < 2)
      throw evalError('DDPM_EVAL_TOO_FEW', `a covariance needs at least 2 feature vectors, got ${this.count}`);
    const covariance = Float64Array.from(this.scatter, (v) => v / (this.count - 1));
    return { dim: this.dim, count: this.count, mean: Float64Array.from(this.mean), covariance };
  }

  /** The kept sample, [n, dim] (see {@link AccumulatorOptions.keep}). */
  keptFeatures(): KeptFeatures {
    return { featuresND: this.kept.slice(0, this.keptCount * this.dim), count: this.keptCount };
  }
}
