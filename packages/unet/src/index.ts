/**
 * @ddpm/unet — the paper's U-Net (Appendix B) in TensorFlow.js, with gradients that are fast on
 * the wasm backend and native ones elsewhere. Knows nothing of diffusion, files or HTTP.
 * Tensor-free parts on their own: `@ddpm/unet/config`, `@ddpm/unet/presets`. The operations it
 * is built of (convolutions, GroupNorm, products with their wasm gradients) are `@ddpm/kernels`;
 * the weights' file format is `@ddpm/safetensors`.
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
export {
  WEIGHTS_FORMAT,
  checkAgainst,
  configFromWeights,
  loadUNetWeights,
  readNamed,
  saveUNetWeights,
  unetFromWeights,
} from './weights-io';
