/**
 * The `ddpm` command-line tool: one function per command, dispatched by {@link runCli}, so the
 * commands can be tested in-process with captured output.
 */
import { codedErrorOf } from '@ddpm/core';

import { type CliEnv, CliInterrupted, type CliIo, CliUsageError, type CommandEntry } from './cli-io';
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
import { SETTINGS_USAGE, settingsCommand } from './commands/settings';
import { TRAIN_USAGE, trainCommand } from './commands/train';

export { type CliEnv, CliInterrupted, type CliIo, CliUsageError } from './cli-io';

/** The user's commands. */
const COMMANDS: Record<string, CommandEntry> = {
  schedule: {
    run: scheduleCommand,
    usage: SCHEDULE_USAGE,
    summary: 'print forward-process coefficients of a beta schedule',
  },
  info: { run: infoCommand, usage: INFO_USAGE, summary: 'describe a U-Net preset: parameters, FLOPs, levels' },
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
};

/**
 * The lab's commands (benchmarks, the quality study, the service demo, simulated hosts, chaos),
 * where the lab is installed: the repository's tools/lab, loaded by a name computed at run time so
 * that the CLI neither builds against it nor needs it; a published CLI has none.
 */
async function labCommands(): Promise<Readonly<Record<string, CommandEntry>>> {
  const lab = ['@ddpm', 'lab'].join('/');
  try {
    return ((await import(lab)) as { LAB_COMMANDS: Readonly<Record<string, CommandEntry>> }).LAB_COMMANDS;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'MODULE_NOT_FOUND' && String(err).includes(lab)) return {};
    throw err;
  }
}

function usageOf(lab: Readonly<Record<string, CommandEntry>>): string {
  const list = (commands: Readonly<Record<string, CommandEntry>>): string =>
    Object.entries(commands)
      .map(([name, c]) => `  ${name.padEnd(15)}${c.summary}`)
      .join('\n');
  const labPart = Object.keys(lab).length > 0 ? `\n\nThe lab's commands (tools/lab):\n${list(lab)}` : '';
  return `Usage: ddpm <command> [options]\n\nCommands:\n${list(COMMANDS)}${labPart}\n\nRun "ddpm <command> --help" for a command's options.\n`;
}

/** Runs the CLI with the given arguments (without "node ddpm"); resolves to the exit status. */
export async function runCli(argv: readonly string[], io: CliIo, env: CliEnv = { tty: false }): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    io.stdout(usageOf(await labCommands()));
    return name === undefined ? 2 : 0;
  }
  // The lab (benchmarks and all they load) only for its own commands, the usage and a mistake.
  const own = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  const lab = own !== undefined ? {} : await labCommands();
  const command = own ?? (Object.hasOwn(lab, name) ? lab[name] : undefined);
  if (command === undefined) {
    io.stderr(`ddpm: unknown command ${JSON.stringify(name)}\n\n${usageOf(lab)}`);
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
