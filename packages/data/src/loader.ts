/**
 * Batches for training: a seeded shuffle per epoch (regenerated from the seed and epoch number,
 * so the state to checkpoint is just {epoch, position, flip RNG}), pixels scaled to [-1, 1]
 * (Sec. 3.3), centred padding up to the model's size (28×28 → 32×32, padded with -1, the
 * background), and random horizontal flips (Appendix B).
 */
import { Rng, type RngState } from '@ddpm/core';

import { dataError, type ImageDataset } from './dataset';

export interface LoaderState {
  readonly epoch: number;
  readonly position: number;
  readonly flipRng: RngState;
}

export interface LoaderOptions {
  readonly batchSize: number;
  readonly seed: number;
  /** Model input side; smaller images are padded centrally, larger ones are an error. */
  readonly imageSize: number;
  readonly channels: number;
  readonly randomFlip?: boolean;
  readonly state?: LoaderState;
}

export interface Batch {
  /** [B, S, S, C] row-major, in [-1, 1]. */
  readonly pixels: Float32Array;
  readonly shape: readonly [number, number, number, number];
  readonly indices: Int32Array;
  /** The epoch the batch's first example came from. */
  readonly epoch: number;
}

/** uint8 HWC images → float32 [-1, 1], centrally padded to `size` with -1. */
export function toModelInput(
  raw: Uint8Array,
  count: number,
  from: { height: number; width: number; channels: number },
  size: number,
  flips?: readonly boolean[],
): Float32Array {
  const { height: h, width: w, channels: c } = from;
  const out = new Float32Array(count * size * size * c).fill(-1);
  const top = Math.floor((size - h) / 2);
  const left = Math.floor((size - w) / 2);
  for (let n = 0; n < count; n++) {
    const flip = flips?.[n] ?? false;
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const sx = flip ? w - 1 - x : x;
        const src = ((n * h + y) * w + sx) * c;
        const dst = ((n * size + top + y) * size + left + x) * c;
        for (let k = 0; k < c; k++) out[dst + k] = raw[src + k]! / 127.5 - 1;
      }
    }
  }
  return out;
}

export class DataLoader {
  private epoch: number;
  private position: number;
  private order: Int32Array;
  private readonly flipRng: Rng;
  private readonly randomFlip: boolean;

  constructor(
    readonly dataset: ImageDataset,
    private readonly options: LoaderOptions,
  ) {
    const { batchSize, imageSize, channels } = options;
    if (!Number.isInteger(batchSize) || batchSize < 1)
      throw dataError('DDPM_DATA_SPEC', `batch size must be a positive integer, got ${batchSize}`);
    if (dataset.height > imageSize || dataset.width > imageSize) {
      throw dataError(
        'DDPM_DATA_SPEC',
        `${dataset.name} has ${dataset.height}x${dataset.width} images but the model takes ${imageSize}x${imageSize}`,
      );
    }
    if (dataset.channels !== channels) {
      throw dataError(
        'DDPM_DATA_SPEC',
        `${dataset.name} has ${dataset.channels} channel(s) but the model takes ${channels}`,
      );
    }
    this.randomFlip = options.randomFlip ?? true;
    const state = options.state;
    this.epoch = state?.epoch ?? 0;
    this.position = state?.position ?? 0;
    if (
      !Number.isInteger(this.epoch) ||
      this.epoch < 0 ||
      !Number.isInteger(this.position) ||
      this.position < 0 ||
      this.position > dataset.size
    ) {
      throw dataError(
        'DDPM_DATA_SPEC',
        `loader state ${JSON.stringify(state)} does not fit ${dataset.name} (${dataset.size} examples)`,
      );
    }
    this.flipRng = state ? Rng.fromState(state.flipRng) : Rng.fromSeed(options.seed).fork(1_000_000);
    this.order = this.orderOf(this.epoch);
  }

  private orderOf(epoch: number): Int32Array {
    return Rng.fromSeed(this.options.seed).fork(epoch).permutation(this.dataset.size);
  }

  state(): LoaderState {
    return { epoch: this.epoch, position: this.position, flipRng: this.flipRng.state() };
  }

  /** The next batch's examples and flips, advancing the order and the flip RNG. */
  private draw(): { indices: Int32Array; flips: boolean[]; epoch: number } {
    const { batchSize } = this.options;
    const indices = new Int32Array(batchSize);
    const epoch = this.epoch;
    for (let i = 0; i < batchSize; i++) {
      if (this.position >= this.dataset.size) {
        this.epoch += 1;
        this.position = 0;
        this.order = this.orderOf(this.epoch);
      }
      indices[i] = this.order[this.position++]!;
    }
    const flips = Array.from({ length: batchSize }, () => this.randomFlip && this.flipRng.uniform() < 0.5);
    return { indices, flips, epoch };
  }

  async next(): Promise<Batch> {
    const { batchSize, imageSize, channels } = this.options;
    const { indices, flips, epoch } = this.draw();
    const raw = await this.dataset.read(indices);
    const pixels = toModelInput(raw, batchSize, this.dataset, imageSize, flips);
    return { pixels, shape: [batchSize, imageSize, imageSize, channels], indices, epoch };
  }

  /**
   * Advances exactly as {@link next} does, without reading the images: a data-parallel rank draws
   * the micro-batches other ranks compute, so every rank's loader state stays the same.
   */
  skip(): { indices: Int32Array; epoch: number } {
    const { indices, epoch } = this.draw();
    return { indices, epoch };
  }
}

/** The first `count` examples (or those at `indices`) as model input, unflipped: for evaluation. */
export async function readForModel(
  dataset: ImageDataset,
  indices: ArrayLike<number>,
  imageSize: number,
): Promise<Float32Array> {
  const raw = await dataset.read(indices);
  return toModelInput(raw, indices.length, dataset, imageSize);
}
