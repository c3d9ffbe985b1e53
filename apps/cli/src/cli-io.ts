import { CodedError } from '@ddpm/core';

/** Where a command writes; the real process streams in `main`, buffers in tests. */
export interface CliIo {
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
}

/** A usage mistake: printed with the command's usage, exit status 2. */
export class CliUsageError extends CodedError<'DDPM_CLI_USAGE'> {
  constructor(message: string) {
    super('DDPM_CLI_USAGE', 'invalid', message);
    this.name = 'CliUsageError';
  }
}

/** Ctrl-C (or SIGTERM) ended a wait: printed without the usage, exit status 130 as for SIGINT. */
export class CliInterrupted extends CodedError<'DDPM_CLI_INTERRUPTED'> {
  constructor(message: string) {
    super('DDPM_CLI_INTERRUPTED', 'aborted', message);
    this.name = 'CliInterrupted';
  }
}
