/** Opens the dataset a spec names (see spec.ts): reads files, decodes images. */
import * as path from 'node:path';

import { openCifar10 } from './cifar10';
import { type ImageDataset } from './dataset';
import { openIdx } from './idx';
import { openImageFolder } from './image-folder';
import { proceduralShapes } from './procedural';
import { type DatasetSpec, parseDatasetSpec } from './spec';

/** Opens a dataset from its spec. `defaults` fill in what image folders and procedural data need. */
export async function openDataset(spec: string | DatasetSpec, defaults: { imageSize?: number; channels?: 1 | 3 } = {}): Promise<ImageDataset> {
  const parsed = typeof spec === 'string' ? parseDatasetSpec(spec) : spec;
  switch (parsed.kind) {
    case 'fashion-mnist':
    case 'mnist': {
      const prefix = parsed.split === 'train' ? 'train' : 't10k';
      return openIdx(path.join(parsed.dir, `${prefix}-images-idx3-ubyte.gz`), { labelsFile: path.join(parsed.dir, `${prefix}-labels-idx1-ubyte.gz`) });
    }
    case 'idx':
      return openIdx(parsed.file);
    case 'cifar10':
      return openCifar10(parsed.location, parsed.split);
    case 'folder':
      return openImageFolder(parsed.dir, { size: parsed.size ?? defaults.imageSize ?? 64, channels: parsed.channels ?? defaults.channels ?? 3 });
    case 'procedural':
      return proceduralShapes({
        size: parsed.size,
        imageSize: parsed.imageSize ?? defaults.imageSize ?? 32,
        channels: parsed.channels ?? defaults.channels ?? 1,
        seed: parsed.seed,
      });
    default: {
      const unreachable: never = parsed;
      throw new Error(`unknown dataset spec ${JSON.stringify(unreachable)}`);
    }
  }
}
