/**
 * @ddpm/cli/toolkit — what the lab's commands (tools/lab: benchmarks, the quality study, the
 * service demo, simulated hosts, chaos) share with the CLI's own: argument parsing, the output
 * and error types, durations as the progress bars print them, waiting on a job of the API, and
 * loading the tensor backend as the environment asks.
 */
export { type OptionSpec, parseChoice, parseCommandArgs, parseInteger, parseNumber } from './args';
export { type CliCommand, type CliEnv, CliInterrupted, type CliIo, CliUsageError, type CommandEntry } from './cli-io';
export { waitForJob } from './commands/jobs';
export { formatDuration } from './progress';
export { startTensors } from './tensors';
