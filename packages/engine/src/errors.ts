/**
 * Engine errors, each code declared once with its kind (see @ddpm/core). A corrupt checkpoint and
 * a diverged run are permanent: retrying the same job reads the same bytes, draws the same numbers.
 */
import { errorCodes } from '@ddpm/core';

export const engineError = errorCodes({
  DDPM_CONFIG_INVALID: 'invalid',
  DDPM_CHECKPOINT_INVALID: 'invalid',
  DDPM_CHECKPOINT_NOT_FOUND: 'not-found',
  DDPM_NUMERIC: 'invalid',
});
export type EngineErrorCode = Parameters<typeof engineError>[0];

/**
 * Failures of a data-parallel group's generation: a rank lost, ranks diverged, the data plane
 * gone. Not the job's fault: the worker restarts the group from its last checkpoint (up to
 * maxRestarts), so they are `unavailable`, not permanent.
 */
export const groupError = errorCodes({
  DDPM_GROUP_DIVERGED: 'unavailable',
  DDPM_GROUP_LOST: 'unavailable',
  DDPM_GROUP_FENCED: 'unavailable',
});
export type GroupErrorCode = Parameters<typeof groupError>[0];
