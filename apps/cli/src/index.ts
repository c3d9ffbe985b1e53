/**
 * The `ddpm` command-line tool: one function per command, dispatched by {@link runCli}, so the
 * commands can be tested in-process with captured output.
 */
import { type CliIo, CliUsageError } from './cli-io';
import { BENCH_USAGE, benchCommand } from './commands/bench';
import { INFO_USAGE, infoCommand } from './commands/info';
import { SCHEDULE_USAGE, scheduleCommand } from './commands/schedule';

export { type CliIo, CliUsageError } from './cli-io';

type Command = (argv: readonly string[], io: CliIo) => Promise<number>;

const COMMANDS: Record<string, { run: Command; usage: string; summary: string }> = {
  schedule: { run: scheduleCommand, usage: SCHEDULE_USAGE, summary: 'print forward-process coefficients of a beta schedule' },
  info: { run: infoCommand, usage: INFO_USAGE, summary: 'describe a U-Net preset: parameters, FLOPs, levels' },
  bench: { run: benchCommand, usage: BENCH_USAGE, summary: 'benchmarks (JSON, ratios measured in the same run)' },
};

export const USAGE = `Usage: ddpm <command> [options]

Commands:
${Object.entries(COMMANDS)
  .map(([name, c]) => `  ${name.padEnd(12)}${c.summary}`)
  .join('\n')}

Run "ddpm <command> --help" for a command's options.
`;

/** Runs the CLI with the given arguments (without "node ddpm"); resolves to the exit status. */
export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
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
  try {
    return await command.run(rest, io);
  } catch (err) {
    if (err instanceof CliUsageError) {
      io.stderr(`ddpm ${name}: ${err.message}\n\n${command.usage}`);
      return 2;
    }
    const code = (err as { code?: unknown }).code;
    if (typeof code === 'string' && code.startsWith('DDPM_')) {
      io.stderr(`ddpm ${name}: ${(err as Error).message}\n`);
      return 1;
    }
    throw err;
  }
}
