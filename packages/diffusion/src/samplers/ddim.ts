/**
 * DDIM sampling (Song, Meng & Ermon 2021): a non-Markovian reverse process with the same
 * marginals, deterministic at η = 0 and equal in distribution to ancestral sampling with σ² = β̃
 * at η = 1. Used with a respaced diffusion to sample in tens of steps instead of T.
 */
import * as tf from '@tensorflow/tfjs-core';

import { diffusionError } from '@ddpm/diffusion-config';
import { type DenoiseFn, type GaussianDiffusion, type Timesteps } from '../gaussian-diffusion';
import { type ReverseLoopOptions, type ReverseLoopResult, runReverseLoop } from './reverse-loop';

export interface DdimOptions extends ReverseLoopOptions {
  /** η ≥ 0: 0 is deterministic DDIM, 1 matches the ancestral sampler's stochasticity. */
  readonly eta?: number;
}

/** One DDIM step at table index t: x_{t-1} = √ᾱ_{t-1} x̂_0 + √(1 − ᾱ_{t-1} − σ²) ε̂ + σ z. */
export function ddimStep(
  diffusion: GaussianDiffusion,
  model: DenoiseFn,
  xT: tf.Tensor,
  t: Timesteps,
  noise: tf.Tensor,
  options: { eta: number; clipDenoised: boolean },
): { sample: tf.Tensor; predXStart: tf.Tensor } {
  return tf.tidy(() => {
    const { tables } = diffusion;
    const rank = xT.rank;
    const { predXStart } = diffusion.pMeanVariance(model, xT, t, { clipDenoised: options.clipDenoised });
    const eps = diffusion.predictEpsFromXStart(xT, t, predXStart);
    const idx = diffusion.checkTimesteps(t);
    const sigma = new Float32Array(idx.length);
    const sqrtAlphaBarPrev = new Float32Array(idx.length);
    const epsCoef = new Float32Array(idx.length);
    idx.forEach((ti, b) => {
      const alphaBar = tables.alphasCumprod[ti]!;
      const alphaBarPrev = tables.alphasCumprodPrev[ti]!;
      const s = options.eta * Math.sqrt((1 - alphaBarPrev) / (1 - alphaBar)) * Math.sqrt(1 - alphaBar / alphaBarPrev);
      sigma[b] = ti === 0 ? 0 : s;
      sqrtAlphaBarPrev[b] = Math.sqrt(alphaBarPrev);
      epsCoef[b] = Math.sqrt(Math.max(1 - alphaBarPrev - s * s, 0));
    });
    const shape = [idx.length, ...new Array<number>(rank - 1).fill(1)];
    const meanPred = tf.add(
      tf.mul(tf.tensor(sqrtAlphaBarPrev, shape), predXStart),
      tf.mul(tf.tensor(epsCoef, shape), eps),
    );
    return { sample: tf.add(meanPred, tf.mul(tf.tensor(sigma, shape), noise)), predXStart };
  });
}

export async function sampleDdim(
  diffusion: GaussianDiffusion,
  model: DenoiseFn,
  shape: readonly number[],
  options: DdimOptions = {},
): Promise<ReverseLoopResult> {
  const eta = options.eta ?? 0;
  if (!Number.isFinite(eta) || eta < 0) {
    throw diffusionError('DDPM_CONFIG_INVALID', `eta must be a finite number >= 0, got ${eta}`);
  }
  const clipDenoised = options.clipDenoised ?? true;
  return runReverseLoop(
    diffusion,
    shape,
    (x, tB, noise) => tf.tidy(() => ddimStep(diffusion, model, x, tB, noise(x.shape), { eta, clipDenoised })),
    options,
  );
}
