/** Errors of a run's records, each code declared once with its kind (see @ddpm/core). */
import { errorCodes } from '@ddpm/core';

export const runError = errorCodes({
  /** A checkpoint or history that fails its manifest, its checksums or its format: permanent, the bytes stay the same. */
  DDPM_CHECKPOINT_INVALID: 'invalid',
  DDPM_CHECKPOINT_NOT_FOUND: 'not-found',
  DDPM_CONFIG_INVALID: 'invalid',
});
export type RunErrorCode = Parameters<typeof runError>[0];
