/** A setting or a combination of settings is wrong: permanent, named, never retried. */
import { errorCodes } from '@ddpm/core';

const fail = errorCodes({ DDPM_CONFIG_INVALID: 'invalid' });

export function configError(message: string, options?: { cause?: unknown }): ReturnType<typeof fail> {
  return fail('DDPM_CONFIG_INVALID', message, options);
}
