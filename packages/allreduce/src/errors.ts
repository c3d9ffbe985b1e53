/**
 * A group's generation cannot go on: a rank lost (no heartbeat), the generation aborted by one of
 * its members, the data plane restarted without its state, a writer of a generation that no
 * longer owns the run. The job is not at fault: the worker restarts the group from its last
 * checkpoint, so these are `unavailable`.
 */
import { errorCodes } from '@ddpm/core';

export const collectiveError = errorCodes({
  DDPM_GROUP_LOST: 'unavailable',
  DDPM_GROUP_ABORTED: 'unavailable',
  DDPM_GROUP_FENCED: 'unavailable',
});
export type CollectiveErrorCode = Parameters<typeof collectiveError>[0];
