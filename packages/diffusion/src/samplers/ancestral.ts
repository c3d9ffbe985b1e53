/**
 * Ancestral sampling (Algorithm 2): x_T ~ N(0, I), then x_{t-1} ~ p_θ(x_{t-1} | x_t) for every
 * step of the diffusion (all T of them, or the respaced subset of a respaced diffusion).
 */
import * as tf from '@tensorflow/tfjs-core';

import { type DenoiseFn, type GaussianDiffusion } from '../gaussian-diffusion';
import { type ReverseLoopOptions, type ReverseLoopResult, runReverseLoop } from './reverse-loop';

export interface AncestralOptions extends ReverseLoopOptions {
  /**
   * `posterior` (default): the official code's step, μ_θ = μ̃_t(x_t, x̂_0) with x̂_0 clipped when
   * `clipDenoised`. `algorithm2`: the paper's Algorithm 2 literally (ε-prediction, no clipping).
   */
  readonly algorithm?: 'posterior' | 'algorithm2';
}

export async function sampleAncestral(
  diffusion: GaussianDiffusion,
  model: DenoiseFn,
  shape: readonly number[],
  options: AncestralOptions = {},
): Promise<ReverseLoopResult> {
  const clipDenoised = options.clipDenoised ?? true;
  const literal = options.algorithm === 'algorithm2';
  return runReverseLoop(
    diffusion,
    shape,
    (x, tB, noise) =>
      tf.tidy(() => {
        const z = noise(x.shape);
        return literal
          ? diffusion.algorithm2Step(model, x, tB, z)
          : diffusion.pSample(model, x, tB, z, { clipDenoised });
      }),
    options,
  );
}
