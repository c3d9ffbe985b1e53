/**
 * The offline extractor's weights for tests that need the extractor but do not test its recipe:
 * trained once per machine (the recipe costs about 80 s on one wasm core) and kept under the temp
 * folder, checked against the recorded weights hash whenever read, so a stale or torn copy is
 * never used. The recipe itself is tested by e2e/fmnist-cnn.test.ts, and training by the recipe
 * inside a run by the engine's Fashion-MNIST learning test.
 */
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { initBackend } from '@ddpm/backend';
import { openDataset } from '@ddpm/data';

import { FMNIST_CNN_RECIPE, FMNIST_CNN_WASM_SHA256, FmnistCnn, trainFmnistCnn } from './fmnist-cnn';

export const SHARED_FMNIST_CNN = path.join(os.tmpdir(), 'ddpm-test-cache', `fmnist_cnn-v${FMNIST_CNN_RECIPE.version}-${FMNIST_CNN_WASM_SHA256.slice(0, 16)}.safetensors`);

/** Whether `weights` are the recorded recipe's (their arrays' hash). */
function recorded(weights: Uint8Array): boolean {
  try {
    const extractor = FmnistCnn.fromWeights(weights);
    const ok = extractor.weightsSha256 === FMNIST_CNN_WASM_SHA256;
    extractor.dispose();
    return ok;
  } catch {
    return false;
  }
}

/** Keeps the recorded recipe's weights for later tests (anything else is not kept). */
export async function rememberFmnistCnnWeights(weights: Uint8Array): Promise<void> {
  await initBackend({ preferred: 'wasm' });
  if (!recorded(weights)) return;
  await fs.mkdir(path.dirname(SHARED_FMNIST_CNN), { recursive: true });
  const partial = `${SHARED_FMNIST_CNN}.${process.pid}.partial`;
  await fs.writeFile(partial, weights);
  await fs.rename(partial, SHARED_FMNIST_CNN);
}

/** The recorded recipe's weights (on the wasm backend): the kept copy, or trained now (and kept). */
export async function sharedFmnistCnnWeights(): Promise<Uint8Array> {
  // The pinned hash is wasm's; a test process that has not chosen a backend gets it here.
  await initBackend({ preferred: 'wasm' });
  const kept = await fs.readFile(SHARED_FMNIST_CNN).then((b) => new Uint8Array(b), () => undefined);
  if (kept && recorded(kept)) return kept;
  const [train, test] = await Promise.all([openDataset('fashion-mnist:?split=train'), openDataset('fashion-mnist:?split=test')]);
  const trained = await trainFmnistCnn(train, test);
  await rememberFmnistCnnWeights(trained.weights);
  return trained.weights;
}
