/**
 * What the current backend can do fast. On the wasm backend (SIMD, one thread; figures in
 * docs/performance.md):
 * - it has no Conv2DBackpropFilter kernel, and conv2dTranspose is many times slower than conv2d;
 * - a plain 2-D matMul is fast, but transposeA/transposeB or a batch axis take a generic loop an
 *   order of magnitude slower;
 * - reducing a [N, C] tensor over N (tf.sum axis 0) is much slower than a ones-row matMul;
 * - slice / unstack / gather copy the whole input tensor out of the heap on every call.
 * On such backends our ops compose their gradients from the fast kernels; native TensorFlow
 * backends keep their own (cuDNN) gradients.
 */
import * as tf from '@tensorflow/tfjs-core';

import { wasmHeap } from './wasm-heap';
import { wasmKernels } from './wasm-kernels';

const composedCache = new Map<string, boolean>();

/** True when the current backend has no native Conv2DBackpropFilter kernel (wasm, webgpu...). */
export function useComposedGradients(): boolean {
  const backend = tf.getBackend();
  let value = composedCache.get(backend);
  if (value === undefined) {
    value = backend === 'wasm' || tf.getKernel('Conv2DBackpropFilter', backend) === undefined;
    composedCache.set(backend, value);
    wasmHeap(); // installs the wasm kernel replacements when the backend is wasm
  }
  return value;
}

/** True when tensors live in host memory, so dataSync() is a plain copy (wasm, cpu). */
export function hostMemoryBackend(): boolean {
  const backend = tf.getBackend();
  return backend === 'wasm' || backend === 'cpu';
}

/**
 * Σ over all leading axes of x, keeping the last: [..., C] → [C]. Our kernel on wasm (one read
 * pass; a ones-row product has XNNPACK pack the whole of x first), else a ones-row product.
 */
export function sumToLastAxis(x: tf.Tensor): tf.Tensor1D {
  const kernels = wasmKernels();
  if (kernels !== undefined) return kernels.sumToLastAxis(x);
  return tf.tidy(() => {
    const c = x.shape[x.rank - 1]!;
    const rows = x.size / c;
    const flat = tf.reshape<tf.Rank.R2>(x, [rows, c]);
    return tf.reshape<tf.Rank.R1>(tf.matMul(tf.ones([1, rows]), flat), [c]);
  });
}

/** Σ over each image's pixels: [B, H, W, C] → [B, C] (the gradient of a per-image bias). */
export function sumPerImage(x: tf.Tensor4D): tf.Tensor2D {
  const kernels = wasmKernels();
  if (kernels !== undefined && x.shape[3] % 4 === 0) return kernels.sumPerImage(x);
  return tf.sum<tf.Tensor2D>(x, [1, 2]);
}
