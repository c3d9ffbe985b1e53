/**
 * @ddpm/eval/extractors — the networks that turn images into features (TensorFlow.js): the
 * offline `fmnist_cnn`. Every one records its name, weights hash and preprocessing.
 */
export { type ExtractorInfo, type FeatureExtractor, extractorRecord } from './extractor';
export { type FeatureRun, type FeatureRunOptions, extractFeatures } from './features';
export { FMNIST_CNN_INPUT, FMNIST_CNN_NAME, FMNIST_CNN_RECIPE, FMNIST_CNN_WASM_SHA256, FmnistCnn, type FmnistCnnTraining, trainFmnistCnn } from './fmnist-cnn';
