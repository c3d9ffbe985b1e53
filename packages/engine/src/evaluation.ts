/**
 * The test-set NLL bound in bits/dim (Table 1's NLL column): the full bound of Eq. 5 per image
 * over all T terms (`exact`), or its unbiased stratified estimate in a fraction of the network
 * evaluations (see calcBpdStratified).
 */
import { type ImageDataset, readForModel } from '@ddpm/data';
import {
  type BoundResult,
  type GaussianDiffusion,
  Rng,
  calcBpdLoop,
  calcBpdStratified,
  mergeBoundResults,
  rateDistortion,
} from '@ddpm/diffusion';
import { type UNet } from '@ddpm/unet';
import * as tf from '@tensorflow/tfjs-core';

export interface NllOptions {
  /** Test images used, the first `count` of the dataset (default 64). */
  readonly count?: number;
  readonly batch?: number;
  /** Strata of the stratified estimate; `exact` evaluates all T terms. Default 50. */
  readonly strata?: number | 'exact';
  readonly seed?: number;
  readonly signal?: AbortSignal;
  /** After every network evaluation (a heartbeat's sign of life). */
  readonly onProgress?: () => void;
}

export interface NllResult {
  /**
   * The bound in bits per dimension of the data itself: the whole image's codelength (padding
   * included, which costs almost nothing) over the dataset's own H·W·C, so that Fashion-MNIST's
   * figure is per 28 × 28 pixel and comparable with published numbers.
   */
  readonly bitsPerDim: number;
  /** The same codelength over the model's S·S·C (more dimensions than the data when it is padded: flatters it). */
  readonly bitsPerModelDim: number;
  /** Standard error of {@link bitsPerDim}'s mean over images. */
  readonly standardError: number;
  /** The decoder term L_0 per model dimension (Table 2's distortion side of the bound). */
  readonly decoderBpd: number;
  readonly count: number;
  readonly method: string;
}

export async function evaluateNll(
  model: UNet,
  diffusion: GaussianDiffusion,
  dataset: ImageDataset,
  options: NllOptions = {},
): Promise<NllResult> {
  const count = Math.min(options.count ?? 64, dataset.size);
  const batch = options.batch ?? 32;
  const strata = options.strata ?? 50;
  const rng = Rng.fromSeed(options.seed ?? 0);
  const { imageSize: s, inChannels: c } = model.config;
  const denoise = model.asDenoiseFn();
  const totals: number[] = [];
  const decoders: number[] = [];
  for (let start = 0; start < count; start += batch) {
    const indices = Array.from({ length: Math.min(batch, count - start) }, (_, i) => start + i);
    const pixels = await readForModel(dataset, indices, s);
    const x0 = tf.tensor4d(pixels, [indices.length, s, s, c]);
    try {
      const common = {
        seed: rng.nextUint32(),
        ...(options.signal ? { signal: options.signal } : {}),
        ...(options.onProgress ? { onProgress: options.onProgress } : {}),
      };
      if (strata === 'exact') {
        const r = await calcBpdLoop(diffusion, denoise, x0, common);
        totals.push(...r.totalBpdB);
        const T = r.numTimesteps;
        for (let b = 0; b < r.batch; b++) decoders.push(r.termsBpdBT[b * T]!);
      } else {
        const r = await calcBpdStratified(diffusion, denoise, x0, { ...common, strata, rng: rng.fork(start) });
        totals.push(...r.totalBpdB);
        decoders.push(...r.decoderBpdB);
      }
    } finally {
      x0.dispose();
    }
  }
  // Bits per model dimension → bits per data dimension: the same total over fewer dimensions.
  const toData = (s * s) / (dataset.height * dataset.width);
  const mean = totals.reduce((a, b) => a + b, 0) / totals.length;
  const variance = totals.reduce((a, b) => a + (b - mean) ** 2, 0) / Math.max(totals.length - 1, 1);
  return {
    bitsPerDim: mean * toData,
    bitsPerModelDim: mean,
    standardError: Math.sqrt(variance / totals.length) * toData,
    decoderBpd: decoders.reduce((a, b) => a + b, 0) / decoders.length,
    count: totals.length,
    method: strata === 'exact' ? `all ${diffusion.numTimesteps} terms` : `stratified, ${strata} strata + L_0 + L_T`,
  };
}

/** One row of Table 4: after `reverseSteps` steps the receiver holds x_t. */
export interface RateDistortionRow {
  readonly t: number;
  readonly reverseSteps: number;
  /** Bits sent so far (L_T + … + L_t) over the data's own dimensions. */
  readonly rateBitsPerDim: number;
  /** The same bits over the model's dimensions. */
  readonly rateBitsPerModelDim: number;
  /** RMSE of x̂_0 from x_t on the [0, 255] scale, over the model's pixels (padding included). */
  readonly distortionRmse: number;
}

/**
 * The progressive-coding rate–distortion series (Sec. 4.3, Table 4, Fig. 5) on the first `count`
 * test images: the full bound (all T terms, T network passes per batch), then rate and
 * distortion at the latents `at` (default: every T/10 reverse steps, as Table 4).
 */
export async function evaluateRateDistortion(
  model: UNet,
  diffusion: GaussianDiffusion,
  dataset: ImageDataset,
  options: {
    count?: number;
    batch?: number;
    at?: readonly number[];
    seed?: number;
    signal?: AbortSignal;
    onProgress?: () => void;
  } = {},
): Promise<{ rows: RateDistortionRow[]; count: number }> {
  const count = Math.min(options.count ?? 16, dataset.size);
  const batch = options.batch ?? 16;
  const { imageSize: s, inChannels: c } = model.config;
  const denoise = model.asDenoiseFn();
  const results: BoundResult[] = [];
  for (let start = 0; start < count; start += batch) {
    const indices = Array.from({ length: Math.min(batch, count - start) }, (_, i) => start + i);
    const x0 = tf.tensor4d(await readForModel(dataset, indices, s), [indices.length, s, s, c]);
    try {
      results.push(
        await calcBpdLoop(diffusion, denoise, x0, {
          seed: (options.seed ?? 0) + start,
          ...(options.signal ? { signal: options.signal } : {}),
          ...(options.onProgress ? { onProgress: options.onProgress } : {}),
        }),
      );
    } finally {
      x0.dispose();
    }
  }
  const toData = (s * s) / (dataset.height * dataset.width);
  const rows = rateDistortion(mergeBoundResults(results), options.at).map((p) => ({
    t: p.t,
    reverseSteps: p.reverseSteps,
    rateBitsPerDim: p.rateBpd * toData,
    rateBitsPerModelDim: p.rateBpd,
    distortionRmse: p.distortionRmse,
  }));
  return { rows, count };
}

/** Table 4 as CSV. */
export function rateDistortionCsv(rows: readonly RateDistortionRow[]): string {
  const lines = ['reverse_steps,t,rate_bits_per_dim,rate_bits_per_model_dim,distortion_rmse_0_255'];
  for (const r of rows)
    lines.push([r.reverseSteps, r.t, r.rateBitsPerDim, r.rateBitsPerModelDim, r.distortionRmse].join(','));
  return `${lines.join('\n')}\n`;
}
