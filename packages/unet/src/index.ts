/**
 * @ddpm/unet — the paper's U-Net (Appendix B) in TensorFlow.js, with gradients that are fast on
 * the wasm backend and native ones elsewhere. Knows nothing of diffusion, files or HTTP.
 * Tensor-free parts on their own: `@ddpm/unet/config`, `@ddpm/unet/presets`. The network's
 * operations (convolutions, GroupNorm, products with their wasm gradients), for tests and
 * benchmarks, are under `@ddpm/unet/internal`.
 */
export { type UNetConfig, resolutionsOf, validateUNetConfig } from './config';
export { type UNetErrorCode } from './errors';
export { PRESETS, PRESET_NAMES, type PresetName, isPresetName, preset } from './presets';
export {
  type ArchitectureSummary,
  type LayerCost,
  NEAR_ZERO_INIT_SCALE,
  type ParamInit,
  type ParamSpec,
  describeArchitecture,
} from './architecture';
export { type ApplyOptions, UNet, type UNetInit, timestepEmbedding } from './unet';
export { type DecodedSafetensors, type NamedArray, decodeSafetensors, encodeSafetensors } from './safetensors';
export {
  WEIGHTS_FORMAT,
  checkAgainst,
  configFromWeights,
  loadUNetWeights,
  readNamed,
  saveUNetWeights,
  unetFromWeights,
} from './weights-io';
export { copyTensorsInto } from './ops/wasm-heap';
export {
  type OptimizerStepConstants,
  type OptimizerStepTensors,
  fusedOptimizerStep,
  fusedOptimizerStepAvailable,
} from './ops/optimizer-step';
export { wasmKernelsFused, withPlainArithmetic } from './ops/wasm-kernels';
