/**
 * The Gaussian diffusion of Ho et al. (2020): the forward process q, its posterior, and the
 * reverse process p_θ for every parameterisation of the paper's ablation. The network is an
 * argument ({@link DenoiseFn}); nothing here owns weights, files or randomness.
 *
 * Conventions
 * - Data tensors are [B, ...] (images [B, H, W, C]); per-example results are [B].
 * - Timesteps are 0-based table indices t ∈ [0, T): index t is the paper's t + 1, so index 0 is
 *   the decoder step p(x_0 | x_1). They are passed as host integers (`Int32Array` or number[]),
 *   because the coefficients are gathered from float64 tables on the host.
 * - Every method returns new tensors owned by the caller and never disposes its inputs.
 */
import * as tf from '@tensorflow/tfjs-core';

import {
  type BetaScheduleSpec,
  type LossType,
  type MeanType,
  type VarianceType,
  betaSchedule,
  describeValue,
  diffusionError,
  isLearnedVariance,
  validateModelling,
} from '@ddpm/diffusion-config';
import { type DiffusionTables, computeTables } from './tables';

/** The network: maps x_t [B, ...] and model timesteps t [B] (int32) to its output [B, ..., C or 2C]. */
export type DenoiseFn = (xT: tf.Tensor, t: tf.Tensor1D) => tf.Tensor;

/** Host-side timestep indices, one per example. */
export type Timesteps = Int32Array | readonly number[];

export interface DiffusionConfig {
  /** A named schedule, or explicit β values (0-based, length T). */
  readonly schedule: BetaScheduleSpec | { readonly betas: ArrayLike<number> };
  readonly meanType?: MeanType;
  readonly varianceType?: VarianceType;
  readonly lossType?: LossType;
}

/** Defaults of the paper's best CIFAR-10 model: ε-prediction, σ² = β, L_simple. */
export const DEFAULT_MODELLING = {
  meanType: 'epsilon',
  varianceType: 'fixedlarge',
  lossType: 'mse',
} as const satisfies { meanType: MeanType; varianceType: VarianceType; lossType: LossType };

// Type aliases (not interfaces) so results can be returned from tf.tidy.
export type MeanVariance = {
  readonly mean: tf.Tensor;
  readonly variance: tf.Tensor;
  readonly logVariance: tf.Tensor;
};

export type ReverseMeanVariance = MeanVariance & {
  /** The x_0 implied by the network output (clipped to [-1, 1] when asked). */
  readonly predXStart: tf.Tensor;
};

export class GaussianDiffusion {
  readonly tables: DiffusionTables;
  readonly meanType: MeanType;
  readonly varianceType: VarianceType;
  readonly lossType: LossType;
  /**
   * The timestep the network is given for each table index. The identity for a plain diffusion;
   * for a respaced one (fewer steps) it maps back to the original T so the same network serves.
   */
  readonly timestepMap: Int32Array;

  constructor(config: DiffusionConfig, timestepMap?: ArrayLike<number>) {
    const meanType = config.meanType ?? DEFAULT_MODELLING.meanType;
    const varianceType = config.varianceType ?? DEFAULT_MODELLING.varianceType;
    const lossType = config.lossType ?? DEFAULT_MODELLING.lossType;
    validateModelling(meanType, varianceType, lossType);
    const betas = 'betas' in config.schedule ? config.schedule.betas : betaSchedule(config.schedule);
    this.tables = computeTables(betas);
    this.meanType = meanType;
    this.varianceType = varianceType;
    this.lossType = lossType;
    const T = this.tables.numTimesteps;
    if (timestepMap !== undefined) {
      if (timestepMap.length !== T) {
        throw diffusionError(
          'DDPM_CONFIG_INVALID',
          `timestepMap has ${timestepMap.length} entries but the schedule has ${T} steps`,
        );
      }
      this.timestepMap = Int32Array.from(timestepMap);
    } else {
      this.timestepMap = Int32Array.from({ length: T }, (_, i) => i);
    }
  }

  get numTimesteps(): number {
    return this.tables.numTimesteps;
  }

  /** 2 when the network must also output the variance (learned Σ), else 1. */
  get outputChannelFactor(): 1 | 2 {
    return isLearnedVariance(this.varianceType) ? 2 : 1;
  }

  /** Checks and copies host timesteps; every entry must be an integer in [0, T). */
  checkTimesteps(t: Timesteps, batch?: number): Int32Array {
    const T = this.numTimesteps;
    if (batch !== undefined && t.length !== batch) {
      throw diffusionError('DDPM_SHAPE_MISMATCH', `got ${t.length} timesteps for a batch of ${batch}`);
    }
    const out = new Int32Array(t.length);
    for (let i = 0; i < t.length; i++) {
      const v = t[i]!;
      if (!Number.isInteger(v) || v < 0 || v >= T) {
        throw diffusionError(
          'DDPM_TIMESTEP_OUT_OF_RANGE',
          `timestep ${describeValue(v)} at position ${i} is outside [0, ${T - 1}]`,
        );
      }
      out[i] = v;
    }
    return out;
  }

  /**
   * Gathers `table[t_b]` for each example as a float32 tensor shaped [B, 1, ..., 1] of the given
   * rank, ready to broadcast against [B, ...] data (the official `_extract`).
   */
  extract(table: Float64Array, t: Timesteps, rank: number): tf.Tensor {
    const idx = this.checkTimesteps(t);
    const values = new Float32Array(idx.length);
    for (let i = 0; i < idx.length; i++) values[i] = table[idx[i]!]!;
    const shape = [idx.length, ...new Array<number>(Math.max(rank - 1, 0)).fill(1)];
    return tf.tensor(values, shape, 'float32');
  }

  /** The model-facing timesteps for table indices t (through {@link timestepMap}), as int32 [B]. */
  modelTimesteps(t: Timesteps): tf.Tensor1D {
    const idx = this.checkTimesteps(t);
    return tf.tensor1d(
      Int32Array.from(idx, (i) => this.timestepMap[i]!),
      'int32',
    );
  }

  // ---------------------------------------------------------------------------------------------
  // calculations for diffusion q(x_t | x_0) (Eq. 4)

  /** Mean, variance and log variance of q(x_t | x_0) = N(√ᾱ_t x_0, (1 − ᾱ_t) I). */
  qMeanVariance(xStart: tf.Tensor, t: Timesteps): MeanVariance {
    this.checkBatch(xStart, t);
    return tf.tidy(() => {
      const rank = xStart.rank;
      const mean = tf.mul(this.extract(this.tables.sqrtAlphasCumprod, t, rank), xStart);
      const variance = broadcastLike(this.extract(this.tables.oneMinusAlphasCumprod, t, rank), xStart.shape);
      const logVariance = broadcastLike(this.extract(this.tables.logOneMinusAlphasCumprod, t, rank), xStart.shape);
      return { mean, variance, logVariance };
    });
  }

  /** A draw x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε from q(x_t | x_0) for the given noise ε (Eq. 4). */
  qSample(xStart: tf.Tensor, t: Timesteps, noise: tf.Tensor): tf.Tensor {
    this.checkBatch(xStart, t);
    checkSameShape('noise', noise, 'xStart', xStart);
    return tf.tidy(() => {
      const rank = xStart.rank;
      return tf.add(
        tf.mul(this.extract(this.tables.sqrtAlphasCumprod, t, rank), xStart),
        tf.mul(this.extract(this.tables.sqrtOneMinusAlphasCumprod, t, rank), noise),
      );
    });
  }

  // ---------------------------------------------------------------------------------------------
  // calculations for posterior q(x_{t-1} | x_t, x_0) (Eqs. 6-7)

  /** μ̃_t(x_t, x_0), β̃_t and the clipped log β̃_t. */
  qPosteriorMeanVariance(
    xStart: tf.Tensor,
    xT: tf.Tensor,
    t: Timesteps,
  ): { mean: tf.Tensor; variance: tf.Tensor; logVarianceClipped: tf.Tensor } {
    this.checkBatch(xStart, t);
    checkSameShape('xT', xT, 'xStart', xStart);
    return tf.tidy(() => {
      const rank = xStart.rank;
      const mean = tf.add(
        tf.mul(this.extract(this.tables.posteriorMeanCoef1, t, rank), xStart),
        tf.mul(this.extract(this.tables.posteriorMeanCoef2, t, rank), xT),
      );
      const variance = broadcastLike(this.extract(this.tables.posteriorVariance, t, rank), xT.shape);
      const logVarianceClipped = broadcastLike(
        this.extract(this.tables.posteriorLogVarianceClipped, t, rank),
        xT.shape,
      );
      return { mean, variance, logVarianceClipped };
    });
  }

  /** x_0 = (x_t − √(1 − ᾱ_t) ε) / √ᾱ_t, the inversion of Eq. 4 (Eq. 15). */
  predictXStartFromEps(xT: tf.Tensor, t: Timesteps, eps: tf.Tensor): tf.Tensor {
    return tf.tidy(() =>
      tf.sub(
        tf.mul(this.extract(this.tables.sqrtRecipAlphasCumprod, t, xT.rank), xT),
        tf.mul(this.extract(this.tables.sqrtRecipm1AlphasCumprod, t, xT.rank), eps),
      ),
    );
  }

  /** ε = (x_t / √ᾱ_t − x_0) / √(1/ᾱ_t − 1), the noise implied by a predicted x_0. */
  predictEpsFromXStart(xT: tf.Tensor, t: Timesteps, predXStart: tf.Tensor): tf.Tensor {
    return tf.tidy(() =>
      tf.div(
        tf.sub(tf.mul(this.extract(this.tables.sqrtRecipAlphasCumprod, t, xT.rank), xT), predXStart),
        this.extract(this.tables.sqrtRecipm1AlphasCumprod, t, xT.rank),
      ),
    );
  }

  /** x_0 = (x_{t-1} − coef2 · x_t) / coef1, inverting the posterior mean (Eq. 7). */
  predictXStartFromXPrev(xT: tf.Tensor, t: Timesteps, xPrev: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      const rank = xT.rank;
      return tf.sub(
        tf.mul(this.extract(this.tables.recipPosteriorMeanCoef1, t, rank), xPrev),
        tf.mul(this.extract(this.tables.posteriorMeanCoef2OverCoef1, t, rank), xT),
      );
    });
  }

  // ---------------------------------------------------------------------------------------------
  // calculations for the reverse process p_θ(x_{t-1} | x_t) (Eq. 1, Sec. 3.2)

  /**
   * Splits a network output into its mean part and, for learned variances, the variance part
   * (the last axis holds [mean channels, variance channels]).
   */
  splitModelOutput(modelOutput: tf.Tensor, like: tf.Tensor): { meanOutput: tf.Tensor; varianceOutput?: tf.Tensor } {
    const channels = like.shape[like.rank - 1]!;
    const expected = [...like.shape.slice(0, -1), channels * this.outputChannelFactor];
    if (modelOutput.rank !== like.rank || !modelOutput.shape.every((d, i) => d === expected[i])) {
      throw diffusionError(
        'DDPM_SHAPE_MISMATCH',
        `the network returned shape [${modelOutput.shape.join(', ')}] but [${expected.join(', ')}] was expected ` +
          `(meanType ${this.meanType}, varianceType ${this.varianceType})`,
      );
    }
    if (this.outputChannelFactor === 1) return { meanOutput: modelOutput };
    const [meanOutput, varianceOutput] = tf.split(modelOutput, 2, -1) as [tf.Tensor, tf.Tensor];
    return { meanOutput, varianceOutput };
  }

  /** The log σ_t² of the reverse process for the configured variance type, shaped like xT. */
  modelLogVariance(xT: tf.Tensor, t: Timesteps, varianceOutput?: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      const rank = xT.rank;
      switch (this.varianceType) {
        case 'fixedlarge':
          return broadcastLike(this.extract(this.tables.fixedLargeLogVariance, t, rank), xT.shape);
        case 'fixedsmall':
          return broadcastLike(this.extract(this.tables.posteriorLogVarianceClipped, t, rank), xT.shape);
        case 'learned':
          return requireVarianceOutput(varianceOutput).clone();
        case 'learned-range': {
          const minLog = this.extract(this.tables.posteriorLogVarianceClipped, t, rank);
          const maxLog = this.extract(this.tables.logBetas, t, rank);
          const frac = tf.div(tf.add(requireVarianceOutput(varianceOutput), 1), 2);
          return tf.add(tf.mul(frac, maxLog), tf.mul(tf.sub(1, frac), minLog));
        }
        default: {
          const unreachable: never = this.varianceType;
          throw diffusionError('DDPM_CONFIG_INVALID', `unknown variance type ${describeValue(unreachable)}`);
        }
      }
    });
  }

  /** The x_0 implied by the mean part of a network output, before any clipping. */
  predXStartFromOutput(xT: tf.Tensor, t: Timesteps, meanOutput: tf.Tensor): tf.Tensor {
    switch (this.meanType) {
      case 'epsilon':
        return this.predictXStartFromEps(xT, t, meanOutput);
      case 'xstart':
        return meanOutput.clone();
      case 'xprev':
        return this.predictXStartFromXPrev(xT, t, meanOutput);
      default: {
        const unreachable: never = this.meanType;
        throw diffusionError('DDPM_CONFIG_INVALID', `unknown mean type ${describeValue(unreachable)}`);
      }
    }
  }

  /**
   * Mean, variance and predicted x_0 of p_θ(x_{t-1} | x_t) from a network output that has
   * already been computed (for callers that need the raw output too, e.g. the losses).
   *
   * With `clipDenoised` (the official sampling default) the predicted x_0 is clipped to [-1, 1]
   * and the mean is the posterior mean μ̃_t(x_t, x̂_0); `xprev` then keeps the network's own mean,
   * as the official code does. Without clipping, ε-prediction gives exactly Eq. 11.
   */
  pMeanVarianceFromOutput(
    xT: tf.Tensor,
    t: Timesteps,
    modelOutput: tf.Tensor,
    options: { clipDenoised: boolean },
  ): ReverseMeanVariance {
    return tf.tidy(() => {
      const { meanOutput, varianceOutput } = this.splitModelOutput(modelOutput, xT);
      const logVariance = this.modelLogVariance(xT, t, varianceOutput);
      const variance = tf.exp(logVariance);
      const rawXStart = this.predXStartFromOutput(xT, t, meanOutput);
      const predXStart = options.clipDenoised ? tf.clipByValue(rawXStart, -1, 1) : rawXStart;
      const mean = this.meanType === 'xprev' ? meanOutput : this.qPosteriorMeanVariance(predXStart, xT, t).mean;
      return { mean, variance, logVariance, predXStart };
    });
  }

  /** Runs the network on (x_t, t) and returns the reverse-process distribution. */
  pMeanVariance(
    model: DenoiseFn,
    xT: tf.Tensor,
    t: Timesteps,
    options: { clipDenoised: boolean },
  ): ReverseMeanVariance {
    this.checkBatch(xT, t);
    return tf.tidy(() => this.pMeanVarianceFromOutput(xT, t, this.runModel(model, xT, t), options));
  }

  /** Calls the network with model-facing timesteps, disposing them afterwards. */
  runModel(model: DenoiseFn, xT: tf.Tensor, t: Timesteps): tf.Tensor {
    return tf.tidy(() => model(xT, this.modelTimesteps(t)));
  }

  /**
   * One ancestral step x_{t-1} ~ p_θ(x_{t-1} | x_t) (Algorithm 2, lines 3–4):
   * x_{t-1} = μ_θ(x_t, t) + σ_t z, with z = 0 at the last step (t index 0) so that the final
   * sample is μ_θ(x_1, 1) displayed noiselessly (Sec. 3.3). `noise` is z for every example.
   */
  pSample(
    model: DenoiseFn,
    xT: tf.Tensor,
    t: Timesteps,
    noise: tf.Tensor,
    options: { clipDenoised: boolean },
  ): { sample: tf.Tensor; predXStart: tf.Tensor } {
    checkSameShape('noise', noise, 'xT', xT);
    return tf.tidy(() => {
      const { mean, logVariance, predXStart } = this.pMeanVariance(model, xT, t, options);
      const nonzeroMask = this.extract(this.tables.nonzeroMask, t, xT.rank);
      const sample = tf.add(mean, tf.mul(tf.mul(nonzeroMask, tf.exp(tf.mul(0.5, logVariance))), noise));
      return { sample, predXStart };
    });
  }

  /**
   * The paper's Algorithm 2, line 4, literally: x_{t-1} = (x_t − (1 − α_t)/√(1 − ᾱ_t) ε_θ) / √α_t
   * + σ_t z, with no clipping of x_0. Only defined for ε-prediction with a fixed variance.
   */
  algorithm2Step(
    model: DenoiseFn,
    xT: tf.Tensor,
    t: Timesteps,
    noise: tf.Tensor,
  ): { sample: tf.Tensor; predXStart: tf.Tensor } {
    if (this.meanType !== 'epsilon' || isLearnedVariance(this.varianceType)) {
      throw diffusionError(
        'DDPM_CONFIG_INVALID',
        `Algorithm 2 is defined for meanType "epsilon" with a fixed variance, not ${this.meanType}/${this.varianceType}`,
      );
    }
    this.checkBatch(xT, t);
    checkSameShape('noise', noise, 'xT', xT);
    return tf.tidy(() => {
      const rank = xT.rank;
      const eps = this.runModel(model, xT, t);
      const epsCoef = this.extract(this.tables.epsCoefAlgorithm2, t, rank);
      const recipSqrtAlpha = this.extract(this.tables.recipSqrtAlphas, t, rank);
      const mean = tf.mul(recipSqrtAlpha, tf.sub(xT, tf.mul(epsCoef, eps)));
      const sigma = tf.exp(tf.mul(0.5, this.modelLogVariance(xT, t)));
      const nonzeroMask = this.extract(this.tables.nonzeroMask, t, rank);
      const sample = tf.add(mean, tf.mul(tf.mul(nonzeroMask, sigma), noise));
      return { sample, predXStart: this.predictXStartFromEps(xT, t, eps) };
    });
  }

  private checkBatch(x: tf.Tensor, t: Timesteps): void {
    if (x.rank < 1) throw diffusionError('DDPM_SHAPE_MISMATCH', 'data must have a batch axis, got a scalar');
    if (t.length !== x.shape[0]) {
      throw diffusionError(
        'DDPM_SHAPE_MISMATCH',
        `got ${t.length} timesteps for a batch of ${x.shape[0]} (shape [${x.shape.join(', ')}])`,
      );
    }
  }
}

/**
 * A per-image value [B, 1, …] repeated to `shape`: the same values as tf.broadcastTo, as a product
 * with ones (broadcastTo runs the wasm backend's generic Tile kernel, ~2 ms for [16, 32, 32, 3]).
 */
function broadcastLike(v: tf.Tensor, shape: readonly number[]): tf.Tensor {
  return tf.tidy(() => tf.mul(v, tf.ones([...shape])));
}

function requireVarianceOutput(varianceOutput: tf.Tensor | undefined): tf.Tensor {
  if (varianceOutput === undefined) {
    throw diffusionError('DDPM_CONFIG_INVALID', 'a learned variance needs the variance half of the network output');
  }
  return varianceOutput;
}

export function checkSameShape(name: string, x: tf.Tensor, refName: string, ref: tf.Tensor): void {
  if (x.rank !== ref.rank || !x.shape.every((d, i) => d === ref.shape[i])) {
    throw diffusionError(
      'DDPM_SHAPE_MISMATCH',
      `${name} has shape [${x.shape.join(', ')}] but ${refName} has shape [${ref.shape.join(', ')}]`,
    );
  }
}
