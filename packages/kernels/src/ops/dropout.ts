/**
 * Dropout in training mode (the official code's tf.nn.dropout): x·mask/(1 − rate), reproducible
 * for a seed. On wasm the mask is drawn by our kernel from a counter-based hash of (seed, index)
 * and re-drawn for the gradient instead of stored; elsewhere tf.dropout (tfjs's seeded generator,
 * ~10 ns an element in JavaScript). The two draw different masks for the same seed.
 */
import * as tf from '@tensorflow/tfjs-core';

import { wasmKernels } from './wasm-kernels';

function composed(rate: number, seed: number): (x: tf.Tensor) => tf.Tensor {
  const kernels = wasmKernels()!;
  return tf.customGrad<tf.Tensor>((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const x = args[0] as tf.Tensor;
    return { value: kernels.dropout(x, rate, seed), gradFunc: (dy: tf.Tensor) => kernels.dropout(dy, rate, seed) };
  });
}

export function dropout<T extends tf.Tensor>(x: T, rate: number, seed: number): T {
  if (!(rate >= 0 && rate < 1)) throw new RangeError(`dropout rate must be in [0, 1), got ${rate}`);
  if (rate === 0) return x;
  if (wasmKernels() === undefined) return tf.dropout(x, rate, undefined, seed) as T;
  return composed(rate, seed)(x) as T;
}
