/**
 * Evaluating a model held in memory (a checkpoint's weights, or a training run's EMA) by an
 * evaluation spec, into everything a reader needs to know whether two numbers are comparable
 * (docs/evaluation.md):
 *
 * - `nll`: the test-set bound in bits per data dimension (evaluation.ts), and `rd`, its rate and
 *   distortion after every tenth of the reverse steps.
 * - `fd`, `kid`, `is`: `count` samples drawn with the configured sampler and seed go through the
 *   feature extractor one chunk at a time into float64 statistics, measured against the
 *   reference statistics (reference-statistics.ts).
 *
 * The ranks of a group may share drawing the samples (`SampleSplit`, `SampleGather`).
 */
import { type EvalJobConfig, type EvalSpec, type SampleMetric, isSampleMetric } from '@ddpm/settings';
import { type DatasetSpec, type ImageDataset, openDataset, parseDatasetSpec } from '@ddpm/data';
import { type PixelStatistics, PixelTally, frechetDistance, inceptionScore, kernelInceptionDistance } from '@ddpm/eval';
import {
  type ExtractorInfo,
  type FeatureExtractor,
  type FeatureRun,
  extractFeatures,
  extractorRecord,
} from '@ddpm/eval/extractors';
import { type GaussianDiffusion } from '@ddpm/diffusion';
import { type UNet } from '@ddpm/unet';

import { engineError } from './errors';
import { type NllResult, type RateDistortionRow, evaluateNll, evaluateRateDistortion } from './evaluation';
import {
  type ExtractorCacheOptions,
  type ImageShape,
  extractorInput,
  extractorInputDefaults,
  openFeatureExtractor,
} from './extractor-cache';
import {
  KID_KEEP,
  type ReferenceStatistics,
  importedStatistics,
  referencePixels,
  referenceStatistics,
  withSplit,
} from './reference-statistics';
import { type SampleSplit, generateSamples } from './sampling';

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

/**
 * Samples rounded to the 256 levels of an 8-bit image, as the PNGs that FID tools read (and as
 * the reference images are): in place, values in [−1, 1].
 */
export function quantize8(values: Float32Array): Float32Array {
  for (let i = 0; i < values.length; i++)
    values[i] = Math.round((Math.min(1, Math.max(-1, values[i]!)) + 1) * 127.5) / 127.5 - 1;
  return values;
}

/** What one evaluation of a model measured, with everything that makes it comparable. */
export interface ModelEvaluation {
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

/** How {@link evaluateModel} draws and reports: the cache and callbacks, and how a group shares the samples. */
type EvaluationOptions = ExtractorCacheOptions & {
  readonly describeWeights?: string;
  readonly split?: SampleSplit;
  readonly gather?: SampleGather;
};

/**
 * One evaluation under way: the model and its spec, and what it has measured so far (metrics and
 * report sections are added in the order they are measured, the order the report lists them in).
 */
interface EvaluationInProgress {
  readonly model: UNet;
  readonly diffusion: GaussianDiffusion;
  readonly spec: EvalSpec;
  readonly options: EvaluationOptions;
  readonly log: (line: string) => void;
  readonly metrics: Record<string, number>;
  readonly report: { -readonly [K in keyof ModelEvaluation]?: ModelEvaluation[K] };
}

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
  options: EvaluationOptions,
): Promise<ModelEvaluation> {
  const log = options.onLog ?? (() => undefined);
  const datasetSpec = parseDatasetSpec(spec.reference.dataset ?? dataset);
  const evaluation: EvaluationInProgress = { model, diffusion, spec, options, log, metrics: {}, report: {} };
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
  if (test && spec.metrics.includes('nll')) await measureNll(evaluation, test);
  if (test && spec.metrics.includes('rd')) await measureRateDistortion(evaluation, test);
  if (sampleMetrics.length > 0) await measureSamples(evaluation, datasetSpec, sampleMetrics, modelShape);
  const { metrics, report } = evaluation;
  return {
    metrics,
    ...report,
    comparability: comparabilityOf(report.extractor),
  };
}

/** nll: the bound on the first `spec.nll.images` test images, in bits per data dimension. */
async function measureNll(evaluation: EvaluationInProgress, test: ImageDataset): Promise<void> {
  const { model, diffusion, spec, options, log } = evaluation;
  const { imageSize: size, inChannels: channels } = model.config;
  log(`nll: the bound on the first ${Math.min(spec.nll.images, test.size)} images of ${test.name}`);
  const nll = await evaluateNll(model, diffusion, test, {
    count: spec.nll.images,
    ...(options.signal ? { signal: options.signal } : {}),
    ...(options.onAlive ? { onProgress: options.onAlive } : {}),
  });
  evaluation.metrics.bits_per_dim = nll.bitsPerDim;
  evaluation.report.nll = {
    ...nll,
    dataset: test.name,
    dataDims: `${test.height} x ${test.width} x ${test.channels} (model ${size} x ${size} x ${channels})`,
  };
}

/** rd (Table 4): rate and distortion of the full bound on the first `spec.nll.images` test images. */
async function measureRateDistortion(evaluation: EvaluationInProgress, test: ImageDataset): Promise<void> {
  const { model, diffusion, spec, options, log } = evaluation;
  log(
    `rd: the full bound (${diffusion.numTimesteps} terms) on the first ${Math.min(spec.nll.images, test.size)} images of ${test.name}`,
  );
  const rd = await evaluateRateDistortion(model, diffusion, test, {
    count: spec.nll.images,
    ...(options.signal ? { signal: options.signal } : {}),
    ...(options.onAlive ? { onProgress: options.onAlive } : {}),
  });
  evaluation.report.rateDistortion = { images: rd.count, dataset: test.name, rows: rd.rows };
}

/** fd, kid and is: the samples through the extractor, against the reference statistics. */
async function measureSamples(
  evaluation: EvaluationInProgress,
  datasetSpec: DatasetSpec,
  sampleMetrics: readonly SampleMetric[],
  modelShape: ImageShape,
): Promise<void> {
  const { spec, options, report } = evaluation;
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
    const tally = new PixelTally();
    const generated = await sampleFeatures(evaluation, extractor, sampleMetrics.includes('is'), tally);
    await recordPixels(evaluation, tally, datasetSpec, modelShape);
    report.extractor = extractorRecord(extractor);
    report.reference = {
      dataset: reference.dataset,
      split: spec.reference.split,
      count: reference.count,
      statistics: options.cache.urlOf(reference.key),
      preprocessing: extractor.preprocessing,
    };
    measureDistances(evaluation, extractor, reference, generated, sampleMetrics);
  } finally {
    extractor.dispose();
  }
}

/**
 * The evaluation's samples, drawn a chunk at a time and rounded to 8 bits, through the extractor
 * (with its logits for is); their pixels are tallied into `tally`.
 */
async function sampleFeatures(
  evaluation: EvaluationInProgress,
  extractor: FeatureExtractor,
  logits: boolean,
  tally: PixelTally,
): Promise<FeatureRun> {
  const { model, diffusion, spec, options, log } = evaluation;
  const { count, sampler, seed } = spec.samples;
  const shared = options.split
    ? `, drawn by ${options.split.worldSize} ranks`
    : options.gather
      ? `, drawn by ${options.gather.worldSize} ranks and measured by each`
      : '';
  log(
    `${count} samples (${sampler.kind}, ${sampler.steps} steps, seed ${seed}${options.describeWeights ? `, ${options.describeWeights}` : ''}${shared}) through ${extractor.name}`,
  );
  return extractFeatures(
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
      logits,
      ...(options.signal ? { signal: options.signal } : {}),
      onBatch: (done, total) => options.onProgress?.('sampling', done, total),
    },
  );
}

/** The samples' pixel statistics (from `tally`), and the reference images' when the reference has its images. */
async function recordPixels(
  evaluation: EvaluationInProgress,
  tally: PixelTally,
  datasetSpec: DatasetSpec,
  modelShape: ImageShape,
): Promise<void> {
  const { spec, metrics, report } = evaluation;
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
}

/** The sample metrics asked for: the Fréchet distance, KID and the Inception Score. */
function measureDistances(
  evaluation: EvaluationInProgress,
  extractor: FeatureExtractor,
  reference: ReferenceStatistics,
  generated: FeatureRun,
  sampleMetrics: readonly SampleMetric[],
): void {
  const { spec, options, metrics, report } = evaluation;
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
    const is = inceptionScore(generated.logitsNK!, spec.samples.count, extractor.classes);
    metrics[`is_${extractor.name}`] = is.mean;
    report.is = { name: `is_${extractor.name}`, ...is };
  }
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
