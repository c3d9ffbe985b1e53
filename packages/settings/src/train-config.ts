/**
 * The configuration a training job runs with, resolved once from its request (at the API's door,
 * or by `ddpm train`): every default filled in, every bound and combination checked. `train` is
 * what checkpoints store (it does not depend on the world size); `finalGrid` and `group` are how
 * this job uses it.
 */
import { checkDeclaredShape, parseDatasetSpec } from '@ddpm/data/spec';
import {
  BETA_SCHEDULE_KINDS,
  LOSS_TYPES,
  MEAN_TYPES,
  VARIANCE_TYPES,
  betaSchedule,
  isLearnedVariance,
  validateModelling,
} from '@ddpm/diffusion-config';
import { PRESET_NAMES, type UNetConfig, preset, validateUNetConfig } from '@ddpm/unet-config';
import { type Static, Type } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';

import { configError } from './errors';
import { evalSpecProperties } from './eval-settings';
import { groupProperties, resolveGroup } from './group-settings';
import { SamplerSpec, resolveSampler } from './sampler-settings';
import {
  type RequestOf,
  type ValuesOf,
  checkRequest,
  checkResolved,
  literalUnion,
  requestSchema,
  valuesOf,
} from './setting';
import { RECIPES } from './recipes';
import { GRADIENT_TRANSPORTS, TRAIN_SETTINGS } from './train-settings';

/** The body of `POST /jobs/train`, derived from the settings table. */
export const TrainRequest = requestSchema(
  TRAIN_SETTINGS,
  'a training job: what to train, on what, how long; every field left out takes its default',
);
export type TrainRequest = RequestOf<typeof TRAIN_SETTINGS>;

/**
 * One training run's configuration, as checkpoints store it. The resolved schemas give shapes and
 * types; the bounds are the settings table's alone (checkResolved reads them there).
 */
export const TrainConfig = Type.Object(
  {
    dataset: Type.String(),
    model: Type.Object(
      {
        preset: literalUnion(PRESET_NAMES),
        overrides: Type.Optional(
          Type.Object({ dropout: Type.Optional(Type.Number()) }, { additionalProperties: false }),
        ),
      },
      { additionalProperties: false },
    ),
    diffusion: Type.Object(
      {
        schedule: Type.Object(
          {
            kind: literalUnion(BETA_SCHEDULE_KINDS),
            numTimesteps: Type.Integer(),
            betaStart: Type.Number(),
            betaEnd: Type.Number(),
          },
          { additionalProperties: false },
        ),
        meanType: literalUnion(MEAN_TYPES),
        varianceType: literalUnion(VARIANCE_TYPES),
        lossType: literalUnion(LOSS_TYPES),
      },
      { additionalProperties: false },
    ),
    optimizer: Type.Object(
      {
        learningRate: Type.Number(),
        warmupSteps: Type.Integer(),
        beta1: Type.Number(),
        beta2: Type.Number(),
        epsilon: Type.Number(),
        gradClipNorm: Type.Number(),
      },
      { additionalProperties: false },
    ),
    ema: Type.Object({ decay: Type.Number(), warmup: Type.Boolean() }, { additionalProperties: false }),
    /** Images per optimizer step (the global batch). */
    batchSize: Type.Integer(),
    /** Micro-batches per step: each holds batchSize / accumulation images. */
    accumulation: Type.Integer(),
    steps: Type.Integer(),
    /** Training time (minutes) after which the run ends as if `steps` were reached; absent: none. */
    budgetMinutes: Type.Optional(Type.Number()),
    checkpointEvery: Type.Integer(),
    /** Seconds between checkpoints as well; absent in checkpoints written before it existed (steps only). */
    checkpointEverySeconds: Type.Optional(Type.Number()),
    keepCheckpoints: Type.Integer(),
    seed: Type.Integer(),
    randomFlip: Type.Boolean(),
  },
  { additionalProperties: false, description: "one training run's configuration, as its checkpoints store it" },
);
export type TrainConfig = Static<typeof TrainConfig>;

export const FinalGridConfig = Type.Object(
  {
    count: Type.Integer(),
    sampler: SamplerSpec,
    seed: Type.Integer(),
    every: Type.Optional(Type.Integer({ description: 'also drawn every this many steps' })),
  },
  {
    additionalProperties: false,
    description: 'the EMA sample grid drawn when training ends, and every `every` steps (count 0: none)',
  },
);
export type FinalGridConfig = Static<typeof FinalGridConfig>;

export const GroupConfig = Type.Object(
  {
    ...groupProperties,
    transport: literalUnion(GRADIENT_TRANSPORTS),
    checksumEvery: Type.Integer(),
  },
  { additionalProperties: false, description: 'the data-parallel group that runs the job (workers 1: one process)' },
);
export type GroupConfig = Static<typeof GroupConfig>;

/** Evaluations during training: the EMA weights every `every` steps and at the end. */
export const TrainingEvalConfig = Type.Object(
  { every: Type.Integer(), ...evalSpecProperties },
  { additionalProperties: false, description: 'evaluation during training (absent: none)' },
);
export type TrainingEvalConfig = Static<typeof TrainingEvalConfig>;

/** A setting the server chose differently from the request's value (or its default), and why. */
export const ConfigAdjustment = Type.Object(
  {
    setting: Type.String({ description: 'the request name of the setting' }),
    requested: Type.Number({ description: 'what the request asked for, or the default it left' }),
    chosen: Type.Number({ description: 'what the job runs with' }),
    reason: Type.String(),
  },
  { additionalProperties: false },
);
export type ConfigAdjustment = Static<typeof ConfigAdjustment>;

export const TrainJobConfig = Type.Object(
  {
    train: TrainConfig,
    finalGrid: FinalGridConfig,
    group: GroupConfig,
    evaluation: Type.Optional(TrainingEvalConfig),
    recipe: Type.Optional(Type.String({ description: 'the recipe whose settings were the request’s defaults' })),
    adjustments: Type.Optional(
      Type.Array(ConfigAdjustment, {
        description: 'settings chosen for the request, e.g. accumulation raised so that a micro-batch fits memory',
      }),
    ),
  },
  { additionalProperties: false, description: 'the effective configuration of a train job, every default filled in' },
);
export type TrainJobConfig = Static<typeof TrainJobConfig>;

type TrainValues = ValuesOf<typeof TRAIN_SETTINGS>;

/** A required setting's value, or an error naming it (and that a recipe may give it). */
function needed<T>(value: T | undefined, name: 'dataset' | 'preset' | 'steps'): T {
  if (value === undefined)
    throw configError(
      `train request needs ${name} (--${TRAIN_SETTINGS[name].flag}): ${TRAIN_SETTINGS[name].help} (or a recipe that gives it)`,
    );
  return value;
}

/** The run itself (data, model, diffusion, optimizer, EMA, steps, checkpoints), checked. */
function trainConfigOf(v: TrainValues, request: TrainRequest): TrainConfig {
  const train: TrainConfig = {
    dataset: needed(v.dataset, 'dataset'),
    model: {
      preset: needed(v.preset, 'preset'),
      ...(v.dropout !== undefined ? { overrides: { dropout: v.dropout } } : {}),
    },
    diffusion: {
      schedule: { kind: v.schedule, numTimesteps: v.timesteps, betaStart: v.betaStart, betaEnd: v.betaEnd },
      meanType: v.meanType,
      varianceType: v.varianceType,
      lossType: v.lossType,
    },
    optimizer: {
      learningRate: v.learningRate,
      warmupSteps: v.warmupSteps,
      beta1: v.adamBeta1,
      beta2: v.adamBeta2,
      epsilon: v.adamEpsilon,
      gradClipNorm: v.gradClipNorm,
    },
    ema: { decay: v.emaDecay, warmup: v.emaWarmup },
    batchSize: v.batchSize,
    // A group of N splits the step's micro-batches among its ranks: by default one each.
    accumulation: request.accumulation ?? (v.workers > 1 ? v.workers : v.accumulation),
    steps: needed(v.steps, 'steps'),
    ...(v.budgetMinutes !== undefined ? { budgetMinutes: v.budgetMinutes } : {}),
    checkpointEvery: v.checkpointEvery,
    checkpointEverySeconds: v.checkpointEverySeconds,
    keepCheckpoints: v.keepCheckpoints,
    seed: v.seed,
    randomFlip: v.randomFlip,
  };
  validateTrainConfig(train);
  return train;
}

/** Evaluation during training, when evalEvery turns it on (eval settings without it are an error). */
function trainingEvaluationOf(v: TrainValues, request: TrainRequest, dataset: string): TrainingEvalConfig | undefined {
  if (v.evalEvery === undefined) {
    const stray = (Object.keys(request) as (keyof TrainRequest)[]).filter(
      (k) => k !== 'evalEvery' && k.startsWith('eval'),
    );
    if (stray.length > 0)
      throw configError(
        `${stray.join(', ')} ${stray.length === 1 ? 'applies' : 'apply'} to evaluation during training, which evalEvery turns on`,
      );
    return undefined;
  }
  const evalSampler = resolveSampler({ sampler: v.evalSampler, steps: v.evalSteps, eta: v.evalEta }, v.timesteps, {
    steps: 'evalSteps',
    eta: 'evalEta',
    etaGiven: request.evalEta !== undefined,
  });
  if (v.evalMetrics.some((m) => m !== 'nll') && parseDatasetSpec(dataset).kind === 'procedural') {
    throw configError(
      'procedural data has no fixed reference set for fd, kid or is during training; use evalMetrics nll',
    );
  }
  return {
    every: v.evalEvery,
    metrics: v.evalMetrics,
    samples: { count: v.evalCount, sampler: evalSampler, seed: v.evalSeed, ema: true },
    extractor: v.evalExtractor,
    reference: { split: 'train', ...(v.evalReferenceCount !== undefined ? { count: v.evalReferenceCount } : {}) },
    nll: { images: v.evalNllImages },
  };
}

/** Resolves a train request: defaults from the table, then every bound and combination checked. */
export function resolveTrainJob(asked: TrainRequest): TrainJobConfig {
  checkRequest(TRAIN_SETTINGS, asked, 'train');
  // The recipe's settings under the request's own (checked as any request's are).
  const request: TrainRequest =
    asked.recipe !== undefined ? { ...(RECIPES[asked.recipe].request as TrainRequest), ...asked } : asked;
  if (asked.recipe !== undefined) checkRequest(TRAIN_SETTINGS, request, `train (with recipe ${asked.recipe})`);
  const v = valuesOf(TRAIN_SETTINGS, request);
  const train = trainConfigOf(v, request);
  const sampler = resolveSampler({ sampler: v.sampleSampler, steps: v.sampleSteps, eta: v.sampleEta }, v.timesteps, {
    steps: 'sampleSteps',
    eta: 'sampleEta',
    etaGiven: request.sampleEta !== undefined,
  });
  const group: GroupConfig = {
    ...resolveGroup(v),
    transport: v.gradientTransport,
    checksumEvery: v.checksumEvery,
  };
  const evaluation = trainingEvaluationOf(v, request, train.dataset);
  const config: TrainJobConfig = {
    train,
    finalGrid: {
      count: v.sampleCount,
      sampler,
      seed: v.sampleSeed,
      ...(v.sampleEvery !== undefined ? { every: v.sampleEvery } : {}),
    },
    group,
    ...(evaluation ? { evaluation } : {}),
    ...(asked.recipe !== undefined ? { recipe: asked.recipe } : {}),
  };
  validateTrainJobConfig(config);
  return config;
}

/**
 * Checks a run configuration from anywhere (just resolved, from a queue, from a checkpoint): its
 * shape, every setting's bounds at its place, and the combinations no bound can express.
 */
export function validateTrainConfig(config: TrainConfig): void {
  if (!Value.Check(TrainConfig, config)) {
    const first = Value.Errors(TrainConfig, config).First();
    throw configError(
      `training configuration is malformed at ${first?.path || '/'}: ${first?.message ?? 'unknown problem'}`,
    );
  }
  checkResolved(TRAIN_SETTINGS, config, 'train.');
  parseDatasetSpec(config.dataset);
  if (config.batchSize % config.accumulation !== 0) {
    throw configError(`batchSize ${config.batchSize} must be divisible by accumulation ${config.accumulation}`);
  }
  try {
    validateModelling(config.diffusion.meanType, config.diffusion.varianceType, config.diffusion.lossType);
    betaSchedule(config.diffusion.schedule);
    checkDeclaredShape(config.dataset, unetConfigOf(config));
  } catch (err) {
    throw configError((err as Error).message, { cause: err });
  }
}

/** Checks a whole train job configuration (as the worker receives it). */
export function validateTrainJobConfig(config: TrainJobConfig): void {
  if (!Value.Check(TrainJobConfig, config)) {
    const first = Value.Errors(TrainJobConfig, config).First();
    throw configError(
      `train job configuration is malformed at ${first?.path || '/'}: ${first?.message ?? 'unknown problem'}`,
    );
  }
  validateTrainConfig(config.train);
  checkResolved(TRAIN_SETTINGS, config.finalGrid, 'finalGrid.');
  checkResolved(TRAIN_SETTINGS, config.group, 'group.');
  const { workers, minWorkers } = config.group;
  if (minWorkers > workers) throw configError(`minWorkers ${minWorkers} exceeds workers ${workers}`);
  if (workers > config.train.accumulation) {
    throw configError(
      `accumulation ${config.train.accumulation} gives ${workers} workers nothing to split: it must be at least workers (leave it out for one micro-batch per worker)`,
    );
  }
  if (config.finalGrid.every !== undefined && config.finalGrid.count === 0) {
    throw configError(
      `sampleEvery ${config.finalGrid.every} draws the grid during training, and sampleCount is 0: give sampleCount (the grid's images) too`,
    );
  }
  if (config.finalGrid.sampler.steps > config.train.diffusion.schedule.numTimesteps) {
    throw configError(
      `sampleSteps ${config.finalGrid.sampler.steps} exceeds T = ${config.train.diffusion.schedule.numTimesteps}`,
    );
  }
  if (config.evaluation) {
    checkResolved(TRAIN_SETTINGS, config.evaluation, 'evaluation.');
    if (config.evaluation.samples.sampler.steps > config.train.diffusion.schedule.numTimesteps) {
      throw configError(
        `evalSteps ${config.evaluation.samples.sampler.steps} exceeds T = ${config.train.diffusion.schedule.numTimesteps}`,
      );
    }
  }
}

/** The U-Net of a run: its preset, the dropout override, and twice the channels out for learned variances. */
export function unetConfigOf(config: TrainConfig): UNetConfig {
  const base = preset(config.model.preset, config.model.overrides ?? {});
  const factor = isLearnedVariance(config.diffusion.varianceType) ? 2 : 1;
  return validateUNetConfig({ ...base, outChannels: base.inChannels * factor });
}

/**
 * The configuration a resumed run continues with: the stored one, with the length (steps and time
 * budget) and checkpoint cadence of the new request (the only things a resumed run may change); and where the request
 * asked for something else, for the caller to report (a resumed job keeps its stored config and
 * says so).
 */
export function resumedConfig(stored: TrainConfig, requested: TrainConfig): { config: TrainConfig; ignored: string[] } {
  const { budgetMinutes: _kept, checkpointEverySeconds: _cadence, ...rest } = stored;
  const config: TrainConfig = {
    ...rest,
    steps: requested.steps,
    ...(requested.budgetMinutes !== undefined ? { budgetMinutes: requested.budgetMinutes } : {}),
    checkpointEvery: requested.checkpointEvery,
    ...(requested.checkpointEverySeconds !== undefined
      ? { checkpointEverySeconds: requested.checkpointEverySeconds }
      : {}),
    keepCheckpoints: requested.keepCheckpoints,
  };
  const ignored: string[] = [];
  const walk = (kept: unknown, asked: unknown, path: string): void => {
    if (typeof kept === 'object' && kept !== null && typeof asked === 'object' && asked !== null) {
      for (const key of new Set([...Object.keys(kept), ...Object.keys(asked)])) {
        walk(
          (kept as Record<string, unknown>)[key],
          (asked as Record<string, unknown>)[key],
          path === '' ? key : `${path}.${key}`,
        );
      }
    } else if (!Value.Equal(kept, asked)) {
      ignored.push(
        `${path}: ${JSON.stringify(asked) ?? 'nothing'} requested, ${JSON.stringify(kept) ?? 'nothing'} kept`,
      );
    }
  };
  walk(config, requested, '');
  return { config, ignored };
}
