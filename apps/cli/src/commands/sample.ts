/**
 * Sampling commands on a trained run (EMA weights unless --no-ema):
 * `ddpm sample` (grid), `ddpm progressive` (x̂_0 over time), `ddpm interpolate` (Sec. 4.4),
 * `ddpm shared-latent` (Fig. 7). Each writes a PNG and a JSON file of metadata beside it.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';

import { initBackend } from '@ddpm/backend';
import { openDataset, readForModel } from '@ddpm/data';
import {
  type LoadedModel,
  type Picture,
  type SamplerSpec,
  encodePng,
  interpolationFigure,
  loadModelFromCheckpoint,
  progressiveStrip,
  sampleGrid,
  sharedLatentFigure,
} from '@ddpm/engine';
import * as tf from '@tensorflow/tfjs-core';

import { type OptionSpec, parseChoice, parseCommandArgs, parseInteger, parseIntegerList, parseNumber } from '../args';
import { type CliIo, CliUsageError } from '../cli-io';
import { lazyProgress } from '../progress';
import { runLocation } from '../run-location';

const COMMON: OptionSpec = {
  checkpoint: { type: 'string' },
  out: { type: 'string' },
  seed: { type: 'string' },
  'no-ema': { type: 'boolean' },
  scale: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
};

const COMMON_HELP = `  --checkpoint DIR   a run directory (newest valid checkpoint) or DIR/checkpoints/step-NNNNNNNNN
  --out FILE.png     where to write the picture (FILE.json gets the metadata)
  --seed S           noise seed (default 0): the same seed gives comparable pictures across checkpoints
  --no-ema           use the raw weights instead of the EMA
  --scale K          enlarge the PNG K times (nearest neighbour; default 2 for small images)
`;

export const SAMPLE_USAGE = `Usage: ddpm sample --checkpoint DIR --n 64 [--steps S] [--sampler ancestral|ddim] [--eta E] --out grid.png
${COMMON_HELP}  --n N              number of samples (default 64)
  --steps S          sampling steps: all T by default; fewer means strided (ancestral) or DDIM steps
  --sampler KIND     ancestral (Algorithm 2, default) | ddim
  --eta E            DDIM's η (default 0)
  --batch B          images per network batch (default 16)
`;
export const PROGRESSIVE_USAGE = `Usage: ddpm progressive --checkpoint DIR --n 4 --every K [--steps S] --out strip.png
${COMMON_HELP}  --n N              chains, one per row (default 4)
  --every K          a frame of x̂_0 every K sampling steps (default: 10 frames)
  --steps S          sampling steps (default all T)
`;
export const INTERPOLATE_USAGE = `Usage: ddpm interpolate --checkpoint DIR [--dataset SPEC] [--a I --b J] [--t 250,500,750] [--lambdas 9] --out fig.png
${COMMON_HELP}  --dataset SPEC     where the two source images come from (default: the run's dataset, test split when it has one)
  --a I, --b J       indices of the two source images (default 0 and 1)
  --t LIST           diffusion steps before mixing, one row each (default T/4, T/2, 3T/4)
  --lambdas N        mixing weights per row, evenly from 0 to 1 (default 9)
`;
export const SHARED_LATENT_USAGE = `Usage: ddpm shared-latent --checkpoint DIR [--splits 1000,750,500,250] [--n 6] --out fig.png
${COMMON_HELP}  --splits LIST      latents x_t to split the chain at, one row each (default T, 3T/4, T/2, T/4)
  --n N              continuations per split (default 6)
`;

interface Loaded {
  readonly loaded: LoadedModel;
  readonly out: string;
  readonly seed: number;
  readonly scale: number | undefined;
}

async function load(values: Record<string, string | boolean | undefined>, io: CliIo): Promise<Loaded> {
  if (values['checkpoint'] === undefined) throw new CliUsageError('--checkpoint is required');
  if (values['out'] === undefined) throw new CliUsageError('--out is required');
  const out = path.resolve(String(values['out']));
  if (!out.toLowerCase().endsWith('.png')) throw new CliUsageError(`--out must name a .png file, got ${JSON.stringify(values['out'])}`);
  const seed = parseInteger('seed', values['seed'], 0, { min: 0 });
  const scale = values['scale'] === undefined ? undefined : parseInteger('scale', values['scale'], 1, { min: 1, max: 16 });
  await initBackend();
  const location = runLocation(String(values['checkpoint']));
  const loaded = await loadModelFromCheckpoint(location.store, location.prefix, {
    ema: values['no-ema'] !== true,
    ...(location.step !== undefined ? { step: location.step } : {}),
  });
  for (const s of loaded.skipped) io.stderr(`warning: ${s}; using an older checkpoint\n`);
  io.stderr(`checkpoint step ${loaded.ref.step} (${loaded.ema ? 'EMA' : 'raw'} weights): ${loaded.ref.url}\n`);
  return { loaded, out, seed, scale };
}

async function write(io: CliIo, l: Loaded, picture: Picture, metadata: Record<string, unknown>): Promise<void> {
  await fs.mkdir(path.dirname(l.out), { recursive: true });
  await fs.writeFile(l.out, await encodePng(picture, l.scale ?? (picture.width < 256 ? 2 : 1)));
  const meta = {
    ...metadata,
    checkpoint: l.loaded.ref.url,
    step: l.loaded.ref.step,
    ema: l.loaded.ema,
    seed: l.seed,
    width: picture.width,
    height: picture.height,
    createdAt: new Date().toISOString(),
  };
  await fs.writeFile(l.out.replace(/\.png$/i, '.json'), JSON.stringify(meta, null, 2) + '\n');
  io.stderr(`wrote ${l.out}\n`);
  io.stdout(JSON.stringify({ png: l.out, ...meta }) + '\n');
}

function samplerOf(values: Record<string, string | boolean | undefined>, T: number): SamplerSpec {
  const kind = parseChoice('sampler', values['sampler'], ['ancestral', 'ddim'] as const, 'ancestral');
  const steps = values['steps'] === undefined ? undefined : parseInteger('steps', values['steps'], T, { min: 1, max: T });
  if (kind === 'ddim') return { kind, steps: steps ?? 50, eta: parseNumber('eta', values['eta'], 0) };
  return steps === undefined ? { kind } : { kind, steps };
}

export async function sampleCommand(argv: readonly string[], io: CliIo, env: { tty: boolean; signal?: AbortSignal } = { tty: false }): Promise<number> {
  const { values } = parseCommandArgs(argv, { ...COMMON, n: { type: 'string' }, steps: { type: 'string' }, sampler: { type: 'string' }, eta: { type: 'string' }, batch: { type: 'string' } });
  if (values['help'] === true) {
    io.stdout(SAMPLE_USAGE);
    return 0;
  }
  const n = parseInteger('n', values['n'], 64, { min: 1, max: 4096 });
  const batch = parseInteger('batch', values['batch'], 16, { min: 1, max: 1024 });
  const l = await load(values, io);
  try {
    const sampler = samplerOf(values, l.loaded.diffusion.numTimesteps);
    const { picture } = await sampleGrid(l.loaded.model, l.loaded.diffusion, n, {
      sampler,
      seed: l.seed,
      batch,
      ...(env.signal ? { signal: env.signal } : {}),
      onProgress: lazyProgress('sample', io.stderr, env.tty),
    });
    await write(io, l, picture, { kind: 'samples', count: n, sampler });
    return 0;
  } finally {
    l.loaded.model.dispose();
  }
}

export async function progressiveCommand(argv: readonly string[], io: CliIo, env: { tty: boolean; signal?: AbortSignal } = { tty: false }): Promise<number> {
  const { values } = parseCommandArgs(argv, { ...COMMON, n: { type: 'string' }, every: { type: 'string' }, steps: { type: 'string' } });
  if (values['help'] === true) {
    io.stdout(PROGRESSIVE_USAGE);
    return 0;
  }
  const n = parseInteger('n', values['n'], 4, { min: 1, max: 64 });
  const l = await load(values, io);
  try {
    const sampler = samplerOf(values, l.loaded.diffusion.numTimesteps);
    const total = sampler.kind === 'ancestral' && sampler.steps ? sampler.steps : l.loaded.diffusion.numTimesteps;
    const every = parseInteger('every', values['every'], Math.max(1, Math.floor(total / 10)), { min: 1, max: total });
    const { picture, frames } = await progressiveStrip(l.loaded.model, l.loaded.diffusion, n, every, {
      sampler,
      seed: l.seed,
      ...(env.signal ? { signal: env.signal } : {}),
      onProgress: lazyProgress('progressive', io.stderr, env.tty),
    });
    await write(io, l, picture, { kind: 'progressive', chains: n, every, frames, sampler });
    return 0;
  } finally {
    l.loaded.model.dispose();
  }
}

export async function interpolateCommand(argv: readonly string[], io: CliIo, env: { tty: boolean; signal?: AbortSignal } = { tty: false }): Promise<number> {
  const { values } = parseCommandArgs(argv, { ...COMMON, dataset: { type: 'string' }, a: { type: 'string' }, b: { type: 'string' }, t: { type: 'string' }, lambdas: { type: 'string' } });
  if (values['help'] === true) {
    io.stdout(INTERPOLATE_USAGE);
    return 0;
  }
  const a = parseInteger('a', values['a'], 0, { min: 0 });
  const b = parseInteger('b', values['b'], 1, { min: 0 });
  const lambdaCount = parseInteger('lambdas', values['lambdas'], 9, { min: 2, max: 64 });
  const l = await load(values, io);
  try {
    const T = l.loaded.diffusion.numTimesteps;
    const ts = parseIntegerList('t', values['t']) ?? [Math.round(T / 4), Math.round(T / 2), Math.round((3 * T) / 4)];
    for (const t of ts) if (t < 0 || t > T) throw new CliUsageError(`--t: ${t} is outside [0, ${T}]`);
    const { imageSize, inChannels } = l.loaded.model.config;
    const runDataset = l.loaded.state.config.dataset;
    const spec = values['dataset'] === undefined ? testSplitOf(runDataset) : String(values['dataset']);
    const dataset = await openDataset(spec, { imageSize, channels: inChannels === 1 ? 1 : 3 });
    const pixels = await readForModel(dataset, [a, b], imageSize);
    const per = imageSize * imageSize * inChannels;
    const sourceA = tf.tensor4d(pixels.subarray(0, per), [1, imageSize, imageSize, inChannels]);
    const sourceB = tf.tensor4d(pixels.subarray(per), [1, imageSize, imageSize, inChannels]);
    const lambdas = Array.from({ length: lambdaCount }, (_, i) => i / (lambdaCount - 1));
    const { picture } = await interpolationFigure(l.loaded.model, l.loaded.diffusion, sourceA, sourceB, ts, {
      seed: l.seed,
      lambdas,
      ...(env.signal ? { signal: env.signal } : {}),
    });
    tf.dispose([sourceA, sourceB]);
    await write(io, l, picture, { kind: 'interpolation', dataset: dataset.name, a, b, t: ts, lambdas });
    return 0;
  } finally {
    l.loaded.model.dispose();
  }
}

export async function sharedLatentCommand(argv: readonly string[], io: CliIo, env: { tty: boolean; signal?: AbortSignal } = { tty: false }): Promise<number> {
  const { values } = parseCommandArgs(argv, { ...COMMON, splits: { type: 'string' }, n: { type: 'string' } });
  if (values['help'] === true) {
    io.stdout(SHARED_LATENT_USAGE);
    return 0;
  }
  const n = parseInteger('n', values['n'], 6, { min: 1, max: 64 });
  const l = await load(values, io);
  try {
    const T = l.loaded.diffusion.numTimesteps;
    const splits = parseIntegerList('splits', values['splits']) ?? [T, Math.round((3 * T) / 4), Math.round(T / 2), Math.round(T / 4)];
    for (const t of splits) if (t < 0 || t > T) throw new CliUsageError(`--splits: ${t} is outside [0, ${T}]`);
    const { picture } = await sharedLatentFigure(l.loaded.model, l.loaded.diffusion, splits, n, {
      seed: l.seed,
      ...(env.signal ? { signal: env.signal } : {}),
    });
    await write(io, l, picture, { kind: 'shared-latent', splits, continuations: n });
    return 0;
  } finally {
    l.loaded.model.dispose();
  }
}

/** The run's dataset with the test split selected where the kind has one. */
function testSplitOf(spec: string): string {
  if (/^(fashion-mnist|mnist|cifar10)(:|\?|$)/.test(spec) && !/[?&]split=/.test(spec)) return spec.includes('?') ? `${spec}&split=test` : `${spec}?split=test`;
  return spec;
}
