/**
 * @ddpm/core — the leaf of the dependency graph: one coded error type that knows whether a retry
 * can help, the seeded RNG whose state checkpoints store, sha256 checksums, the reasons a run
 * stops. No tensors, no I/O.
 */
export {
  CodedError,
  ERROR_KINDS,
  type ErrorFactory,
  type ErrorKind,
  codedErrorOf,
  errorCodes,
  hasCode,
  isPermanent,
} from './errors';
export { Rng, type RngState } from './rng';
export { sha256Hex } from './sha256';
export { STOP_REASONS, type StopReason, stopReasonOf } from './stop';
