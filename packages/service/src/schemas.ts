/**
 * What travels between the API and the workers: a job's data (the request as asked and the
 * configuration resolved from it at the door), its progress and its result, as TypeBox schemas
 * with their TypeScript types derived from them. The request and configuration schemas come from
 * the settings tables of @ddpm/settings.
 */
import {
  EvalJobConfig,
  EvalJobRequest,
  JOB_ID_PATTERN,
  SampleJobConfig,
  SampleJobRequest,
  TrainJobConfig,
  TrainRequest,
} from '@ddpm/settings';
import { type Static, Type } from '@sinclair/typebox';

export { JOB_ID_PATTERN };
export const JobId = Type.String({ pattern: JOB_ID_PATTERN, description: 'a job id' });

export const JOB_TYPES = ['train', 'sample', 'eval'] as const;
export type JobType = (typeof JOB_TYPES)[number];

/** The request and resolved configuration schemas of each job type. */
export const JOB_SCHEMAS = {
  train: { request: TrainRequest, config: TrainJobConfig },
  sample: { request: SampleJobRequest, config: SampleJobConfig },
  eval: { request: EvalJobRequest, config: EvalJobConfig },
} as const;

interface JobContracts {
  train: { request: TrainRequest; config: TrainJobConfig };
  sample: { request: SampleJobRequest; config: SampleJobConfig };
  eval: { request: EvalJobRequest; config: EvalJobConfig };
}
export type JobRequest<T extends JobType> = JobContracts[T]['request'];
export type JobConfig<T extends JobType> = JobContracts[T]['config'];

/** What is stored as a BullMQ job's data; a union discriminated by `type`. */
export type JobData<T extends JobType = JobType> = {
  [K in T]: {
    readonly type: K;
    /** The body as the client sent it. */
    readonly request: JobRequest<K>;
    /** What the job runs with: resolved from `request` once, at submission. */
    readonly config: JobConfig<K>;
    readonly submittedAt: string;
    /** Storage key prefix of the job's run (checkpoints, samples). */
    readonly runPrefix: string;
    /** sha256 of the canonical request, to detect an idempotency key reused with another body. */
    readonly requestHash: string;
  };
}[T];

/** What a running job is doing, as its progress says. */
export const PROGRESS_PHASES = [
  'starting',
  'training',
  'checkpointing',
  'sampling',
  'evaluating',
  'finishing',
] as const;
export type ProgressPhase = (typeof PROGRESS_PHASES)[number];

export const JobProgress = Type.Object(
  {
    phase: Type.Union(PROGRESS_PHASES.map((p) => Type.Literal(p))),
    step: Type.Integer({ description: 'steps done: optimizer steps while training, sampling steps while sampling' }),
    totalSteps: Type.Integer(),
    imagesPerSecond: Type.Optional(Type.Number()),
    loss: Type.Optional(Type.Number()),
    etaSeconds: Type.Optional(
      Type.Number({
        description:
          'training: seconds of training left, to `steps` or to the time budget, whichever comes first (evaluations and checkpoints not counted)',
      }),
    ),
    trainSeconds: Type.Optional(
      Type.Number({ description: 'training: seconds spent in training steps so far, over every session of the run' }),
    ),
    budgetSeconds: Type.Optional(
      Type.Number({ description: 'training: the time budget (`budgetMinutes`) in seconds, when the run has one' }),
    ),
    group: Type.Optional(
      Type.Object(
        {
          worldSize: Type.Integer({ description: 'ranks of the generation running' }),
          generation: Type.Integer(),
          restarts: Type.Integer({ description: 'generations that failed and were re-formed so far' }),
        },
        { additionalProperties: false, description: 'a data-parallel job: the group running it now' },
      ),
    ),
    updatedAt: Type.String({ format: 'date-time' }),
  },
  { additionalProperties: false, description: 'progress reported by the worker running the job' },
);
export type JobProgress = Static<typeof JobProgress>;

/**
 * What is wrong with a progress report that crossed a process boundary (a job process's message),
 * or undefined when it is one: a known phase, whole step counts, a time.
 */
export function progressProblem(value: unknown): string | undefined {
  if (typeof value !== 'object' || value === null) return 'not an object';
  const p = value as Record<string, unknown>;
  if (!(PROGRESS_PHASES as readonly unknown[]).includes(p['phase']))
    return `phase ${JSON.stringify(p['phase'])} is not one of ${PROGRESS_PHASES.join(', ')}`;
  for (const key of ['step', 'totalSteps'])
    if (!Number.isInteger(p[key]) || (p[key] as number) < 0) return `${key} is not a whole number`;
  if (typeof p['updatedAt'] !== 'string' || Number.isNaN(Date.parse(p['updatedAt']))) return 'updatedAt is not a time';
  return undefined;
}

export const JobResult = Type.Object(
  {
    status: Type.Union([Type.Literal('completed'), Type.Literal('cancelled')]),
    step: Type.Optional(Type.Integer({ description: 'the training step reached (train) or sampled (sample)' })),
    checkpoint: Type.Optional(Type.String({ description: "URL of the newest checkpoint's manifest" })),
    samples: Type.Optional(Type.Array(Type.String(), { description: 'sample ids written (GET /samples/:id)' })),
    metrics: Type.Optional(
      Type.Record(Type.String(), Type.Number(), {
        description:
          'eval: metric values by name (fd_<extractor>, kid_<extractor>, is_<extractor>, bits_per_dim; fid only with the FID Inception)',
      }),
    ),
    report: Type.Optional(
      Type.String({ description: 'eval: URL of the full JSON report (every setting that affects comparability)' }),
    ),
    group: Type.Optional(
      Type.Object(
        {
          worldSize: Type.Integer({ description: 'ranks of the generation that finished the job' }),
          generation: Type.Integer(),
          restarts: Type.Integer({ description: 'generations that failed and were re-formed' }),
          dataPlane: Type.Optional(
            Type.Union(
              ['hub', 'shared-memory', 'ranks'].map((p) => Type.Literal(p)),
              {
                description:
                  "where the last generation's values travelled: hub (one Redis), shared-memory (every rank on one host), ranks (the ranks' own data servers)",
              },
            ),
          ),
          generations: Type.Optional(
            Type.Array(
              Type.Object(
                {
                  generation: Type.Integer(),
                  worldSize: Type.Integer({ description: 'ranks it was formed with' }),
                  fromStep: Type.Optional(Type.Integer({ description: 'the checkpoint it resumed from' })),
                  ended: Type.Optional(
                    Type.String({ description: 'why it ended early (absent for the generation that finished)' }),
                  ),
                  restart: Type.Optional(
                    Type.Boolean({
                      description:
                        'whether its end counted against maxRestarts (a failure) or not (a worker shutting down)',
                    }),
                  ),
                },
                { additionalProperties: false },
              ),
              { description: 'the generations the last coordinator formed, oldest first' },
            ),
          ),
        },
        { additionalProperties: false, description: 'a data-parallel job: the group that ran it' },
      ),
    ),
    resumedFrom: Type.Optional(
      Type.Object(
        {
          step: Type.Integer(),
          ignored: Type.Array(Type.String(), {
            description: "settings the request asked for that the resumed run kept as its checkpoint's",
          }),
          redone: Type.Optional(
            Type.Object(
              {
                steps: Type.Integer({ description: 'steps an earlier attempt had trained past the checkpoint' }),
                seconds: Type.Number({ description: 'wall time this run spent training them again' }),
              },
              {
                additionalProperties: false,
                description:
                  'the work lost to a crash and done again (bounded by checkpointEvery and checkpointEverySeconds)',
              },
            ),
          ),
        },
        { additionalProperties: false },
      ),
    ),
  },
  {
    additionalProperties: false,
    description: "a job's return value; cancelled jobs complete (not fail) with status cancelled",
  },
);
export type JobResult = Static<typeof JobResult>;
/** One generation of a data-parallel job's group, as its result reports it. */
export type GroupGeneration = NonNullable<NonNullable<JobResult['group']>['generations']>[number];
