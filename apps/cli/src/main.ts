/** The `ddpm` executable: wires {@link runCli} to the process. */
import { runCli } from './index';

// Ctrl-C (or SIGTERM) asks long commands to stop cleanly (train saves a checkpoint); a second
// one exits at once.
const controller = new AbortController();
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (controller.signal.aborted) process.exit(130);
    process.stderr.write(`\n${signal}: finishing the current step and saving a checkpoint (again to exit at once)\n`);
    controller.abort(new Error(`${signal} received`));
  });
}

// A reader that goes away (`ddpm info unet | head`) ends the output, not in a crash: the rest of
// what was to be printed has nobody to read it.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw err;
});

runCli(
  process.argv.slice(2),
  {
    stdout: (text) => process.stdout.write(text),
    stderr: (text) => process.stderr.write(text),
  },
  { tty: process.stderr.isTTY === true, signal: controller.signal },
).then(
  (status) => {
    process.exitCode = status;
  },
  (err: unknown) => {
    process.stderr.write(
      `ddpm: unexpected error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
    );
    process.exitCode = 1;
  },
);
