/**
 * @ddpm/eval — how good a generative model is, as numbers that say what they are: feature
 * statistics, the Fréchet distance, KID, the Inception Score, `.npz` statistics files.
 */
export { type EvalErrorCode, evalError } from './errors';
export {
  type AccumulatorOptions,
  FeatureAccumulator,
  type FeatureStatistics,
  type KeptFeatures,
} from './feature-statistics';
export {
  type FrechetResult,
  type LinalgOptions,
  type LinalgPhase,
  type PivotedCholesky,
  type ReferenceRoot,
  frechetDistance,
  referenceRoot,
} from './frechet';
export { type InceptionScoreResult, inceptionScore } from './inception-score';
export { type PixelStatistics, PixelTally } from './pixel-statistics';
export { type KidOptions, type KidResult, kernelInceptionDistance } from './kid';
export { type NpyArray, readNpy, readNpz, statisticsFromNpz, statisticsToNpz, writeNpy, writeNpz } from './npz';
export { symmetricSandwich } from './linalg/products';
export { type SymmetricEigen, symmetricEigen } from './linalg/symmetric-eigen';
