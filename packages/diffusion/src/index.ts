/**
 * @ddpm/diffusion — the mathematics of Denoising Diffusion Probabilistic Models (Ho, Jain &
 * Abbeel, 2020), on the @tensorflow/tfjs-core API only. Pure: no I/O, no global randomness; the
 * network is passed in as `(x_t, t) => output`.
 */
/** The schedules and modelling choices, tensor-free (`@ddpm/diffusion-config`). */
export {
  BETA_SCHEDULE_KINDS,
  type BetaScheduleKind,
  type BetaScheduleSpec,
  type DiffusionErrorCode,
  LOSS_TYPES,
  type LossType,
  MEAN_TYPES,
  type MeanType,
  PAPER_SCHEDULE,
  VARIANCE_TYPES,
  type VarianceType,
  betaSchedule,
  isBetaScheduleKind,
  isLearnedVariance,
  isLossType,
  isMeanType,
  isVarianceType,
  linspace,
  validateBetas,
  validateModelling,
} from '@ddpm/diffusion-config';
/** The seeded RNG every stochastic function here accepts (it lives in @ddpm/core, shared with the data loader). */
export { Rng, type RngState } from '@ddpm/core';
export { type NoiseSource, type RandomnessOptions, resolveNoise, rngNoise } from './noise';
export { type LoopOptions, throwIfAborted, yieldToEventLoop } from './loop-control';
export { type DiffusionTables, computeTables } from './tables';
export {
  DEFAULT_MODELLING,
  type DenoiseFn,
  type DiffusionConfig,
  GaussianDiffusion,
  type MeanVariance,
  type ReverseMeanVariance,
  type Timesteps,
} from './gaussian-diffusion';
export { approxStandardNormalCdf, discretizedGaussianLogLikelihood, meanFlat, normalKl } from './gaussian';
export {
  LN2,
  type TrainingLosses,
  type VbTerms,
  meanMatchingWeights,
  trainingLosses,
  vbTermsBpd,
  vbTermsBpdFromOutput,
} from './losses';
export {
  type BoundOptions,
  type BoundResult,
  type BoundSummary,
  type RateDistortionPoint,
  type StratifiedBoundOptions,
  calcBpdLoop,
  calcBpdStratified,
  mergeBoundResults,
  priorBpd,
  rateDistortion,
  summarizeBound,
} from './bound';
export {
  type ProgressiveFrame,
  type ReverseLoopOptions,
  type ReverseLoopResult,
  type ReverseStep,
  runReverseLoop,
} from './samplers/reverse-loop';
export { type AncestralOptions, sampleAncestral } from './samplers/ancestral';
export { type DdimOptions, ddimStep, sampleDdim } from './samplers/ddim';
export { respace, respaceBySpec, spaceTimesteps } from './samplers/respace';
export { type SharedLatentOptions, type SharedLatentResult, sampleSharedLatent } from './samplers/shared-latent';
export { type InterpolateOptions, type InterpolateResult, interpolate } from './samplers/interpolate';
