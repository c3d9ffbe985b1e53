/**
 * The offline extractor on real Fashion-MNIST (Debian's dataset-fashion-mnist, which .ci/run
 * installs): its recipe reproduces the recorded weights bit for bit on wasm, it classifies, and
 * its Fréchet distance behaves as a distance between image sets should: small between two
 * disjoint halves of the test set, large against noise and against a blurred copy.
 */
import { initBackend } from '@ddpm/kernels';
import { type ImageDataset, openDataset, toModelInput } from '@ddpm/data';
import * as tf from '@tensorflow/tfjs-core';

import { frechetDistance } from '../frechet';
import { extractFeatures } from '../extractors/features';
import { FMNIST_CNN_WASM_SHA256, FmnistCnn, trainFmnistCnn } from '../extractors/fmnist-cnn';
import { readShippedExtractor } from '@ddpm/pretrained';

let train: ImageDataset;
let testSet: ImageDataset;
let extractor: FmnistCnn;

beforeAll(async () => {
  await initBackend({ backend: 'wasm' });
  try {
    [train, testSet] = await Promise.all([
      openDataset('fashion-mnist:?split=train'),
      openDataset('fashion-mnist:?split=test'),
    ]);
  } catch (err) {
    throw new Error(`Fashion-MNIST is needed (apt-get install dataset-fashion-mnist): ${(err as Error).message}`, {
      cause: err,
    });
  }
}, 60_000);

afterAll(() => extractor?.dispose());

test('the recipe reproduces the recorded weights on wasm and gives a working classifier', async () => {
  const before = tf.memory().numTensors;
  const trained = await trainFmnistCnn(train, testSet, { evalCount: 2000 });
  expect(tf.memory().numTensors).toBe(before);
  expect(trained.weightsSha256).toBe(FMNIST_CNN_WASM_SHA256);
  expect(trained.testAccuracy).toBeGreaterThan(0.75);
  extractor = FmnistCnn.fromWeights(trained.weights);
  expect(extractor.weightsSha256).toBe(trained.weightsSha256);
  // The service ships exactly these bytes (tests that need the extractor but not its recipe, and
  // every evaluation, take that copy instead of training again).
  expect(Buffer.from(trained.weights).equals(Buffer.from(readShippedExtractor('fmnist_cnn-v1')))).toBe(true);
}, 300_000);

/** Model-space pixels of test images `from + start …`, optionally box-blurred (3 × 3) first. */
const reader =
  (from: number, blur = false) =>
  async (start: number, n: number): Promise<Float32Array> => {
    const indices = Array.from({ length: n }, (_, i) => from + start + i);
    let raw = await testSet.read(indices);
    if (blur) {
      const { height: h, width: w } = testSet;
      const out = new Uint8Array(raw.length);
      for (let k = 0; k < n; k++) {
        for (let y = 0; y < h; y++) {
          for (let x = 0; x < w; x++) {
            let s = 0;
            let c = 0;
            for (let dy = -1; dy <= 1; dy++) {
              for (let dx = -1; dx <= 1; dx++) {
                const yy = y + dy;
                const xx = x + dx;
                if (yy < 0 || yy >= h || xx < 0 || xx >= w) continue;
                s += raw[(k * h + yy) * w + xx]!;
                c++;
              }
            }
            out[(k * h + y) * w + x] = Math.round(s / c);
          }
        }
      }
      raw = out;
    }
    return toModelInput(raw, n, testSet, 32);
  };

test('fd_fmnist_cnn: small between disjoint halves of the test set, large against noise and blur', async () => {
  expect(extractor).toBeDefined();
  const before = tf.memory().numTensors;
  const half = 2500;
  const a = await extractFeatures(extractor, half, reader(0));
  const b = await extractFeatures(extractor, half, reader(5000));
  const blurred = await extractFeatures(extractor, half, reader(5000, true));
  let seed = 1;
  const noise = await extractFeatures(extractor, half, async (_start, n) =>
    Float32Array.from({ length: n * 32 * 32 }, () => ((seed = (seed * 16807) % 2147483647) / 2147483647) * 2 - 1),
  );
  expect(tf.memory().numTensors).toBe(before);
  const halves = frechetDistance(a.statistics, b.statistics).distance;
  const toBlur = frechetDistance(a.statistics, blurred.statistics).distance;
  const toNoise = frechetDistance(a.statistics, noise.statistics).distance;
  // Measured when written: halves 0.145, blurred 5.85, noise 244.
  expect(halves).toBeGreaterThan(0);
  expect(toBlur).toBeGreaterThan(10 * halves);
  expect(toNoise).toBeGreaterThan(10 * toBlur);
}, 300_000);
