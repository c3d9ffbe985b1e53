/**
 * @ddpm/kernels — the tensor kernels under the U-Net, knowing nothing of networks or diffusion:
 *
 * - the one place that chooses and initialises the TensorFlow.js backend and makes sure gradients
 *   are registered (import this package before any training code);
 * - the network's operations (convolutions, GroupNorm, products, upsampling, ...) with gradients
 *   that are fast on the wasm backend and native ones elsewhere;
 * - our SIMD kernels (`c/ddpm_kernels.c`, built to wasm), views of the wasm heap, and the fused
 *   optimizer step.
 */
import { assertGradientsRegistered } from './gradients';

export {
  BACKEND_NAMES,
  type BackendInfo,
  type BackendName,
  type TensorRequest,
  currentBackend,
  initBackend,
  isBackendName,
} from './backend';
export { assertGradientsRegistered } from './gradients';
export { useComposedGradients } from './ops/backend-caps';
export { concatChannels } from './ops/concat';
export { conv2d, samePadding, withTfjsConvolutions } from './ops/conv2d';
export { dropout } from './ops/dropout';
export { GROUP_NORM_EPSILON, type GroupNormOptions, groupNorm, swish } from './ops/group-norm';
export { dense, matMul } from './ops/matmul';
export {
  type OptimizerStepConstants,
  type OptimizerStepTensors,
  fusedOptimizerStep,
  fusedOptimizerStepAvailable,
} from './ops/optimizer-step';
export { softmax } from './ops/softmax';
export { DEFAULT_KERNEL_SWITCHES, type KernelSwitches, kernelSwitches, setKernelSwitches } from './switches';
export { upsampleNearest2x } from './ops/upsample';
export { copyTensorsInto, wasmHeap } from './ops/wasm-heap';
export {
  type ConvAddends,
  useNativeKernels,
  wasmKernels,
  wasmKernelsFused,
  withPlainArithmetic,
} from './ops/wasm-kernels';
export { NATIVE_ISAS, type NativeIsa, cpuIsas, nativeBuild } from './ops/native-kernels';
export { kernelExecArgv, kernelV8Flags, relaxedSimdCompiles } from './v8-flags';

assertGradientsRegistered();
