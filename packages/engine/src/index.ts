/** @ddpm/engine — one worker's training and sampling engine, reused by the service and the group. */
export { type EngineErrorCode } from './errors';
export { PAPER_DEFAULTS, type TrainConfig, type TrainConfigInput, resolveTrainConfig, unetConfigOf } from './config';
export { Adam, type AdamHyper, learningRateAt } from './adam';
export { emaDecayAt, updateEma } from './ema';
export {
  CHECKPOINT_VERSION,
  type CheckpointFiles,
  type CheckpointRef,
  type RunState,
  checkpointKey,
  listCheckpoints,
  loadLatestCheckpoint,
  pruneCheckpoints,
  readCheckpoint,
  writeCheckpoint,
} from './checkpoint';
export { type Gradients, type RunOptions, type StepStats, Trainer, type TrainerOptions } from './trainer';
export { type Picture, composeGrid, encodePng, gridColumns, toUint8 } from './images';
export {
  type SampleOptions,
  type SamplerSpec,
  generateSamples,
  interpolationFigure,
  progressiveStrip,
  sampleGrid,
  samplingDiffusion,
  sharedLatentFigure,
} from './sampling';
export { type LoadedModel, loadModelFromCheckpoint } from './model-loading';
export { type NllOptions, type NllResult, evaluateNll } from './evaluation';
