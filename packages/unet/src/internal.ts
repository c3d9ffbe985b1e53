/**
 * @ddpm/unet/internal — the U-Net's operations with their wasm-fast gradients, for tests and
 * benchmarks; not a stable API (use UNet).
 */
export { conv2d, samePadding } from './ops/conv2d';
export { dense, matMul } from './ops/matmul';
export { GROUP_NORM_EPSILON, type GroupNormOptions, groupNorm, swish } from './ops/group-norm';
export { useComposedGradients } from './ops/backend-caps';
export { upsampleNearest2x } from './ops/upsample';
export { wasmKernels } from './ops/wasm-kernels';
export { wasmHeap } from './ops/wasm-heap';
