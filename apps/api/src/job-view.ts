/**
 * How a job is shown to API clients: what was asked (`request`), what it runs with (`config`,
 * every default filled in), where it stands, and links. One schema per job type, so generated
 * clients narrow `request` and `config` on `type`.
 */
import { type JobData, JOB_SCHEMAS, JobProgress, JobResult, type JobType } from '@ddpm/service';
import { type Static, type TSchema, Type } from '@sinclair/typebox';
import { type Job, type JobState } from 'bullmq';

import { type Component, component, described } from './components';

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

/** The request and effective configuration of each job type, as named components. */
const CONTRACTS = {
  train: {
    request: component('TrainRequest', JOB_SCHEMAS.train.request),
    config: component('TrainJobConfig', JOB_SCHEMAS.train.config),
  },
  sample: {
    request: component('SampleRequest', JOB_SCHEMAS.sample.request),
    config: component('SampleJobConfig', JOB_SCHEMAS.sample.config),
  },
  eval: {
    request: component('EvalRequest', JOB_SCHEMAS.eval.request),
    config: component('EvalJobConfig', JOB_SCHEMAS.eval.config),
  },
};

/** The request body schemas of the submit routes. */
export const REQUEST_BODIES = {
  train: CONTRACTS.train.request.ref,
  sample: CONTRACTS.sample.request.ref,
  eval: CONTRACTS.eval.request.ref,
};

function viewSchema<T extends JobType, R extends TSchema, C extends TSchema>(
  type: T,
  requestC: Component<R>,
  configC: Component<C>,
) {
  return Type.Object(
    {
      id: Type.String(),
      type: Type.Literal(type),
      state: Type.Union(PUBLIC_STATES.map((s) => Type.Literal(s))),
      request: described(requestC, 'the request as the client sent it'),
      config: Type.Optional(
        described(
          configC,
          'the effective configuration, every default filled in (absent for jobs queued by an API older than this contract)',
        ),
      ),
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

export const TrainJobView = component(
  'TrainJobView',
  viewSchema('train', CONTRACTS.train.request, CONTRACTS.train.config),
);
export const SampleJobView = component(
  'SampleJobView',
  viewSchema('sample', CONTRACTS.sample.request, CONTRACTS.sample.config),
);
export const EvalJobView = component('EvalJobView', viewSchema('eval', CONTRACTS.eval.request, CONTRACTS.eval.config));
export const JobView = component(
  'JobView',
  Type.Union([TrainJobView.ref, SampleJobView.ref, EvalJobView.ref], { description: 'a job, by type' }),
);
export type JobView = Static<typeof JobView.schema>;

export function publicState(
  state: JobState | 'unknown',
  result: JobResult | undefined,
  cancelRequested: boolean,
): PublicState {
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

export function viewOf(
  job: Job<JobData, JobResult>,
  state: JobState | 'unknown',
  cancelRequested: boolean,
  base: string,
): JobView {
  const data = job.data;
  const result = job.returnvalue ?? undefined;
  const id = job.id!;
  const samples = (result?.samples ?? []).map((s) => `${base}/samples/${s}`);
  const progress =
    typeof job.progress === 'object' && job.progress !== null ? (job.progress as JobProgress) : undefined;
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
