/**
 * `ddpm train`: a training job on this machine, with the engine's runTrainJob (the same code the
 * service's workers run) and checkpoints in --out; Ctrl-C saves a checkpoint and stops, `--resume`
 * continues the run. Its flags are the settings table's (@ddpm/settings), as `ddpm jobs submit train`'s.
 */
import { currentBackend } from '@ddpm/kernels';
import {
  type ServiceLimits,
  TRAIN_SETTINGS,
  assertRequest,
  checkBudgets,
  fitAccumulation,
  type TrainJobConfig,
  resolveTrainJob,
} from '@ddpm/settings';
import { type Trainer, listCheckpoints, runTrainJob } from '@ddpm/engine';
import { DEFAULT_LIMITS, LIMIT_NAMES, LIMIT_VARIABLES, envInteger } from '@ddpm/service';
import { joinKey } from '@ddpm/storage';

import { parseCommandArgs } from '../args';
import { type CliIo, CliUsageError } from '../cli-io';
import { ProgressBar, formatDuration, lazyProgress } from '../progress';
import { runLocation } from '../run-location';
import { flagOptions, flagUsage, requestFromFlags } from '../settings-flags';
import { startTensors } from '../tensors';

const LOCAL = { jobs: false } as const;

export const TRAIN_USAGE = `Usage: ddpm train --dataset SPEC --preset NAME --steps N --out DIR [options]

Trains a DDPM (Algorithm 1) and writes checkpoints to DIR (a directory, file:// or s3:// URL).
Ctrl-C finishes the current step, saves a checkpoint and stops; --resume continues. The settings
are the service's (ddpm jobs submit train takes the same flags; "ddpm settings train" lists them).

  --out DIR                 where checkpoints and samples go
  --resume                  continue the run in DIR from its newest valid checkpoint (its stored
                            configuration is kept; only --steps, --checkpoint-every and --keep change)
${flagUsage(TRAIN_SETTINGS, LOCAL)}
`;

export async function trainCommand(
  argv: readonly string[],
  io: CliIo,
  env: { tty: boolean; signal?: AbortSignal } = { tty: false },
): Promise<number> {
  const { values, config } = trainConfigOf(argv, io);
  const { store, prefix } = runLocation(String(values['out']));
  const existing = await listCheckpoints(store, prefix);
  if (existing.length > 0 && values['resume'] !== true) {
    throw new CliUsageError(
      `${store.url} already holds a run (newest checkpoint: step ${existing[0]!.step}); pass --resume to continue it or choose another --out`,
    );
  }
  const backend = await startTensors();
  const started = Date.now();
  const progress = trainProgress(io, env.tty);
  const outcome = await runTrainJob(config, {
    store,
    prefix,
    resume: values['resume'] === true,
    backendName: backend.name,
    ...(env.signal ? { signal: env.signal } : {}),
    // The final grid and those drawn during training (sampleEvery): one per step, named by it.
    gridKey: (step) => joinKey(prefix, 'samples', `step-${String(step).padStart(9, '0')}`),
    ...progress.hooks,
  });
  progress.finish();
  if (outcome.status === 'stopped') {
    io.stderr(
      `stopped at step ${outcome.step} after ${formatDuration((Date.now() - started) / 1000)}; continue with --resume\n`,
    );
  }
  io.stdout(
    JSON.stringify({
      status: outcome.status,
      step: outcome.step,
      checkpoint: outcome.checkpoint?.url,
      wallSeconds: Math.round((Date.now() - started) / 1000),
      ...(outcome.grid ? { samples: outcome.grid.url, sampleSeed: outcome.grid.seed } : {}),
      ...(outcome.resumedFrom ? { resumedFrom: outcome.resumedFrom } : {}),
    }) + '\n',
  );
  return 0;
}

/** The flags and the run's configuration they give, checked before any work; says what it adjusted. */
function trainConfigOf(
  argv: readonly string[],
  io: CliIo,
): { values: Record<string, string | boolean | undefined>; config: TrainJobConfig } {
  const { values, positionals } = parseCommandArgs(argv, {
    ...flagOptions(TRAIN_SETTINGS, LOCAL),
    out: { type: 'string' },
    resume: { type: 'boolean' },
  });
  if (positionals.length > 0) throw new CliUsageError(`unexpected argument ${JSON.stringify(positionals[0])}`);
  const request = requestFromFlags(TRAIN_SETTINGS, values, LOCAL);
  if (values['out'] === undefined) throw new CliUsageError('--out is required');
  assertRequest(TRAIN_SETTINGS, request, 'train');
  // Configuration errors before any work; a batch too large for one step's memory is split into
  // micro-batches (accumulation) when the request leaves that open, as the API does.
  const { env: variable, default: fallback } = LIMIT_VARIABLES.maxStepMemoryMb;
  const stepMemoryMb = envInteger(
    process.env,
    variable,
    fallback,
    1,
    Number.MAX_SAFE_INTEGER,
    (message) => new CliUsageError(message),
  );
  const config = fitAccumulation(resolveTrainJob(request), request, stepMemoryMb, LIMIT_NAMES);
  // Of the server's budgets only step memory applies here: the others protect a shared service.
  const unbounded = Object.fromEntries(
    Object.keys(DEFAULT_LIMITS).map((k) => [k, Number.MAX_SAFE_INTEGER]),
  ) as unknown as ServiceLimits;
  checkBudgets({ type: 'train', config }, { ...unbounded, maxStepMemoryMb: stepMemoryMb }, LIMIT_NAMES);
  for (const a of config.adjustments ?? []) io.stderr(`${a.setting} ${a.requested} → ${a.chosen}: ${a.reason}\n`);
  return { values, config };
}

type TrainHooks = Pick<Parameters<typeof runTrainJob>[1], 'onLog' | 'onStart' | 'onStep' | 'onSampling'>;

/**
 * A local run's progress on stderr: a bar of its steps (with a time budget, of its training time
 * against the budget), the engine's log lines around it, and a bar for the final samples.
 */
function trainProgress(io: CliIo, tty: boolean): { hooks: TrainHooks; finish: () => void } {
  let bar: ProgressBar | undefined;
  let running: Trainer | undefined;
  const hooks: TrainHooks = {
    onLog: (line) => {
      // Periodic checkpoints would break a progress bar's line; the others are worth a line.
      if (bar && tty && /^checkpoint \(periodic\)/.test(line)) return;
      io.stderr(`${bar && tty ? '\n' : ''}${line}\n`);
    },
    onStart: (trainer) => {
      running = trainer;
      // With a time budget the bar counts training time against it (`steps` may be far off).
      const budget = trainer.config.budgetMinutes;
      bar =
        budget === undefined
          ? new ProgressBar('train', trainer.config.steps, io.stderr, tty, trainer.step)
          : new ProgressBar(
              'train (time budget)',
              budget * 60,
              io.stderr,
              tty,
              trainer.trainingSeconds,
              formatDuration,
            );
      io.stderr(`backend ${currentBackend()?.name}\n`);
    },
    onStep: (s) =>
      bar?.update(
        running?.config.budgetMinutes === undefined
          ? s.step
          : Math.min(running.trainingSeconds, running.config.budgetMinutes * 60),
        {
          ...(running?.config.budgetMinutes === undefined ? {} : { step: String(s.step) }),
          'img/s': s.imagesPerSecond.toFixed(1),
          loss: s.loss.toFixed(4),
          lr: s.learningRate.toExponential(1),
        },
      ),
    onSampling: lazyProgress('sample', io.stderr, tty),
  };
  return { hooks, finish: () => bar?.finish() };
}
