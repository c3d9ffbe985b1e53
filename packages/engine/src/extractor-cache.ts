/**
 * The feature extractors evaluations measure with, and where their weights are kept: the images
 * an extractor takes, and the extractor opened with its weights from the cache.
 *
 * The offline `fmnist_cnn`'s weights ship with the service (@ddpm/pretrained, the bytes its
 * recipe trains on the wasm backend); a store that holds its own copy in the cache wins, and
 * without either the recipe trains them (about a minute on one core) into the cache.
 */
import { type ExtractorName } from '@ddpm/settings';
import { openDataset } from '@ddpm/data';
import {
  type ExtractorInfo,
  type FeatureExtractor,
  FID_INCEPTION_PTH_SHA256_PREFIX,
  FMNIST_CNN_INPUT,
  FMNIST_CNN_NAME,
  FMNIST_CNN_RECIPE,
  FmnistCnn,
  InceptionV3,
  trainFmnistCnn,
} from '@ddpm/eval/extractors';
import { isShippedExtractor, readShippedExtractor } from '@ddpm/pretrained';
import { type ObjectStore } from '@ddpm/storage';
import { extractorWeightsKey } from '@ddpm/storage/layout';

import { engineError } from './errors';

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

/** The size and channels of a model's images, or of those an extractor takes. */
export type ImageShape = ExtractorInfo['input'];

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

/** The image size and channels a dataset is opened with to feed extractor `name` (before it exists). */
export function extractorInputDefaults(name: ExtractorName, model: ImageShape): { imageSize: number; channels: 1 | 3 } {
  const input = extractorInput(name, model);
  return { imageSize: input.size, channels: input.channels };
}

/**
 * The extractor, for images of `input`'s shape, with its weights from the cache, else (fmnist_cnn)
 * the copy shipped with the service, else trained by their recipe (and cached); the FID
 * Inception's are put in the cache by the user.
 */
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
