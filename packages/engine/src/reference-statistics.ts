/**
 * Reference statistics: the feature statistics of real images that an evaluation's samples are
 * measured against. Those of (dataset, split, count, extractor weights, preprocessing) are
 * computed once and cached in the object store as `.npz` (pytorch-fid's `mu` / `sigma`, plus a
 * sample of features for KID), or imported from an `.npz` the user put there. Also here: the
 * reference images' pixel statistics, and the distance real images score against the reference.
 */
import { type EvalSpec } from '@ddpm/settings';
import { sha256Hex } from '@ddpm/core';
import { type DatasetSpec, type ImageDataset, openDataset, parseDatasetSpec, readForModel } from '@ddpm/data';
import {
  type FeatureStatistics,
  type KeptFeatures,
  type PixelStatistics,
  PixelTally,
  frechetDistance,
  statisticsFromNpz,
  statisticsToNpz,
} from '@ddpm/eval';
import { type FeatureExtractor, extractFeatures } from '@ddpm/eval/extractors';
import { referenceStatsKey } from '@ddpm/storage/layout';

import { engineError } from './errors';
import {
  type ExtractorCacheOptions,
  type ImageShape,
  extractorInputDefaults,
  openFeatureExtractor,
} from './extractor-cache';

/** Feature vectors kept per side for KID (a uniform sample when there are more). */
export const KID_KEEP = 10_000;

/** The dataset spec with its split set (kinds that have splits); others as they are. */
export function withSplit(spec: DatasetSpec, split: 'train' | 'test'): DatasetSpec {
  return 'split' in spec ? { ...spec, split } : spec;
}

function describeSpec(spec: DatasetSpec): string {
  return JSON.stringify(spec);
}

/** Reference statistics as an evaluation uses them: the features' statistics, and where they are kept and of what. */
export interface ReferenceStatistics {
  readonly statistics: FeatureStatistics;
  readonly kept: KeptFeatures;
  readonly key: string;
  readonly dataset: string;
  readonly count: number;
}

/** The reference statistics, from the cache or computed (and cached). */
export async function referenceStatistics(
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

/** Reference statistics from an `.npz` the user put in the store (published statistics, say). */
export async function importedStatistics(
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
export async function referencePixels(
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
