/**
 * The job logic behind the routes: submission (resolution at the door, idempotency keys),
 * finding and showing jobs, listing, cancellation (with tombstones for jobs removed before they
 * ran), checkpoints and logs. Routes translate HTTP to these calls and nothing else.
 */
import { type Writable } from 'node:stream';

import { resolveEvalJob, resolveSampleJob, resolveTrainJob } from '@ddpm/config';
import { CodedError } from '@ddpm/core';
import { type CheckpointRef, listCheckpoints } from '@ddpm/engine/checkpoints';
import { type EvalHistory, evalCurveKey, readEvalHistory } from '@ddpm/engine/eval-history';
import {
  JOB_TYPES,
  type JobData,
  type JobRequest,
  type JobResult,
  type JobType,
  cancelChannel,
  cancelKey,
  jobIdFor,
  jobTypeOf,
  requestHash,
  runPrefixOf,
} from '@ddpm/jobs';
import { type ObjectStore } from '@ddpm/storage';
import { type Job, type JobType as BullState, type Queue } from 'bullmq';
import { type Redis } from 'ioredis';

import { type JobView, type PublicState, viewOf } from './job-view';

const TOMBSTONE_TTL_SECONDS = 30 * 24 * 3600;
const CANCEL_TTL_SECONDS = 30 * 24 * 3600;

/** The states a client may list by (`cancelling` jobs are listed as `active`). */
export const LIST_STATE_NAMES = ['queued', 'delayed', 'active', 'completed', 'cancelled', 'failed'] as const satisfies readonly PublicState[];
export type ListState = (typeof LIST_STATE_NAMES)[number];

/** BullMQ states behind each of them. */
const LIST_STATES: Readonly<Record<ListState, readonly BullState[]>> = {
  queued: ['waiting', 'prioritized', 'waiting-children'],
  delayed: ['delayed'],
  active: ['active'],
  completed: ['completed'],
  cancelled: ['completed'],
  failed: ['failed'],
};

export interface JobsServiceOptions {
  readonly queues: Readonly<Record<JobType, Queue<JobData, JobResult>>>;
  readonly redis: Redis;
  readonly store: ObjectStore;
  /** The deployment's key prefix (DDPM_QUEUE_PREFIX). */
  readonly prefix: string;
}

const invalid = (message: string): CodedError => new CodedError('DDPM_REQUEST_INVALID', 'invalid', message);

export class JobsService {
  constructor(private readonly options: JobsServiceOptions) {}

  /**
   * Resolves the request into the configuration the job will run with (every default, bound and
   * combination checked here, before anything is queued) and enqueues both. With an idempotency
   * key the same request returns the existing job (`replayed`); another request with that key is
   * a conflict.
   */
  async submit(submission: Submission, idempotencyKey?: string): Promise<{ job: Job<JobData, JobResult>; replayed: boolean }> {
    const id = jobIdFor(submission.type, idempotencyKey);
    const hash = requestHash(submission.request);
    if (idempotencyKey !== undefined) {
      const existing = await this.find(id);
      if (existing) {
        if (existing.data.requestHash !== hash) {
          throw new CodedError(
            'DDPM_IDEMPOTENCY_CONFLICT',
            'conflict',
            `Idempotency-Key ${JSON.stringify(idempotencyKey)} was already used for a different ${submission.type} request (job ${id})`,
          );
        }
        return { job: existing, replayed: true };
      }
    }
    const data = await this.jobData(submission, { submittedAt: new Date().toISOString(), runPrefix: runPrefixOf(id), requestHash: hash });
    const job = await this.options.queues[submission.type].add(submission.type, data, {
      jobId: id,
      attempts: 3,
      backoff: { type: 'exponential', delay: 5000 },
      removeOnComplete: false,
      removeOnFail: false,
    });
    return { job, replayed: false };
  }

  /** The job's data: the request as asked and the configuration resolved from it. */
  private async jobData(submission: Submission, common: Pick<JobData, 'submittedAt' | 'runPrefix' | 'requestHash'>): Promise<JobData> {
    switch (submission.type) {
      case 'train': {
        return { type: 'train', request: submission.request, config: resolveTrainJob(submission.request), ...common };
      }
      case 'sample': {
        const run = await this.trainJobData(submission.request.trainJobId);
        // T of the run sampled: what its train job resolved (or, for older jobs, resolves now).
        const T = (run.config ?? resolveTrainJob(run.request)).train.diffusion.schedule.numTimesteps;
        return { type: 'sample', request: submission.request, config: resolveSampleJob(submission.request, T), ...common };
      }
      case 'eval': {
        const run = await this.trainJobData(submission.request.trainJobId);
        const T = (run.config ?? resolveTrainJob(run.request)).train.diffusion.schedule.numTimesteps;
        return { type: 'eval', request: submission.request, config: resolveEvalJob(submission.request, T), ...common };
      }
      default: {
        const unreachable: never = submission;
        throw invalid(`unknown job type ${JSON.stringify(unreachable)}`);
      }
    }
  }

  private async trainJobData(id: string): Promise<JobData<'train'>> {
    const job = jobTypeOf(id) === 'train' ? await this.options.queues.train.getJob(id) : undefined;
    const data = job?.data;
    if (data?.type !== 'train') throw invalid(`trainJobId ${JSON.stringify(id)} names no train job`);
    return data;
  }

  async find(id: string): Promise<Job<JobData, JobResult> | undefined> {
    const type = jobTypeOf(id);
    if (type === undefined) return undefined;
    return (await this.options.queues[type].getJob(id)) ?? undefined;
  }

  async view(job: Job<JobData, JobResult>, base: string): Promise<JobView> {
    const [state, cancelled] = await Promise.all([job.getState(), this.options.redis.exists(cancelKey(this.options.prefix, job.id!))]);
    return viewOf(job, state, cancelled === 1, base);
  }

  /** A job's view, or the tombstone of one cancelled before it ran. */
  async viewById(id: string, base: string): Promise<JobView | undefined> {
    const job = await this.find(id);
    if (job) return this.view(job, base);
    return this.tombstone(id);
  }

  private async tombstone(id: string): Promise<JobView | undefined> {
    const raw = await this.options.redis.get(`${this.options.prefix}:tombstone:${id}`);
    return raw ? (JSON.parse(raw) as JobView) : undefined;
  }

  async list(query: { type?: JobType; state?: ListState; limit: number; offset: number }, base: string): Promise<JobView[]> {
    const { limit, offset } = query;
    const types = query.type ? [query.type] : [...JOB_TYPES];
    const states: BullState[] = query.state ? [...LIST_STATES[query.state]] : ['waiting', 'prioritized', 'delayed', 'active', 'completed', 'failed'];
    const jobs = (await Promise.all(types.map((t) => this.options.queues[t].getJobs(states, 0, offset + limit - 1, false)))).flat();
    jobs.sort((a, b) => b.timestamp - a.timestamp);
    let views = await Promise.all(jobs.slice(0, offset + limit).map((j) => this.view(j, base)));
    if (query.state) views = views.filter((v) => v.state === query.state || (query.state === 'active' && v.state === 'cancelling'));
    return views.slice(offset, offset + limit);
  }

  /**
   * Cancels a job (idempotent). A queued one is removed at once and leaves a tombstone (`done`);
   * a running one is told to checkpoint and stop (`requested`); a finished one is left as it is.
   */
  async cancel(id: string, base: string): Promise<{ outcome: 'done' | 'requested'; view: JobView } | undefined> {
    const { redis, prefix } = this.options;
    const job = await this.find(id);
    if (!job) {
      const dead = await this.tombstone(id);
      return dead ? { outcome: 'done', view: dead } : undefined;
    }
    const state = await job.getState();
    if (state === 'completed' || state === 'failed') return { outcome: 'done', view: await this.view(job, base) };
    await redis.set(cancelKey(prefix, id), '1', 'EX', CANCEL_TTL_SECONDS);
    if (state === 'waiting' || state === 'delayed' || state === 'prioritized' || state === 'waiting-children') {
      try {
        const current = await this.view(job, base);
        await job.remove();
        const cancelled: JobView = { ...current, state: 'cancelled', finishedAt: new Date().toISOString(), result: { status: 'cancelled' } };
        await redis.set(`${prefix}:tombstone:${id}`, JSON.stringify(cancelled), 'EX', TOMBSTONE_TTL_SECONDS);
        return { outcome: 'done', view: cancelled };
      } catch {
        // It became active meanwhile: the worker gets the message below.
      }
    }
    await redis.publish(cancelChannel(prefix), id);
    return { outcome: 'requested', view: await this.view(job, base) };
  }

  /** A train job's checkpoints, newest first; undefined when there is no such train job. */
  async checkpoints(id: string): Promise<CheckpointRef[] | undefined> {
    const job = await this.find(id);
    if (!job || job.data.type !== 'train') return undefined;
    return listCheckpoints(this.options.store, job.data.runPrefix);
  }

  /** A train job's metrics over training (its history); undefined when there is no such train job. */
  async evalHistory(id: string): Promise<EvalHistory | undefined> {
    const job = await this.find(id);
    if (!job || job.data.type !== 'train') return undefined;
    return readEvalHistory(this.options.store, job.data.runPrefix);
  }

  /** The PNG curve of one metric over a train job's training; undefined when there is none. */
  async evalCurve(id: string, metric: string): Promise<Uint8Array | undefined> {
    const job = await this.find(id);
    if (!job || job.data.type !== 'train') return undefined;
    const key = evalCurveKey(job.data.runPrefix, metric);
    return (await this.options.store.exists(key)) ? this.options.store.get(key) : undefined;
  }

  /** A job's log lines so far; undefined when there is no such job. */
  async logs(id: string): Promise<string[] | undefined> {
    const job = await this.find(id);
    if (!job) return undefined;
    return (await this.options.queues[job.data.type].getJobLogs(id, 0, -1)).logs;
  }

  /** Writes a job's log lines to `out` as they come, until the job ends or `closed()` says stop. */
  async followLogs(job: Job<JobData, JobResult>, out: Writable, closed: () => boolean): Promise<void> {
    const queue = this.options.queues[job.data.type];
    let sent = 0;
    while (!closed()) {
      const { logs } = await queue.getJobLogs(job.id!, sent, -1);
      for (const line of logs) out.write(`${line}\n`);
      sent += logs.length;
      const state = await job.getState();
      if ((state === 'completed' || state === 'failed' || state === 'unknown') && logs.length === 0) break;
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  }
}

/** A request of one job type, as the routes pass it. */
export type Submission = { [T in JobType]: { readonly type: T; readonly request: JobRequest<T> } }[JobType];
