/**
 * `ddpm train`: trains a model with the engine, checkpointing to --out; Ctrl-C saves a checkpoint
 * and stops, `--resume` continues the run.
 */
import { currentBackend, initBackend } from '@ddpm/backend';
import { BETA_SCHEDULE_KINDS, LOSS_TYPES, MEAN_TYPES, VARIANCE_TYPES } from '@ddpm/diffusion';
import { type TrainConfigInput, Trainer, encodePng, listCheckpoints, resolveTrainConfig, sampleGrid } from '@ddpm/engine';
import { joinKey } from '@ddpm/storage';
import { PRESET_NAMES } from '@ddpm/unet';

import { parseChoice, parseCommandArgs, parseInteger, parseNumber } from '../args';
import { type CliIo, CliUsageError } from '../cli-io';
import { ProgressBar, formatDuration, lazyProgress } from '../progress';
import { runLocation } from '../run-location';

export const TRAIN_USAGE = `Usage: ddpm train --dataset SPEC --preset NAME --steps N --out DIR [options]

Trains a DDPM (Algorithm 1) and writes checkpoints to DIR (a directory, file:// or s3:// URL).
Ctrl-C finishes the current step, saves a checkpoint and stops; --resume continues.

  --dataset SPEC          fashion-mnist[?split=test] | mnist:DIR | idx:FILE | cifar10:DIR |
                          folder:DIR[?size=64&channels=3] | procedural:shapes[?size=N]
  --preset NAME           ${PRESET_NAMES.join(' | ')}
  --steps N               total optimizer steps of the run
  --out DIR               where checkpoints and samples go
  --resume                continue the run in DIR from its newest valid checkpoint
  --batch B               images per step (default 128)
  --accumulation K        micro-batches per step (default 1)
  --lr X                  peak learning rate (default 2e-4)
  --warmup N              linear warm-up steps (default 5000)
  --grad-clip X           global-norm clip, 0 = off (default 1)
  --ema-decay D           EMA decay (default 0.9999)
  --ema-warmup            TensorFlow's num_updates EMA warm-up (for short runs)
  --dropout P             override the preset's dropout
  --schedule KIND         ${BETA_SCHEDULE_KINDS.join(' | ')} (default linear)
  --timesteps T           diffusion steps (default 1000)
  --mean TYPE             ${MEAN_TYPES.join(' | ')} (default epsilon)
  --variance TYPE         ${VARIANCE_TYPES.join(' | ')} (default fixedlarge)
  --loss TYPE             ${LOSS_TYPES.join(' | ')} (default mse = L_simple)
  --checkpoint-every N    steps between checkpoints (default 1000)
  --keep N                checkpoints kept (default 3)
  --seed S                run seed (default 0)
  --no-flip               no random horizontal flips
  --sample-count N        write an N-image EMA sample grid at the end (default 0)
  --sample-steps S        sampling steps for that grid (default: all T)
`;

export async function trainCommand(argv: readonly string[], io: CliIo, env: { tty: boolean; signal?: AbortSignal } = { tty: false }): Promise<number> {
  const { values, positionals } = parseCommandArgs(argv, {
    dataset: { type: 'string' },
    preset: { type: 'string' },
    steps: { type: 'string' },
    out: { type: 'string' },
    resume: { type: 'boolean' },
    batch: { type: 'string' },
    accumulation: { type: 'string' },
    lr: { type: 'string' },
    warmup: { type: 'string' },
    'grad-clip': { type: 'string' },
    'ema-decay': { type: 'string' },
    'ema-warmup': { type: 'boolean' },
    dropout: { type: 'string' },
    schedule: { type: 'string' },
    timesteps: { type: 'string' },
    mean: { type: 'string' },
    variance: { type: 'string' },
    loss: { type: 'string' },
    'checkpoint-every': { type: 'string' },
    keep: { type: 'string' },
    seed: { type: 'string' },
    'no-flip': { type: 'boolean' },
    'sample-count': { type: 'string' },
    'sample-steps': { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  });
  if (values['help'] === true) {
    io.stdout(TRAIN_USAGE);
    return 0;
  }
  if (positionals.length > 0) throw new CliUsageError(`unexpected argument ${JSON.stringify(positionals[0])}`);
  for (const required of ['dataset', 'steps', 'out']) {
    if (values[required] === undefined) throw new CliUsageError(`--${required} is required`);
  }
  const input: TrainConfigInput = {
    dataset: String(values['dataset']),
    model: {
      preset: parseChoice('preset', values['preset'], PRESET_NAMES, 'tiny32'),
      ...(values['dropout'] !== undefined ? { overrides: { dropout: parseNumber('dropout', values['dropout'], 0) } } : {}),
    },
    diffusion: {
      schedule: { kind: parseChoice('schedule', values['schedule'], BETA_SCHEDULE_KINDS, 'linear'), numTimesteps: parseInteger('timesteps', values['timesteps'], 1000, { min: 1, max: 100_000 }) },
      meanType: parseChoice('mean', values['mean'], MEAN_TYPES, 'epsilon'),
      varianceType: parseChoice('variance', values['variance'], VARIANCE_TYPES, 'fixedlarge'),
      lossType: parseChoice('loss', values['loss'], LOSS_TYPES, 'mse'),
    },
    optimizer: {
      learningRate: parseNumber('lr', values['lr'], 2e-4),
      warmupSteps: parseInteger('warmup', values['warmup'], 5000, { min: 0 }),
      gradClipNorm: parseNumber('grad-clip', values['grad-clip'], 1),
    },
    ema: { decay: parseNumber('ema-decay', values['ema-decay'], 0.9999), warmup: values['ema-warmup'] === true },
    batchSize: parseInteger('batch', values['batch'], 128, { min: 1 }),
    accumulation: parseInteger('accumulation', values['accumulation'], 1, { min: 1 }),
    steps: parseInteger('steps', values['steps'], 1, { min: 1 }),
    checkpointEvery: parseInteger('checkpoint-every', values['checkpoint-every'], 1000, { min: 1 }),
    keepCheckpoints: parseInteger('keep', values['keep'], 3, { min: 1 }),
    seed: parseInteger('seed', values['seed'], 0, { min: 0 }),
    randomFlip: values['no-flip'] !== true,
  };
  resolveTrainConfig(input); // configuration errors before any work
  const sampleCount = parseInteger('sample-count', values['sample-count'], 0, { min: 0, max: 1024 });
  const sampleSteps = values['sample-steps'] === undefined ? undefined : parseInteger('sample-steps', values['sample-steps'], 0, { min: 1 });
  const { store, prefix } = runLocation(String(values['out']));
  const existing = await listCheckpoints(store, prefix);
  if (existing.length > 0 && values['resume'] !== true) {
    throw new CliUsageError(`${store.url} already holds a run (newest checkpoint: step ${existing[0]!.step}); pass --resume to continue it or choose another --out`);
  }
  const backend = await initBackend();
  const trainer = await Trainer.open(input, {
    store,
    prefix,
    resume: values['resume'] === true,
    backendName: backend.name,
    onWarning: (w) => io.stderr(`warning: ${w}\n`),
  });
  const started = Date.now();
  try {
    io.stderr(
      `${trainer.resumedFrom ? `resuming from step ${trainer.resumedFrom.step}` : 'starting'}: ${trainer.config.model.preset} ` +
        `(${trainer.unet.numParams.toLocaleString('en-US')} parameters) on ${trainer.dataset.name} (${trainer.dataset.size} images), ` +
        `batch ${trainer.config.batchSize}, backend ${currentBackend()?.name}, checkpoints in ${store.url}\n`,
    );
    const bar = new ProgressBar('train', trainer.config.steps, io.stderr, env.tty, trainer.step);
    const result = await trainer.run({
      ...(env.signal ? { signal: env.signal } : {}),
      onStep: (s) =>
        bar.update(s.step, {
          'img/s': s.imagesPerSecond.toFixed(1),
          loss: s.loss.toFixed(4),
          lr: s.learningRate.toExponential(1),
        }),
      onCheckpoint: (ref, reason) => {
        if (reason !== 'periodic' || !env.tty) io.stderr(`${env.tty ? '\n' : ''}checkpoint (${reason}) at step ${ref.step}: ${ref.url}\n`);
      },
    });
    bar.finish();
    const summary: Record<string, unknown> = {
      status: result.status,
      step: result.step,
      checkpoint: result.checkpoint?.url,
      wallSeconds: Math.round((Date.now() - started) / 1000),
    };
    if (result.status === 'stopped') {
      io.stderr(`stopped at step ${result.step} after ${formatDuration((Date.now() - started) / 1000)}; continue with --resume\n`);
    } else if (sampleCount > 0) {
      io.stderr(`sampling ${sampleCount} images from the EMA model...\n`);
      const { picture, seed } = await sampleGrid(trainer.ema, trainer.diffusion, sampleCount, {
        seed: 0,
        ...(sampleSteps ? { sampler: { kind: 'ancestral', steps: sampleSteps } } : {}),
        onProgress: lazyProgress('sample', io.stderr, env.tty),
      });
      const key = joinKey(prefix, 'samples', `step-${String(result.step).padStart(9, '0')}.png`);
      await store.put(key, await encodePng(picture, picture.width < 256 ? 2 : 1));
      summary['samples'] = store.urlOf(key);
      summary['sampleSeed'] = seed;
      io.stderr(`sample grid: ${store.urlOf(key)}\n`);
    }
    io.stdout(JSON.stringify(summary) + '\n');
    return 0;
  } finally {
    trainer.dispose();
  }
}
