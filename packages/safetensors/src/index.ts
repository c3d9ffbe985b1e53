/**
 * @ddpm/safetensors — the safetensors file format, tensor-free: the U-Net's weights, the
 * optimizer's state, the feature extractors and the shipped models are all stored in it.
 */
export { type DecodedSafetensors, type NamedArray, decodeSafetensors, encodeSafetensors } from './safetensors';
