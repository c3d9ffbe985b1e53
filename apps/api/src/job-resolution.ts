/**
 * Resolution at the door: a submission becomes the job's data (the request as asked and the
 * configuration it runs with, every default filled in), and a dataset path outside the data roots
 * is refused, before anything is queued.
 */
import * as path from 'node:path';

import {
  type ServiceLimits,
  checkSampleSource,
  fitAccumulation,
  resolveEvalJob,
  resolveSampleJob,
  resolveTrainJob,
} from '@ddpm/settings';
import { CodedError } from '@ddpm/core';
import { datasetPath, insideRoot, parseDatasetSpec } from '@ddpm/data/spec';
import { type JobData, type JobRequest, type JobResult, type JobType, LIMIT_NAMES, jobTypeOf } from '@ddpm/service';
import { pretrainedManifest } from '@ddpm/pretrained';
import { type Queue } from 'bullmq';

/** A request of one job type, as the routes pass it. */
export type Submission = { [T in JobType]: { readonly type: T; readonly request: JobRequest<T> } }[JobType];

export const invalid = (message: string): CodedError => new CodedError('DDPM_REQUEST_INVALID', 'invalid', message);

/** What resolving reads: the train jobs that sample and eval jobs name, and the server's budgets. */
export interface ResolutionOptions {
  readonly queues: { readonly train: Queue<JobData, JobResult> };
  readonly limits: ServiceLimits;
}

/** The job's data: the request as asked and the configuration resolved from it. */
export async function resolveJobData(
  submission: Submission,
  common: Pick<JobData, 'submittedAt' | 'runPrefix' | 'requestHash'>,
  options: ResolutionOptions,
): Promise<JobData> {
  switch (submission.type) {
    case 'train': {
      // A batch whose micro-batches would not fit the step-memory budget is split further when the request left accumulation open.
      const config = fitAccumulation(
        resolveTrainJob(submission.request),
        submission.request,
        options.limits.maxStepMemoryMb,
        LIMIT_NAMES,
      );
      return { type: 'train', request: submission.request, config, ...common };
    }
    case 'sample': {
      const request = submission.request;
      checkSampleSource(request);
      // T of the run sampled: what its train job resolved (or, for older jobs, resolves now), or the shipped model's.
      const T = await sampledTimesteps(request, options.queues.train);
      return {
        type: 'sample',
        request: submission.request,
        config: resolveSampleJob(submission.request, T),
        ...common,
      };
    }
    case 'eval': {
      const request = submission.request;
      checkSampleSource(request, 'eval');
      // T of the run evaluated (as for a sample job), or the shipped model's.
      const T = await sampledTimesteps(request, options.queues.train);
      return { type: 'eval', request, config: resolveEvalJob(request, T), ...common };
    }
    default: {
      const unreachable: never = submission;
      throw invalid(`unknown job type ${JSON.stringify(unreachable)}`);
    }
  }
}

async function sampledTimesteps(
  request: {
    readonly trainJobId?: string;
    readonly pretrained?: string;
  },
  trainQueue: Queue<JobData, JobResult>,
): Promise<number> {
  if (request.pretrained !== undefined)
    return pretrainedManifest(request.pretrained).train.diffusion.schedule.numTimesteps;
  const run = await trainJobData(request.trainJobId!, trainQueue);
  return (run.config ?? resolveTrainJob(run.request)).train.diffusion.schedule.numTimesteps;
}

async function trainJobData(id: string, trainQueue: Queue<JobData, JobResult>): Promise<JobData<'train'>> {
  const job = jobTypeOf(id) === 'train' ? await trainQueue.getJob(id) : undefined;
  const data = job?.data;
  if (data?.type !== 'train') throw invalid(`trainJobId ${JSON.stringify(id)} names no train job`);
  return data;
}

/**
 * Refuses at the door a dataset path outside the data roots (as written; the worker checks
 * again after resolving symlinks, and is what really confines the job).
 */
export function checkDataRoots(data: JobData, dataRoots: readonly string[]): void {
  checkSpecsInRoots(
    data.type === 'train'
      ? [data.config.train.dataset, data.config.evaluation?.reference.dataset]
      : data.type === 'eval'
        ? [data.config.reference.dataset]
        : [],
    dataRoots,
  );
}

/** Refuses specs whose path lies outside the data roots; `skipUnparsable` leaves bad specs to the resolver. */
export function checkSpecsInRoots(
  specs: readonly (string | undefined)[],
  dataRoots: readonly string[],
  options: { skipUnparsable?: boolean } = {},
): void {
  for (const spec of specs) {
    if (spec === undefined) continue;
    let parsed: ReturnType<typeof parseDatasetSpec>;
    try {
      parsed = parseDatasetSpec(spec);
    } catch (err) {
      if (options.skipUnparsable) continue;
      throw err;
    }
    const location = datasetPath(parsed);
    if (location === undefined) continue;
    const resolved = path.resolve('/', location);
    if (!path.isAbsolute(location) || !dataRoots.some((root) => insideRoot(root, resolved))) {
      throw invalid(
        `dataset path ${JSON.stringify(location)} is not inside this server's data roots (${dataRoots.join(', ') || 'none'}, DDPM_DATA_ROOTS); ` +
          'upload the data with PUT /datasets/NAME and name it store:NAME',
      );
    }
  }
}
