/** How a BullMQ job is shown to API clients. */
import { type JobData, type JobProgress, type JobResult, type JobType } from '@ddpm/jobs';
import { type Job, type JobState } from 'bullmq';

export type PublicState = 'queued' | 'delayed' | 'active' | 'cancelling' | 'completed' | 'cancelled' | 'failed';

export interface JobView {
  readonly id: string;
  readonly type: JobType;
  readonly state: PublicState;
  readonly request: unknown;
  readonly submittedAt: string;
  readonly startedAt?: string;
  readonly finishedAt?: string;
  readonly attempts: number;
  readonly progress?: JobProgress;
  readonly result?: JobResult;
  readonly error?: string;
  readonly links: Record<string, string | string[]>;
}

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
  const result = job.returnvalue ?? undefined;
  const id = job.id!;
  const samples = (result?.samples ?? []).map((s) => `${base}/samples/${s}`);
  const progress = typeof job.progress === 'object' && job.progress !== null ? (job.progress as unknown as JobProgress) : undefined;
  return {
    id,
    type: job.data.type,
    state: publicState(state, result, cancelRequested),
    request: job.data.request,
    submittedAt: job.data.submittedAt,
    ...(job.processedOn ? { startedAt: new Date(job.processedOn).toISOString() } : {}),
    ...(job.finishedOn ? { finishedAt: new Date(job.finishedOn).toISOString() } : {}),
    attempts: job.attemptsMade,
    ...(progress ? { progress } : {}),
    ...(result ? { result } : {}),
    ...(state === 'failed' && job.failedReason ? { error: job.failedReason } : {}),
    links: {
      self: `${base}/jobs/${id}`,
      logs: `${base}/jobs/${id}/logs`,
      ...(job.data.type === 'train' ? { checkpoints: `${base}/jobs/${id}/checkpoints` } : {}),
      ...(samples.length > 0 ? { samples } : {}),
    },
  };
}
