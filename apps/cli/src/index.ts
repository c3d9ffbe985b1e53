/**
 * The `ddpm` command-line tool: one function per command, dispatched by {@link runCli}, so the
 * commands can be tested in-process with captured output.
 */
import { codedErrorOf } from '@ddpm/core';

import { CliInterrupted, type CliIo, CliUsageError } from './cli-io';
import { BENCH_USAGE, benchCommand } from './commands/bench';
import { CHAOS_USAGE, chaosCommand } from './commands/chaos';
import { DEMO_USAGE, demoCommand } from './commands/demo';
import { EVAL_USAGE, FID_USAGE, evalCommand, fidCommand } from './commands/eval';
import { INFO_USAGE, infoCommand } from './commands/info';
import { jobsCommand, jobsUsage } from './commands/jobs';
import {
  INTERPOLATE_USAGE,
  PROGRESSIVE_USAGE,
  SAMPLE_USAGE,
  SHARED_LATENT_USAGE,
  interpolateCommand,
  progressiveCommand,
  sampleCommand,
  sharedLatentCommand,
} from './commands/sample';
import { SCHEDULE_USAGE, scheduleCommand } from './commands/schedule';
import { SERVICE_DEMO_USAGE, serviceDemoCommand } from './commands/service-demo';
import { SETTINGS_USAGE, settingsCommand } from './commands/settings';
import { SIM_USAGE, simCommand } from './commands/sim';
import { STUDY_USAGE, studyCommand } from './commands/study';
import { TRAIN_USAGE, trainCommand } from './commands/train';

export { CliInterrupted, type CliIo, CliUsageError } from './cli-io';
export { findOnPath, freePort } from './local-services';
export { type ChaosOptions, type ChaosReport, runChaos } from './chaos/chaos';
export { FAULT_KINDS, type FaultKind } from './chaos/faults';
export {
  type SimulatedHost,
  SimulatedHosts,
  type SimulatedHostsOptions,
  simulationUnavailable,
  sweepSimulatedHosts,
} from './sim/hosts';

/** What a command may use of its environment: a TTY for progress bars, a signal for Ctrl-C. */
export interface CliEnv {
  readonly tty: boolean;
  readonly signal?: AbortSignal;
}

/** A command: its exit status, at once or when its work is done. */
type Command = (argv: readonly string[], io: CliIo, env: CliEnv) => number | Promise<number>;

/** A command, its usage text (a function when it depends on the subcommand) and its one-line summary. */
const COMMANDS: Record<
  string,
  { run: Command; usage: string | ((argv: readonly string[]) => string); summary: string }
> = {
  schedule: {
    run: scheduleCommand,
    usage: SCHEDULE_USAGE,
    summary: 'print forward-process coefficients of a beta schedule',
  },
  info: { run: infoCommand, usage: INFO_USAGE, summary: 'describe a U-Net preset: parameters, FLOPs, levels' },
  bench: { run: benchCommand, usage: BENCH_USAGE, summary: 'benchmarks (JSON, ratios measured in the same run)' },
  'service-demo': {
    run: serviceDemoCommand,
    usage: SERVICE_DEMO_USAGE,
    summary: 'the main job: Redis, API, 2 workers, a train job over HTTP, a sample grid',
  },
  jobs: { run: jobsCommand, usage: jobsUsage, summary: 'submit, watch, cancel and list jobs of a running API' },
  settings: {
    run: settingsCommand,
    usage: SETTINGS_USAGE,
    summary: 'every job setting: flag, request field, default, paper value',
  },
  demo: {
    run: demoCommand,
    usage: DEMO_USAGE,
    summary: 'train a small model for a few minutes and write a sample grid',
  },
  train: { run: trainCommand, usage: TRAIN_USAGE, summary: 'train a model; Ctrl-C checkpoints, --resume continues' },
  sample: { run: sampleCommand, usage: SAMPLE_USAGE, summary: 'a sample grid (PNG) from a checkpoint' },
  progressive: {
    run: progressiveCommand,
    usage: PROGRESSIVE_USAGE,
    summary: 'progressive generation: x̂₀ over the reverse process',
  },
  interpolate: {
    run: interpolateCommand,
    usage: INTERPOLATE_USAGE,
    summary: 'interpolate two dataset images through q(x_t|x_0)',
  },
  'shared-latent': {
    run: sharedLatentCommand,
    usage: SHARED_LATENT_USAGE,
    summary: 'continuations of chains split at x_t (Fig. 7)',
  },
  eval: { run: evalCommand, usage: EVAL_USAGE, summary: 'metrics of a checkpoint (nll, fd, kid, is) as a JSON report' },
  fid: { run: fidCommand, usage: FID_USAGE, summary: 'Fréchet distance of two image folders or .npz statistics' },
  sim: {
    run: simCommand,
    usage: SIM_USAGE,
    summary: 'simulated hosts on this machine (root): a group across shaped links',
  },
  chaos: {
    run: chaosCommand,
    usage: CHAOS_USAGE,
    summary: 'a seeded chaos run on simulated hosts (root): jobs under faults, checked for loss',
  },
  study: {
    run: studyCommand,
    usage: STUDY_USAGE,
    summary: 'the sample-quality study: candidates for a training-time budget, curves and table into docs/',
  },
};

export const USAGE = `Usage: ddpm <command> [options]

Commands:
${Object.entries(COMMANDS)
  .map(([name, c]) => `  ${name.padEnd(15)}${c.summary}`)
  .join('\n')}

Run "ddpm <command> --help" for a command's options.
`;

/** Runs the CLI with the given arguments (without "node ddpm"); resolves to the exit status. */
export async function runCli(argv: readonly string[], io: CliIo, env: CliEnv = { tty: false }): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    io.stdout(USAGE);
    return name === undefined ? 2 : 0;
  }
  const command = COMMANDS[name];
  if (command === undefined) {
    io.stderr(`ddpm: unknown command ${JSON.stringify(name)}\n\n${USAGE}`);
    return 2;
  }
  const usage = typeof command.usage === 'string' ? command.usage : command.usage(rest);
  // Every command's --help, in one place: its usage text (derived from the settings tables where
  // the command takes job settings).
  if (rest.includes('--help') || rest.includes('-h')) {
    io.stdout(usage);
    return 0;
  }
  try {
    return await command.run(rest, io, env);
  } catch (err) {
    if (err instanceof CliUsageError) {
      io.stderr(`ddpm ${name}: ${err.message}\n\n${usage}`);
      return 2;
    }
    if (err instanceof CliInterrupted) {
      io.stderr(`ddpm ${name}: ${err.message}\n`);
      return 130;
    }
    if (codedErrorOf(err) !== undefined) {
      // Our own errors (bad config, bad data, corrupt checkpoint...): the message says it all.
      io.stderr(`ddpm ${name}: ${(err as Error).message}\n`);
      return 1;
    }
    throw err;
  }
}
