/**
 * CIFAR-10 in its binary form (`cifar-10-batches-bin`, what users download): each record is one
 * label byte then 3072 pixel bytes, the red, green and blue 32×32 planes in turn.
 */
import * as path from 'node:path';

import { allowedPath, readDataFile } from './data-access';
import { dataError, type ImageDataset, checkIndices, settled } from './dataset';
import { CIFAR10_RECORD_BYTES as RECORD, looksLikeCifar10 } from './formats';

export const CIFAR10_FILES = {
  train: ['data_batch_1.bin', 'data_batch_2.bin', 'data_batch_3.bin', 'data_batch_4.bin', 'data_batch_5.bin'],
  test: ['test_batch.bin'],
} as const;

/** `location` is the `cifar-10-batches-bin` directory or a single batch file. */
export async function openCifar10(location: string, split: 'train' | 'test' = 'train'): Promise<ImageDataset> {
  const { real, directory } = await allowedPath(location, 'any');
  const files = directory ? CIFAR10_FILES[split].map((f) => path.join(real, f)) : [real];
  const parts: Uint8Array[] = [];
  for (const file of files) {
    let bytes: Buffer;
    try {
      bytes = await readDataFile(file);
    } catch (err) {
      if ((err as { code?: string }).code !== 'DDPM_DATA_NOT_FOUND') throw err;
      throw dataError(
        'DDPM_DATA_NOT_FOUND',
        `CIFAR-10 ${split} file ${file} is missing (expected ${CIFAR10_FILES[split].join(', ')} in ${location})`,
      );
    }
    parts.push(cifarRecords(bytes, file));
  }
  return cifarDataset(parts, `cifar10:${location}:${split}`);
}

function cifarRecords(bytes: Buffer, file: string): Uint8Array {
  if (!looksLikeCifar10(bytes.length)) {
    throw dataError(
      'DDPM_DATA_INVALID',
      `${file} is ${bytes.length} bytes, not a whole number of ${RECORD}-byte CIFAR-10 records (truncated or not CIFAR-10 binary)`,
    );
  }
  return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length);
}

/** CIFAR-10 binary records (one or more batch files' bytes) as a dataset. */
export function cifarDataset(parts: readonly Uint8Array[], name: string): ImageDataset {
  const counts = parts.map((p) => p.length / RECORD);
  const size = counts.reduce((a, b) => a + b, 0);
  const locate = (i: number): [Uint8Array, number] => {
    let k = 0;
    let rest = i;
    while (rest >= counts[k]!) rest -= counts[k++]!;
    return [parts[k]!, rest * RECORD + 1];
  };
  const dataset: ImageDataset = {
    name,
    size,
    height: 32,
    width: 32,
    channels: 3,
    read(indices) {
      return settled(() => {
        checkIndices(dataset, indices);
        const out = new Uint8Array(indices.length * 3072);
        for (let i = 0; i < indices.length; i++) {
          const [part, offset] = locate(indices[i]!);
          const base = i * 3072;
          // planar CHW → interleaved HWC
          for (let p = 0; p < 1024; p++) {
            out[base + 3 * p] = part[offset + p]!;
            out[base + 3 * p + 1] = part[offset + 1024 + p]!;
            out[base + 3 * p + 2] = part[offset + 2048 + p]!;
          }
        }
        return out;
      });
    },
  };
  return dataset;
}
