/**
 * @ddpm/unet — the paper's U-Net (Appendix B) in TensorFlow.js, with gradients that are fast on
 * the wasm backend and native ones elsewhere. Knows nothing of diffusion, files or HTTP.
 * Its configuration, presets and architecture table are the tensor-free `@ddpm/unet-config`
 * (re-exported here). The operations it
 * is built of (convolutions, GroupNorm, products with their wasm gradients) are `@ddpm/kernels`;
 * the weights' file format is `@ddpm/safetensors`.
 */
export {
  type ArchitectureSummary,
  type LayerCost,
  NEAR_ZERO_INIT_SCALE,
  PRESETS,
  PRESET_NAMES,
  type ParamInit,
  type ParamSpec,
  type PresetName,
  type UNetConfig,
  type UNetErrorCode,
  describeArchitecture,
  isPresetName,
  preset,
  resolutionsOf,
  validateUNetConfig,
} from '@ddpm/unet-config';
export { type ApplyOptions, UNet, type UNetInit, timestepEmbedding } from './unet';
export {
  WEIGHTS_FORMAT,
  checkAgainst,
  configFromWeights,
  loadUNetWeights,
  readNamed,
  saveUNetWeights,
  unetFromWeights,
} from './weights-io';
