/**
 * Errors raised by the diffusion mathematics. Each has a stable `code` so callers (the worker, the
 * API) can map a bad configuration to a non-retryable failure without parsing messages.
 */
export type DiffusionErrorCode =
  | 'DDPM_SCHEDULE_INVALID'
  | 'DDPM_CONFIG_INVALID'
  | 'DDPM_SHAPE_MISMATCH'
  | 'DDPM_TIMESTEP_OUT_OF_RANGE'
  | 'DDPM_ABORTED';

export class DiffusionError extends Error {
  readonly code: DiffusionErrorCode;

  constructor(code: DiffusionErrorCode, message: string) {
    super(message);
    this.name = 'DiffusionError';
    this.code = code;
  }
}

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
