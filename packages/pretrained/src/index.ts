/**
 * @ddpm/pretrained — reference checkpoints shipped in this package (`models/<name>/`): the EMA
 * weights of a run (`ema.safetensors`) and `model.json`, which records the run's configuration,
 * the recipe, its step and training time, the weights' sha256 and the scores measured on them.
 * The weights are checked against their hash before anyone uses them; no tensors here (the API
 * reads the manifest for T, the engine turns the bytes into a U-Net).
 */
import { readFileSync } from 'node:fs';
import * as path from 'node:path';

import { PRETRAINED_MODELS, type PretrainedName, type TrainConfig, validateTrainConfig } from '@ddpm/settings';
import { errorCodes, sha256Hex } from '@ddpm/core';

export { PRETRAINED_MODELS, type PretrainedName } from '@ddpm/settings';

export const pretrainedError = errorCodes({
  DDPM_PRETRAINED_INVALID: 'invalid',
  DDPM_PRETRAINED_NOT_FOUND: 'not-found',
});

/** A score measured on the shipped weights, with what it was measured with. */
export interface PretrainedScore {
  readonly value: number;
  readonly [detail: string]: unknown;
}

export interface PretrainedManifest {
  readonly version: 1;
  readonly name: PretrainedName;
  /** The weights file, beside the manifest. */
  readonly weights: string;
  readonly sha256: string;
  readonly bytes: number;
  /** The run's configuration (as its checkpoints store it). */
  readonly train: TrainConfig;
  /** The recipe the run followed, in words and as the request it was trained with. */
  readonly recipe: { readonly name: string; readonly request: Readonly<Record<string, unknown>> };
  readonly step: number;
  readonly imagesSeen: number;
  readonly trainSeconds: number;
  /** Where and how it was trained (machine, workers, date, train job). */
  readonly provenance: Readonly<Record<string, unknown>>;
  /** Scores by name (fd_fmnist_cnn, bits_per_dim, pixel statistics), with their settings. */
  readonly scores: Readonly<Record<string, PretrainedScore>>;
  /** A small deterministic sampling the test repeats on the shipped weights, and what it measured. */
  readonly check: {
    readonly count: number;
    readonly steps: number;
    readonly seed: number;
    readonly pixelMean: number;
    readonly pixelBackground: number;
    /** sha256 of the 8-bit samples as drawn on the wasm backend when the model was exported. */
    readonly samplesSha256?: string;
  };
  /** The picture the model is shown with (scripts/pretrained-grid.cjs): a grid of its samples, beside the weights. */
  readonly grid?: {
    readonly file: string;
    readonly count: number;
    readonly sampler: { readonly kind: string; readonly steps: number };
    readonly seed: number;
    readonly bytes: number;
    readonly sha256: string;
    readonly [detail: string]: unknown;
  };
}

/** Where the shipped models are: this package's `models/`. */
export const MODELS_ROOT = path.join(__dirname, '..', 'models');

/** The folder of a shipped model (`<root>/<name>`; the root is `models/` of this package unless a test gives another). */
export function pretrainedDir(name: string, root: string = MODELS_ROOT): string {
  return path.join(root, checkName(name));
}

function checkName(name: string): PretrainedName {
  if (!(PRETRAINED_MODELS as readonly string[]).includes(name)) {
    throw pretrainedError(
      'DDPM_PRETRAINED_NOT_FOUND',
      `no pretrained model ${JSON.stringify(name)}; shipped: ${PRETRAINED_MODELS.join(', ')}`,
    );
  }
  return name as PretrainedName;
}

/** The manifest of a shipped model, checked (its run configuration too). */
export function pretrainedManifest(name: string, root: string = MODELS_ROOT): PretrainedManifest {
  const file = path.join(pretrainedDir(name, root), 'model.json');
  let parsed: PretrainedManifest;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8')) as PretrainedManifest;
  } catch (err) {
    throw pretrainedError('DDPM_PRETRAINED_NOT_FOUND', `cannot read ${file}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  if (
    parsed.version !== 1 ||
    parsed.name !== name ||
    typeof parsed.weights !== 'string' ||
    !/^[0-9a-f]{64}$/.test(parsed.sha256) ||
    !Number.isInteger(parsed.step)
  ) {
    throw pretrainedError('DDPM_PRETRAINED_INVALID', `${file} is not a version-1 manifest of ${name}`);
  }
  try {
    validateTrainConfig(parsed.train);
  } catch (err) {
    throw pretrainedError('DDPM_PRETRAINED_INVALID', `${file}: ${(err as Error).message}`, { cause: err });
  }
  return parsed;
}

/** The manifest and the weights' bytes, verified against the manifest's sha256 and size. */
export function readPretrained(
  name: string,
  root: string = MODELS_ROOT,
): { readonly manifest: PretrainedManifest; readonly weights: Uint8Array; readonly url: string } {
  const manifest = pretrainedManifest(name, root);
  const file = path.join(pretrainedDir(name, root), path.basename(manifest.weights));
  const weights = readVerified(file, manifest, 'the manifest says');
  return { manifest, weights, url: `pretrained:${name}` };
}

/** The grid PNG a shipped model is shown with, verified against its manifest; undefined when it has none. */
export function readPretrainedGrid(name: string, root: string = MODELS_ROOT): Uint8Array | undefined {
  const { grid } = pretrainedManifest(name, root);
  if (grid === undefined) return undefined;
  return readVerified(path.join(pretrainedDir(name, root), path.basename(grid.file)), grid, 'the manifest says');
}

/** A file's bytes, checked against the size and sha256 recorded for it. */
function readVerified(
  file: string,
  record: { readonly bytes: number; readonly sha256: string },
  says: string,
): Uint8Array {
  let bytes: Uint8Array;
  try {
    bytes = new Uint8Array(readFileSync(file));
  } catch (err) {
    throw pretrainedError('DDPM_PRETRAINED_NOT_FOUND', `cannot read ${file}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  const hash = sha256Hex(bytes);
  if (bytes.length !== record.bytes || hash !== record.sha256) {
    throw pretrainedError(
      'DDPM_PRETRAINED_INVALID',
      `${file} fails its check: ${bytes.length} bytes with sha256 ${hash}, ${says} ${record.bytes} bytes with sha256 ${record.sha256}`,
    );
  }
  return bytes;
}

/** Where the shipped feature extractors' weights are: this package's `extractors/`. */
export const EXTRACTORS_ROOT = path.join(__dirname, '..', 'extractors');

/**
 * Feature extractors' weights shipped with the service, by their cache name
 * (`<extractor>-v<recipe version>`): the file and its sha256. `fmnist_cnn-v1` is what its recipe
 * trains on the wasm backend (a test trains it again and compares), so an evaluation needs
 * neither Fashion-MNIST nor a minute of training first, and every backend measures with the same
 * weights.
 */
export const SHIPPED_EXTRACTORS = {
  'fmnist_cnn-v1': {
    file: 'fmnist_cnn-v1.safetensors',
    bytes: 394_872,
    sha256: '950e9d42b6e0641a0e65949c00875937238deb0a5642c9a330f88f3c603d434f',
  },
} as const satisfies Record<string, { file: string; bytes: number; sha256: string }>;

export type ShippedExtractor = keyof typeof SHIPPED_EXTRACTORS;

export function isShippedExtractor(name: string): name is ShippedExtractor {
  return Object.prototype.hasOwnProperty.call(SHIPPED_EXTRACTORS, name);
}

/** A shipped extractor's weights, verified against their recorded size and sha256. */
export function readShippedExtractor(name: ShippedExtractor, root: string = EXTRACTORS_ROOT): Uint8Array {
  const record = SHIPPED_EXTRACTORS[name];
  return readVerified(path.join(root, record.file), record, 'expected');
}
