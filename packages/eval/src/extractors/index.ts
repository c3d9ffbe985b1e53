/**
 * @ddpm/eval/extractors — the networks that turn images into features (TensorFlow.js): the
 * offline `fmnist_cnn` and the FID Inception-v3. Every one records its name, weights hash and
 * preprocessing.
 */
export { type ExtractorInfo, type FeatureExtractor, extractorRecord } from './extractor';
export { type FeatureRun, type FeatureRunOptions, extractFeatures } from './features';
export {
  FMNIST_CNN_INPUT,
  FMNIST_CNN_NAME,
  FMNIST_CNN_RECIPE,
  FMNIST_CNN_WASM_SHA256,
  FmnistCnn,
  type FmnistCnnTraining,
  trainFmnistCnn,
} from './fmnist-cnn';
export {
  FID_INCEPTION_PTH_SHA256_PREFIX,
  INCEPTION_FID_NAME,
  InceptionV3,
  type InceptionVariant,
} from './inception-v3';
