/**
 * Training objectives (Sec. 3.4, Table 2) and the per-timestep terms of the variational bound
 * (Eq. 5). Every loss is per example ([B]) so callers can weight, average or log it by t.
 */
import * as tf from '@tensorflow/tfjs-core';

import { diffusionError, describeValue } from '@ddpm/diffusion-config';
import { type DenoiseFn, type GaussianDiffusion, type Timesteps, checkSameShape } from './gaussian-diffusion';
import { discretizedGaussianLogLikelihood, meanFlat, normalKl } from './gaussian';

export const LN2 = Math.log(2);

export type VbTerms = {
  /**
   * Per example, in bits/dim: the decoder NLL −log p_θ(x_0 | x_1) (Eq. 13) where t = 0, and
   * KL(q(x_{t-1} | x_t, x_0) || p_θ(x_{t-1} | x_t)) elsewhere (the L_{t-1} of Eq. 5).
   */
  readonly termsB: tf.Tensor1D;
  /** The network's x_0 prediction, [B, ...]. */
  readonly predXStart: tf.Tensor;
};

/**
 * The bound terms L_{t-1} (or L_0 at t = 0) for x_t drawn from q(x_t | x_0), given a network
 * output already computed for (x_t, t).
 */
export function vbTermsBpdFromOutput(
  diffusion: GaussianDiffusion,
  xStart: tf.Tensor,
  xT: tf.Tensor,
  t: Timesteps,
  modelOutput: tf.Tensor,
  options: { clipDenoised: boolean },
): VbTerms {
  checkSameShape('xT', xT, 'xStart', xStart);
  return tf.tidy(() => {
    const posterior = diffusion.qPosteriorMeanVariance(xStart, xT, t);
    const model = diffusion.pMeanVarianceFromOutput(xT, t, modelOutput, options);
    const klB = tf.div(
      meanFlat(normalKl(posterior.mean, posterior.logVarianceClipped, model.mean, model.logVariance)),
      LN2,
    );
    const decoderNllB = tf.div(
      tf.neg(meanFlat(discretizedGaussianLogLikelihood(xStart, model.mean, tf.mul(0.5, model.logVariance)))),
      LN2,
    );
    const isFirstStep = tf.tensor1d(
      Array.from(diffusion.checkTimesteps(t), (v) => v === 0),
      'bool',
    );
    const termsB = tf.where(isFirstStep, decoderNllB, klB) as tf.Tensor1D;
    return { termsB, predXStart: model.predXStart };
  });
}

/** {@link vbTermsBpdFromOutput} with the network run on (x_t, t). */
export function vbTermsBpd(
  diffusion: GaussianDiffusion,
  model: DenoiseFn,
  xStart: tf.Tensor,
  xT: tf.Tensor,
  t: Timesteps,
  options: { clipDenoised: boolean },
): VbTerms {
  return tf.tidy(() => vbTermsBpdFromOutput(diffusion, xStart, xT, t, diffusion.runModel(model, xT, t), options));
}

/**
 * The weight of Eq. 8 per table index, which turns the squared error of the network's target into
 * the mean-matching part of the bound term in nats per dimension:
 * - `epsilon`: β_t² / (2σ_t² α_t (1 − ᾱ_t))  (Eq. 12),
 * - `xstart`: coef1_t² / (2σ_t²), since μ̃ − μ_θ = coef1 (x_0 − x̂_0),
 * - `xprev`: 1 / (2σ_t²).
 * σ_t² is the fixed reverse variance (clipped at t index 0 as the tables are).
 */
export function meanMatchingWeights(diffusion: GaussianDiffusion): Float64Array {
  const { tables } = diffusion;
  let variance: Float64Array;
  switch (diffusion.varianceType) {
    case 'fixedlarge':
      variance = tables.fixedLargeVariance;
      break;
    case 'fixedsmall':
      variance = tables.posteriorLogVarianceClipped.map(Math.exp);
      break;
    case 'learned':
    case 'learned-range':
      throw diffusionError(
        'DDPM_CONFIG_INVALID',
        `Eq. 8 weights need a fixed variance, not ${JSON.stringify(diffusion.varianceType)}`,
      );
    default: {
      const unreachable: never = diffusion.varianceType;
      throw diffusionError('DDPM_CONFIG_INVALID', `unknown variance type ${describeValue(unreachable)}`);
    }
  }
  const T = tables.numTimesteps;
  const out = new Float64Array(T);
  for (let t = 0; t < T; t++) {
    const twoSigma2 = 2 * variance[t]!;
    switch (diffusion.meanType) {
      case 'epsilon':
        out[t] = tables.betas[t]! ** 2 / (twoSigma2 * tables.alphas[t]! * (1 - tables.alphasCumprod[t]!));
        break;
      case 'xstart':
        out[t] = tables.posteriorMeanCoef1[t]! ** 2 / twoSigma2;
        break;
      case 'xprev':
        out[t] = 1 / twoSigma2;
        break;
      default: {
        const unreachable: never = diffusion.meanType;
        throw diffusionError('DDPM_CONFIG_INVALID', `unknown mean type ${describeValue(unreachable)}`);
      }
    }
  }
  return out;
}

export type TrainingLosses = {
  /** The objective per example, [B]; its mean is what to minimise. */
  readonly lossB: tf.Tensor1D;
  /** The unweighted mean squared error of the network's target (for `mse` / `weighted-mse`). */
  readonly mseB?: tf.Tensor1D;
};

/**
 * The configured training objective for x_0 [B, ...], timesteps t (0-based) and the noise ε used
 * to draw x_t (Algorithm 1, lines 2–5). The network is run once.
 */
export function trainingLosses(
  diffusion: GaussianDiffusion,
  model: DenoiseFn,
  xStart: tf.Tensor,
  t: Timesteps,
  noise: tf.Tensor,
): TrainingLosses {
  return tf.tidy(() => {
    const xT = diffusion.qSample(xStart, t, noise);
    const modelOutput = diffusion.runModel(model, xT, t);
    switch (diffusion.lossType) {
      case 'kl': {
        // The true bound is evaluated without clipping x̂_0: clipping is a sampling heuristic.
        const { termsB } = vbTermsBpdFromOutput(diffusion, xStart, xT, t, modelOutput, { clipDenoised: false });
        return { lossB: termsB };
      }
      case 'mse':
      case 'weighted-mse': {
        const { meanOutput } = diffusion.splitModelOutput(modelOutput, xT);
        const target = mseTarget(diffusion, xStart, xT, t, noise);
        const mseB = meanFlat(tf.squaredDifference(target, meanOutput));
        if (diffusion.lossType === 'mse') return { lossB: mseB, mseB };
        const weightB = tf.reshape<tf.Rank.R1>(diffusion.extract(meanMatchingWeights(diffusion), t, 1), [-1]);
        return { lossB: tf.div<tf.Tensor1D>(tf.mul(weightB, mseB), LN2), mseB };
      }
      default: {
        const unreachable: never = diffusion.lossType;
        throw diffusionError('DDPM_CONFIG_INVALID', `unknown loss type ${describeValue(unreachable)}`);
      }
    }
  });
}

/** What the mean part of the network output should equal: ε, x_0, or μ̃_t(x_t, x_0). */
function mseTarget(
  diffusion: GaussianDiffusion,
  xStart: tf.Tensor,
  xT: tf.Tensor,
  t: Timesteps,
  noise: tf.Tensor,
): tf.Tensor {
  switch (diffusion.meanType) {
    case 'epsilon':
      return noise;
    case 'xstart':
      return xStart;
    case 'xprev':
      return diffusion.qPosteriorMeanVariance(xStart, xT, t).mean;
    default: {
      const unreachable: never = diffusion.meanType;
      throw diffusionError('DDPM_CONFIG_INVALID', `unknown mean type ${describeValue(unreachable)}`);
    }
  }
}
