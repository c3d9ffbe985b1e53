/**
 * Gradients laid out flat, one parameter after the other: what a group exchanges, and what the
 * trainer takes the global norm of on the host.
 */
import { copyTensorsInto } from '@ddpm/kernels';
import * as tf from '@tensorflow/tfjs-core';

/**
 * Tensors → one Float32Array in their order (what a group exchanges), written into `flat`
 * (straight from the wasm heap there: no fresh copy of the gradients every step).
 */
export async function flatten(tensors: readonly tf.Tensor[], flat: Float32Array): Promise<Float32Array> {
  return copyTensorsInto(tensors, flat);
}

/**
 * The global L2 norm of gradients laid out one parameter after the other (`flat`, in the order of
 * `like`): per parameter a float32 sum of float32 squares from the first value to the last, those
 * sums added in order, then the square root, each step rounded to float32. These are the
 * operations and the order of tf.sqrt(tf.addN(grads.map((g) => tf.sum(tf.square(g))))) on the
 * wasm backend (tested), computed on the host so that every rank of a group and one process get
 * the same bits on any backend, without ~800 small kernels.
 */
export function globalNorm(flat: Float32Array, like: readonly { readonly size: number }[]): number {
  let total = 0;
  let offset = 0;
  for (const { size } of like) {
    let sum = 0;
    const end = offset + size;
    for (let i = offset; i < end; i++) {
      const x = flat[i]!;
      sum = Math.fround(sum + Math.fround(x * x));
    }
    total = Math.fround(total + sum);
    offset = end;
  }
  if (offset !== flat.length)
    throw new Error(`internal error: ${flat.length} gradient values for ${offset} parameters`);
  return Math.fround(Math.sqrt(total));
}

/** The inverse of {@link flatten}, shaped like `like`. */
export function unflatten(flat: Float32Array, like: readonly tf.Tensor[]): tf.Tensor[] {
  let offset = 0;
  return like.map((t) => {
    const part = tf.tensor(flat.subarray(offset, offset + t.size), t.shape, 'float32');
    offset += t.size;
    return part;
  });
}
