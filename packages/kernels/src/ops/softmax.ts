/**
 * Softmax over the last axis. On wasm the forward is our kernel (one pass for the maximum, one for
 * the exponentials and their sum, one to scale by the sum's reciprocal; threaded in the native
 * build) and its gradient y·(dy − Σ y·dy) one kernel of two passes (tfjs composes four full-size
 * kernels: mul, sum, sub, mul).
 */
import * as tf from '@tensorflow/tfjs-core';

import { wasmKernels } from './wasm-kernels';

const composed = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
  const [logits, save] = args as [tf.Tensor, tf.GradSaveFunc];
  const y = wasmKernels()!.softmax(logits);
  save([y]);
  return {
    value: y,
    gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => wasmKernels()!.softmaxGrad(saved[0]!, dy),
  };
}) as <T extends tf.Tensor>(logits: T) => T;

export function softmax<T extends tf.Tensor>(logits: T): T {
  return wasmKernels() === undefined ? tf.softmax<T>(logits) : composed(logits);
}
