/**
 * Dataset specs as users type them (`--dataset ...`, the API's `dataset` field), parsed and
 * validated without touching any file, so the API can refuse a bad spec at the door:
 *
 *   fashion-mnist[:DIR][?split=train|test]   IDX files (defaults to the Debian package's folder)
 *   mnist:DIR[?split=train|test]             the same file names, MNIST
 *   idx:FILE                                 one IDX image file, gzipped or not
 *   cifar10:DIR_OR_FILE[?split=train|test]   cifar-10-batches-bin
 *   folder:DIR[?size=64&channels=3]          PNG/JPEG, recursive, centre-cropped and resized
 *   procedural:shapes[?size=10000&imageSize=32&channels=1&seed=0]
 *   store:NAME                               an IDX image file (gzipped or not) or CIFAR-10 binary
 *                                            batches uploaded to the object store (datasets/NAME)
 *
 * Opening a parsed spec is open-dataset.ts (it reads files and loads sharp).
 */
import * as path from 'node:path';

import { dataError } from './dataset';

export const FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist';
export const DATASET_KINDS = ['fashion-mnist', 'mnist', 'idx', 'cifar10', 'folder', 'procedural', 'store'] as const;
/** Names of datasets in the object store (`PUT /datasets/NAME`, `store:NAME`). */
export const STORE_DATASET_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
export type DatasetKind = (typeof DATASET_KINDS)[number];
export type Split = 'train' | 'test';

/** A parsed spec; sizes and channels left out are filled from the model when the dataset is opened. */
export type DatasetSpec =
  | { readonly kind: 'fashion-mnist' | 'mnist'; readonly dir: string; readonly split: Split }
  | { readonly kind: 'idx'; readonly file: string }
  | { readonly kind: 'cifar10'; readonly location: string; readonly split: Split }
  | { readonly kind: 'folder'; readonly dir: string; readonly size?: number; readonly channels?: 1 | 3 }
  | {
      readonly kind: 'procedural';
      readonly name: 'shapes';
      readonly size: number;
      readonly imageSize?: number;
      readonly channels?: 1 | 3;
      readonly seed: number;
    }
  | { readonly kind: 'store'; readonly name: string };

/** The options each kind takes (anything else is an error naming what it takes). */
const OPTIONS: Record<DatasetKind, readonly string[]> = {
  'fashion-mnist': ['split'],
  mnist: ['split'],
  idx: [],
  cifar10: ['split'],
  folder: ['size', 'channels'],
  procedural: ['size', 'imageSize', 'channels', 'seed'],
  store: [],
};

function fail(message: string): never {
  throw dataError('DDPM_DATA_SPEC', message);
}

function isKind(kind: string): kind is DatasetKind {
  return (DATASET_KINDS as readonly string[]).includes(kind);
}

function splitOption(options: ReadonlyMap<string, string>): Split {
  const value = options.get('split') ?? 'train';
  if (value !== 'train' && value !== 'test') fail(`split must be train or test, got ${JSON.stringify(value)}`);
  return value;
}

/** Largest image side a folder or procedural dataset may be resized or drawn to (the paper's largest is 256). */
const MAX_IMAGE_SIDE = 1024;
/** Largest dataset index the loader's permutations hold (uint32). */
const MAX_DATASET_SIZE = 2 ** 31 - 1;

function integerOption(
  options: ReadonlyMap<string, string>,
  key: string,
  min: number,
  max: number,
): number | undefined {
  const raw = options.get(key);
  if (raw === undefined) return undefined;
  const value = Number(raw);
  if (raw.trim() === '' || !Number.isSafeInteger(value) || value < min || value > max) {
    fail(`dataset option ${key} must be an integer from ${min} to ${max}, got ${JSON.stringify(raw)}`);
  }
  return value;
}

function channelsOption(options: ReadonlyMap<string, string>): 1 | 3 | undefined {
  const c = integerOption(options, 'channels', 1, 3);
  if (c !== undefined && c !== 1 && c !== 3) fail(`channels must be 1 or 3, got ${c}`);
  return c;
}

function needLocation(kind: DatasetKind, location: string | undefined): string {
  if (!location) fail(`dataset ${kind} needs a location, e.g. ${kind}:/path`);
  return location;
}

/** Parses and validates a spec, naming the first problem; touches no file. */
export function parseDatasetSpec(spec: string): DatasetSpec {
  if (typeof spec !== 'string' || spec.trim() === '') fail('dataset spec is empty');
  const [head, query = ''] = spec.split('?', 2) as [string, string?];
  const colon = head.indexOf(':');
  const kind = (colon < 0 ? head : head.slice(0, colon)).trim();
  const location = colon < 0 ? undefined : head.slice(colon + 1);
  if (!isKind(kind))
    fail(
      `unknown dataset kind ${JSON.stringify(kind)} in ${JSON.stringify(spec)}; expected one of ${DATASET_KINDS.join(', ')}`,
    );
  if (location !== undefined && location.includes('\0')) fail('dataset location contains NUL');
  const options = new Map<string, string>();
  for (const pair of query.split('&').filter((p) => p !== '')) {
    const [key, value] = pair.split('=', 2) as [string, string?];
    if (value === undefined || key === '') fail(`dataset option ${JSON.stringify(pair)} must be key=value`);
    let decoded: string;
    try {
      decoded = decodeURIComponent(value);
    } catch {
      fail(`dataset option ${key} has a malformed %-escape: ${JSON.stringify(value)}`);
    }
    if (!OPTIONS[kind].includes(key))
      fail(`dataset ${kind} has no option ${JSON.stringify(key)}; it takes ${OPTIONS[kind].join(', ') || 'none'}`);
    options.set(key, decoded);
  }
  switch (kind) {
    case 'fashion-mnist':
      return { kind, dir: location || FASHION_MNIST_DIR, split: splitOption(options) };
    case 'mnist':
      return { kind, dir: needLocation(kind, location), split: splitOption(options) };
    case 'idx':
      return { kind, file: needLocation(kind, location) };
    case 'cifar10':
      return { kind, location: needLocation(kind, location), split: splitOption(options) };
    case 'folder': {
      const size = integerOption(options, 'size', 1, MAX_IMAGE_SIDE);
      const channels = channelsOption(options);
      return {
        kind,
        dir: needLocation(kind, location),
        ...(size !== undefined ? { size } : {}),
        ...(channels !== undefined ? { channels } : {}),
      };
    }
    case 'procedural': {
      const name = location || 'shapes';
      if (name !== 'shapes') fail(`unknown procedural dataset ${JSON.stringify(name)}; the one available is "shapes"`);
      const imageSize = integerOption(options, 'imageSize', 8, MAX_IMAGE_SIDE);
      const channels = channelsOption(options);
      return {
        kind,
        name,
        size: integerOption(options, 'size', 1, MAX_DATASET_SIZE) ?? 10_000,
        ...(imageSize !== undefined ? { imageSize } : {}),
        ...(channels !== undefined ? { channels } : {}),
        seed: integerOption(options, 'seed', 0, 2 ** 32 - 1) ?? 0,
      };
    }
    case 'store': {
      const name = needLocation(kind, location).replace(/^datasets\//, '');
      if (!STORE_DATASET_NAME.test(name))
        fail(
          `store dataset name ${JSON.stringify(name)} must be 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit`,
        );
      return { kind, name };
    }
    default: {
      const unreachable: never = kind;
      return fail(`unknown dataset kind ${String(unreachable)}`);
    }
  }
}

/**
 * What a spec says of its images without opening anything: their side and channels where the
 * kind fixes them (Fashion-MNIST and MNIST 28×28 grey, CIFAR-10 32×32 RGB) or the spec names
 * them; left out where only the files know (idx, store) or the model decides (a folder or the
 * procedural shapes without size or channels).
 */
export function declaredShape(spec: DatasetSpec): { readonly side?: number; readonly channels?: 1 | 3 } {
  switch (spec.kind) {
    case 'fashion-mnist':
    case 'mnist':
      return { side: 28, channels: 1 };
    case 'cifar10':
      return { side: 32, channels: 3 };
    case 'folder':
      return {
        ...(spec.size !== undefined ? { side: spec.size } : {}),
        ...(spec.channels ? { channels: spec.channels } : {}),
      };
    case 'procedural':
      return {
        ...(spec.imageSize !== undefined ? { side: spec.imageSize } : {}),
        ...(spec.channels ? { channels: spec.channels } : {}),
      };
    default:
      return {};
  }
}

/**
 * Refuses, before anything runs, a dataset whose declared images the model cannot take: larger
 * than its side (smaller ones are padded) or with other channels. The loader checks the same
 * again on the opened files.
 */
export function checkDeclaredShape(
  spec: string,
  model: { readonly imageSize: number; readonly inChannels: number },
): void {
  const { side, channels } = declaredShape(parseDatasetSpec(spec));
  if (side !== undefined && side > model.imageSize)
    fail(
      `dataset ${spec} has ${side}x${side} images but the model takes ${model.imageSize}x${model.imageSize}; choose a preset of that size or a smaller imageSize`,
    );
  if (channels !== undefined && channels !== model.inChannels)
    fail(
      `dataset ${spec} has ${channels} channel(s) but the model takes ${model.inChannels}; choose a preset with ${channels} channel(s) or set the dataset's channels`,
    );
}

/** The file or folder a parsed spec reads from, if it reads from the file system. */
export function datasetPath(spec: DatasetSpec): string | undefined {
  switch (spec.kind) {
    case 'fashion-mnist':
    case 'mnist':
    case 'folder':
      return spec.dir;
    case 'idx':
      return spec.file;
    case 'cifar10':
      return spec.location;
    case 'procedural':
    case 'store':
      return undefined;
    default: {
      const unreachable: never = spec;
      return fail(`unknown dataset kind ${JSON.stringify(unreachable)}`);
    }
  }
}

/**
 * `spec` with a relative file or folder location made absolute against `base` (a command line's
 * working directory); the options and every other kind are left as written. The service keeps
 * refusing relative paths: a server has no working directory a client could mean.
 */
export function withAbsoluteLocation(spec: string, base: string): string {
  const parsed = parseDatasetSpec(spec);
  const location = datasetPath(parsed);
  if (location === undefined || path.isAbsolute(location)) return spec;
  const query = spec.includes('?') ? spec.slice(spec.indexOf('?')) : '';
  return `${parsed.kind}:${path.resolve(base, location)}${query}`;
}

/**
 * Whether `file` is `root` or lies beneath it, by path arithmetic alone (both absolute; no
 * symlinks followed: the API checks the path as written, the job process its real path).
 */
export function insideRoot(root: string, file: string): boolean {
  const rel = path.relative(root, file);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}
