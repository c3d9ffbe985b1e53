/**
 * Evaluation on this machine: `ddpm eval` (the eval job's settings and report, on a local run)
 * and `ddpm fid` (the Fréchet distance between two sets, each an image folder or an `.npz` of
 * statistics, as pytorch-fid's command line; `--save-stats` writes a folder's statistics).
 * Extractor weights and reference statistics are cached under --cache (default
 * $XDG_CACHE_HOME/ddpm or ~/.cache/ddpm).
 */
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import {
  EVAL_JOB_SETTINGS,
  EXTRACTORS,
  type EvalJobRequest,
  type ExtractorName,
  PRETRAINED_MODELS,
  assertRequest,
  resolveEvalJob,
} from '@ddpm/settings';
import { imageDimensions, listImages, openDataset, readForModel } from '@ddpm/data';
import { extractorInput, loadModelFromCheckpoint, openFeatureExtractor, runEvalJob } from '@ddpm/engine';
import { type FeatureStatistics, frechetDistance, statisticsFromNpz, statisticsToNpz } from '@ddpm/eval';
import { pretrainedManifest } from '@ddpm/pretrained';
import { type ExtractorInfo, FMNIST_CNN_INPUT, extractFeatures, extractorRecord } from '@ddpm/eval/extractors';
import { type ObjectStore, openStore } from '@ddpm/storage';

import { type OptionSpec, parseChoice, parseCommandArgs, parseInteger } from '../args';
import { type CliIo, CliUsageError } from '../cli-io';
import { lazyProgress } from '../progress';
import { runLocation } from '../run-location';
import { type FlagScope, flagOptions, flagUsage, requestFromFlags } from '../settings-flags';
import { startTensors } from '../tensors';

const EVAL_FLAGS: FlagScope = { jobs: false };

const CACHE_HELP = `  --cache DIR               extractor weights and reference statistics (default $XDG_CACHE_HOME/ddpm or ~/.cache/ddpm)\n`;

export const EVAL_USAGE = `Usage: ddpm eval (--checkpoint DIR | --pretrained NAME) --metrics LIST [options]
Metrics of a local run's checkpoint (or of a shipped model), as an eval job computes them; prints
the JSON report (every setting that affects comparability) and writes it to --out when given.
  --checkpoint DIR          a run directory (newest valid checkpoint, or --step) or DIR/checkpoints/step-NNNNNNNNN
  --pretrained NAME         instead of --checkpoint: a reference model shipped with the service (${PRETRAINED_MODELS.join(' | ')}; EMA weights; rd's CSV and plot go to --cache)
  --out FILE.json           also write the report here
${CACHE_HELP}${flagUsage(EVAL_JOB_SETTINGS, EVAL_FLAGS)}
`;

export const FID_USAGE = `Usage: ddpm fid A B [--extractor NAME] [--json]
       ddpm fid --save-stats FOLDER OUT.npz [--extractor NAME]
The Fréchet distance between two sets of images, each an image folder or an .npz of statistics
(mu, sigma: pytorch-fid's and TTUR's format). It is named after its extractor: fd_fmnist_cnn is
not FID and is not comparable with published FIDs.
Folders: images at the extractor's input size are used as they are; 28 x 28 images (Fashion-MNIST's
own size) are padded with black to 32 x 32 as the data loader pads them; other sizes are refused.
  --extractor NAME          ${EXTRACTORS.join(' | ')} (default fmnist_cnn)
  --batch B                 images per extractor call (default 250)
  --json                    print the result as JSON
${CACHE_HELP}`;

function cacheStore(values: Readonly<Record<string, string | boolean | undefined>>): ObjectStore {
  const dir =
    typeof values['cache'] === 'string'
      ? values['cache']
      : path.join(process.env['XDG_CACHE_HOME'] ?? path.join(os.homedir(), '.cache'), 'ddpm');
  return openStore(dir.includes('://') ? dir : path.resolve(dir));
}

export async function evalCommand(
  argv: readonly string[],
  io: CliIo,
  env: { tty: boolean; signal?: AbortSignal },
): Promise<number> {
  const { values, pretrained, request } = evalRequestOf(argv);
  const cache = cacheStore(values);
  const location = pretrained === undefined ? runLocation(String(values['checkpoint'])) : undefined;
  if (location?.step !== undefined && request.step !== undefined && location.step !== request.step) {
    throw new CliUsageError(`--checkpoint names step ${location.step} and --step ${request.step}; give one`);
  }
  const step = location?.step ?? request.step;
  await startTensors();
  try {
    // T of the run (or the shipped model), for the sampler's defaults and bounds.
    let T: number;
    if (location) {
      const probe = await loadModelFromCheckpoint(location.store, location.prefix, {
        ...(step !== undefined ? { step } : {}),
      });
      T = probe.diffusion.numTimesteps;
      probe.model.dispose();
    } else {
      T = pretrainedManifest(pretrained!).train.diffusion.schedule.numTimesteps;
    }
    const config = resolveEvalJob({ ...request, ...(step !== undefined ? { step } : {}) }, T);
    // A bar per phase (training the extractor, reference statistics, sampling).
    let phase = '';
    let progress = (_done: number, _total: number): void => undefined;
    const report = await runEvalJob(config, {
      store: location?.store ?? cache,
      cache,
      ...(location ? { prefix: location.prefix } : {}),
      jobId: 'local',
      backendName: (await startTensors()).name,
      ...(env.signal ? { signal: env.signal } : {}),
      onLog: (line) => io.stderr(`${line}\n`),
      onProgress: (p, done, total) => {
        if (p !== phase) {
          phase = p;
          progress = lazyProgress(p, io.stderr, env.tty);
        }
        progress(done, total);
      },
    });
    const { job: _job, trainJobId: _train, ...rest } = report;
    const text = `${JSON.stringify(rest, null, 2)}\n`;
    if (typeof values['out'] === 'string') {
      await fs.writeFile(path.resolve(values['out']), text);
      io.stderr(`wrote ${path.resolve(values['out'])}\n`);
    }
    io.stdout(text);
    return 0;
  } finally {
    await Promise.all([cache.close(), location?.store.close()]);
  }
}

/** `ddpm eval`'s flags and the eval request they describe, checked against its table (usage errors name the flag). */
function evalRequestOf(argv: readonly string[]): {
  values: Record<string, string | boolean | undefined>;
  pretrained: string | undefined;
  request: EvalJobRequest;
} {
  const options: OptionSpec = {
    checkpoint: { type: 'string' },
    pretrained: { type: 'string' },
    out: { type: 'string' },
    cache: { type: 'string' },
    ...flagOptions(EVAL_JOB_SETTINGS, EVAL_FLAGS),
  };
  const { values, positionals } = parseCommandArgs(argv, options);
  if (positionals.length > 0) throw new CliUsageError(`unexpected argument ${JSON.stringify(positionals[0])}`);
  if ((values['checkpoint'] === undefined) === (values['pretrained'] === undefined))
    throw new CliUsageError('give --checkpoint DIR (a run) or --pretrained NAME (a shipped model)');
  const pretrained = values['pretrained'] === undefined ? undefined : String(values['pretrained']);
  if (pretrained !== undefined && !(PRETRAINED_MODELS as readonly string[]).includes(pretrained)) {
    throw new CliUsageError(
      `--pretrained must be one of ${PRETRAINED_MODELS.join(', ')}, got ${JSON.stringify(pretrained)}`,
    );
  }
  // A local run has no train job: the request names a placeholder the report then leaves out.
  const request = {
    ...(pretrained !== undefined ? { pretrained } : { trainJobId: 'local' }),
    ...requestFromFlags(EVAL_JOB_SETTINGS, values, EVAL_FLAGS),
  };
  assertRequest(EVAL_JOB_SETTINGS, request, 'eval');
  if (pretrained !== undefined && (request.step !== undefined || request.ema === false)) {
    throw new CliUsageError(
      `--step and --no-ema apply to a run's checkpoints; ${pretrained} ships its EMA weights only`,
    );
  }
  return { values, pretrained, request };
}

/** Statistics of one side of `ddpm fid`: an .npz file, or a folder's images through the extractor. */
async function sideStatistics(
  spec: string,
  extractorName: ExtractorName,
  batch: number,
  cache: ObjectStore,
  io: CliIo,
  tty: boolean,
): Promise<{ statistics: FeatureStatistics; describe: string; extractor?: ExtractorInfo }> {
  let stat;
  try {
    stat = await fs.stat(spec);
  } catch {
    throw new CliUsageError(`${spec} does not exist (expected an image folder or an .npz file)`);
  }
  if (stat.isFile()) {
    if (!spec.toLowerCase().endsWith('.npz'))
      throw new CliUsageError(`${spec} is a file but not an .npz of statistics`);
    const statistics = statisticsFromNpz(new Uint8Array(await fs.readFile(spec)), spec);
    return {
      statistics,
      describe: `${spec} (statistics of ${statistics.countKnown ? statistics.count : 'an unknown number of'} images)`,
    };
  }
  const first = (await listImages(spec))[0];
  if (first === undefined) throw new CliUsageError(`${spec} contains no .png, .jpg or .jpeg images`);
  const { width, height } = await imageDimensions(first);
  let input: { readonly size: number; readonly channels: 1 | 3 };
  let padded = false;
  if (extractorName === 'fmnist_cnn') {
    input = FMNIST_CNN_INPUT;
    padded = width === 28 && height === 28 && input.size === 32;
    if (!padded && (width !== input.size || height !== input.size))
      throw new CliUsageError(
        `${first} is ${width} x ${height}; fmnist_cnn takes ${input.size} x ${input.size} images (or 28 x 28, padded as Fashion-MNIST is)`,
      );
  } else {
    // The FID Inception takes any square size (resized to 299 x 299), in colour.
    if (width !== height)
      throw new CliUsageError(
        `${first} is ${width} x ${height}; the images of a folder must be square (crop them first)`,
      );
    input = { size: width, channels: 3 };
  }
  extractorInput(extractorName, input);
  const dataset = await openDataset({ kind: 'folder', dir: spec, size: width, channels: input.channels });
  const extractor = await openFeatureExtractor(extractorName, input, {
    cache,
    onLog: (line: string) => io.stderr(`${line}\n`),
  });
  try {
    const run = await extractFeatures(
      extractor,
      dataset.size,
      (start, n) =>
        readForModel(
          dataset,
          Array.from({ length: n }, (_, i) => start + i),
          input.size,
        ),
      {
        batch: Math.min(batch, extractor.batch),
        onBatch: lazyProgress(path.basename(spec), io.stderr, tty),
      },
    );
    return {
      statistics: run.statistics,
      describe: `${spec} (${dataset.size} images${padded ? ', 28 x 28 padded to 32 x 32' : ''})`,
      extractor: extractorRecord(extractor),
    };
  } finally {
    extractor.dispose();
  }
}

export async function fidCommand(argv: readonly string[], io: CliIo, env: { tty: boolean }): Promise<number> {
  const { values, positionals } = parseCommandArgs(argv, {
    extractor: { type: 'string' },
    batch: { type: 'string' },
    json: { type: 'boolean' },
    cache: { type: 'string' },
    'save-stats': { type: 'boolean' },
  });
  const extractorName = parseChoice('extractor', values['extractor'], EXTRACTORS, 'fmnist_cnn');
  const batch = parseInteger('batch', values['batch'], 250, { min: 1, max: 10_000 });
  if (positionals.length !== 2) throw new CliUsageError(`expected two paths, got ${positionals.length}`);
  // Relative paths are the working directory's, as in every command line tool.
  const [a, b] = (positionals as [string, string]).map((p) => path.resolve(p)) as [string, string];
  await startTensors();
  const cache = cacheStore(values);
  try {
    if (values['save-stats'] === true) {
      if (!b.toLowerCase().endsWith('.npz'))
        throw new CliUsageError(`--save-stats writes an .npz file, got ${JSON.stringify(b)}`);
      const side = await sideStatistics(a, extractorName, batch, cache, io, env.tty);
      await fs.writeFile(b, statisticsToNpz(side.statistics));
      io.stderr(`wrote ${b}: ${side.describe}\n`);
      return 0;
    }
    const [sa, sb] = [
      await sideStatistics(a, extractorName, batch, cache, io, env.tty),
      await sideStatistics(b, extractorName, batch, cache, io, env.tty),
    ];
    const started = Date.now();
    const fd = frechetDistance(sa.statistics, sb.statistics);
    const name =
      sa.extractor?.distanceName ??
      sb.extractor?.distanceName ??
      (extractorName === 'inception_fid' ? 'fid' : `fd_${extractorName}`);
    if (values['json'] === true) {
      // The extractor's record when a folder went through it (.npz files carry none).
      const extractor = sa.extractor ?? sb.extractor;
      io.stdout(
        `${JSON.stringify({ [name]: fd.distance, meanTerm: fd.meanTerm, covarianceTerm: fd.covarianceTerm, a: sa.describe, b: sb.describe, ...(extractor ? { extractor } : {}), seconds: (Date.now() - started) / 1000 })}\n`,
      );
    } else {
      io.stdout(`${name}: ${fd.distance}\n`);
    }
    return 0;
  } finally {
    await cache.close();
  }
}
