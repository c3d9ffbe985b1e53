/**
 * The offline extractor's weights for tests that need the extractor but do not test its recipe:
 * the copy shipped with the service (@ddpm/pretrained), checked against the recorded weights hash.
 * The recipe itself is tested by @ddpm/eval's e2e/fmnist-cnn.test.ts, which trains it again and compares, and
 * training by the recipe inside a run by the engine's Fashion-MNIST learning test.
 */
import { initBackend } from '@ddpm/kernels';
import { readShippedExtractor } from '@ddpm/pretrained';

import { FMNIST_CNN_RECIPE, FMNIST_CNN_WASM_SHA256, FmnistCnn } from '@ddpm/eval/extractors';

/** The recorded recipe's weights: the shipped copy, whose weights hash is the pinned one. */
export async function sharedFmnistCnnWeights(): Promise<Uint8Array> {
  await initBackend({ backend: 'wasm' });
  const weights = readShippedExtractor(`fmnist_cnn-v${FMNIST_CNN_RECIPE.version}`);
  const extractor = FmnistCnn.fromWeights(weights);
  const sha256 = extractor.weightsSha256;
  extractor.dispose();
  if (sha256 !== FMNIST_CNN_WASM_SHA256)
    throw new Error(`the shipped fmnist_cnn weights hash to ${sha256}, not the recipe's ${FMNIST_CNN_WASM_SHA256}`);
  return weights;
}
