/**
 * The loop shared by every sampler: walk the latents from x_from down to x_stopAt, one reverse
 * step per table index, with progress, cancellation, and optional progressive x̂_0 snapshots.
 *
 * Latent indices follow the paper: x_T is the prior draw, x_0 the data. The reverse step that
 * produces x_{t-1} from x_t uses table index t − 1.
 */
import * as tf from '@tensorflow/tfjs-core';

import { diffusionError } from '@ddpm/diffusion-config';
import { type GaussianDiffusion } from '../gaussian-diffusion';
import { type LoopOptions, afterStep, throwIfAborted } from '../loop-control';
import { type NoiseSource, type RandomnessOptions, resolveNoise } from '../noise';

export interface ReverseLoopOptions extends LoopOptions, RandomnessOptions {
  /** Clip x̂_0 to [-1, 1] at each step (the official default, true). */
  readonly clipDenoised?: boolean;
  /**
   * Start from a given latent x_t (t ∈ [0, T]) instead of a prior draw x_T ~ N(0, I).
   * The caller keeps ownership of `x`.
   */
  readonly from?: { readonly x: tf.Tensor; readonly t: number };
  /** Stop once x_stopAt is produced (default 0: a finished sample). */
  readonly stopAt?: number;
  /**
   * Progressive generation (Sec. 4.3, Figs. 6, 10, 14): keep x̂_0 (Eq. 15) every this many steps,
   * and at the last step.
   */
  readonly progressiveEvery?: number;
}

export interface ProgressiveFrame {
  /** The latent x_t the prediction was made from (paper indexing). */
  readonly t: number;
  /** x̂_0 predicted from x_t, [B, ...]; owned by the caller. */
  readonly predXStart: tf.Tensor;
}

export interface ReverseLoopResult {
  /** x_stopAt, [B, ...]; owned by the caller. */
  readonly sample: tf.Tensor;
  readonly progressive: ProgressiveFrame[];
  /** The seed the noise came from, when the loop made its own source. */
  readonly seed?: number;
}

/** One reverse step at table index t for every example; returns new tensors. */
export type ReverseStep = (
  x: tf.Tensor,
  tB: Int32Array,
  noise: NoiseSource,
) => { sample: tf.Tensor; predXStart: tf.Tensor };

export async function runReverseLoop(
  diffusion: GaussianDiffusion,
  shape: readonly number[],
  step: ReverseStep,
  options: ReverseLoopOptions,
): Promise<ReverseLoopResult> {
  const T = diffusion.numTimesteps;
  const fromT = options.from?.t ?? T;
  const stopAt = options.stopAt ?? 0;
  checkLatentIndex('from.t', fromT, T);
  checkLatentIndex('stopAt', stopAt, T);
  if (stopAt > fromT) {
    throw diffusionError('DDPM_CONFIG_INVALID', `stopAt (${stopAt}) must not exceed the start latent (${fromT})`);
  }
  const every = options.progressiveEvery;
  if (every !== undefined && (!Number.isInteger(every) || every < 1)) {
    throw diffusionError('DDPM_CONFIG_INVALID', `progressiveEvery must be a positive integer, got ${every}`);
  }
  if (options.from !== undefined) {
    const fromShape = options.from.x.shape;
    if (fromShape.length !== shape.length || !fromShape.every((d, i) => d === shape[i])) {
      throw diffusionError(
        'DDPM_SHAPE_MISMATCH',
        `from.x has shape [${fromShape.join(', ')}] but the requested shape is [${shape.join(', ')}]`,
      );
    }
  }
  const B = shape[0];
  if (B === undefined || B < 1 || shape.some((d) => !Number.isInteger(d) || d < 1)) {
    throw diffusionError(
      'DDPM_SHAPE_MISMATCH',
      `sample shape must be positive integers [B, ...], got [${shape.join(', ')}]`,
    );
  }
  const { noise, seed } = resolveNoise(options);
  throwIfAborted(options.signal);

  let x = options.from !== undefined ? options.from.x.clone() : noise(shape);
  const progressive: ProgressiveFrame[] = [];
  const total = fromT - stopAt;
  try {
    for (let t = fromT, done = 0; t > stopAt; t--, done++) {
      const tB = new Int32Array(B).fill(t - 1);
      const out = step(x, tB, noise);
      x.dispose();
      x = out.sample;
      const isLast = t - 1 === stopAt;
      if (every !== undefined && (done % every === 0 || isLast)) {
        progressive.push({ t, predXStart: out.predXStart });
      } else {
        out.predXStart.dispose();
      }
      await afterStep(options, done + 1, total);
    }
  } catch (err) {
    x.dispose();
    for (const frame of progressive) frame.predXStart.dispose();
    throw err;
  }
  return seed === undefined ? { sample: x, progressive } : { sample: x, progressive, seed };
}

function checkLatentIndex(name: string, t: number, T: number): void {
  if (!Number.isInteger(t) || t < 0 || t > T) {
    throw diffusionError(
      'DDPM_TIMESTEP_OUT_OF_RANGE',
      `${name} must be an integer latent index in [0, ${T}], got ${t}`,
    );
  }
}
