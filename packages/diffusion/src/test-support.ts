/**
 * Helpers shared by this package's tests (not exported from the package).
 * Tests run on the pure-JS cpu backend: exact, deterministic, and fast enough for small shapes.
 */
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import * as tf from '@tensorflow/tfjs-core';
// tfjs-core's CommonJS build registers no gradients; tfjs-layers' build registers all of them.
import '@tensorflow/tfjs-layers';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { type GaussianDiffusion } from './gaussian-diffusion';
import { type NoiseSource } from './noise';

export async function useCpuBackend(): Promise<void> {
  await tf.setBackend('cpu');
  await tf.ready();
  // The cpu backend prints an "install tfjs-node" banner on first use; tests choose it on purpose.
  (tf.backend() as unknown as { firstUse: boolean }).firstUse = false;
}

/** The wasm backend (SIMD, one thread): several times faster than cpu for the end-to-end tests. */
export async function useWasmBackend(): Promise<void> {
  await tf.setBackend('wasm');
  await tf.ready();
}

/** The independent float64 reference numbers of fixtures/golden.py. */
type Golden = Record<string, unknown> & {
  schedule: Record<string, Record<string, number>>;
  quadratic: Record<string, number>;
  jsd: Record<string, number>;
  cosine: Record<string, number>;
  warmup10: Record<string, number>;
  normalKl: number[][];
  decoder: number[][];
  prior: { x0: number[]; bpd: number };
  spacing: Record<string, number[]>;
};

export function loadGolden(): Golden {
  const file = path.join(__dirname, '..', 'fixtures', 'golden.json');
  return JSON.parse(fs.readFileSync(file, 'utf8')) as Golden;
}

/** |actual − expected| ≤ atol + rtol·|expected|, with a message that shows both. */
export function expectClose(actual: number, expected: number, rtol = 1e-5, atol = 1e-7): void {
  const tolerance = atol + rtol * Math.abs(expected);
  if (!(Math.abs(actual - expected) <= tolerance)) {
    throw new Error(`expected ${expected} ± ${tolerance}, got ${actual} (diff ${actual - expected})`);
  }
}

export function expectAllClose(actual: ArrayLike<number>, expected: ArrayLike<number>, rtol = 1e-5, atol = 1e-6): void {
  expect(actual.length).toBe(expected.length);
  for (let i = 0; i < actual.length; i++) {
    try {
      expectClose(actual[i]!, expected[i]!, rtol, atol);
    } catch (err) {
      throw new Error(`at index ${i}: ${(err as Error).message}`, { cause: err });
    }
  }
}

/** A noise source that always returns (a copy of) the same tensor, broadcast to the shape. */
export function constantNoise(values: tf.Tensor): NoiseSource {
  return (shape) => tf.tidy(() => tf.broadcastTo(values, [...shape]).clone());
}

/**
 * The exact ε-predictor for data distributed N(m, s²) independently per dimension: with
 * x_t = √ᾱ x_0 + √(1 − ᾱ) ε, E[ε | x_t] = √(1 − ᾱ)(x_t − √ᾱ m) / (ᾱ s² + 1 − ᾱ).
 * s = 0 gives the predictor for a single point m.
 */
export function gaussianDataEpsModel(
  diffusion: GaussianDiffusion,
  m: number,
  s: number,
): (xT: tf.Tensor, t: tf.Tensor1D) => tf.Tensor {
  const alphaBar = Float32Array.from(diffusion.tables.alphasCumprod);
  return (xT, t) =>
    tf.tidy(() => {
      // The network sees original timesteps; look ᾱ up in the original (identity-map) table.
      const ab = tf.reshape(tf.gather(tf.tensor1d(alphaBar), t), [-1, ...new Array<number>(xT.rank - 1).fill(1)]);
      const oneMinus = tf.sub(1, ab);
      return tf.div(tf.mul(tf.sqrt(oneMinus), tf.sub(xT, tf.mul(tf.sqrt(ab), m))), tf.add(tf.mul(ab, s * s), oneMinus));
    });
}

/** Mean and standard deviation of a flat array. */
export function meanStd(values: ArrayLike<number>): { mean: number; std: number } {
  let sum = 0;
  for (let i = 0; i < values.length; i++) sum += values[i]!;
  const mean = sum / values.length;
  let sq = 0;
  for (let i = 0; i < values.length; i++) sq += (values[i]! - mean) ** 2;
  return { mean, std: Math.sqrt(sq / values.length) };
}
