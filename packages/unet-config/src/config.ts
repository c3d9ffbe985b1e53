/**
 * The U-Net's hyper-parameters (Appendix B; the official `models/unet.py` arguments).
 */
import { unetError } from './errors';

export interface UNetConfig {
  /** Base channel count `ch` (128 for the paper's models). */
  readonly ch: number;
  /** Channel multiplier per resolution level, e.g. [1, 2, 2, 2] for CIFAR-10. */
  readonly chMult: readonly number[];
  /** Residual blocks per level on the way down (the way up has one more). Paper: 2. */
  readonly numResBlocks: number;
  /** Feature-map resolutions that get self-attention. Paper: [16]. */
  readonly attnResolutions: readonly number[];
  /** Dropout rate in the residual blocks, training mode only. CIFAR-10: 0.1; 256²: 0. */
  readonly dropout: number;
  /** Image channels in (3 for RGB, 1 for grey). */
  readonly inChannels: number;
  /** Output channels: inChannels, or 2·inChannels when the diffusion learns variances. */
  readonly outChannels: number;
  /** Square image side; must halve exactly at every level. */
  readonly imageSize: number;
  /** GroupNorm groups (32 in the official code); must divide every channel count. */
  readonly numGroups: number;
  /** Resample with 3×3 convolutions (official default) rather than pooling / plain upsampling. */
  readonly resampleWithConv: boolean;
}

function fail(message: string): never {
  throw unetError('DDPM_UNET_CONFIG_INVALID', message);
}

function positiveInt(name: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) {
    fail(`${name} must be a positive integer, got ${JSON.stringify(value)}`);
  }
  return value;
}

/** Checks every field and cross-field constraint, naming the first problem. */
export function validateUNetConfig(config: UNetConfig): UNetConfig {
  positiveInt('ch', config.ch);
  positiveInt('numResBlocks', config.numResBlocks);
  positiveInt('inChannels', config.inChannels);
  positiveInt('outChannels', config.outChannels);
  positiveInt('imageSize', config.imageSize);
  positiveInt('numGroups', config.numGroups);
  if (!Array.isArray(config.chMult) || config.chMult.length === 0) {
    fail(`chMult must be a non-empty list of positive integers, got ${JSON.stringify(config.chMult)}`);
  }
  config.chMult.forEach((m, i) => positiveInt(`chMult[${i}]`, m));
  // Through an unknown: Array.isArray would narrow a readonly number[] to any[] for the checks below.
  const attnResolutions: unknown = config.attnResolutions;
  if (!Array.isArray(attnResolutions)) {
    fail(`attnResolutions must be a list of resolutions, got ${JSON.stringify(config.attnResolutions)}`);
  }
  if (typeof config.dropout !== 'number' || !(config.dropout >= 0 && config.dropout < 1)) {
    fail(`dropout must be a number in [0, 1), got ${JSON.stringify(config.dropout)}`);
  }
  if (typeof config.resampleWithConv !== 'boolean') {
    fail(`resampleWithConv must be true or false, got ${JSON.stringify(config.resampleWithConv)}`);
  }
  if ((config.imageSize & (config.imageSize - 1)) !== 0) {
    fail(`imageSize must be a power of two (the data layer pads e.g. 28×28 images to 32×32), got ${config.imageSize}`);
  }
  const levels = config.chMult.length;
  const smallest = config.imageSize / 2 ** (levels - 1);
  if (!Number.isInteger(smallest) || smallest < 1) {
    fail(
      `imageSize ${config.imageSize} cannot be halved ${levels - 1} times (chMult has ${levels} levels); ` +
        'use fewer levels or larger images',
    );
  }
  const resolutions = resolutionsOf(config);
  for (const r of config.attnResolutions) {
    if (!resolutions.includes(r)) {
      fail(`attnResolutions includes ${r}, which is not one of the model's resolutions ${resolutions.join(', ')}`);
    }
  }
  for (const c of [config.ch, ...config.chMult.map((m) => m * config.ch)]) {
    if (c % config.numGroups !== 0) {
      fail(`GroupNorm with ${config.numGroups} groups needs channel counts divisible by it; ${c} is not`);
    }
  }
  if (config.ch % 2 !== 0) fail(`ch must be even (the timestep embedding has dimension ch), got ${config.ch}`);
  return config;
}

/** The feature-map side at each level, from imageSize down. */
export function resolutionsOf(config: Pick<UNetConfig, 'imageSize' | 'chMult'>): number[] {
  return config.chMult.map((_, i) => config.imageSize / 2 ** i);
}
