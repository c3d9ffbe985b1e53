/**
 * The forward and backward passes of a training step's micro-batches (Algorithm 1's loss on a
 * batch, t ~ U{0..T−1}, ε ~ N(0, I)), their gradients summed, and their losses tallied. The
 * randomness of every micro-batch of the step is drawn (data order, flips, t, ε, dropout seeds),
 * computed or not, so the run's state does not depend on which share of the step a process
 * computes.
 */
import { type TrainConfig } from '@ddpm/settings';
import { type Rng } from '@ddpm/core';
import { type DataLoader } from '@ddpm/data';
import { type GaussianDiffusion, trainingLosses } from '@ddpm/diffusion';
import { type UNet, type UNetConfig } from '@ddpm/unet';
import * as tf from '@tensorflow/tfjs-core';

import { engineError } from './errors';

/** What a step's micro-batches are drawn from and computed with: the trainer's model, data and randomness. */
export interface MicroBatchSource {
  readonly config: TrainConfig;
  readonly unetConfig: UNetConfig;
  readonly unet: UNet;
  readonly diffusion: GaussianDiffusion;
  readonly loader: DataLoader;
  readonly rng: Rng;
}

/** The gradient sums of some micro-batches, one tensor per parameter, with their losses. */
export interface GradientSums {
  readonly sums: tf.Tensor[];
  readonly lossSum: number;
  readonly count: number;
  /** Loss sums and counts for t in each quarter of [0, T). */
  readonly quartileSums: [number, number, number, number];
  readonly quartileCounts: [number, number, number, number];
  readonly epoch: number;
}

/**
 * The gradient sums of micro-batches [from, to) of the next step (drawing the randomness of all
 * of them), summed in order within each block that starts at one of `blockStarts` (default: one
 * block), the blocks' sums then added in order.
 */
export async function gradientSums(
  source: MicroBatchSource,
  from: number,
  to: number,
  blockStarts: ReadonlySet<number> = new Set([from]),
): Promise<GradientSums> {
  const T = source.diffusion.numTimesteps;
  const params = source.unet.variables;
  const { imageSize: s, inChannels: c } = source.unetConfig;
  const b = source.config.batchSize / source.config.accumulation;
  /** The finished blocks' sum, and the running sum of the block under way. */
  let summed: tf.Tensor[] | undefined;
  let block: tf.Tensor[] | undefined;
  const add = (into: tf.Tensor[] | undefined, more: tf.Tensor[]): tf.Tensor[] => {
    if (into === undefined) return more;
    const sum = tf.tidy(() => into.map((g, i) => tf.add(g, more[i]!)));
    tf.dispose([...into, ...more]);
    return sum;
  };
  let lossSum = 0;
  let count = 0;
  let epoch = 0;
  const quartileSums: [number, number, number, number] = [0, 0, 0, 0];
  const quartileCounts: [number, number, number, number] = [0, 0, 0, 0];
  for (let micro = 0; micro < source.config.accumulation; micro++) {
    const mine = micro >= from && micro < to;
    const batch = mine ? await source.loader.next() : undefined;
    if (!mine) source.loader.skip();
    const t = source.rng.ints(T, b);
    const noiseValues = source.rng.normals(b * s * s * c);
    const dropoutSeed = source.rng.nextUint32();
    if (batch === undefined) continue;
    epoch = batch.epoch;
    const model = source.unet.asDenoiseFn({ training: true, dropoutSeed });
    let lossB: tf.Tensor | undefined;
    const { value, grads } = tf.tidy(() => {
      const x0 = tf.tensor4d(batch.pixels, [...batch.shape]);
      const noise = tf.tensor4d(noiseValues, [...batch.shape]);
      return tf.variableGrads(() => {
        const losses = trainingLosses(source.diffusion, model, x0, t, noise).lossB;
        lossB = tf.keep(losses.clone());
        return tf.mean<tf.Scalar>(losses);
      }, params);
    });
    const lossHost = await lossB!.data();
    tf.dispose([value, lossB!]);
    for (let i = 0; i < b; i++) {
      const q = Math.min(3, Math.floor((4 * t[i]!) / T));
      quartileSums[q] = quartileSums[q]! + lossHost[i]!;
      quartileCounts[q] = quartileCounts[q]! + 1;
      lossSum += lossHost[i]!;
    }
    count += b;
    block = add(
      block,
      params.map((p) => grads[p.name]!),
    );
    if (micro + 1 === to || blockStarts.has(micro + 1)) {
      summed = add(summed, block);
      block = undefined;
    }
  }
  if (summed === undefined)
    throw engineError(
      'DDPM_CONFIG_INVALID',
      `micro-batches [${from}, ${to}) of ${source.config.accumulation} are empty`,
    );
  return { sums: summed, lossSum, count, quartileSums, quartileCounts, epoch };
}
