/**
 * What every dataset offers: a size, an image shape, and random access to raw uint8 HWC pixels.
 * Readers keep encoded or raw bytes on the host and never hold the dataset as tensors.
 */
export type DataErrorCode = 'DDPM_DATA_NOT_FOUND' | 'DDPM_DATA_INVALID' | 'DDPM_DATA_SPEC';

export class DataError extends Error {
  readonly code: DataErrorCode;

  constructor(code: DataErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'DataError';
    this.code = code;
  }
}

export interface ImageDataset {
  /** A description such as `idx:/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz`. */
  readonly name: string;
  readonly size: number;
  readonly height: number;
  readonly width: number;
  readonly channels: number;
  /** Pixels of the given examples, HWC uint8 each, concatenated in the order asked. */
  read(indices: ArrayLike<number>): Promise<Uint8Array>;
}

export function checkIndices(dataset: Pick<ImageDataset, 'name' | 'size'>, indices: ArrayLike<number>): void {
  for (let i = 0; i < indices.length; i++) {
    const v = indices[i]!;
    if (!Number.isInteger(v) || v < 0 || v >= dataset.size) {
      throw new DataError('DDPM_DATA_INVALID', `index ${v} is outside the ${dataset.size} examples of ${dataset.name}`);
    }
  }
}
