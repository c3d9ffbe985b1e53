/**
 * The errors the diffusion mathematics raises, each code declared once with its kind (see
 * @ddpm/core): callers decide retry or HTTP status from the error, never from its message.
 */
import { errorCodes } from '@ddpm/core';

export const diffusionError = errorCodes({
  DDPM_SCHEDULE_INVALID: 'invalid',
  DDPM_CONFIG_INVALID: 'invalid',
  DDPM_SHAPE_MISMATCH: 'invalid',
  DDPM_TIMESTEP_OUT_OF_RANGE: 'invalid',
  DDPM_ABORTED: 'aborted',
});
export type DiffusionErrorCode = Parameters<typeof diffusionError>[0];

/** Formats a value for an error message: short, and never throws. */
export function describeValue(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number' || typeof value === 'boolean' || value === null || value === undefined) {
    return String(value);
  }
  try {
    const text = JSON.stringify(value);
    return text.length > 80 ? `${text.slice(0, 77)}...` : text;
  } catch {
    return Object.prototype.toString.call(value);
  }
}
