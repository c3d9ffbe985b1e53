/**
 * @ddpm/api-client — the job API's typed client (openapi-fetch on types generated from the API's
 * OpenAPI document), shared by the CLI, the lab's demo and study, and the tests.
 */
export {
  ApiClient,
  type ApiClientOptions,
  ApiError,
  type ErrorBody,
  type EvalRequest,
  FINAL_STATES,
  type JobView,
  type ListQuery,
  type MetricsHistory,
  type SampleRequest,
  type Submission,
  type TrainRequest,
} from './client';
export { type components, type paths } from './api-types.generated';
