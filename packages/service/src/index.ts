/**
 * @ddpm/service — the service's contract and configuration, shared by the API and the workers:
 * the job data, progress and results; every environment variable, read and checked once
 * (loadServiceConfig, loadTensorSettings, envInteger); the auth helpers; the control plane's Redis keys. Tensor-free.
 */
export {
  JOB_ID_PATTERN,
  JOB_SCHEMAS,
  JOB_TYPES,
  PROGRESS_PHASES,
  type GroupGeneration,
  type JobConfig,
  type JobData,
  JobId,
  JobProgress,
  type JobRequest,
  JobResult,
  type JobType,
  type ProgressPhase,
  progressProblem,
} from './schemas';
export {
  cancelChannel,
  cancelKey,
  generationKey,
  generationNamespace,
  idempotencyRecordKey,
  slotIdOf,
  slotInboxKey,
  slotKey,
  slotKeyPrefix,
  slotsKey,
  tombstoneKey,
} from './control-keys';
export { jobIdFor, jobTypeOf, queueName, requestHash } from './names';
export {
  DEFAULT_DATA_ROOTS,
  type ServiceConfig,
  bearerMatches,
  checkListenerSafety,
  isLoopback,
  loadServiceConfig,
  loadServiceConfigOrExit,
  redisConnectionOptions,
} from './service-config';
export { type EnvError, configError, envInteger, envSwitch } from './env-values';
export {
  TENSOR_BACKENDS,
  type TensorBackend,
  type TensorSettings,
  loadTensorSettings,
  tensorSettingsOf,
} from './tensor-settings';
export { DEFAULT_LIMITS, LIMIT_NAMES, LIMIT_VARIABLES, loadLimits } from './limits';
