/**
 * Interpolation in latent space (Sec. 4.4, Figs. 8–9): encode two images with q(x_t | x_0) using
 * the same noise, mix the latents linearly, and decode each mixture with the reverse process.
 * The reverse-process noise is also the same for every λ, so only the mixture varies.
 */
import * as tf from '@tensorflow/tfjs-core';

import { diffusionError } from '@ddpm/diffusion-config';
import { type DenoiseFn, type GaussianDiffusion, checkSameShape } from '../gaussian-diffusion';
import { type NoiseSource, resolveNoise } from '../noise';
import { type AncestralOptions, sampleAncestral } from './ancestral';

export interface InterpolateOptions extends Omit<AncestralOptions, 'from' | 'stopAt' | 'progressiveEvery'> {
  /** Diffusion steps before mixing, t ∈ [0, T]: 0 mixes pixels, T gives novel samples. */
  readonly t: number;
  /** Mixing weights λ (0 is the first image, 1 the second). Default: 0, 0.125, …, 1. */
  readonly lambdas?: readonly number[];
}

export interface InterpolateResult {
  /** Decoded mixtures x̄_0 for each λ, [L, ...]; owned by the caller. */
  readonly images: tf.Tensor;
  readonly lambdas: readonly number[];
  readonly seed?: number;
}

/** A source whose draws are identical along the batch axis: one draw tiled B times. */
function sharedAcrossBatch(noise: NoiseSource): NoiseSource {
  return (shape) =>
    tf.tidy(() => {
      const one = noise([1, ...shape.slice(1)]);
      return tf.tile(one, [shape[0]!, ...new Array<number>(shape.length - 1).fill(1)]);
    });
}

/** `xStartA` and `xStartB` are single images, [1, ...] (or unbatched [...]), scaled to [-1, 1]. */
export async function interpolate(
  diffusion: GaussianDiffusion,
  model: DenoiseFn,
  xStartA: tf.Tensor,
  xStartB: tf.Tensor,
  options: InterpolateOptions,
): Promise<InterpolateResult> {
  checkSameShape('xStartB', xStartB, 'xStartA', xStartA);
  const T = diffusion.numTimesteps;
  const { t } = options;
  if (!Number.isInteger(t) || t < 0 || t > T) {
    throw diffusionError('DDPM_TIMESTEP_OUT_OF_RANGE', `interpolation t must be an integer in [0, ${T}], got ${t}`);
  }
  const lambdas = options.lambdas ?? Array.from({ length: 9 }, (_, i) => i / 8);
  if (lambdas.length === 0 || lambdas.some((l) => !Number.isFinite(l))) {
    throw diffusionError(
      'DDPM_CONFIG_INVALID',
      `lambdas must be a non-empty list of finite numbers, got [${lambdas.join(', ')}]`,
    );
  }
  const single = xStartA.shape[0] === 1 ? xStartA.shape.slice(1) : xStartA.shape;
  const L = lambdas.length;
  const { noise, seed } = resolveNoise(options);
  const shared = sharedAcrossBatch(noise);

  const mixed = tf.tidy(() => {
    const a = tf.reshape(xStartA, [1, ...single]);
    const b = tf.reshape(xStartB, [1, ...single]);
    let latentA = a;
    let latentB = b;
    if (t > 0) {
      const eps = noise([1, ...single]);
      latentA = diffusion.qSample(a, [t - 1], eps);
      latentB = diffusion.qSample(b, [t - 1], eps);
    }
    const lam = tf.tensor(Float32Array.from(lambdas), [L, ...new Array<number>(single.length).fill(1)]);
    return tf.add(tf.mul(tf.sub(1, lam), latentA), tf.mul(lam, latentB));
  });
  try {
    const result = await sampleAncestral(diffusion, model, [L, ...single], {
      ...options,
      noise: shared,
      from: { x: mixed, t },
    });
    return seed === undefined ? { images: result.sample, lambdas } : { images: result.sample, lambdas, seed };
  } finally {
    mixed.dispose();
  }
}
