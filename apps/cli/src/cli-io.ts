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

/** What a command may use of its environment: a TTY for progress bars, a signal for Ctrl-C. */
export interface CliEnv {
  readonly tty: boolean;
  readonly signal?: AbortSignal;
}

/** A command: its exit status, at once or when its work is done. */
export type CliCommand = (argv: readonly string[], io: CliIo, env: CliEnv) => number | Promise<number>;

/** A command, its usage text (a function when it depends on the subcommand) and its one-line summary. */
export interface CommandEntry {
  readonly run: CliCommand;
  readonly usage: string | ((argv: readonly string[]) => string);
  readonly summary: string;
}
