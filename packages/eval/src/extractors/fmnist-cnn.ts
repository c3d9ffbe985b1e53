/**
 * `fmnist_cnn`: the offline feature extractor, for machines that cannot download the FID
 * Inception weights (ours). A small convolutional classifier of Fashion-MNIST's ten classes,
 * trained by the project itself by a fixed recipe ({@link FMNIST_CNN_RECIPE}); its features are
 * the 128 global-average-pooled activations of its last convolution (the analogue of Inception's
 * pool3). Its Fréchet distance is `fd_fmnist_cnn`: a useful yardstick between our own runs on
 * Fashion-MNIST, **not** comparable with any published FID.
 *
 * Input: the images as the diffusion model sees them, 32 × 32 × 1 in [−1, 1] (Fashion-MNIST's
 * 28 × 28 padded with −1 by the data loader), so reference images and samples go through the
 * same preprocessing by construction.
 */
import { Rng, sha256Hex } from '@ddpm/core';
import { type ImageDataset, toModelInput } from '@ddpm/data';
import { conv2d, dense, withPlainArithmetic, withTfjsConvolutions } from '@ddpm/kernels';
import { type NamedArray, decodeSafetensors, encodeSafetensors } from '@ddpm/safetensors';
import * as tf from '@tensorflow/tfjs-core';

import { evalError } from '../errors';
import { type FeatureExtractor } from './extractor';

export const FMNIST_CNN_NAME = 'fmnist_cnn';

/** The layers: 3 × 3 convolutions (stride 1, 2, 2, 2) with ReLU, global mean, a linear classifier. */
const CONVS = [
  { name: 'conv0', cin: 1, cout: 16, stride: 1 },
  { name: 'conv1', cin: 16, cout: 32, stride: 2 },
  { name: 'conv2', cin: 32, cout: 64, stride: 2 },
  { name: 'conv3', cin: 64, cout: 128, stride: 2 },
] as const;
const FEATURES = 128;
const CLASSES = 10;
const SIZE = 32;
/** The images it takes (see {@link ExtractorInfo.input}). */
export const FMNIST_CNN_INPUT = { size: SIZE, channels: 1 } as const;

/**
 * The recipe, fixed: change any of it and the weights (and their hash) change, so it is
 * versioned. Glorot-uniform weights and zero biases from `seed`; Adam (tfjs's, β₁ 0.9, β₂ 0.999,
 * ε 1e-7) at `learningRate`; `steps` mini-batches of `batch` drawn in the order of one seeded
 * permutation of the train split (no augmentation); softmax cross-entropy.
 */
export const FMNIST_CNN_RECIPE = {
  version: 1,
  dataset: 'fashion-mnist:?split=train',
  seed: 0,
  steps: 400,
  batch: 64,
  learningRate: 2e-3,
} as const;

/**
 * sha256 of the tensor data the recipe produces on the wasm backend (deterministic: single
 * thread, IEEE arithmetic, our kernels' plain build on every CPU). Other backends (tfjs-node's oneDNN, GPUs) round differently and get
 * other bits: their weights are as good, but carry their own hash, which results record.
 */
export const FMNIST_CNN_WASM_SHA256 = '1a57153dbdb98e39d6f6394474c8e1e1d9ec06b659f92424f1f9825b8ee1a2a2';

type Params = Map<string, tf.Variable>;

function glorot(rng: Rng, shape: readonly number[], fanIn: number, fanOut: number): Float32Array {
  const limit = Math.sqrt(6 / (fanIn + fanOut));
  const n = shape.reduce((a, b) => a * b, 1);
  return Float32Array.from({ length: n }, () => (2 * rng.uniform() - 1) * limit);
}

function initialParams(seed: number): NamedArray[] {
  const rng = Rng.fromSeed(seed);
  const out: NamedArray[] = [];
  for (const c of CONVS) {
    const shape = [3, 3, c.cin, c.cout];
    out.push({ name: `${c.name}/W`, shape, data: glorot(rng, shape, 9 * c.cin, 9 * c.cout) });
    out.push({ name: `${c.name}/b`, shape: [c.cout], data: new Float32Array(c.cout) });
  }
  out.push({ name: 'logits/W', shape: [FEATURES, CLASSES], data: glorot(rng, [FEATURES, CLASSES], FEATURES, CLASSES) });
  out.push({ name: 'logits/b', shape: [CLASSES], data: new Float32Array(CLASSES) });
  return out;
}

function forward(params: Params, xBHWC: tf.Tensor4D): { featuresBD: tf.Tensor2D; logitsBK: tf.Tensor2D } {
  let h: tf.Tensor4D = xBHWC;
  for (const c of CONVS)
    h = tf.relu(
      conv2d(h, params.get(`${c.name}/W`) as tf.Tensor4D, params.get(`${c.name}/b`) as tf.Tensor1D, c.stride),
    );
  const featuresBD = tf.mean<tf.Tensor2D>(h, [1, 2]);
  const logitsBK = dense(
    featuresBD,
    params.get('logits/W') as tf.Tensor2D,
    params.get('logits/b') as tf.Tensor1D,
  ) as tf.Tensor2D;
  return { featuresBD, logitsBK };
}

let instances = 0;

function toVariables(arrays: readonly NamedArray[], trainable: boolean): Params {
  const prefix = `${FMNIST_CNN_NAME}${instances++}`; // variable names are global to the engine
  return new Map(
    arrays.map((a) => {
      const initial = tf.tensor(a.data, [...a.shape]);
      const v = tf.variable(initial, trainable, `${prefix}/${a.name}`);
      initial.dispose();
      return [a.name, v];
    }),
  );
}

/** sha256 of the weights' tensor data in layer order (what {@link FMNIST_CNN_WASM_SHA256} pins). */
function weightsHash(arrays: readonly NamedArray[]): string {
  const total = arrays.reduce((n, a) => n + a.data.byteLength, 0);
  const bytes = new Uint8Array(total);
  let offset = 0;
  for (const a of arrays) {
    bytes.set(new Uint8Array(a.data.buffer, a.data.byteOffset, a.data.byteLength), offset);
    offset += a.data.byteLength;
  }
  return sha256Hex(bytes);
}

export interface FmnistCnnTraining {
  /** The weights as a safetensors file (metadata: extractor, recipe, accuracy). */
  readonly weights: Uint8Array;
  readonly weightsSha256: string;
  /** Accuracy on the first `evalCount` test images. */
  readonly testAccuracy: number;
  readonly seconds: number;
}

/**
 * Trains the extractor by {@link FMNIST_CNN_RECIPE} on `train` (Fashion-MNIST's train split) and
 * measures it on `test`. Deterministic on a given backend; on wasm it runs our kernels' plain build
 * (no fused multiply-adds, which only CPUs with FMA fuse), so that every CPU gets the pinned bits,
 * and tfjs's convolution for its stride-2 and one-channel layers, as when the recipe was recorded.
 */
export async function trainFmnistCnn(
  train: ImageDataset,
  test: ImageDataset,
  options: { evalCount?: number; onStep?: (step: number, loss: number) => void; signal?: AbortSignal } = {},
): Promise<FmnistCnnTraining> {
  return withPlainArithmetic(() => withTfjsConvolutions(() => trainByRecipe(train, test, options)));
}

async function trainByRecipe(
  train: ImageDataset,
  test: ImageDataset,
  options: { evalCount?: number; onStep?: (step: number, loss: number) => void; signal?: AbortSignal },
): Promise<FmnistCnnTraining> {
  const recipe = FMNIST_CNN_RECIPE;
  for (const d of [train, test]) {
    if (d.channels !== 1 || d.height > SIZE || d.width > SIZE)
      throw evalError(
        'DDPM_EVAL_INCOMPARABLE',
        `${FMNIST_CNN_NAME} trains on grey images of at most ${SIZE} × ${SIZE}; ${d.name} is ${d.height} × ${d.width} × ${d.channels}`,
      );
  }
  const started = Date.now();
  const labels = await readLabels(train);
  const params = toVariables(initialParams(recipe.seed), true);
  const optimizer = tf.train.adam(recipe.learningRate);
  const order = Rng.fromSeed(recipe.seed + 1).permutation(train.size);
  try {
    for (let step = 0; step < recipe.steps; step++) {
      if (options.signal?.aborted) throw evalError('DDPM_EVAL_ABORTED', 'training of the extractor was stopped');
      const indices = Array.from({ length: recipe.batch }, (_, i) => order[(step * recipe.batch + i) % train.size]!);
      const x = tf.tensor4d(toModelInput(await train.read(indices), indices.length, train, SIZE), [
        indices.length,
        SIZE,
        SIZE,
        1,
      ]);
      const y = tf.tidy(() =>
        tf.oneHot(
          tf.tensor1d(
            indices.map((i) => labels[i]!),
            'int32',
          ),
          CLASSES,
        ),
      );
      const cost = optimizer.minimize(
        () => tf.losses.softmaxCrossEntropy<tf.Tensor, tf.Scalar>(y, forward(params, x).logitsBK),
        true,
        [...params.values()],
      );
      const loss = (await cost!.data())[0]!;
      tf.dispose([x, y, cost!]);
      options.onStep?.(step, loss);
    }
    const arrays = await Promise.all(
      [...params.entries()].map(async ([name, v]) => ({
        name,
        shape: v.shape,
        data: (await v.data()) as Float32Array,
      })),
    );
    const weightsSha256 = weightsHash(arrays);
    const extractor = new FmnistCnn(arrays, weightsSha256);
    const testAccuracy = await accuracy(extractor, test, options.evalCount ?? 2000);
    extractor.dispose();
    const weights = encodeSafetensors(arrays, {
      extractor: FMNIST_CNN_NAME,
      recipe: JSON.stringify(recipe),
      'weights.sha256': weightsSha256,
      'test.accuracy': testAccuracy.toFixed(4),
      backend: tf.getBackend(),
    });
    return { weights, weightsSha256, testAccuracy, seconds: (Date.now() - started) / 1000 };
  } finally {
    optimizer.dispose();
    for (const v of params.values()) v.dispose();
  }
}

async function readLabels(dataset: ImageDataset): Promise<Uint8Array> {
  if (!dataset.labels)
    throw evalError('DDPM_EVAL_INCOMPARABLE', `${dataset.name} has no class labels to train ${FMNIST_CNN_NAME} on`);
  return dataset.labels();
}

async function accuracy(extractor: FmnistCnn, test: ImageDataset, count: number): Promise<number> {
  const labels = await readLabels(test);
  const n = Math.min(count, test.size);
  let right = 0;
  for (let start = 0; start < n; start += 250) {
    const indices = Array.from({ length: Math.min(250, n - start) }, (_, i) => start + i);
    const x = tf.tensor4d(toModelInput(await test.read(indices), indices.length, test, SIZE), [
      indices.length,
      SIZE,
      SIZE,
      1,
    ]);
    const { featuresBD, logitsBK } = extractor.extract(x);
    const predicted = tf.argMax(logitsBK, 1);
    const values = await predicted.data();
    tf.dispose([x, featuresBD, logitsBK, predicted]);
    indices.forEach((idx, i) => (right += values[i] === labels[idx] ? 1 : 0));
  }
  return right / n;
}

export class FmnistCnn implements FeatureExtractor {
  readonly name = FMNIST_CNN_NAME;
  readonly distanceName = `fd_${FMNIST_CNN_NAME}`;
  readonly featureDim = FEATURES;
  readonly classes = CLASSES;
  readonly batch = 250;
  readonly input = FMNIST_CNN_INPUT;
  readonly preprocessing = 'model input as is: 28 x 28 grey padded with -1 to 32 x 32, values in [-1, 1]';
  private readonly params: Params;

  constructor(
    arrays: readonly NamedArray[],
    readonly weightsSha256: string,
  ) {
    const expected = initialParams(0);
    for (const e of expected) {
      const a = arrays.find((x) => x.name === e.name);
      if (!a || a.shape.join(',') !== e.shape.join(','))
        throw evalError(
          'DDPM_EVAL_FILE_INVALID',
          `${FMNIST_CNN_NAME} weights: ${e.name} ${a ? `has shape [${a.shape.join(', ')}], expected [${e.shape.join(', ')}]` : 'is missing'}`,
        );
    }
    this.params = toVariables(arrays, false);
  }

  /** The extractor from its safetensors file (the checksum inside is verified). */
  static fromWeights(bytes: Uint8Array): FmnistCnn {
    const { tensors, metadata } = decodeSafetensors(bytes);
    if (metadata.extractor !== FMNIST_CNN_NAME)
      throw evalError(
        'DDPM_EVAL_FILE_INVALID',
        `these weights are for ${metadata.extractor ?? 'an unnamed network'}, not ${FMNIST_CNN_NAME}`,
      );
    return new FmnistCnn(tensors, weightsHash(tensors));
  }

  extract(imagesBHWC: tf.Tensor4D): { featuresBD: tf.Tensor2D; logitsBK: tf.Tensor2D } {
    const [, h, w, c] = imagesBHWC.shape;
    if (h !== SIZE || w !== SIZE || c !== 1)
      throw evalError(
        'DDPM_EVAL_INCOMPARABLE',
        `${FMNIST_CNN_NAME} takes ${SIZE} × ${SIZE} × 1 images, got ${h} × ${w} × ${c}`,
      );
    const out = tf.tidy(() => {
      const r = forward(this.params, imagesBHWC);
      return [r.featuresBD, r.logitsBK] as const;
    });
    return { featuresBD: out[0], logitsBK: out[1] };
  }

  dispose(): void {
    for (const v of this.params.values()) v.dispose();
  }
}
