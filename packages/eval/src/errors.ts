/**
 * What can go wrong in an evaluation: statistics of the wrong shape or with non-finite values
 * (a diverged model's samples), incomparable statistics (different extractors or dimensions), a
 * malformed statistics file, too few samples for the metric, an eigensolver that does not
 * converge (numerically pathological input, reported rather than looped on). All come from the
 * caller's input, so all are permanent; a stopped evaluation (cancel, shutdown) is `aborted`.
 */
import { errorCodes } from '@ddpm/core';

export const evalError = errorCodes({
  DDPM_EVAL_SHAPE: 'invalid',
  DDPM_EVAL_NOT_FINITE: 'invalid',
  DDPM_EVAL_NOT_SYMMETRIC: 'invalid',
  DDPM_EVAL_INCOMPARABLE: 'invalid',
  DDPM_EVAL_TOO_FEW: 'invalid',
  DDPM_EVAL_FILE_INVALID: 'invalid',
  DDPM_EVAL_NO_CONVERGENCE: 'invalid',
  DDPM_EVAL_ABORTED: 'aborted',
});
export type EvalErrorCode = Parameters<typeof evalError>[0];
