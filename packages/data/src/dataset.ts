/**
 * What every dataset offers: a size, an image shape, and random access to raw uint8 HWC pixels.
 * Readers keep encoded or raw bytes on the host and never hold the dataset as tensors.
 */
import { errorCodes } from '@ddpm/core';

/** Data errors, each code declared once with its kind (see @ddpm/core). */
export const dataError = errorCodes({
  DDPM_DATA_NOT_FOUND: 'not-found',
  DDPM_DATA_INVALID: 'invalid',
  DDPM_DATA_SPEC: 'invalid',
  /** Outside the data roots, not a regular file, or over a size cap (data-access.ts). */
  DDPM_DATA_REFUSED: 'invalid',
  DDPM_DATA_ABORTED: 'aborted',
});
export type DataErrorCode = Parameters<typeof dataError>[0];

export interface ImageDataset {
  /** A description such as `idx:/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz`. */
  readonly name: string;
  readonly size: number;
  readonly height: number;
  readonly width: number;
  readonly channels: number;
  /** Pixels of the given examples, HWC uint8 each, concatenated in the order asked. */
  read(indices: ArrayLike<number>): Promise<Uint8Array>;
  /** The class label of every example, where the dataset has them (Fashion-MNIST, MNIST). */
  labels?(): Promise<Uint8Array>;
}

export function checkIndices(dataset: Pick<ImageDataset, 'name' | 'size'>, indices: ArrayLike<number>): void {
  for (let i = 0; i < indices.length; i++) {
    const v = indices[i]!;
    if (!Number.isInteger(v) || v < 0 || v >= dataset.size) {
      throw dataError('DDPM_DATA_INVALID', `index ${v} is outside the ${dataset.size} examples of ${dataset.name}`);
    }
  }
}

/**
 * `read()`'s result, or its error, as a promise: for readers whose bytes are already in memory
 * (an error still arrives as a rejection, as from readers that do I/O).
 */
export function settled<T>(read: () => T): Promise<T> {
  return new Promise((resolve) => resolve(read()));
}
