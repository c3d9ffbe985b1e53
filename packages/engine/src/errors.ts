/** Engine errors. `DDPM_CONFIG_INVALID` is a bad job: retrying cannot help. */
export type EngineErrorCode = 'DDPM_CONFIG_INVALID' | 'DDPM_CHECKPOINT_INVALID' | 'DDPM_CHECKPOINT_NOT_FOUND' | 'DDPM_NUMERIC';

export class EngineError extends Error {
  readonly code: EngineErrorCode;

  constructor(code: EngineErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'EngineError';
    this.code = code;
  }
}
