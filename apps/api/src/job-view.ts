/**
 * How a job is shown to API clients: what was asked (`request`), what it runs with (`config`,
 * every default filled in), where it stands, and links. One schema per job type, so generated
 * clients narrow `request` and `config` on `type`.
 */
import { type JobData, JOB_SCHEMAS, JobProgress, JobResult, type JobType } from '@ddpm/jobs';
import { type Static, type TSchema, Type } from '@sinclair/typebox';
import { type Job, type JobState } from 'bullmq';

import { component, described } from './components';

const Progress = component('JobProgress', JobProgress);
const Result = component('JobResult', JobResult);

export const PUBLIC_STATES = ['queued', 'delayed', 'active', 'cancelling', 'completed', 'cancelled', 'failed'] as const;
export type PublicState = (typeof PUBLIC_STATES)[number];

const Links = Type.Object(
  {
    self: Type.String(),
    logs: Type.String(),
    checkpoints: Type.Optional(Type.String()),
    samples: Type.Optional(Type.Array(Type.String(), { description: 'URLs of the PNGs the job wrote' })),
  },
  { additionalProperties: false },
);

function viewSchema<T extends JobType, R extends TSchema, C extends TSchema>(type: T, request: R, config: C) {
  const requestC = component(`${capitalize(type)}Request`, request);
  const configC = component(`${capitalize(type)}JobConfig`, config);
  return Type.Object(
    {
      id: Type.String(),
      type: Type.Literal(type),
      state: Type.Union(PUBLIC_STATES.map((s) => Type.Literal(s))),
      request: described(requestC, 'the request as the client sent it'),
      config: Type.Optional(described(configC, 'the effective configuration, every default filled in (absent for jobs queued by an API older than this contract)')),
      submittedAt: Type.String({ format: 'date-time' }),
      startedAt: Type.Optional(Type.String({ format: 'date-time' })),
      finishedAt: Type.Optional(Type.String({ format: 'date-time' })),
      attempts: Type.Integer(),
      progress: Type.Optional(Progress.ref),
      result: Type.Optional(Result.ref),
      error: Type.Optional(Type.String()),
      links: Links,
    },
    { additionalProperties: false, description: `a ${type} job` },
  );
}

const capitalize = (s: string): string => s.charAt(0).toUpperCase() + s.slice(1);

export const TrainJobView = component('TrainJobView', viewSchema('train', JOB_SCHEMAS.train.request, JOB_SCHEMAS.train.config));
export const SampleJobView = component('SampleJobView', viewSchema('sample', JOB_SCHEMAS.sample.request, JOB_SCHEMAS.sample.config));
export const EvalJobView = component('EvalJobView', viewSchema('eval', JOB_SCHEMAS.eval.request, JOB_SCHEMAS.eval.config));
export const JobView = component('JobView', Type.Union([TrainJobView.ref, SampleJobView.ref, EvalJobView.ref], { description: 'a job, by type' }));
export type JobView = Static<typeof JobView.schema>;

/** The request body schemas of the submit routes (the components the views reference). */
export const REQUEST_BODIES = {
  train: Type.Unsafe<Static<typeof JOB_SCHEMAS.train.request>>(Type.Ref('TrainRequest')),
  sample: Type.Unsafe<Static<typeof JOB_SCHEMAS.sample.request>>(Type.Ref('SampleRequest')),
  eval: Type.Unsafe<Static<typeof JOB_SCHEMAS.eval.request>>(Type.Ref('EvalRequest')),
};

export function publicState(state: JobState | 'unknown', result: JobResult | undefined, cancelRequested: boolean): PublicState {
  switch (state) {
    case 'completed':
      return result?.status === 'cancelled' ? 'cancelled' : 'completed';
    case 'failed':
      return 'failed';
    case 'active':
      return cancelRequested ? 'cancelling' : 'active';
    case 'delayed':
      return 'delayed';
    default:
      return 'queued';
  }
}

export function viewOf(job: Job<JobData, JobResult>, state: JobState | 'unknown', cancelRequested: boolean, base: string): JobView {
  const data = job.data;
  const result = job.returnvalue ?? undefined;
  const id = job.id!;
  const samples = (result?.samples ?? []).map((s) => `${base}/samples/${s}`);
  const progress = typeof job.progress === 'object' && job.progress !== null ? (job.progress as JobProgress) : undefined;
  const common = {
    id,
    state: publicState(state, result, cancelRequested),
    submittedAt: data.submittedAt,
    ...(job.processedOn ? { startedAt: new Date(job.processedOn).toISOString() } : {}),
    ...(job.finishedOn ? { finishedAt: new Date(job.finishedOn).toISOString() } : {}),
    attempts: job.attemptsMade,
    ...(progress ? { progress } : {}),
    ...(result ? { result } : {}),
    ...(state === 'failed' && job.failedReason ? { error: job.failedReason } : {}),
    links: {
      self: `${base}/jobs/${id}`,
      logs: `${base}/jobs/${id}/logs`,
      ...(data.type === 'train' ? { checkpoints: `${base}/jobs/${id}/checkpoints` } : {}),
      ...(samples.length > 0 ? { samples } : {}),
    },
  };
  switch (data.type) {
    case 'train':
      return { ...common, type: data.type, request: data.request, ...(data.config ? { config: data.config } : {}) };
    case 'sample':
      return { ...common, type: data.type, request: data.request, ...(data.config ? { config: data.config } : {}) };
    case 'eval':
      return { ...common, type: data.type, request: data.request, ...(data.config ? { config: data.config } : {}) };
    default: {
      const unreachable: never = data;
      throw new Error(`unknown job type ${JSON.stringify(unreachable)}`);
    }
  }
}
