/** Opens the dataset a spec names (see spec.ts): reads files, decodes images. */
import * as path from 'node:path';

import { cifarDataset, openCifar10 } from './cifar10';
import { gunzipIfGzip, readStoreDataset } from './data-access';
import { dataError, type ImageDataset } from './dataset';
import { looksLikeCifar10, looksLikeIdxImages } from './formats';
import { idxDataset, openIdx } from './idx';
import { openImageFolder } from './image-folder';
import { proceduralShapes } from './procedural';
import { type DatasetSpec, parseDatasetSpec } from './spec';

/** Opens a dataset from its spec. `defaults` fill in what image folders and procedural data need. */
export async function openDataset(
  spec: string | DatasetSpec,
  defaults: { imageSize?: number; channels?: 1 | 3 } = {},
): Promise<ImageDataset> {
  const parsed = typeof spec === 'string' ? parseDatasetSpec(spec) : spec;
  switch (parsed.kind) {
    case 'fashion-mnist':
    case 'mnist': {
      const prefix = parsed.split === 'train' ? 'train' : 't10k';
      return openIdx(path.join(parsed.dir, `${prefix}-images-idx3-ubyte.gz`), {
        labelsFile: path.join(parsed.dir, `${prefix}-labels-idx1-ubyte.gz`),
      });
    }
    case 'idx':
      return openIdx(parsed.file);
    case 'cifar10':
      return openCifar10(parsed.location, parsed.split);
    case 'folder':
      return openImageFolder(parsed.dir, {
        size: parsed.size ?? defaults.imageSize ?? 64,
        channels: parsed.channels ?? defaults.channels ?? 3,
      });
    case 'procedural':
      return proceduralShapes({
        size: parsed.size,
        imageSize: parsed.imageSize ?? defaults.imageSize ?? 32,
        channels: parsed.channels ?? defaults.channels ?? 1,
        seed: parsed.seed,
      });
    case 'store':
      return openStoreDataset(parsed.name);
    default: {
      const unreachable: never = parsed;
      throw new Error(`unknown dataset spec ${JSON.stringify(unreachable)}`);
    }
  }
}

/** A dataset uploaded to the object store: an IDX image file (gzipped or not) or CIFAR-10 binary batches, told apart by content. */
async function openStoreDataset(name: string): Promise<ImageDataset> {
  const label = `store:${name}`;
  const bytes = await gunzipIfGzip(await readStoreDataset(name), label);
  if (looksLikeIdxImages(bytes)) return idxDataset(bytes, label);
  if (looksLikeCifar10(bytes.length))
    return cifarDataset([new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length)], label);
  throw dataError('DDPM_DATA_INVALID', `${label} is neither an IDX image file nor CIFAR-10 binary records`);
}
