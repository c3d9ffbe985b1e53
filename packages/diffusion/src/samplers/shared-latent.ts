/**
 * Chains split at an intermediate latent (Sec. 4.3 and Appendix D, Fig. 7): run one reverse chain
 * per image down to x_t, then continue it several times independently. Samples that share a late
 * latent share high-level attributes; samples split at x_T differ entirely.
 */
import * as tf from '@tensorflow/tfjs-core';

import { diffusionError } from '@ddpm/diffusion-config';
import { type DenoiseFn, type GaussianDiffusion } from '../gaussian-diffusion';
import { resolveNoise } from '../noise';
import { type AncestralOptions, sampleAncestral } from './ancestral';

export interface SharedLatentOptions extends Omit<AncestralOptions, 'from' | 'stopAt' | 'progressiveEvery'> {
  /** The latent x_t to split at, t ∈ [0, T] (t = T: only the prior draw is shared). */
  readonly splitAt: number;
  /** Continuations drawn from each shared latent (≥ 1). */
  readonly continuations: number;
}

export interface SharedLatentResult {
  /** The shared latents x_t, [N, ...]; owned by the caller. */
  readonly latent: tf.Tensor;
  /** Samples [N · K, ...], grouped by chain: rows n·K … n·K + K − 1 continue latent n. */
  readonly samples: tf.Tensor;
  readonly seed?: number;
}

export async function sampleSharedLatent(
  diffusion: GaussianDiffusion,
  model: DenoiseFn,
  shape: readonly number[],
  options: SharedLatentOptions,
): Promise<SharedLatentResult> {
  const K = options.continuations;
  if (!Number.isInteger(K) || K < 1) {
    throw diffusionError('DDPM_CONFIG_INVALID', `continuations must be a positive integer, got ${K}`);
  }
  const { noise, seed } = resolveNoise(options);
  const { onProgress } = options;
  const T = diffusion.numTimesteps;
  const head = await sampleAncestral(diffusion, model, shape, {
    ...options,
    noise,
    stopAt: options.splitAt,
    onProgress: onProgress && ((done) => onProgress(done, T)),
  });
  const N = shape[0]!;
  const repeated = tf.tidy(() => {
    const expanded = tf.expandDims(head.sample, 1); // [N, 1, ...]
    const tiled = tf.tile(expanded, [1, K, ...new Array<number>(shape.length - 1).fill(1)]);
    return tf.reshape(tiled, [N * K, ...shape.slice(1)]);
  });
  try {
    const tail = await sampleAncestral(diffusion, model, [N * K, ...shape.slice(1)], {
      ...options,
      noise,
      from: { x: repeated, t: options.splitAt },
      onProgress: onProgress && ((done) => onProgress(T - options.splitAt + done, T)),
    });
    return seed === undefined
      ? { latent: head.sample, samples: tail.sample }
      : { latent: head.sample, samples: tail.sample, seed };
  } catch (err) {
    head.sample.dispose();
    throw err;
  } finally {
    repeated.dispose();
  }
}
