/** Errors of the U-Net package, each with a stable code. */
export type UNetErrorCode = 'DDPM_UNET_CONFIG_INVALID' | 'DDPM_UNET_SHAPE_MISMATCH' | 'DDPM_WEIGHTS_INVALID';

export class UNetError extends Error {
  readonly code: UNetErrorCode;

  constructor(code: UNetErrorCode, message: string) {
    super(message);
    this.name = 'UNetError';
    this.code = code;
  }
}
