/**
 * @ddpm/engine — one process's training and sampling engine, used by the worker's job child and
 * by `ddpm`. Configurations come resolved from @ddpm/settings. A run's records (checkpoints, loss
 * curve, evaluation history) are @ddpm/runs, tensor-free; the engine hands them on.
 */
export { type EngineErrorCode, type GroupErrorCode } from './errors';
export {
  CHECKPOINT_VERSION,
  type CheckpointFiles,
  type CheckpointRef,
  type RunState,
  type WriteFence,
  checkpointKey,
  listCheckpoints,
  loadCheckpointAt,
  loadLatestCheckpoint,
  pruneCheckpoints,
  readCheckpoint,
  writeCheckpoint,
} from '@ddpm/runs';
export { type Gradients, Trainer, type TrainerOptions } from './trainer';
export { type RunOptions, type StepStats } from './training-loop';
export { type GroupLink, type GroupStop, type RankReport } from './group-link';
export { type TrainJobOptions, type TrainJobOutcome, runTrainJob } from './train-job';
export { type Picture, composeGrid, encodePng, gridColumns, savePicture, toUint8, viewScale } from './images';
export {
  type SampleOptions,
  type SampleSplit,
  type SamplingGroupLink,
  generateSamples,
  interpolationFigure,
  progressiveStrip,
  renderSamples,
  sampleGrid,
  samplingDiffusion,
  sharedLatentFigure,
} from './sampling';
export { type LoadedModel, loadModelFromCheckpoint } from './model-loading';
export { loadPretrainedModel, samplingCheck } from './pretrained';
export { type NllOptions, type NllResult, evaluateNll } from './evaluation';
export { type EvalHistory, type EvalHistoryEntry, evalCurveKey, evalHistoryKey, readEvalHistory } from '@ddpm/runs';
export { appendEvalHistory, evaluateDuringTraining, evaluatesAt } from './training-evaluation';
export { type ChartSeries, type LineChart, lineChartPng, lineChartSvg, niceTicks } from './charts';
export { type EvalJobOptions, type EvalReport, runEvalJob, runEvalShare } from './eval-job';
export { type ExtractorCacheOptions, extractorInput, openFeatureExtractor } from './extractor-cache';
export { realDataDistance } from './reference-statistics';
export { type ModelEvaluation, type SampleGather, evaluateModel, drawSampleShare } from './model-evaluation';
