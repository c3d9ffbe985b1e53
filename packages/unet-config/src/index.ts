/**
 * @ddpm/unet-config — the paper's U-Net (Appendix B) on paper: the configuration a model is built
 * from and its validation, the named presets, and the architecture a configuration describes
 * (its parameters with their initialisations, per-resolution costs). Tensor-free, so that the
 * settings a request is checked against, and the API that checks them, load no tensor library.
 * The network itself is `@ddpm/unet`.
 */
export { type UNetConfig, resolutionsOf, validateUNetConfig } from './config';
export { type UNetErrorCode, unetError } from './errors';
export { PRESETS, PRESET_NAMES, type PresetName, isPresetName, preset } from './presets';
export {
  type ArchitectureInterpreter,
  type ArchitectureSummary,
  type LayerCost,
  NEAR_ZERO_INIT_SCALE,
  type ParamInit,
  type ParamSpec,
  describeArchitecture,
  runArchitecture,
} from './architecture';
