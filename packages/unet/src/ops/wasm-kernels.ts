/**
 * Our own SIMD kernels (kernels/ddpm_kernels.c, built by kernels/build.cjs into
 * kernels-wasm.generated.ts) running directly on the tfjs-wasm heap: a small WebAssembly module
 * that imports the backend's memory and reads and writes tensors in place.
 *
 * GroupNorm(+swish) forward is one kernel instead of eight tfjs kernels (two means that each
 * transpose first, sub, square, mul, add, sigmoid, mul) and its backward one instead of about
 * fourteen; both read each input two or three times and write each output once.
 */
import * as tf from '@tensorflow/tfjs-core';

import { KERNELS_WASM_BASE64 } from './kernels-wasm.generated';
import { type WasmHeap, wasmHeap, webAssembly } from './wasm-heap';

interface KernelExports {
  group_norm_forward(
    x: number,
    b: number,
    hw: number,
    c: number,
    groups: number,
    gamma: number,
    beta: number,
    eps: number,
    swish: number,
    out: number,
    sig: number,
    mean: number,
    rstd: number,
    scratch: number,
  ): void;
  group_norm_backward(
    dy: number,
    x: number,
    sig: number,
    out: number,
    b: number,
    hw: number,
    c: number,
    groups: number,
    gamma: number,
    mean: number,
    rstd: number,
    swish: number,
    dx: number,
    dgamma: number,
    dbeta: number,
    scratch: number,
  ): void;
}

export interface GroupNormForward {
  /** y, or swish(y) when asked. */
  readonly out: tf.Tensor4D;
  /** σ(y) when swish was asked (the backward needs it), else undefined. */
  readonly sig: tf.Tensor4D | undefined;
  /** Per image and channel, repeated over each group's channels: [B, C]. */
  readonly mean: tf.Tensor2D;
  readonly rstd: tf.Tensor2D;
}

export class WasmKernels {
  constructor(
    private readonly heap: WasmHeap,
    private readonly exports: KernelExports,
  ) {}

  /** Whether the kernels take this NHWC shape (channels in SIMD lanes of four, whole groups). */
  static supports(shape: readonly number[], numGroups: number): boolean {
    const c = shape[3]!;
    return shape.length === 4 && c % 4 === 0 && c % numGroups === 0;
  }

  groupNormForward(x: tf.Tensor4D, gamma: tf.Tensor1D, beta: tf.Tensor1D, numGroups: number, epsilon: number, swish: boolean): GroupNormForward {
    const [b, h, w, c] = x.shape;
    const heap = this.heap;
    const out = heap.allocate([b, h, w, c]) as tf.Tensor4D;
    const sig = swish ? (heap.allocate([b, h, w, c]) as tf.Tensor4D) : undefined;
    const mean = heap.allocate([b, c]) as tf.Tensor2D;
    const rstd = heap.allocate([b, c]) as tf.Tensor2D;
    const scratch = heap.allocate([2 * c]);
    try {
      this.exports.group_norm_forward(
        heap.offsetOf(x),
        b,
        h * w,
        c,
        numGroups,
        heap.offsetOf(gamma),
        heap.offsetOf(beta),
        epsilon,
        swish ? 1 : 0,
        heap.offsetOf(out),
        sig === undefined ? 0 : heap.offsetOf(sig),
        heap.offsetOf(mean),
        heap.offsetOf(rstd),
        heap.offsetOf(scratch),
      );
    } finally {
      scratch.dispose();
    }
    return { out, sig, mean, rstd };
  }

  /** [dx, dγ, dβ] for a forward that produced `fwd` (σ and the output are used with swish). */
  groupNormBackward(
    dy: tf.Tensor4D,
    x: tf.Tensor4D,
    gamma: tf.Tensor1D,
    fwd: GroupNormForward,
    numGroups: number,
  ): [tf.Tensor4D, tf.Tensor1D, tf.Tensor1D] {
    const [b, h, w, c] = x.shape;
    const heap = this.heap;
    const dx = heap.allocate([b, h, w, c]) as tf.Tensor4D;
    const dgamma = heap.allocate([c]) as tf.Tensor1D;
    const dbeta = heap.allocate([c]) as tf.Tensor1D;
    const scratch = heap.allocate([3 * c]);
    try {
      this.exports.group_norm_backward(
        heap.offsetOf(dy),
        heap.offsetOf(x),
        fwd.sig === undefined ? 0 : heap.offsetOf(fwd.sig),
        fwd.sig === undefined ? 0 : heap.offsetOf(fwd.out),
        b,
        h * w,
        c,
        numGroups,
        heap.offsetOf(gamma),
        heap.offsetOf(fwd.mean),
        heap.offsetOf(fwd.rstd),
        fwd.sig === undefined ? 0 : 1,
        heap.offsetOf(dx),
        heap.offsetOf(dgamma),
        heap.offsetOf(dbeta),
        heap.offsetOf(scratch),
      );
    } finally {
      scratch.dispose();
    }
    return [dx, dgamma, dbeta];
  }
}

let cached: { heap: WasmHeap; kernels: WasmKernels | undefined } | undefined;

/**
 * The kernels bound to the current wasm backend's heap, or undefined on other backends, when the
 * heap's memory is not reachable, or when DDPM_WASM_KERNELS=0 (to compare against the portable
 * composed ops).
 */
export function wasmKernels(): WasmKernels | undefined {
  const heap = wasmHeap();
  if (heap === undefined || process.env['DDPM_WASM_KERNELS'] === '0') return undefined;
  if (cached?.heap === heap) return cached.kernels;
  const memory = heap.memory();
  let kernels: WasmKernels | undefined;
  if (memory !== undefined) {
    const wasm = webAssembly();
    const instance = new wasm.Instance(new wasm.Module(Buffer.from(KERNELS_WASM_BASE64, 'base64')), { env: { memory } });
    kernels = new WasmKernels(heap, instance.exports as unknown as KernelExports);
  }
  cached = { heap, kernels };
  return kernels;
}
