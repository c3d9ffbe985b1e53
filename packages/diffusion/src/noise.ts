/**
 * Injectable randomness. Every stochastic function takes a {@link NoiseSource} (or a seed that
 * makes one), so tests and resumed jobs are deterministic and independent of the backend.
 */
import * as tf from '@tensorflow/tfjs-core';

import { Rng } from '@ddpm/core';

/** Returns a new tensor of standard normal draws with the given shape, owned by the caller. */
export type NoiseSource = (shape: readonly number[]) => tf.Tensor;

/** A noise source drawing from a seeded {@link Rng} (advancing it). */
export function rngNoise(rng: Rng): NoiseSource {
  return (shape) => {
    const size = shape.reduce((a, b) => a * b, 1);
    return tf.tensor(rng.normals(size), [...shape], 'float32');
  };
}

export interface RandomnessOptions {
  /** An explicit noise source; wins over `seed`. */
  readonly noise?: NoiseSource;
  /** Seed for a fresh {@link Rng}; a random one is drawn (and reported) when omitted. */
  readonly seed?: number;
}

/** The noise source to use and the seed behind it (undefined when the caller supplied a source). */
export function resolveNoise(options: RandomnessOptions): { noise: NoiseSource; seed?: number } {
  if (options.noise !== undefined) return { noise: options.noise };
  const seed = options.seed ?? Math.floor(Math.random() * 2 ** 32);
  return { noise: rngNoise(Rng.fromSeed(seed)), seed };
}
