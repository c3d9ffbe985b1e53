/**
 * Dataset specs as users type them (`--dataset ...`, the API's `dataset` field):
 *
 *   fashion-mnist[:DIR][?split=train|test]   IDX files (defaults to the Debian package's folder)
 *   mnist:DIR[?split=train|test]             the same file names, MNIST
 *   idx:FILE                                 one IDX image file, gzipped or not
 *   cifar10:DIR_OR_FILE[?split=train|test]   cifar-10-batches-bin
 *   folder:DIR[?size=64&channels=3]          PNG/JPEG, recursive, centre-cropped and resized
 *   procedural:shapes[?size=10000&imageSize=32&channels=1&seed=0]
 */
import * as path from 'node:path';

import { openCifar10 } from './cifar10';
import { dataError, type ImageDataset } from './dataset';
import { openIdx } from './idx';
import { openImageFolder } from './image-folder';
import { proceduralShapes } from './procedural';

export const FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist';
export const DATASET_KINDS = ['fashion-mnist', 'mnist', 'idx', 'cifar10', 'folder', 'procedural'] as const;
export type DatasetKind = (typeof DATASET_KINDS)[number];

export interface DatasetSpec {
  readonly kind: DatasetKind;
  readonly location?: string;
  readonly options: Readonly<Record<string, string>>;
}

export function parseDatasetSpec(spec: string): DatasetSpec {
  if (typeof spec !== 'string' || spec.trim() === '') throw dataError('DDPM_DATA_SPEC', 'dataset spec is empty');
  const [head, query = ''] = spec.split('?', 2) as [string, string?];
  const colon = head.indexOf(':');
  const kind = (colon < 0 ? head : head.slice(0, colon)).trim();
  const location = colon < 0 ? undefined : head.slice(colon + 1);
  if (!(DATASET_KINDS as readonly string[]).includes(kind)) {
    throw dataError('DDPM_DATA_SPEC', `unknown dataset kind ${JSON.stringify(kind)} in ${JSON.stringify(spec)}; expected one of ${DATASET_KINDS.join(', ')}`);
  }
  const options: Record<string, string> = {};
  for (const pair of query.split('&').filter((p) => p !== '')) {
    const [key, value] = pair.split('=', 2) as [string, string?];
    if (value === undefined || key === '') throw dataError('DDPM_DATA_SPEC', `dataset option ${JSON.stringify(pair)} must be key=value`);
    options[key] = decodeURIComponent(value);
  }
  if (location !== undefined && location.includes('\0')) throw dataError('DDPM_DATA_SPEC', 'dataset location contains NUL');
  const allowed: Record<DatasetKind, string[]> = {
    'fashion-mnist': ['split'],
    mnist: ['split'],
    idx: [],
    cifar10: ['split'],
    folder: ['size', 'channels'],
    procedural: ['size', 'imageSize', 'channels', 'seed'],
  };
  for (const key of Object.keys(options)) {
    if (!allowed[kind as DatasetKind].includes(key)) {
      throw dataError('DDPM_DATA_SPEC', `dataset ${kind} has no option ${JSON.stringify(key)}; it takes ${allowed[kind as DatasetKind].join(', ') || 'none'}`);
    }
  }
  if ((kind === 'idx' || kind === 'cifar10' || kind === 'folder' || kind === 'mnist') && !location) {
    throw dataError('DDPM_DATA_SPEC', `dataset ${kind} needs a location, e.g. ${kind}:/path`);
  }
  return { kind: kind as DatasetKind, ...(location ? { location } : {}), options };
}

function split(options: Readonly<Record<string, string>>): 'train' | 'test' {
  const value = options['split'] ?? 'train';
  if (value !== 'train' && value !== 'test') throw dataError('DDPM_DATA_SPEC', `split must be train or test, got ${JSON.stringify(value)}`);
  return value;
}

function integerOption(options: Readonly<Record<string, string>>, key: string, fallback: number, min = 1): number {
  const raw = options[key];
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (raw.trim() === '' || !Number.isSafeInteger(value) || value < min) {
    throw dataError('DDPM_DATA_SPEC', `dataset option ${key} must be an integer >= ${min}, got ${JSON.stringify(raw)}`);
  }
  return value;
}

function channelsOption(options: Readonly<Record<string, string>>, fallback: 1 | 3): 1 | 3 {
  const c = integerOption(options, 'channels', fallback);
  if (c !== 1 && c !== 3) throw dataError('DDPM_DATA_SPEC', `channels must be 1 or 3, got ${c}`);
  return c;
}

/** Opens the dataset a spec names. `defaults` fill in what image-folder and procedural need. */
export async function openDataset(
  specText: string,
  defaults: { imageSize?: number; channels?: 1 | 3 } = {},
): Promise<ImageDataset> {
  const spec = parseDatasetSpec(specText);
  const o = spec.options;
  switch (spec.kind) {
    case 'fashion-mnist':
    case 'mnist': {
      const dir = spec.location ?? FASHION_MNIST_DIR;
      const prefix = split(o) === 'train' ? 'train' : 't10k';
      return openIdx(path.join(dir, `${prefix}-images-idx3-ubyte.gz`));
    }
    case 'idx':
      return openIdx(spec.location!);
    case 'cifar10':
      return openCifar10(spec.location!, split(o));
    case 'folder':
      return openImageFolder(spec.location!, {
        size: integerOption(o, 'size', defaults.imageSize ?? 64),
        channels: channelsOption(o, defaults.channels ?? 3),
      });
    case 'procedural': {
      if ((spec.location ?? 'shapes') !== 'shapes') {
        throw dataError('DDPM_DATA_SPEC', `unknown procedural dataset ${JSON.stringify(spec.location)}; the one available is "shapes"`);
      }
      return proceduralShapes({
        size: integerOption(o, 'size', 10_000),
        imageSize: integerOption(o, 'imageSize', defaults.imageSize ?? 32),
        channels: channelsOption(o, defaults.channels ?? 1),
        seed: integerOption(o, 'seed', 0, 0),
      });
    }
    default: {
      const unreachable: never = spec.kind;
      throw dataError('DDPM_DATA_SPEC', `unknown dataset kind ${String(unreachable)}`);
    }
  }
}
