/** @ddpm/jobs — the contracts between the API and the workers. */
export {
  EvalJobRequest,
  JOB_ID_PATTERN,
  JOB_TYPES,
  type JobData,
  JobId,
  type JobProgress,
  type JobRequest,
  type JobResult,
  type JobType,
  SampleJobRequest,
  TrainJobRequest,
} from './schemas';
export { cancelChannel, cancelKey, jobIdFor, jobTypeOf, queueName, requestHash, runPrefixOf, sampleKey } from './names';
export { type ServiceConfig, loadServiceConfig, loadServiceConfigOrExit, redisConnectionOptions } from './service-config';
export { trainConfigOf } from './train-config';
