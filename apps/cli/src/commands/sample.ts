/**
 * Sampling commands on a trained run (EMA weights unless --no-ema): `ddpm sample` (a grid, or
 * with --kind progressive a strip), `ddpm progressive` (x̂₀ over time), `ddpm interpolate`
 * (Sec. 4.4), `ddpm shared-latent` (Fig. 7). Each writes a PNG and a JSON file of metadata beside
 * it. The sample and progressive settings are the sample jobs' (one table in @ddpm/settings).
 */
import * as path from 'node:path';

import {
  PRETRAINED_MODELS,
  SAMPLE_SETTINGS,
  type SampleRequest,
  assertRequest,
  resolveSample,
  valuesOf,
} from '@ddpm/settings';
import { openDataset, readForModel, withAbsoluteLocation } from '@ddpm/data';
import {
  type LoadedModel,
  type Picture,
  interpolationFigure,
  loadModelFromCheckpoint,
  loadPretrainedModel,
  renderSamples,
  savePicture,
  sharedLatentFigure,
} from '@ddpm/engine';
import { FileStore } from '@ddpm/storage';
import * as tf from '@tensorflow/tfjs-core';

import { type OptionSpec, parseCommandArgs, parseInteger, parseIntegerList } from '../args';
import { type CliIo, CliUsageError } from '../cli-io';
import { lazyProgress } from '../progress';
import { runLocation } from '../run-location';
import { type FlagScope, type FlagValues, flagOptions, flagUsage, requestFromFlags } from '../settings-flags';
import { startTensors } from '../tensors';

/** Every local sample setting; `ddpm progressive` fixes the kind. */
const SAMPLE_FLAGS: FlagScope = { jobs: false };
const PROGRESSIVE_FLAGS: FlagScope = {
  jobs: false,
  only: Object.keys(SAMPLE_SETTINGS).filter((name) => name !== 'kind'),
};
/** What interpolation and shared-latent figures share with sampling: the noise seed and the weights. */
const FIGURE_FLAGS: FlagScope = { jobs: false, only: ['seed', 'ema', 'step'] };

const COMMON: OptionSpec = {
  checkpoint: { type: 'string' },
  pretrained: { type: 'string' },
  out: { type: 'string' },
  scale: { type: 'string' },
};

const COMMON_HELP = `  --checkpoint DIR          a run directory (newest valid checkpoint, or --step) or DIR/checkpoints/step-NNNNNNNNN
  --pretrained NAME         instead of --checkpoint: a reference model shipped with the service (${PRETRAINED_MODELS.join(' | ')}; EMA weights)
  --out FILE.png            where to write the picture (FILE.json gets the metadata)
  --scale K                 enlarge the PNG K times (nearest neighbour; default 2 below 256 pixels)
`;

export const SAMPLE_USAGE = `Usage: ddpm sample (--checkpoint DIR | --pretrained NAME) --out grid.png [options]
${COMMON_HELP}  --batch B                 images per network batch (default 16)
${flagUsage(SAMPLE_SETTINGS, SAMPLE_FLAGS)}
`;
export const PROGRESSIVE_USAGE = `Usage: ddpm progressive --checkpoint DIR --out strip.png [options]   (= ddpm sample --kind progressive)
${COMMON_HELP}${flagUsage(SAMPLE_SETTINGS, PROGRESSIVE_FLAGS)}
`;
export const INTERPOLATE_USAGE = `Usage: ddpm interpolate --checkpoint DIR [--dataset SPEC] [--a I --b J] [--t 250,500,750] [--lambdas 9] --out fig.png
${COMMON_HELP}  --dataset SPEC            where the two source images come from (default: the run's dataset, test split when it has one)
  --a I, --b J              indices of the two source images (default 0 and 1)
  --t LIST                  diffusion steps before mixing, one row each (default T/4, T/2, 3T/4)
  --lambdas N               mixing weights per row, evenly from 0 to 1 (default 9)
${flagUsage(SAMPLE_SETTINGS, FIGURE_FLAGS)}
`;
export const SHARED_LATENT_USAGE = `Usage: ddpm shared-latent --checkpoint DIR [--splits 1000,750,500,250] [--n 6] --out fig.png
${COMMON_HELP}  --splits LIST             latents x_t to split the chain at, one row each (default T, 3T/4, T/2, T/4)
  --n N                     continuations per split (default 6)
${flagUsage(SAMPLE_SETTINGS, FIGURE_FLAGS)}
`;

interface Loaded {
  readonly loaded: LoadedModel;
  readonly out: string;
  readonly scale: number | undefined;
}

/** Loads the checkpoint the flags name (the step from --step or from the path). */
async function load(values: FlagValues, request: SampleRequest, io: CliIo): Promise<Loaded> {
  if ((values['checkpoint'] === undefined) === (values['pretrained'] === undefined))
    throw new CliUsageError('give --checkpoint DIR (a run) or --pretrained NAME (a shipped model)');
  if (values['out'] === undefined) throw new CliUsageError('--out is required');
  const out = path.resolve(String(values['out']));
  if (!out.toLowerCase().endsWith('.png'))
    throw new CliUsageError(`--out must name a .png file, got ${JSON.stringify(values['out'])}`);
  const scale =
    values['scale'] === undefined ? undefined : parseInteger('scale', values['scale'], 1, { min: 1, max: 16 });
  if (values['pretrained'] !== undefined) {
    const name = String(values['pretrained']);
    if (!(PRETRAINED_MODELS as readonly string[]).includes(name))
      throw new CliUsageError(
        `--pretrained must be one of ${PRETRAINED_MODELS.join(', ')}, got ${JSON.stringify(name)}`,
      );
    if (request.step !== undefined || request.ema === false)
      throw new CliUsageError(`--step and --no-ema apply to a run's checkpoints; ${name} ships one set of EMA weights`);
    await startTensors();
    const loaded = loadPretrainedModel(name);
    io.stderr(`pretrained ${name}: EMA weights of step ${loaded.ref.step} (sha256 verified)\n`);
    return { loaded, out, scale };
  }
  await startTensors();
  const location = runLocation(String(values['checkpoint']));
  if (location.step !== undefined && request.step !== undefined && location.step !== request.step) {
    throw new CliUsageError(`--checkpoint names step ${location.step} and --step ${request.step}; give one`);
  }
  const step = location.step ?? request.step;
  const loaded = await loadModelFromCheckpoint(location.store, location.prefix, {
    ema: request.ema ?? true,
    ...(step !== undefined ? { step } : {}),
  });
  for (const s of loaded.skipped) io.stderr(`warning: ${s}; using an older checkpoint\n`);
  io.stderr(`checkpoint step ${loaded.ref.step} (${loaded.ema ? 'EMA' : 'raw'} weights): ${loaded.ref.url}\n`);
  return { loaded, out, scale };
}

async function write(io: CliIo, l: Loaded, picture: Picture, metadata: Record<string, unknown>): Promise<void> {
  const store = new FileStore(path.dirname(l.out));
  const described = { ...metadata, checkpoint: l.loaded.ref.url, step: l.loaded.ref.step, ema: l.loaded.ema };
  await savePicture(store, path.basename(l.out).replace(/\.png$/i, ''), picture, described, l.scale);
  await store.close();
  io.stderr(`wrote ${l.out}\n`);
  io.stdout(JSON.stringify({ png: l.out, ...described, width: picture.width, height: picture.height }) + '\n');
}

/** `ddpm sample` and `ddpm progressive`: a resolved sample config, rendered by the engine as sample jobs are. */
async function sampleWith(
  argv: readonly string[],
  io: CliIo,
  env: { tty: boolean; signal?: AbortSignal },
  scope: FlagScope,
  usage: string,
  fixed: Partial<SampleRequest>,
): Promise<number> {
  const { values } = parseCommandArgs(argv, {
    ...COMMON,
    ...flagOptions(SAMPLE_SETTINGS, scope),
    ...(scope.only ? {} : { batch: { type: 'string' } }),
  });
  const request = { ...requestFromFlags(SAMPLE_SETTINGS, values, scope), ...fixed };
  assertRequest(SAMPLE_SETTINGS, request, 'sample');
  const batch = parseInteger('batch', values['batch'], 16, { min: 1, max: 1024 });
  const l = await load(values, request, io);
  try {
    const config = resolveSample(request, l.loaded.diffusion.numTimesteps);
    const { picture, metadata } = await renderSamples(l.loaded.model, l.loaded.diffusion, config, {
      batch,
      ...(env.signal ? { signal: env.signal } : {}),
      onProgress: lazyProgress(config.kind === 'grid' ? 'sample' : 'progressive', io.stderr, env.tty),
    });
    await write(io, l, picture, metadata);
    return 0;
  } finally {
    l.loaded.model.dispose();
  }
}

export async function sampleCommand(
  argv: readonly string[],
  io: CliIo,
  env: { tty: boolean; signal?: AbortSignal } = { tty: false },
): Promise<number> {
  return sampleWith(argv, io, env, SAMPLE_FLAGS, SAMPLE_USAGE, {});
}

export async function progressiveCommand(
  argv: readonly string[],
  io: CliIo,
  env: { tty: boolean; signal?: AbortSignal } = { tty: false },
): Promise<number> {
  return sampleWith(argv, io, env, PROGRESSIVE_FLAGS, PROGRESSIVE_USAGE, { kind: 'progressive' });
}

/** The figure commands' seed and weights, from the same rows as sampling's. */
function figureRequest(values: FlagValues): { request: SampleRequest; seed: number } {
  const request = requestFromFlags(SAMPLE_SETTINGS, values, FIGURE_FLAGS);
  assertRequest(SAMPLE_SETTINGS, request, 'sample');
  return { request, seed: valuesOf(SAMPLE_SETTINGS, request).seed };
}

export async function interpolateCommand(
  argv: readonly string[],
  io: CliIo,
  env: { tty: boolean; signal?: AbortSignal } = { tty: false },
): Promise<number> {
  const { values } = parseCommandArgs(argv, {
    ...COMMON,
    ...flagOptions(SAMPLE_SETTINGS, FIGURE_FLAGS),
    dataset: { type: 'string' },
    a: { type: 'string' },
    b: { type: 'string' },
    t: { type: 'string' },
    lambdas: { type: 'string' },
  });
  const { request, seed } = figureRequest(values);
  const a = parseInteger('a', values['a'], 0, { min: 0 });
  const b = parseInteger('b', values['b'], 1, { min: 0 });
  const lambdaCount = parseInteger('lambdas', values['lambdas'], 9, { min: 2, max: 64 });
  const l = await load(values, request, io);
  try {
    const T = l.loaded.diffusion.numTimesteps;
    const ts = parseIntegerList('t', values['t']) ?? [Math.round(T / 4), Math.round(T / 2), Math.round((3 * T) / 4)];
    for (const t of ts) if (t < 0 || t > T) throw new CliUsageError(`--t: ${t} is outside [0, ${T}]`);
    const { imageSize, inChannels } = l.loaded.model.config;
    const runDataset = l.loaded.config.dataset;
    const spec =
      values['dataset'] === undefined
        ? testSplitOf(runDataset)
        : withAbsoluteLocation(String(values['dataset']), process.cwd());
    const dataset = await openDataset(spec, { imageSize, channels: inChannels === 1 ? 1 : 3 });
    const pixels = await readForModel(dataset, [a, b], imageSize);
    const per = imageSize * imageSize * inChannels;
    const sourceA = tf.tensor4d(pixels.subarray(0, per), [1, imageSize, imageSize, inChannels]);
    const sourceB = tf.tensor4d(pixels.subarray(per), [1, imageSize, imageSize, inChannels]);
    const lambdas = Array.from({ length: lambdaCount }, (_, i) => i / (lambdaCount - 1));
    try {
      const { picture } = await interpolationFigure(l.loaded.model, l.loaded.diffusion, sourceA, sourceB, ts, {
        seed,
        lambdas,
        ...(env.signal ? { signal: env.signal } : {}),
      });
      await write(io, l, picture, { kind: 'interpolation', dataset: dataset.name, a, b, t: ts, lambdas, seed });
    } finally {
      tf.dispose([sourceA, sourceB]);
    }
    return 0;
  } finally {
    l.loaded.model.dispose();
  }
}

export async function sharedLatentCommand(
  argv: readonly string[],
  io: CliIo,
  env: { tty: boolean; signal?: AbortSignal } = { tty: false },
): Promise<number> {
  const { values } = parseCommandArgs(argv, {
    ...COMMON,
    ...flagOptions(SAMPLE_SETTINGS, FIGURE_FLAGS),
    splits: { type: 'string' },
    n: { type: 'string' },
  });
  const { request, seed } = figureRequest(values);
  const n = parseInteger('n', values['n'], 6, { min: 1, max: 64 });
  const l = await load(values, request, io);
  try {
    const T = l.loaded.diffusion.numTimesteps;
    const splits = parseIntegerList('splits', values['splits']) ?? [
      T,
      Math.round((3 * T) / 4),
      Math.round(T / 2),
      Math.round(T / 4),
    ];
    for (const t of splits) if (t < 0 || t > T) throw new CliUsageError(`--splits: ${t} is outside [0, ${T}]`);
    const { picture } = await sharedLatentFigure(l.loaded.model, l.loaded.diffusion, splits, n, {
      seed,
      ...(env.signal ? { signal: env.signal } : {}),
    });
    await write(io, l, picture, { kind: 'shared-latent', splits, continuations: n, seed });
    return 0;
  } finally {
    l.loaded.model.dispose();
  }
}

/** The run's dataset with the test split selected where the kind has one. */
function testSplitOf(spec: string): string {
  if (/^(fashion-mnist|mnist|cifar10)(:|\?|$)/.test(spec) && !/[?&]split=/.test(spec))
    return spec.includes('?') ? `${spec}&split=test` : `${spec}?split=test`;
  return spec;
}
