/**
 * @ddpm/runs — a run's records in the object store, without tensors: the checkpoint layout (a
 * checkpoint is whole or invisible: its manifest, written last, lists every file's size and
 * sha256), the loss curve a checkpoint keeps, and the evaluation history. The engine writes them;
 * the API and the workers read them without loading any tensor code.
 */
export { type RunErrorCode, runError } from './errors';
export {
  CHECKPOINT_VERSION,
  type CheckpointFiles,
  type CheckpointRef,
  type RunState,
  type WriteFence,
  checkpointKey,
  checkpointProblem,
  listCheckpoints,
  loadCheckpointAt,
  loadLatestCheckpoint,
  pruneCheckpoints,
  readCheckpoint,
  writeCheckpoint,
} from './checkpoint';
export { type EvalHistory, type EvalHistoryEntry, evalCurveKey, evalHistoryKey, readEvalHistory } from './eval-history';
export { LossCurve, type LossCurveState, type LossPoint, type LossSpan, MAX_POINTS, lossPoints } from './loss-curve';
