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
  DDPM_EXTRACTOR_NOT_FOUND: 'not-found',
});
export type EngineErrorCode = Parameters<typeof engineError>[0];

/**
 * Ranks of a data-parallel group whose states differ: the generation ends loudly; the worker
 * restarts the group from its last checkpoint (up to maxRestarts), so it is `unavailable`.
 */
export const groupError = errorCodes({ DDPM_GROUP_DIVERGED: 'unavailable' });
export type GroupErrorCode = Parameters<typeof groupError>[0];
