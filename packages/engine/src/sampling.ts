/**
 * Sampling tools on a trained model (the EMA weights unless asked otherwise): sample grids,
 * progressive-generation strips (x̂_0 every k steps, Figs. 6/10), interpolation figures between two
 * dataset images at chosen t (Figs. 8/9), and shared-latent continuations (Fig. 7). Full ancestral
 * sampling over all T steps, or strided / DDIM sampling over fewer.
 */
import { type SampleConfig, type SamplerSpec } from '@ddpm/settings';
import { Rng } from '@ddpm/core';
import {
  type GaussianDiffusion,
  interpolate,
  respaceBySpec,
  rngNoise,
  sampleAncestral,
  sampleDdim,
  sampleSharedLatent,
} from '@ddpm/diffusion';
import { type UNet } from '@ddpm/unet';
import * as tf from '@tensorflow/tfjs-core';

import { engineError, groupError } from './errors';
import { type Picture, composeGrid, toUint8 } from './images';

export interface SampleOptions {
  /** Default: Algorithm 2 over all T steps. */
  readonly sampler?: SamplerSpec;
  /** Seed of x_T and the reverse-process noise: the same seed gives comparable grids across checkpoints. */
  readonly seed?: number;
  /** Images per network batch (default 16). */
  readonly batch?: number;
  /**
   * Index of the first batch's noise stream (default 0): generating N images as chunks of whole
   * batches, chunk c starting at batch c·k, gives exactly the images of one call for all N.
   */
  readonly firstBatch?: number;
  /** Several processes drawing the samples together (a sampling group); absent: this one draws all. */
  readonly split?: SampleSplit;
  /**
   * Draw only this rank's batches (batch k is rank k mod worldSize's) and leave the others' images
   * zero, for a caller that sums every rank's values (zeros elsewhere make that sum exact: see
   * `SampleGather`). Nothing is sent or received here; not with `split`.
   */
  readonly share?: { readonly rank: number; readonly worldSize: number };
  readonly signal?: AbortSignal;
  readonly onProgress?: (done: number, total: number) => void;
}

/**
 * A sampling group's division of the work: batch k (its noise stream being k, see `firstBatch`) is
 * drawn by rank k mod worldSize, and rank 0 collects the others' batches, so its images are the
 * bytes one process draws alone, whatever the world size.
 */
export interface SampleSplit {
  readonly rank: number;
  readonly worldSize: number;
  /** Ranks 1 and up: hand batch `index` (drawn here) to rank 0. */
  send(index: number, values: Float32Array): Promise<void>;
  /** Rank 0: batch `index`, drawn by another rank. */
  receive(index: number): Promise<Float32Array>;
}

/**
 * A rank's link to its sampling group: the split, and the checkpoint every rank samples. Rank 0
 * loads the one the job names (or the newest valid one) and announces its step; the others load
 * that step, so a checkpoint written meanwhile cannot mix two models' samples.
 */
export interface SamplingGroupLink extends SampleSplit {
  announce(step: number): Promise<void>;
  announced(): Promise<number>;
}

/** The diffusion a sampler runs on: the base one, or respaced to fewer steps. */
export function samplingDiffusion(base: GaussianDiffusion, sampler: SamplerSpec): GaussianDiffusion {
  const T = base.numTimesteps;
  switch (sampler.kind) {
    case 'ancestral':
      if (sampler.steps === T) return base;
      checkSteps(sampler.steps, T);
      return respaceBySpec(base, String(sampler.steps));
    case 'ddim':
      checkSteps(sampler.steps, T);
      // DDIM's integer stride when one fits exactly, else evenly spread steps.
      try {
        return respaceBySpec(base, `ddim${sampler.steps}`);
      } catch {
        return respaceBySpec(base, String(sampler.steps));
      }
    default: {
      const unreachable: never = sampler;
      throw engineError('DDPM_CONFIG_INVALID', `unknown sampler ${JSON.stringify(unreachable)}`);
    }
  }
}

function checkSteps(steps: number, T: number): void {
  if (!Number.isInteger(steps) || steps < 1 || steps > T) {
    throw engineError('DDPM_CONFIG_INVALID', `sampling steps must be an integer in [1, ${T}], got ${steps}`);
  }
}

/**
 * `count` samples as [-1, 1] floats, [N, S, S, C] row-major, generated in batches. In a sampling
 * group (`split`), rank 0 returns them all; another rank returns only its own batches filled in.
 */
export async function generateSamples(
  model: UNet,
  base: GaussianDiffusion,
  count: number,
  options: SampleOptions = {},
): Promise<{ values: Float32Array; seed: number }> {
  if (!Number.isInteger(count) || count < 1)
    throw engineError('DDPM_CONFIG_INVALID', `sample count must be a positive integer, got ${count}`);
  const sampler = options.sampler ?? { kind: 'ancestral', steps: base.numTimesteps };
  const diffusion = samplingDiffusion(base, sampler);
  const seed = options.seed ?? Math.floor(Math.random() * 2 ** 31);
  const batch = options.batch ?? 16;
  const { imageSize: s, inChannels } = model.config;
  const per = s * s * inChannels;
  const values = new Float32Array(count * per);
  const denoise = model.asDenoiseFn();
  const chunks = Math.ceil(count / batch);
  const stepsPerChunk = diffusion.numTimesteps;
  const split = options.split;
  const share = options.share;
  if (split && share)
    throw engineError(
      'DDPM_CONFIG_INVALID',
      'a sampling call either relays its batches to rank 0 (split) or leaves the others zero (share), not both',
    );
  for (let k = 0; k < chunks; k++) {
    const n = Math.min(batch, count - k * batch);
    const index = (options.firstBatch ?? 0) + k;
    if (share && index % share.worldSize !== share.rank) {
      options.onProgress?.((k + 1) * stepsPerChunk, chunks * stepsPerChunk);
      continue;
    }
    if (split && index % split.worldSize !== split.rank) {
      // Another rank's batch: rank 0 collects it; the others skip it.
      if (split.rank === 0) {
        const received = await split.receive(index);
        // A rank sampling something else (another count or model): the generation ends and restarts.
        if (received.length !== n * per)
          throw groupError(
            'DDPM_GROUP_DIVERGED',
            `batch ${index} arrived with ${received.length} values for ${n} images of ${per}`,
          );
        values.set(received, k * batch * per);
      }
      options.onProgress?.((k + 1) * stepsPerChunk, chunks * stepsPerChunk);
      continue;
    }
    // Each chunk draws from its own stream (seed, chunk), so a grid is reproducible from its seed.
    const noise = rngNoise(Rng.fromSeed(seed).fork(index));
    const common = {
      noise,
      ...(options.signal ? { signal: options.signal } : {}),
      onProgress: (done: number) => options.onProgress?.(k * stepsPerChunk + done, chunks * stepsPerChunk),
    };
    const result =
      sampler.kind === 'ddim'
        ? await sampleDdim(diffusion, denoise, [n, s, s, inChannels], { ...common, eta: sampler.eta })
        : await sampleAncestral(diffusion, denoise, [n, s, s, inChannels], common);
    const drawn = (await result.sample.data()) as Float32Array;
    result.sample.dispose();
    values.set(drawn, k * batch * per);
    if (split && split.rank !== 0) await split.send(index, drawn);
  }
  return { values, seed };
}

/** A grid picture of samples. */
export async function sampleGrid(
  model: UNet,
  base: GaussianDiffusion,
  count: number,
  options: SampleOptions & { columns?: number } = {},
): Promise<{ picture: Picture; seed: number }> {
  const { values, seed } = await generateSamples(model, base, count, options);
  const { imageSize, inChannels } = model.config;
  return {
    picture: composeGrid(
      toUint8(values),
      count,
      imageSize,
      inChannels,
      options.columns ? { columns: options.columns } : {},
    ),
    seed,
  };
}

/**
 * Progressive generation: `count` chains (rows), each showing x̂_0 (Eq. 15) every `every` steps
 * from x_T (left) to the final sample (right).
 */
export async function progressiveStrip(
  model: UNet,
  base: GaussianDiffusion,
  count: number,
  every: number,
  options: Omit<SampleOptions, 'batch'> = {},
): Promise<{ picture: Picture; frames: number[]; seed: number }> {
  const sampler = options.sampler ?? { kind: 'ancestral', steps: base.numTimesteps };
  if (sampler.kind !== 'ancestral')
    throw engineError('DDPM_CONFIG_INVALID', 'progressive generation uses the ancestral sampler');
  const diffusion = samplingDiffusion(base, sampler);
  const seed = options.seed ?? Math.floor(Math.random() * 2 ** 31);
  const { imageSize: s, inChannels: c } = model.config;
  const result = await sampleAncestral(diffusion, model.asDenoiseFn(), [count, s, s, c], {
    noise: rngNoise(Rng.fromSeed(seed)),
    progressiveEvery: every,
    ...(options.signal ? { signal: options.signal } : {}),
    ...(options.onProgress ? { onProgress: options.onProgress } : {}),
  });
  const frames = result.progressive;
  const per = s * s * c;
  // Row r, column f: chain r's x̂_0 at frame f.
  const tiles = new Float32Array(count * frames.length * per);
  for (let f = 0; f < frames.length; f++) {
    const data = await frames[f]!.predXStart.data();
    for (let r = 0; r < count; r++) tiles.set(data.subarray(r * per, (r + 1) * per), (r * frames.length + f) * per);
  }
  const frameTs = frames.map((f) => f.t);
  tf.dispose([result.sample, ...frames.map((f) => f.predXStart)]);
  return {
    picture: composeGrid(toUint8(tiles), count * frames.length, s, c, { columns: frames.length }),
    frames: frameTs,
    seed,
  };
}

/**
 * Interpolation (Sec. 4.4): one row per t in `ts`, columns for λ from 0 to 1; the sources are
 * [1, S, S, C] tensors in [-1, 1].
 */
export async function interpolationFigure(
  model: UNet,
  base: GaussianDiffusion,
  sourceA: tf.Tensor4D,
  sourceB: tf.Tensor4D,
  ts: readonly number[],
  options: Omit<SampleOptions, 'batch' | 'sampler'> & { lambdas?: readonly number[] } = {},
): Promise<{ picture: Picture; seed: number }> {
  const seed = options.seed ?? Math.floor(Math.random() * 2 ** 31);
  const lambdas = options.lambdas ?? Array.from({ length: 9 }, (_, i) => i / 8);
  const { imageSize: s, inChannels: c } = model.config;
  const per = s * s * c;
  const tiles = new Float32Array(ts.length * lambdas.length * per);
  for (let row = 0; row < ts.length; row++) {
    const result = await interpolate(base, model.asDenoiseFn(), sourceA, sourceB, {
      t: ts[row]!,
      lambdas,
      noise: rngNoise(Rng.fromSeed(seed).fork(row)),
      ...(options.signal ? { signal: options.signal } : {}),
    });
    tiles.set(await result.images.data(), row * lambdas.length * per);
    result.images.dispose();
  }
  return { picture: composeGrid(toUint8(tiles), ts.length * lambdas.length, s, c, { columns: lambdas.length }), seed };
}

/**
 * Shared-latent continuations (Fig. 7): for each split latent t in `splits`, one chain run down
 * to x_t and `continuations` samples from it, one row per split (first tile: x_t itself).
 */
export async function sharedLatentFigure(
  model: UNet,
  base: GaussianDiffusion,
  splits: readonly number[],
  continuations: number,
  options: Omit<SampleOptions, 'batch'> = {},
): Promise<{ picture: Picture; seed: number }> {
  const sampler = options.sampler ?? { kind: 'ancestral', steps: base.numTimesteps };
  if (sampler.kind !== 'ancestral')
    throw engineError('DDPM_CONFIG_INVALID', 'shared-latent sampling uses the ancestral sampler');
  const diffusion = samplingDiffusion(base, sampler);
  const seed = options.seed ?? Math.floor(Math.random() * 2 ** 31);
  const { imageSize: s, inChannels: c } = model.config;
  const per = s * s * c;
  const columns = continuations + 1;
  const tiles = new Float32Array(splits.length * columns * per);
  for (let row = 0; row < splits.length; row++) {
    const { latent, samples } = await sampleSharedLatent(diffusion, model.asDenoiseFn(), [1, s, s, c], {
      splitAt: splits[row]!,
      continuations,
      noise: rngNoise(Rng.fromSeed(seed).fork(row)),
      ...(options.signal ? { signal: options.signal } : {}),
    });
    tiles.set(await latent.data(), row * columns * per);
    tiles.set(await samples.data(), (row * columns + 1) * per);
    tf.dispose([latent, samples]);
  }
  return { picture: composeGrid(toUint8(tiles), splits.length * columns, s, c, { columns }), seed };
}

/**
 * What a sample job and `ddpm sample` / `ddpm progressive` draw from a resolved
 * {@link SampleConfig}: the picture, and metadata saying how it was made.
 */
export async function renderSamples(
  model: UNet,
  base: GaussianDiffusion,
  config: SampleConfig,
  options: Pick<SampleOptions, 'batch' | 'signal' | 'onProgress' | 'split'> = {},
): Promise<{ picture: Picture; metadata: Record<string, unknown> }> {
  const common = {
    sampler: config.sampler,
    seed: config.seed,
    ...(options.signal ? { signal: options.signal } : {}),
    ...(options.onProgress ? { onProgress: options.onProgress } : {}),
  };
  const described = { kind: config.kind, count: config.count, sampler: config.sampler, seed: config.seed };
  if (options.split && config.kind !== 'grid')
    throw engineError('DDPM_CONFIG_INVALID', `only grid sampling is split across a group, not ${config.kind}`);
  switch (config.kind) {
    case 'grid': {
      const { picture } = await sampleGrid(model, base, config.count, {
        ...common,
        ...(options.batch ? { batch: options.batch } : {}),
        ...(options.split ? { split: options.split } : {}),
      });
      return { picture, metadata: described };
    }
    case 'progressive': {
      // resolveSample always sets it for progressive sampling; a config without it was not resolved.
      if (config.every === undefined)
        throw engineError(
          'DDPM_CONFIG_INVALID',
          'progressive sampling needs `every` (resolve the sample config first)',
        );
      const { picture, frames } = await progressiveStrip(model, base, config.count, config.every, common);
      return { picture, metadata: { ...described, every: config.every, frames } };
    }
    default: {
      const unreachable: never = config.kind;
      throw engineError('DDPM_CONFIG_INVALID', `unknown sample kind ${JSON.stringify(unreachable)}`);
    }
  }
}
