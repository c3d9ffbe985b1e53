/**
 * The full configuration of a training run, stored in every checkpoint. Defaults are the paper's
 * (Appendix B): Adam lr 2e-4 with 5000 warm-up steps, β 0.9/0.999, ε 1e-8, gradient clipping at
 * global norm 1, EMA 0.9999, random flips, L_simple with ε-prediction and σ² = β.
 */
import {
  BETA_SCHEDULE_KINDS,
  type BetaScheduleSpec,
  type LossType,
  type MeanType,
  type VarianceType,
  isBetaScheduleKind,
  isLearnedVariance,
  validateModelling,
} from '@ddpm/diffusion';
import { type UNetConfig, isPresetName, preset, PRESET_NAMES, validateUNetConfig } from '@ddpm/unet';

import { engineError } from './errors';

export interface TrainConfig {
  /** A dataset spec (see @ddpm/data), e.g. `fashion-mnist` or `cifar10:/data/cifar-10-batches-bin`. */
  readonly dataset: string;
  readonly model: { readonly preset: string; readonly overrides?: Partial<UNetConfig> };
  readonly diffusion: {
    readonly schedule: BetaScheduleSpec;
    readonly meanType: MeanType;
    readonly varianceType: VarianceType;
    readonly lossType: LossType;
  };
  readonly optimizer: {
    readonly learningRate: number;
    readonly warmupSteps: number;
    readonly beta1: number;
    readonly beta2: number;
    readonly epsilon: number;
    /** Clip gradients to this global norm; 0 disables clipping. */
    readonly gradClipNorm: number;
  };
  readonly ema: {
    readonly decay: number;
    /** TensorFlow's num_updates rule: decay = min(decay, (1 + n) / (10 + n)). Off in the paper. */
    readonly warmup: boolean;
  };
  /** Images per optimizer step (the global batch). */
  readonly batchSize: number;
  /** Micro-batches per step: each holds batchSize / accumulation images. */
  readonly accumulation: number;
  readonly steps: number;
  readonly checkpointEvery: number;
  readonly keepCheckpoints: number;
  readonly seed: number;
  readonly randomFlip: boolean;
}

export type TrainConfigInput = Partial<Omit<TrainConfig, 'model' | 'diffusion' | 'optimizer' | 'ema'>> & {
  readonly dataset: string;
  readonly model?: Partial<TrainConfig['model']>;
  readonly diffusion?: Partial<TrainConfig['diffusion']>;
  readonly optimizer?: Partial<TrainConfig['optimizer']>;
  readonly ema?: Partial<TrainConfig['ema']>;
};

export const PAPER_DEFAULTS = {
  model: { preset: 'cifar10' },
  diffusion: {
    schedule: { kind: 'linear', numTimesteps: 1000, betaStart: 1e-4, betaEnd: 0.02 },
    meanType: 'epsilon',
    varianceType: 'fixedlarge',
    lossType: 'mse',
  },
  optimizer: { learningRate: 2e-4, warmupSteps: 5000, beta1: 0.9, beta2: 0.999, epsilon: 1e-8, gradClipNorm: 1 },
  ema: { decay: 0.9999, warmup: false },
  batchSize: 128,
  accumulation: 1,
  steps: 800_000,
  checkpointEvery: 1000,
  keepCheckpoints: 3,
  seed: 0,
  randomFlip: true,
} as const;

function fail(message: string): never {
  throw engineError('DDPM_CONFIG_INVALID', message);
}

function int(name: string, v: unknown, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) fail(`${name} must be an integer in [${min}, ${max}], got ${JSON.stringify(v)}`);
  return v;
}

function num(name: string, v: unknown, check: (x: number) => boolean, expected: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || !check(v)) fail(`${name} must be ${expected}, got ${JSON.stringify(v)}`);
  return v;
}

/** Fills defaults and validates everything, naming the first bad field. */
export function resolveTrainConfig(input: TrainConfigInput): TrainConfig {
  if (typeof input !== 'object' || input === null) fail('training config must be an object');
  if (typeof input.dataset !== 'string' || input.dataset.trim() === '') fail('dataset must be a dataset spec such as "fashion-mnist"');
  const modelPreset = input.model?.preset ?? PAPER_DEFAULTS.model.preset;
  if (!isPresetName(modelPreset)) fail(`model.preset ${JSON.stringify(modelPreset)} is unknown; expected one of ${PRESET_NAMES.join(', ')}`);
  const diffusionIn = { ...PAPER_DEFAULTS.diffusion, ...(input.diffusion ?? {}) };
  const schedule = { ...PAPER_DEFAULTS.diffusion.schedule, ...(input.diffusion?.schedule ?? {}) } as BetaScheduleSpec;
  if (!isBetaScheduleKind(schedule.kind)) fail(`diffusion.schedule.kind ${JSON.stringify(schedule.kind)} is unknown; expected one of ${BETA_SCHEDULE_KINDS.join(', ')}`);
  try {
    validateModelling(diffusionIn.meanType, diffusionIn.varianceType, diffusionIn.lossType);
  } catch (err) {
    fail(`diffusion: ${(err as Error).message}`);
  }
  const optimizer = { ...PAPER_DEFAULTS.optimizer, ...(input.optimizer ?? {}) };
  num('optimizer.learningRate', optimizer.learningRate, (x) => x > 0 && x < 1, 'a number in (0, 1)');
  int('optimizer.warmupSteps', optimizer.warmupSteps, 0);
  num('optimizer.beta1', optimizer.beta1, (x) => x >= 0 && x < 1, 'in [0, 1)');
  num('optimizer.beta2', optimizer.beta2, (x) => x >= 0 && x < 1, 'in [0, 1)');
  num('optimizer.epsilon', optimizer.epsilon, (x) => x > 0, 'positive');
  num('optimizer.gradClipNorm', optimizer.gradClipNorm, (x) => x >= 0, 'non-negative (0 disables clipping)');
  const ema = { ...PAPER_DEFAULTS.ema, ...(input.ema ?? {}) };
  num('ema.decay', ema.decay, (x) => x >= 0 && x < 1, 'in [0, 1)');
  if (typeof ema.warmup !== 'boolean') fail(`ema.warmup must be true or false, got ${JSON.stringify(ema.warmup)}`);
  const batchSize = int('batchSize', input.batchSize ?? PAPER_DEFAULTS.batchSize, 1, 65_536);
  const accumulation = int('accumulation', input.accumulation ?? PAPER_DEFAULTS.accumulation, 1, 4096);
  if (batchSize % accumulation !== 0) fail(`batchSize ${batchSize} must be divisible by accumulation ${accumulation}`);
  const steps = int('steps', input.steps ?? PAPER_DEFAULTS.steps, 1, 100_000_000);
  const checkpointEvery = int('checkpointEvery', input.checkpointEvery ?? PAPER_DEFAULTS.checkpointEvery, 1);
  const keepCheckpoints = int('keepCheckpoints', input.keepCheckpoints ?? PAPER_DEFAULTS.keepCheckpoints, 1, 1000);
  const seed = int('seed', input.seed ?? PAPER_DEFAULTS.seed, 0);
  const randomFlip = input.randomFlip ?? PAPER_DEFAULTS.randomFlip;
  if (typeof randomFlip !== 'boolean') fail(`randomFlip must be true or false, got ${JSON.stringify(randomFlip)}`);
  const config: TrainConfig = {
    dataset: input.dataset,
    model: { preset: modelPreset, ...(input.model?.overrides ? { overrides: input.model.overrides } : {}) },
    diffusion: { ...diffusionIn, schedule },
    optimizer,
    ema,
    batchSize,
    accumulation,
    steps,
    checkpointEvery,
    keepCheckpoints,
    seed,
    randomFlip,
  };
  try {
    unetConfigOf(config);
  } catch (err) {
    fail(`model: ${(err as Error).message}`);
  }
  return config;
}

/** The U-Net config: the preset, its overrides, and outChannels doubled for learned variances. */
export function unetConfigOf(config: TrainConfig): UNetConfig {
  const base = preset(config.model.preset, config.model.overrides ?? {});
  const factor = isLearnedVariance(config.diffusion.varianceType) ? 2 : 1;
  return validateUNetConfig({ ...base, outChannels: base.inChannels * factor });
}
