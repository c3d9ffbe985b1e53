/**
 * Request bodies of the job API as TypeBox schemas (validated by Fastify with additional
 * properties rejected), with their TypeScript types derived from them.
 */
import { BETA_SCHEDULE_KINDS, LOSS_TYPES, MEAN_TYPES, VARIANCE_TYPES } from '@ddpm/diffusion';
import { PRESET_NAMES } from '@ddpm/unet';
import { type Static, Type } from '@sinclair/typebox';

const literalUnion = <T extends string>(values: readonly T[], description: string) =>
  Type.Union(values.map((v) => Type.Literal(v)), { description });

export const JOB_ID_PATTERN = '^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$';
export const JobId = Type.String({ pattern: JOB_ID_PATTERN, description: 'a job id' });

export const TrainJobRequest = Type.Object(
  {
    dataset: Type.String({ minLength: 1, maxLength: 1024, description: 'dataset spec, e.g. "fashion-mnist" or "procedural:shapes?channels=1"' }),
    preset: literalUnion(PRESET_NAMES, 'U-Net preset'),
    steps: Type.Integer({ minimum: 1, maximum: 10_000_000, description: 'optimizer steps of the run' }),
    batchSize: Type.Optional(Type.Integer({ minimum: 1, maximum: 4096, default: 16 })),
    accumulation: Type.Optional(Type.Integer({ minimum: 1, maximum: 1024 })),
    learningRate: Type.Optional(Type.Number({ exclusiveMinimum: 0, exclusiveMaximum: 1 })),
    warmupSteps: Type.Optional(Type.Integer({ minimum: 0, maximum: 10_000_000 })),
    gradClipNorm: Type.Optional(Type.Number({ minimum: 0, maximum: 1e6 })),
    emaDecay: Type.Optional(Type.Number({ minimum: 0, exclusiveMaximum: 1 })),
    emaWarmup: Type.Optional(Type.Boolean()),
    dropout: Type.Optional(Type.Number({ minimum: 0, exclusiveMaximum: 1 })),
    schedule: Type.Optional(literalUnion(BETA_SCHEDULE_KINDS, 'beta schedule')),
    timesteps: Type.Optional(Type.Integer({ minimum: 1, maximum: 100_000 })),
    meanType: Type.Optional(literalUnion(MEAN_TYPES, 'what the network predicts')),
    varianceType: Type.Optional(literalUnion(VARIANCE_TYPES, 'reverse-process variance')),
    lossType: Type.Optional(literalUnion(LOSS_TYPES, 'training objective')),
    checkpointEvery: Type.Optional(Type.Integer({ minimum: 1, maximum: 10_000_000 })),
    keepCheckpoints: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })),
    seed: Type.Optional(Type.Integer({ minimum: 0, maximum: 2 ** 31 - 1 })),
    randomFlip: Type.Optional(Type.Boolean()),
    sampleCount: Type.Optional(Type.Integer({ minimum: 0, maximum: 1024, description: 'EMA sample grid written at the end' })),
    sampleSteps: Type.Optional(Type.Integer({ minimum: 1, maximum: 100_000 })),
    workers: Type.Optional(Type.Integer({ minimum: 1, maximum: 256, description: 'data-parallel world size' })),
  },
  { additionalProperties: false },
);
export type TrainJobRequest = Static<typeof TrainJobRequest>;

export const SampleJobRequest = Type.Object(
  {
    trainJobId: JobId,
    step: Type.Optional(Type.Integer({ minimum: 0, description: 'checkpoint step (default: the newest)' })),
    kind: Type.Optional(literalUnion(['grid', 'progressive'] as const, 'what to draw')),
    count: Type.Integer({ minimum: 1, maximum: 1024 }),
    sampler: Type.Optional(literalUnion(['ancestral', 'ddim'] as const, 'sampler')),
    steps: Type.Optional(Type.Integer({ minimum: 1, maximum: 100_000, description: 'sampling steps (default: all T)' })),
    eta: Type.Optional(Type.Number({ minimum: 0, maximum: 10 })),
    seed: Type.Optional(Type.Integer({ minimum: 0, maximum: 2 ** 31 - 1 })),
    ema: Type.Optional(Type.Boolean({ default: true })),
    every: Type.Optional(Type.Integer({ minimum: 1, maximum: 100_000, description: 'progressive: a frame every k steps' })),
  },
  { additionalProperties: false },
);
export type SampleJobRequest = Static<typeof SampleJobRequest>;

export const EvalJobRequest = Type.Object(
  {
    trainJobId: JobId,
    step: Type.Optional(Type.Integer({ minimum: 0 })),
    metrics: Type.Array(literalUnion(['nll', 'fid', 'is'] as const, 'metric'), { minItems: 1, maxItems: 3, uniqueItems: true }),
    count: Type.Optional(Type.Integer({ minimum: 1, maximum: 100_000 })),
    dataset: Type.Optional(Type.String({ minLength: 1, maxLength: 1024 })),
  },
  { additionalProperties: false },
);
export type EvalJobRequest = Static<typeof EvalJobRequest>;

export const JOB_TYPES = ['train', 'sample', 'eval'] as const;
export type JobType = (typeof JOB_TYPES)[number];

export type JobRequest<T extends JobType> = T extends 'train' ? TrainJobRequest : T extends 'sample' ? SampleJobRequest : EvalJobRequest;

/** What is stored as a BullMQ job's data. */
export interface JobData<T extends JobType = JobType> {
  readonly type: T;
  readonly request: JobRequest<T>;
  readonly submittedAt: string;
  /** Storage key prefix of the job's run (checkpoints, samples). */
  readonly runPrefix: string;
  /** sha256 of the canonical request, to detect an idempotency key reused with another body. */
  readonly requestHash: string;
}

/** Progress reported by workers (job.updateProgress). */
export interface JobProgress {
  readonly phase: 'starting' | 'training' | 'checkpointing' | 'sampling' | 'evaluating' | 'finishing';
  readonly step: number;
  readonly totalSteps: number;
  readonly imagesPerSecond?: number;
  readonly loss?: number;
  readonly etaSeconds?: number;
  readonly updatedAt: string;
}

/** A job's return value. `cancelled` jobs complete (not fail) with this status. */
export interface JobResult {
  readonly status: 'completed' | 'cancelled';
  readonly step?: number;
  readonly checkpoint?: string;
  /** Sample ids written (GET /samples/:id). */
  readonly samples?: string[];
  readonly metrics?: Record<string, number>;
}
