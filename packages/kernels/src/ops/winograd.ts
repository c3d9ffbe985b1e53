/**
 * 3×3 stride-1 'SAME' convolutions by Winograd's minimal filtering F(2×2, 3×3) (Lavin & Gray,
 * "Fast Algorithms for Convolutional Neural Networks", 2016), on the wasm backend:
 *
 *   y (per 2×2 output tile) = Aᵀ [ U ⊙ V ] A,   U = G g Gᵀ (filter),   V = Bᵀ d B (4×4 input patch),
 *
 * where ⊙ summed over input channels is, for each of the 16 positions ξ of a transformed tile,
 * one matrix product [tiles, Cin]·[Cin, Cout]. That is 16 multiplications per tile and channel
 * pair against the direct form's 36: 2.25× fewer FLOPs. Our SIMD kernels (c/ddpm_kernels.c)
 * do it block by block of 64 tiles: transform, 16 products, transform back, with the transformed
 * blocks in the cache.
 *
 * Gradients:
 * - input: a Winograd convolution of dy with the filter rotated by 180° and in/out swapped, whose
 *   transform is a permutation and transpose of U (winograd_rotate);
 * - filter: the same algebra transposed, dU[ξ] = Σ_tiles V[ξ]ᵀ·(A dy Aᵀ)[ξ], then dg = Gᵀ dU G.
 *
 * Results differ from the direct convolution by float32 rounding only (the transforms add,
 * subtract and halve): tested against tfjs's conv2d and the composed gradients.
 */
import * as tf from '@tensorflow/tfjs-core';

import { kernelSwitches } from '../switches';
import { type ConvAddends, type WasmKernels, wasmKernels } from './wasm-kernels';

/**
 * Whether a convolution of input shape `x` with filter shape `filter` at this stride runs as
 * Winograd F(2×2, 3×3) here: wasm with our kernels, 3×3, stride 1, channel counts in lanes of
 * four, and not switched off (`winograd`, to compare against the direct convolution).
 */
export function winogradApplies(x: readonly number[], filter: readonly number[], stride: number): boolean {
  return (
    stride === 1 &&
    filter[0] === 3 &&
    filter[1] === 3 &&
    x[3]! % 4 === 0 &&
    filter[3]! % 4 === 0 &&
    kernelSwitches().winograd &&
    wasmKernels() !== undefined
  );
}

function kernelsOrThrow(): WasmKernels {
  const kernels = wasmKernels();
  if (kernels === undefined) throw new Error('internal error: Winograd convolutions need our wasm kernels');
  return kernels;
}

/** conv2d(x, filter, 1, 'same') + bias (+ the addends: a bias per image, a residual). */
export function winogradConv(
  x: tf.Tensor4D,
  filter: tf.Tensor4D,
  bias?: tf.Tensor1D,
  addends: ConvAddends = {},
): tf.Tensor4D {
  const kernels = kernelsOrThrow();
  const u = kernels.winogradFilter(filter);
  try {
    return kernels.winogradConv(x, u, bias, addends);
  } finally {
    u.dispose();
  }
}

/** The input gradient of conv2d(x, filter, 1, 'same') for the output gradient dy. */
export function winogradInputGradient(dy: tf.Tensor4D, filter: tf.Tensor4D): tf.Tensor4D {
  const kernels = kernelsOrThrow();
  const u = kernels.winogradFilter(filter);
  const rotated = kernels.winogradRotate(u);
  u.dispose();
  try {
    return kernels.winogradConv(dy, rotated, undefined);
  } finally {
    rotated.dispose();
  }
}

/** The filter gradient of conv2d(x, g, 1, 'same') for the output gradient dy: [3, 3, Cin, Cout]. */
export function winogradFilterGradient(x: tf.Tensor4D, dy: tf.Tensor4D): tf.Tensor4D {
  const kernels = kernelsOrThrow();
  const du = kernels.winogradFilterProducts(x, dy);
  try {
    return kernels.winogradFilterGrad(du);
  } finally {
    du.dispose();
  }
}
