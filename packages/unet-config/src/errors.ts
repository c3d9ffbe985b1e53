/** Errors of the U-Net package, each code declared once with its kind (see @ddpm/core). */
import { errorCodes } from '@ddpm/core';

export const unetError = errorCodes({
  DDPM_UNET_CONFIG_INVALID: 'invalid',
  DDPM_UNET_SHAPE_MISMATCH: 'invalid',
  DDPM_WEIGHTS_INVALID: 'invalid',
});
export type UNetErrorCode = Parameters<typeof unetError>[0];
