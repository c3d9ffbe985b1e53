/**
 * @ddpm/settings — the one table of job settings and the configurations jobs run with. Tensor-free:
 * the API, the CLI, the worker and the engine all import it without loading TensorFlow.js.
 */
export {
  type Presence,
  type RequestOf,
  type RequestProperties,
  type Setting,
  type SettingTable,
  type ValuesOf,
  assertRequest,
  checkRequest,
  defaultText,
  expectation,
  literalUnion,
  literalsOf,
  problemWith,
  requestSchema,
  valueAt,
  valuesOf,
} from './setting';
export { flagText, settingsMarkdown } from './settings-markdown';
export { SAMPLER_KINDS, SAMPLER_SETTINGS, type SamplerKind, SamplerSpec, resolveSampler } from './sampler-settings';
export { RECIPES, RECIPE_NAMES, type Recipe, type RecipeName } from './recipes';
export { GRADIENT_TRANSPORTS, type GradientTransport, TRAIN_SETTINGS, type TrainSettings } from './train-settings';
export {
  FinalGridConfig,
  GroupConfig,
  TrainConfig,
  TrainJobConfig,
  ConfigAdjustment,
  TrainingEvalConfig,
  TrainRequest,
  resolveTrainJob,
  resumedConfig,
  unetConfigOf,
  validateTrainConfig,
  validateTrainJobConfig,
} from './train-config';
export {
  JOB_ID_PATTERN,
  PRETRAINED_MODELS,
  type PretrainedName,
  SAMPLE_JOB_SETTINGS,
  SAMPLE_KINDS,
  SAMPLE_SETTINGS,
  SampleConfig,
  SampleJobConfig,
  SampleJobRequest,
  type SampleKind,
  type SampleRequest,
  checkSampleSource,
  resolveSample,
  resolveSampleJob,
} from './sample-settings';
export { SamplingGroupConfig, groupSettings, oneProcessGroup } from './group-settings';
export {
  EVAL_JOB_SETTINGS,
  EVAL_METRICS,
  EXTRACTORS,
  EvalJobConfig,
  EvalJobRequest,
  type EvalMetric,
  EvalSpec,
  type ExtractorName,
  SAMPLE_METRICS,
  type SampleMetric,
  isSampleMetric,
  resolveEvalJob,
  TRAINING_EVAL_METRICS,
} from './eval-settings';
export {
  type LimitNames,
  type ServiceLimits,
  TRAINING_MEMORY_FACTOR,
  WASM_HEAP_BYTES,
  checkBudgets,
  checkpointBytes,
  fitAccumulation,
  parameterCount,
  trainingMemoryPerImageMb,
  trainingStepBytes,
} from './budgets';
