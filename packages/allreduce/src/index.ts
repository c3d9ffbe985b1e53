/**
 * @ddpm/allreduce — the collectives of a data-parallel group over Redis, and its liveness.
 * Tensor-free: it moves float32 arrays; the engine turns gradients into them and back.
 */
export {
  type AllReduceResult,
  type CollectiveOptions,
  PLANE_NAMES,
  type PlaneChoice,
  type PlaneName,
  RedisCollective,
  removeSharedMemoryFiles,
  sharedMemoryBytes,
} from './collective';
export { evaluationNamespace, generationKeys, rawTransferKey } from './data-keys';
export { reachable } from './planes/rank-servers-plane';
export { BatchRelay, type RelayOptions } from './relay';
export { BulkConnection, type BulkTarget, bulkTarget } from './bulk';
export { type Transport, bytesPerValue, decode, encode } from './codec';
export { type CollectiveErrorCode, collectiveError } from './errors';
export {
  ABORT_KINDS,
  type AbortKind,
  type GenerationAbort,
  type GenerationEnd,
  type GenerationKeys,
  Heartbeat,
  type HeartbeatOptions,
  abortGeneration,
  assertGenerationAlive,
  generationEnded,
  parseGenerationAbort,
  openGeneration,
  refreshGeneration,
} from './liveness';
