/**
 * @ddpm/diffusion-config — the diffusion process of Ho, Jain & Abbeel (2020) on paper: the β
 * schedules, computed in float64, and the modelling choices (what the network predicts, its
 * variance, the loss) with their validation. Tensor-free, so that the settings a request is
 * checked against, and the API that checks them, load no tensor library. The mathematics on
 * tensors is `@ddpm/diffusion`, which re-exports all of this.
 */
export { type DiffusionErrorCode, describeValue, diffusionError } from './errors';
export {
  BETA_SCHEDULE_KINDS,
  type BetaScheduleKind,
  type BetaScheduleSpec,
  PAPER_SCHEDULE,
  betaSchedule,
  isBetaScheduleKind,
  linspace,
  validateBetas,
} from './schedule';
export {
  LOSS_TYPES,
  type LossType,
  MEAN_TYPES,
  type MeanType,
  VARIANCE_TYPES,
  type VarianceType,
  isLearnedVariance,
  isLossType,
  isMeanType,
  isVarianceType,
  validateModelling,
} from './config';
