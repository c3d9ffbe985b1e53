/**
 * An evaluation job: the metrics of one checkpoint, as a JSON report that records everything a
 * reader needs to know whether two numbers are comparable (docs/evaluation.md).
 *
 * - `nll`: the test-set bound in bits per data dimension (evaluation.ts).
 * - `fd`, `kid`, `is`: `count` samples drawn with the configured sampler and seed go through the
 *   feature extractor one chunk at a time into float64 statistics; the reference statistics of
 *   (dataset, split, count, extractor weights, preprocessing) are computed once and cached in the
 *   object store as `.npz` (pytorch-fid's `mu` / `sigma`, plus a sample of features for KID).
 *
 * The offline `fmnist_cnn`'s weights ship with the service (@ddpm/pretrained, the bytes its
 * recipe trains on the wasm backend); a store that holds its own copy in the cache wins, and
 * without either the recipe trains them (about a minute on one core) into the cache.
 */
import { type EvalJobConfig, type EvalSpec, type ExtractorName, isSampleMetric } from '@ddpm/config';
import { sha256Hex } from '@ddpm/core';
import { type DatasetSpec, type ImageDataset, openDataset, parseDatasetSpec, readForModel } from '@ddpm/data';
import {
  type FeatureStatistics,
  type KeptFeatures,
  type PixelStatistics,
  PixelTally,
  frechetDistance,
  inceptionScore,
  kernelInceptionDistance,
  statisticsFromNpz,
  statisticsToNpz,
} from '@ddpm/eval';
import {
  type ExtractorInfo,
  type FeatureExtractor,
  FID_INCEPTION_PTH_SHA256_PREFIX,
  FMNIST_CNN_INPUT,
  FMNIST_CNN_NAME,
  FMNIST_CNN_RECIPE,
  FmnistCnn,
  InceptionV3,
  extractFeatures,
  extractorRecord,
  trainFmnistCnn,
} from '@ddpm/eval/extractors';
import { type GaussianDiffusion } from '@ddpm/diffusion';
import { isShippedExtractor, readShippedExtractor } from '@ddpm/pretrained';
import { type ObjectStore } from '@ddpm/storage';
import { extractorWeightsKey, rateDistortionKeyBase, referenceStatsKey } from '@ddpm/storage/layout';
import { type UNet } from '@ddpm/unet';

import { lineChartPng } from './charts';
import { engineError } from './errors';
import {
  type RateDistortionRow,
  evaluateNll,
  evaluateRateDistortion,
  type NllResult,
  rateDistortionCsv,
} from './evaluation';
import { type LoadedModel, loadModelFromCheckpoint } from './model-loading';
import { loadPretrainedModel } from './pretrained';
import { type SampleSplit, type SamplingGroupLink, generateSamples } from './sampling';

/** Feature vectors kept per side for KID (a uniform sample when there are more). */
const KID_KEEP = 10_000;
/** Images per sampling call (the network's batch) and per feature chunk (a whole number of them). */
const SAMPLE_BATCH = 16;
const CHUNK_BATCHES = 8;

/**
 * The ranks of a training group sharing an evaluation's samples: rank r draws batches r, r + N, …
 * of each chunk, and `sum` adds every rank's values of that chunk (the others' images zero) in
 * rank order, so every rank ends with every image, the bytes one process draws alone, and
 * measures them as that process would. Every rank calls `sum` for the same chunks in the same order.
 */
export interface SampleGather {
  readonly rank: number;
  readonly worldSize: number;
  sum(chunk: number, values: Float32Array): Promise<Float32Array>;
}

/** Where an extractor's weights are kept, and how to report on training them. */
export interface ExtractorCacheOptions {
  /** Artifacts that outlive a job: extractor weights, reference statistics. */
  readonly cache: ObjectStore;
  readonly signal?: AbortSignal;
  readonly onLog?: (line: string) => void;
  readonly onProgress?: (phase: string, done: number, total: number) => void;
  /**
   * Called often (every network evaluation): a rank of a training group evaluating between steps
   * shows it is alive, not wedged.
   */
  readonly onAlive?: () => void;
  /**
   * Whether the extractor weights shipped with the service may be used (default true); false
   * trains `fmnist_cnn` by its recipe when the cache has no copy (the path of a store without
   * the shipped file, which its tests take on purpose).
   */
  readonly shippedWeights?: boolean;
}

export interface EvalJobOptions {
  /** The run's checkpoints (and, unless `cache` is given, the artifacts too). */
  readonly store: ObjectStore;
  readonly cache?: ObjectStore;
  /** The run's checkpoint prefix in the store (not used for a shipped model). */
  readonly prefix?: string;
  readonly jobId: string;
  readonly backendName: string;
  readonly signal?: AbortSignal;
  readonly onLog?: (line: string) => void;
  readonly onProgress?: (phase: string, done: number, total: number) => void;
  /** Rank 0 of a sampling group: the other ranks draw their share of the samples. */
  readonly group?: SamplingGroupLink;
  /** Called often: a rank of a group shows it is alive while it works alone (reference statistics). */
  readonly onAlive?: () => void;
}

export interface EvalReport {
  readonly job: string;
  /** The train job whose checkpoint was evaluated, or the shipped model (`pretrained`). */
  readonly trainJobId?: string;
  readonly pretrained?: string;
  readonly checkpoint: { readonly url: string; readonly step: number };
  readonly ema: boolean;
  readonly backend: string;
  /** Metric values by name (`fd_fmnist_cnn`, `kid_fmnist_cnn`, `is_fmnist_cnn`, `bits_per_dim`, ...). */
  readonly metrics: Readonly<Record<string, number>>;
  readonly nll?: NllResult & { readonly dataset: string; readonly dataDims: string };
  readonly samples?: EvalJobConfig['samples'] & { readonly pixels: string };
  readonly extractor?: ExtractorInfo;
  readonly reference?: {
    readonly dataset: string;
    readonly split: string;
    readonly count: number;
    readonly statistics: string;
    readonly preprocessing: string;
  };
  readonly fd?: {
    readonly name: string;
    readonly value: number;
    readonly meanTerm: number;
    readonly covarianceTerm: number;
  };
  readonly kid?: {
    readonly name: string;
    readonly mean: number;
    readonly std: number;
    readonly subsets: number;
    readonly subsetSize: number;
  };
  readonly is?: {
    readonly name: string;
    readonly mean: number;
    readonly std: number;
    readonly splits: number;
    readonly count: number;
  };
  /** Pixel statistics of the samples (8-bit, as saved) and of the reference images at the model's size (metrics pixel_mean, pixel_background, pixel_saturated). */
  readonly pixels?: {
    readonly samples: PixelStatistics;
    readonly reference?: PixelStatistics & { readonly images: number };
  };
  /** Table 4: rate and distortion after every tenth of the reverse steps; the CSV and plot beside the report. */
  readonly rateDistortion?: {
    readonly images: number;
    readonly dataset: string;
    readonly rows: readonly RateDistortionRow[];
    readonly csv?: string;
    readonly plot?: string;
  };
  /** What the numbers can be compared with. */
  readonly comparability: string;
  readonly seconds: number;
}

/**
 * Samples rounded to the 256 levels of an 8-bit image, as the PNGs that FID tools read (and as
 * the reference images are): in place, values in [−1, 1].
 */
export function quantize8(values: Float32Array): Float32Array {
  for (let i = 0; i < values.length; i++)
    values[i] = Math.round((Math.min(1, Math.max(-1, values[i]!)) + 1) * 127.5) / 127.5 - 1;
  return values;
}

/** The dataset spec with its split set (kinds that have splits); others as they are. */
function withSplit(spec: DatasetSpec, split: 'train' | 'test'): DatasetSpec {
  return 'split' in spec ? { ...spec, split } : spec;
}

function describeSpec(spec: DatasetSpec): string {
  return JSON.stringify(spec);
}

type ImageShape = ExtractorInfo['input'];

/**
 * The images an extractor will be given for a model making `model`-shaped images, known before
 * its weights are loaded (or trained); throws, naming both, when it cannot take them.
 */
export function extractorInput(name: ExtractorName, model: ImageShape): ImageShape {
  switch (name) {
    case 'fmnist_cnn': {
      const input = FMNIST_CNN_INPUT;
      if (input.size !== model.size || input.channels !== model.channels) {
        throw engineError(
          'DDPM_CONFIG_INVALID',
          `the ${name} extractor takes ${input.size} x ${input.size} x ${input.channels} images; this run's model makes ${model.size} x ${model.size} x ${model.channels}`,
        );
      }
      return input;
    }
    case 'inception_fid':
      // Any size and channel count: resized to 299 x 299, grey replicated.
      return model;
    default: {
      const unreachable: never = name;
      throw engineError('DDPM_CONFIG_INVALID', `unknown extractor ${JSON.stringify(unreachable)}`);
    }
  }
}

/** Where the converted FID Inception weights are looked for in the cache. */
export const INCEPTION_FID_KEY = extractorWeightsKey('inception_fid');

/**
 * The extractor, for images of `input`'s shape, with its weights from the cache, else (fmnist_cnn)
 * the copy shipped with the service, else trained by their recipe (and cached); the FID
 * Inception's are put in the cache by the user.
 */
/** The image size and channels a dataset is opened with to feed extractor `name` (before it exists). */
function extractorInputDefaults(name: ExtractorName, model: ImageShape): { imageSize: number; channels: 1 | 3 } {
  const input = extractorInput(name, model);
  return { imageSize: input.size, channels: input.channels };
}

export async function openFeatureExtractor(
  name: ExtractorName,
  input: ImageShape,
  options: ExtractorCacheOptions,
): Promise<FeatureExtractor> {
  switch (name) {
    case 'fmnist_cnn': {
      extractorInput(name, input);
      const versioned = `${FMNIST_CNN_NAME}-v${FMNIST_CNN_RECIPE.version}`;
      const key = extractorWeightsKey(versioned);
      if (await options.cache.exists(key)) return FmnistCnn.fromWeights(await options.cache.get(key));
      if (options.shippedWeights !== false && isShippedExtractor(versioned))
        return FmnistCnn.fromWeights(readShippedExtractor(versioned));
      options.onLog?.(
        `training the ${FMNIST_CNN_NAME} extractor by its recipe (${JSON.stringify(FMNIST_CNN_RECIPE)}); it is stored as ${options.cache.urlOf(key)} for later evaluations`,
      );
      const [train, test] = await Promise.all([
        openDataset('fashion-mnist:?split=train'),
        openDataset('fashion-mnist:?split=test'),
      ]);
      const trained = await trainFmnistCnn(train, test, {
        ...(options.signal ? { signal: options.signal } : {}),
        onStep: (step) => {
          options.onAlive?.();
          options.onProgress?.('training the extractor', step + 1, FMNIST_CNN_RECIPE.steps);
        },
      });
      options.onLog?.(
        `${FMNIST_CNN_NAME}: test accuracy ${(100 * trained.testAccuracy).toFixed(1)}%, weights sha256 ${trained.weightsSha256}, ${trained.seconds.toFixed(0)} s`,
      );
      await options.cache.put(key, trained.weights, { contentType: 'application/octet-stream' });
      return FmnistCnn.fromWeights(trained.weights);
    }
    case 'inception_fid': {
      if (!(await options.cache.exists(INCEPTION_FID_KEY))) {
        throw engineError(
          'DDPM_EXTRACTOR_NOT_FOUND',
          `no FID Inception weights at ${options.cache.urlOf(INCEPTION_FID_KEY)}: download pytorch-fid's pt_inception-2015-12-05-6726825d.pth, convert it with scripts/convert-fid-inception.py and put the result there (docs/evaluation.md, "Numbers comparable with the paper")`,
        );
      }
      const extractor = InceptionV3.fromWeights(await options.cache.get(INCEPTION_FID_KEY), input);
      if (!extractor.verified)
        options.onLog?.(
          `warning: ${options.cache.urlOf(INCEPTION_FID_KEY)} was not converted from the published FID weights (sha256 prefix ${FID_INCEPTION_PTH_SHA256_PREFIX}); its distance is reported as ${extractor.distanceName}, not fid`,
        );
      return extractor;
    }
    default: {
      const unreachable: never = name;
      throw engineError('DDPM_CONFIG_INVALID', `unknown extractor ${JSON.stringify(unreachable)}`);
    }
  }
}

interface ReferenceStatistics {
  readonly statistics: FeatureStatistics;
  readonly kept: KeptFeatures;
  readonly key: string;
  readonly dataset: string;
  readonly count: number;
}

/** The reference statistics, from the cache or computed (and cached). */
async function referenceStatistics(
  extractor: FeatureExtractor,
  spec: DatasetSpec,
  dataset: ImageDataset,
  count: number | undefined,
  options: ExtractorCacheOptions,
): Promise<ReferenceStatistics> {
  const n = Math.min(count ?? dataset.size, dataset.size);
  const identity = JSON.stringify({
    dataset: describeSpec(spec),
    count: n,
    extractor: extractor.weightsSha256,
    preprocessing: extractor.preprocessing,
  });
  const key = referenceStatsKey(extractor.name, sha256Hex(new TextEncoder().encode(identity)).slice(0, 24));
  if (await options.cache.exists(key)) {
    const statistics = statisticsFromNpz(await options.cache.get(key), options.cache.urlOf(key));
    if (statistics.dim === extractor.featureDim && statistics.features !== undefined) {
      options.onLog?.(`reference statistics from the cache: ${options.cache.urlOf(key)}`);
      return { statistics, kept: statistics.features, key, dataset: dataset.name, count: n };
    }
    options.onLog?.(
      `the cached reference statistics ${options.cache.urlOf(key)} do not match the extractor; computing them again`,
    );
  }
  options.onLog?.(`reference statistics of ${n} images of ${dataset.name} through ${extractor.name}`);
  const run = await extractFeatures(
    extractor,
    n,
    (start, m) =>
      readForModel(
        dataset,
        Array.from({ length: m }, (_, i) => start + i),
        extractor.input.size,
      ),
    {
      batch: 250,
      keep: KID_KEEP,
      seed: 1,
      ...(options.signal ? { signal: options.signal } : {}),
      onBatch: (done, total) => {
        options.onAlive?.();
        options.onProgress?.('reference statistics', done, total);
      },
    },
  );
  const kept = run.kept!;
  await options.cache.put(key, statisticsToNpz(run.statistics, kept), { contentType: 'application/octet-stream' });
  return { statistics: run.statistics, kept, key, dataset: dataset.name, count: n };
}

/**
 * The distance a perfect model would score at a given sample count: the extractor's Fréchet
 * distance between `count` real images of `split` (not the reference's, by default the test split;
 * from image `from`, default 0) and the reference statistics an evaluation of `dataset` uses. FD is biased upward at small
 * counts, so a sample's distance means something only beside this floor at the same count.
 */
export async function realDataDistance(
  dataset: string,
  spec: Pick<EvalSpec, 'extractor' | 'reference'>,
  count: number,
  model: ImageShape,
  options: ExtractorCacheOptions & { readonly split?: 'train' | 'test'; readonly from?: number },
): Promise<{
  readonly name: string;
  readonly value: number;
  readonly count: number;
  readonly images: string;
  readonly pixels: PixelStatistics;
}> {
  const datasetSpec = parseDatasetSpec(spec.reference.dataset ?? dataset);
  // The reference before the extractor, which may have to be trained first.
  const referenceSpec = withSplit(datasetSpec, spec.reference.split);
  const referenceData = await openDataset(referenceSpec, extractorInputDefaults(spec.extractor, model));
  const extractor = await openFeatureExtractor(spec.extractor, model, options);
  try {
    const reference = await referenceStatistics(extractor, referenceSpec, referenceData, spec.reference.count, options);
    const real = await openDataset(withSplit(datasetSpec, options.split ?? 'test'), {
      imageSize: model.size,
      channels: model.channels,
    });
    const from = options.from ?? 0;
    if (real.size < from + count)
      throw engineError('DDPM_CONFIG_INVALID', `${real.name} has ${real.size} images, fewer than ${from} + ${count}`);
    const tally = new PixelTally();
    const run = await extractFeatures(
      extractor,
      count,
      async (start, n) => {
        const values = await readForModel(
          real,
          Array.from({ length: n }, (_, i) => from + start + i),
          model.size,
        );
        tally.addSigned(values);
        return values;
      },
      { batch: 250, seed: 2, ...(options.signal ? { signal: options.signal } : {}) },
    );
    const images =
      from === 0 ? `the first ${count} of ${real.name}` : `images ${from} to ${from + count - 1} of ${real.name}`;
    return {
      name: extractor.distanceName,
      value: frechetDistance(reference.statistics, run.statistics).distance,
      count,
      images,
      pixels: tally.result(),
    };
  } finally {
    extractor.dispose();
  }
}

/** Pixel statistics of the first `count` reference images (all by default), read at the model's size and channels. */
async function referencePixels(
  spec: DatasetSpec,
  count: number | undefined,
  shape: { readonly size: number; readonly channels: 1 | 3 },
): Promise<PixelStatistics & { readonly images: number }> {
  const dataset = await openDataset(spec, { imageSize: shape.size, channels: shape.channels });
  const n = Math.min(count ?? dataset.size, dataset.size);
  const tally = new PixelTally();
  for (let start = 0; start < n; start += 1000) {
    // As the model sees them (padded to its size): the samples' own geometry.
    tally.addSigned(
      await readForModel(
        dataset,
        Array.from({ length: Math.min(1000, n - start) }, (_, i) => start + i),
        shape.size,
      ),
    );
  }
  return { ...tally.result(), images: n };
}

/** What the numbers of an evaluation can be compared with, in words. */
function comparabilityOf(extractor: ExtractorInfo | undefined): string {
  const nll =
    'bits_per_dim counts the data’s own dimensions and is comparable with published NLLs on the same test set.';
  if (!extractor) return nll;
  const names = `${extractor.distanceName}, kid_${extractor.name} and is_${extractor.name}`;
  if (extractor.distanceName === 'fid') {
    return `${nll} ${names} come from the FID Inception with the published weights (converted file sha256 ${extractor.weightsSha256}): comparable with published FID/IS at the same sample count against the same reference statistics (the paper: 50,000 samples, CIFAR-10 training set).`;
  }
  return `${nll} ${names} come from the ${extractor.name} extractor (weights sha256 ${extractor.weightsSha256}): comparable only with results that record the same extractor weights, reference and sample count; not with published FID/IS.`;
}

/** What one evaluation of a model measured, with everything that makes it comparable. */
export type ModelEvaluation = Omit<
  EvalReport,
  'job' | 'trainJobId' | 'pretrained' | 'checkpoint' | 'ema' | 'backend' | 'seconds'
>;

/**
 * The metrics of `model` (in memory: a checkpoint's weights, or a training run's EMA) by `spec`,
 * against reference data from `dataset` (a spec; `spec.reference.dataset` overrides it). The
 * model is not disposed.
 */
export async function evaluateModel(
  model: UNet,
  diffusion: GaussianDiffusion,
  dataset: string,
  spec: EvalSpec,
  options: ExtractorCacheOptions & {
    readonly describeWeights?: string;
    readonly split?: SampleSplit;
    readonly gather?: SampleGather;
  },
): Promise<ModelEvaluation> {
  const log = options.onLog ?? (() => undefined);
  const datasetSpec = parseDatasetSpec(spec.reference.dataset ?? dataset);
  const metrics: Record<string, number> = {};
  const report: { -readonly [K in keyof ModelEvaluation]?: ModelEvaluation[K] } = {};
  const { imageSize: size, inChannels: channels } = model.config;
  const sampleMetrics = spec.metrics.filter(isSampleMetric);
  // Before any work: an extractor that cannot take this model's images.
  const modelShape = { size, channels: channels as 1 | 3 };
  if (sampleMetrics.length > 0) extractorInput(spec.extractor, modelShape);
  // The test split, opened once for nll and rd.
  const test =
    spec.metrics.includes('nll') || spec.metrics.includes('rd')
      ? await openDataset(withSplit(datasetSpec, 'test'), { imageSize: size, channels: modelShape.channels })
      : undefined;
  if (test && spec.metrics.includes('nll')) {
    log(`nll: the bound on the first ${Math.min(spec.nll.images, test.size)} images of ${test.name}`);
    const nll = await evaluateNll(model, diffusion, test, {
      count: spec.nll.images,
      ...(options.signal ? { signal: options.signal } : {}),
      ...(options.onAlive ? { onProgress: options.onAlive } : {}),
    });
    metrics.bits_per_dim = nll.bitsPerDim;
    report.nll = {
      ...nll,
      dataset: test.name,
      dataDims: `${test.height} x ${test.width} x ${test.channels} (model ${size} x ${size} x ${channels})`,
    };
  }
  if (test && spec.metrics.includes('rd')) {
    log(
      `rd: the full bound (${diffusion.numTimesteps} terms) on the first ${Math.min(spec.nll.images, test.size)} images of ${test.name}`,
    );
    const rd = await evaluateRateDistortion(model, diffusion, test, {
      count: spec.nll.images,
      ...(options.signal ? { signal: options.signal } : {}),
      ...(options.onAlive ? { onProgress: options.onAlive } : {}),
    });
    report.rateDistortion = { images: rd.count, dataset: test.name, rows: rd.rows };
  }
  if (sampleMetrics.length > 0) {
    // The reference before the extractor: an extractor may have to be trained first (a minute or
    // more), and a reference that cannot be read must fail the job before that, not after.
    const referenceSpec = withSplit(datasetSpec, spec.reference.split);
    const referenceData =
      spec.reference.statistics === undefined
        ? await openDataset(referenceSpec, extractorInputDefaults(spec.extractor, modelShape))
        : undefined;
    if (spec.reference.statistics !== undefined && !(await options.cache.exists(spec.reference.statistics)))
      throw engineError(
        'DDPM_EXTRACTOR_NOT_FOUND',
        `no reference statistics at ${options.cache.urlOf(spec.reference.statistics)}`,
      );
    const extractor = await openFeatureExtractor(spec.extractor, modelShape, options);
    try {
      const reference =
        referenceData === undefined
          ? await importedStatistics(extractor, spec.reference.statistics!, sampleMetrics.includes('kid'), options)
          : await referenceStatistics(extractor, referenceSpec, referenceData, spec.reference.count, options);
      const { count, sampler, seed } = spec.samples;
      const shared = options.split
        ? `, drawn by ${options.split.worldSize} ranks`
        : options.gather
          ? `, drawn by ${options.gather.worldSize} ranks and measured by each`
          : '';
      log(
        `${count} samples (${sampler.kind}, ${sampler.steps} steps, seed ${seed}${options.describeWeights ? `, ${options.describeWeights}` : ''}${shared}) through ${extractor.name}`,
      );
      const tally = new PixelTally();
      const generated = await extractFeatures(
        extractor,
        count,
        async (start, n) => {
          const values = quantize8(await sampleChunk(model, diffusion, spec.samples, start, n, options));
          tally.addSigned(values);
          return values;
        },
        {
          batch: SAMPLE_BATCH * CHUNK_BATCHES,
          keep: KID_KEEP,
          seed: 2,
          logits: sampleMetrics.includes('is'),
          ...(options.signal ? { signal: options.signal } : {}),
          onBatch: (done, total) => options.onProgress?.('sampling', done, total),
        },
      );
      report.samples = { ...spec.samples, pixels: 'rounded to 8 bits, as saved PNGs are' };
      // Imported statistics come without their images: the samples' pixels alone then.
      const pixels = {
        samples: tally.result(),
        ...(spec.reference.statistics === undefined
          ? {
              reference: await referencePixels(
                withSplit(datasetSpec, spec.reference.split),
                spec.reference.count,
                modelShape,
              ),
            }
          : {}),
      };
      report.pixels = pixels;
      metrics.pixel_mean = pixels.samples.mean;
      metrics.pixel_background = pixels.samples.background;
      metrics.pixel_saturated = pixels.samples.saturated;
      report.extractor = extractorRecord(extractor);
      report.reference = {
        dataset: reference.dataset,
        split: spec.reference.split,
        count: reference.count,
        statistics: options.cache.urlOf(reference.key),
        preprocessing: extractor.preprocessing,
      };
      if (sampleMetrics.includes('fd')) {
        const fd = frechetDistance(
          reference.statistics,
          generated.statistics,
          options.onAlive ? { onProgress: options.onAlive } : {},
        );
        metrics[extractor.distanceName] = fd.distance;
        report.fd = {
          name: extractor.distanceName,
          value: fd.distance,
          meanTerm: fd.meanTerm,
          covarianceTerm: fd.covarianceTerm,
        };
      }
      if (sampleMetrics.includes('kid')) {
        const kept = generated.kept!;
        const kid = kernelInceptionDistance(
          reference.kept.featuresND,
          reference.kept.count,
          kept.featuresND,
          kept.count,
          extractor.featureDim,
          { seed: 3, ...(options.onAlive ? { onProgress: options.onAlive } : {}) },
        );
        metrics[`kid_${extractor.name}`] = kid.mean;
        report.kid = { name: `kid_${extractor.name}`, ...kid };
      }
      if (sampleMetrics.includes('is')) {
        const is = inceptionScore(generated.logitsNK!, count, extractor.classes);
        metrics[`is_${extractor.name}`] = is.mean;
        report.is = { name: `is_${extractor.name}`, ...is };
      }
    } finally {
      extractor.dispose();
    }
  }
  return {
    metrics,
    ...report,
    comparability: comparabilityOf(report.extractor),
  };
}

/**
 * Images [start, start + n) of an evaluation's samples: whole network batches, batch k drawing
 * from noise stream k, so any chunking (and any sampling group) gives the same images.
 */
async function sampleChunk(
  model: UNet,
  diffusion: GaussianDiffusion,
  samples: EvalSpec['samples'],
  start: number,
  n: number,
  options: {
    readonly signal?: AbortSignal;
    readonly onAlive?: () => void;
    readonly split?: SampleSplit;
    readonly gather?: SampleGather;
  },
): Promise<Float32Array> {
  const gather = options.gather;
  const { values } = await generateSamples(model, diffusion, n, {
    sampler: samples.sampler,
    seed: samples.seed,
    batch: SAMPLE_BATCH,
    firstBatch: start / SAMPLE_BATCH,
    ...(options.split ? { split: options.split } : {}),
    ...(gather ? { share: { rank: gather.rank, worldSize: gather.worldSize } } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
    ...(options.onAlive ? { onProgress: options.onAlive } : {}),
  });
  return gather ? gather.sum(start / SAMPLE_BATCH, values) : values;
}

/**
 * A sampling group's rank other than 0 in an evaluation: it draws its batches of the samples for
 * fd, kid and is, in the chunks rank 0 reads them, and hands them to rank 0 (which measures).
 */
export async function drawSampleShare(
  model: UNet,
  diffusion: GaussianDiffusion,
  samples: EvalSpec['samples'],
  split: SampleSplit,
  options: {
    readonly signal?: AbortSignal;
    readonly onAlive?: () => void;
    readonly onProgress?: (done: number, total: number) => void;
  } = {},
): Promise<void> {
  if (split.rank === 0)
    throw engineError('DDPM_CONFIG_INVALID', 'rank 0 of a sampling group measures; it does not draw a share only');
  const chunk = SAMPLE_BATCH * CHUNK_BATCHES;
  for (let start = 0; start < samples.count; start += chunk) {
    const n = Math.min(chunk, samples.count - start);
    await sampleChunk(model, diffusion, samples, start, n, { ...options, split });
    options.onProgress?.(start + n, samples.count);
  }
}

/** Reference statistics from an `.npz` the user put in the store (published statistics, say). */
async function importedStatistics(
  extractor: FeatureExtractor,
  key: string,
  needFeatures: boolean,
  options: ExtractorCacheOptions,
): Promise<ReferenceStatistics> {
  if (!(await options.cache.exists(key)))
    throw engineError('DDPM_EXTRACTOR_NOT_FOUND', `no reference statistics at ${options.cache.urlOf(key)}`);
  const statistics = statisticsFromNpz(await options.cache.get(key), options.cache.urlOf(key));
  if (statistics.dim !== extractor.featureDim) {
    throw engineError(
      'DDPM_CONFIG_INVALID',
      `${options.cache.urlOf(key)} holds statistics of ${statistics.dim}-d features; ${extractor.name} makes ${extractor.featureDim}-d ones`,
    );
  }
  if (needFeatures && statistics.features === undefined) {
    throw engineError(
      'DDPM_CONFIG_INVALID',
      `kid needs the reference's features, and ${options.cache.urlOf(key)} has only mu and sigma`,
    );
  }
  options.onLog?.(
    `reference statistics imported from ${options.cache.urlOf(key)} (${statistics.countKnown ? `${statistics.count} images` : 'image count not recorded'})`,
  );
  return {
    statistics,
    kept: statistics.features ?? { featuresND: new Float32Array(0), count: 0 },
    key,
    dataset: `imported statistics ${key}`,
    count: statistics.count,
  };
}

/** The model an eval job names: a shipped one, or the run's checkpoint (at `step`, or the newest valid one). */
async function loadEvaluated(
  config: EvalJobConfig,
  options: Pick<EvalJobOptions, 'store' | 'prefix'>,
  step: number | undefined,
): Promise<LoadedModel> {
  if (config.pretrained !== undefined) return loadPretrainedModel(config.pretrained);
  if (options.prefix === undefined)
    throw engineError('DDPM_CONFIG_INVALID', 'an eval job of a train job needs the run’s prefix');
  return loadModelFromCheckpoint(options.store, options.prefix, {
    ema: config.samples.ema,
    ...(step !== undefined ? { step } : {}),
  });
}

/** An eval job: the checkpoint (or shipped model) it names, evaluated by {@link evaluateModel}. */
export async function runEvalJob(config: EvalJobConfig, options: EvalJobOptions): Promise<EvalReport> {
  const started = Date.now();
  if (options.group && options.group.rank !== 0)
    throw engineError('DDPM_CONFIG_INVALID', 'ranks other than 0 of a sampling group run runEvalShare');
  const loaded = await loadEvaluated(config, options, config.step);
  for (const s of loaded.skipped) options.onLog?.(`warning: ${s}`);
  try {
    await options.group?.announce(loaded.ref.step);
    const { trainJobId, pretrained, step: _step, group: _group, ...spec } = config;
    const evaluation = await evaluateModel(loaded.model, loaded.diffusion, loaded.config.dataset, spec, {
      ...options,
      cache: options.cache ?? options.store,
      describeWeights: `${loaded.ema ? 'EMA' : 'raw'} weights of step ${loaded.ref.step}`,
      ...(options.group ? { split: options.group } : {}),
    });
    // Table 4 beside the report: CSV and the curve (distortion against rate, as Fig. 5).
    let rateDistortion = evaluation.rateDistortion;
    if (rateDistortion) {
      const base = rateDistortionKeyBase(options.jobId);
      await options.store.put(`${base}.csv`, new TextEncoder().encode(rateDistortionCsv(rateDistortion.rows)), {
        contentType: 'text/csv',
      });
      const plot = await lineChartPng({
        title: `rate-distortion, step ${loaded.ref.step} (${rateDistortion.images} test images)`,
        xLabel: 'rate (bits/dim, data dimensions)',
        yLabel: 'distortion (RMSE, 0-255)',
        series: [
          {
            name: 'x_t, t = T ... 1',
            points: rateDistortion.rows.map((r) => [r.rateBitsPerDim, r.distortionRmse] as const),
          },
        ],
      });
      await options.store.put(`${base}.png`, plot, { contentType: 'image/png' });
      rateDistortion = {
        ...rateDistortion,
        csv: options.store.urlOf(`${base}.csv`),
        plot: options.store.urlOf(`${base}.png`),
      };
    }
    return {
      job: options.jobId,
      ...(trainJobId !== undefined ? { trainJobId } : {}),
      ...(pretrained !== undefined ? { pretrained } : {}),
      checkpoint: { url: loaded.ref.url, step: loaded.ref.step },
      ema: loaded.ema,
      backend: options.backendName,
      ...evaluation,
      ...(rateDistortion ? { rateDistortion } : {}),
      seconds: (Date.now() - started) / 1000,
    };
  } finally {
    loaded.model.dispose();
  }
}

/**
 * A rank other than 0 of an eval job's sampling group: the checkpoint rank 0 announced, its share
 * of the samples drawn and handed over. Resolves to that step.
 */
export async function runEvalShare(
  config: EvalJobConfig,
  options: Pick<EvalJobOptions, 'store' | 'prefix' | 'signal' | 'onLog' | 'onProgress'> & {
    readonly group: SamplingGroupLink;
    readonly onAlive?: () => void;
  },
): Promise<number> {
  const step = await options.group.announced();
  const loaded = await loadEvaluated(config, options, step);
  try {
    options.onLog?.(
      `rank ${options.group.rank} of ${options.group.worldSize}: drawing its share of ${config.samples.count} samples from ${loaded.ref.url}`,
    );
    await drawSampleShare(loaded.model, loaded.diffusion, config.samples, options.group, {
      ...(options.signal ? { signal: options.signal } : {}),
      ...(options.onAlive ? { onAlive: options.onAlive } : {}),
      onProgress: (done, total) => options.onProgress?.('sampling', done, total),
    });
    return step;
  } finally {
    loaded.model.dispose();
  }
}
