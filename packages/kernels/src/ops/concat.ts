/**
 * Concatenation along the channel axis (the U-Net's skip connections). On the wasm heap both
 * directions are our kernels: tfjs-wasm's Concat is a JavaScript copy loop and its SplitV (the
 * gradient) copies the whole input for each part.
 */
import * as tf from '@tensorflow/tfjs-core';

import { wasmKernels } from './wasm-kernels';

const composed = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
  const [a, b] = args as [tf.Tensor4D, tf.Tensor4D];
  const kernels = wasmKernels()!;
  const ca = a.shape[3];
  return {
    value: kernels.concatChannels(a, b),
    gradFunc: (dy: tf.Tensor) => kernels.splitChannels(dy as tf.Tensor4D, ca),
  };
}) as (a: tf.Tensor4D, b: tf.Tensor4D) => tf.Tensor4D;

/** [a, b] along the last axis of two NHWC tensors of the same batch and size. */
export function concatChannels(a: tf.Tensor4D, b: tf.Tensor4D): tf.Tensor4D {
  if (wasmKernels() === undefined) return tf.concat([a, b], 3);
  return composed(a, b);
}
