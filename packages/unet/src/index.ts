/**
 * @ddpm/unet — the paper's U-Net (Appendix B) in TensorFlow.js, with gradients that are fast on
 * the wasm backend and native ones elsewhere. Knows nothing of diffusion, files or HTTP.
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
export { conv2d, samePadding } from './ops/conv2d';
export { dense, matMul } from './ops/matmul';
export { GROUP_NORM_EPSILON, type GroupNormOptions, groupNorm, swish } from './ops/group-norm';
export { useComposedGradients } from './ops/backend-caps';
export { upsampleNearest2x } from './ops/upsample';
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
