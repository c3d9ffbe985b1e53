/** Helpers for this package's tests (not exported). */
import * as tf from '@tensorflow/tfjs-core';

/** n deterministic values offset + scale·u with u in [-1, 1) (the same LCG, another mapping). */
export function lcgSigned(n: number, seed: number, scale = 1, offset = 0): Float32Array {
  let s = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return offset + scale * (s / 2 ** 31 - 1);
  });
}

/** max |actual − expected| relative to max |expected| (at least 1e-6). */
export function maxRelError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  if (actual.length !== expected.length) throw new Error(`lengths differ: ${actual.length} against ${expected.length}`);
  const scale = Math.max(1e-6, ...Array.from(expected, Math.abs));
  let worst = 0;
  for (let i = 0; i < actual.length; i++) worst = Math.max(worst, Math.abs(actual[i]! - expected[i]!) / scale);
  return worst;
}

/** A tensor of `shape` filled with lcgSigned values. */
export function lcgTensor(shape: readonly number[], seed: number): tf.Tensor {
  return tf.tensor(
    lcgSigned(
      shape.reduce((a, b) => a * b, 1),
      seed,
    ),
    [...shape],
  );
}
