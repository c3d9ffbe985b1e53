/**
 * Images → features → statistics, one batch at a time: the extractor runs on a batch, its
 * features go into a float64 {@link FeatureAccumulator} (and, when asked, a reservoir for KID and
 * the logits for the Inception Score), and the batch's tensors are freed before the next.
 */
import * as tf from '@tensorflow/tfjs-core';

import { evalError } from '../errors';
import { FeatureAccumulator, type FeatureStatistics, type KeptFeatures } from '../feature-statistics';
import { type FeatureExtractor } from './extractor';

export interface FeatureRun {
  readonly statistics: FeatureStatistics;
  /** A uniform sample of the features, [count, dim], when `keep` was set. */
  readonly kept?: KeptFeatures;
  /** Every image's logits, [count, classes], when `logits` was set. */
  readonly logitsNK?: Float32Array;
}

export interface FeatureRunOptions {
  /** Images per `read` (default: the extractor's batch); the extractor sees at most its own batch at a time. */
  readonly batch?: number;
  /** Feature vectors to keep for KID (default 0). */
  readonly keep?: number;
  readonly seed?: number;
  /** Keep the logits (for the Inception Score). */
  readonly logits?: boolean;
  readonly signal?: AbortSignal;
  readonly onBatch?: (done: number, total: number) => void;
}

/**
 * Features of `count` images that `read(start, n)` supplies as model-space pixels, [n, size,
 * size, channels] in [−1, 1] (the shape the extractor takes).
 */
export async function extractFeatures(
  extractor: FeatureExtractor,
  count: number,
  read: (start: number, n: number) => Promise<Float32Array>,
  options: FeatureRunOptions = {},
): Promise<FeatureRun> {
  const batch = options.batch ?? extractor.batch;
  const { size, channels } = extractor.input;
  const accumulator = new FeatureAccumulator(extractor.featureDim, {
    keep: options.keep ?? 0,
    seed: options.seed ?? 0,
  });
  const wantLogits = options.logits === true;
  if (wantLogits && extractor.classes === 0)
    throw evalError('DDPM_EVAL_INCOMPARABLE', `${extractor.name} has no classifier, so it gives no Inception Score`);
  const logitsNK = wantLogits ? new Float32Array(count * extractor.classes) : undefined;
  for (let start = 0; start < count; start += batch) {
    if (options.signal?.aborted)
      throw evalError('DDPM_EVAL_ABORTED', `feature extraction stopped after ${start} of ${count} images`);
    const n = Math.min(batch, count - start);
    const pixels = await read(start, n);
    if (pixels.length !== n * size * size * channels)
      throw evalError(
        'DDPM_EVAL_SHAPE',
        `${pixels.length} pixel values are not ${n} images of ${size} × ${size} × ${channels} for ${extractor.name}`,
      );
    const per = size * size * channels;
    for (let from = 0; from < n; from += extractor.batch) {
      const m = Math.min(extractor.batch, n - from);
      const x = tf.tensor4d(pixels.subarray(from * per, (from + m) * per), [m, size, size, channels]);
      const { featuresBD, logitsBK } = extractor.extract(x);
      try {
        accumulator.add((await featuresBD.data()) as Float32Array, m);
        if (logitsNK && logitsBK) logitsNK.set(await logitsBK.data(), (start + from) * extractor.classes);
      } finally {
        tf.dispose([x, featuresBD, ...(logitsBK ? [logitsBK] : [])]);
      }
    }
    options.onBatch?.(start + n, count);
  }
  return {
    statistics: accumulator.statistics(),
    ...((options.keep ?? 0) > 0 ? { kept: accumulator.keptFeatures() } : {}),
    ...(logitsNK ? { logitsNK } : {}),
  };
}
