/**
 * The job logic behind the routes: submission (resolution at the door, job-resolution.ts;
 * idempotency keys, idempotency.ts), finding and showing jobs, listing (job-listing.ts),
 * cancellation with tombstones for jobs removed before they ran (job-cancel.ts), checkpoints and
 * logs (following them, job-logs.ts). Routes translate HTTP to these calls and nothing else.
 */
import { type Writable } from 'node:stream';

import { type ServiceLimits, checkBudgets } from '@ddpm/settings';
import { CodedError } from '@ddpm/core';
import {
  type JobData,
  type JobResult,
  type JobType,
  LIMIT_NAMES,
  cancelKey,
  jobIdFor,
  jobTypeOf,
  requestHash,
} from '@ddpm/service';
import {
  type CheckpointRef,
  type EvalHistory,
  type LossCurveState,
  type LossPoint,
  evalCurveKey,
  listCheckpoints,
  lossPoints,
  readEvalHistory,
} from '@ddpm/runs';
import { type ObjectStore } from '@ddpm/storage';
import { progressGridName, progressGridStep, progressGridsPrefix, runPrefixOf } from '@ddpm/storage/layout';
import { type Job, type Queue } from 'bullmq';
import { type Redis } from 'ioredis';

import { releaseKey, reserveKey } from './idempotency';
import { cancelJob, readTombstone } from './job-cancel';
import { type ListState, listJobs } from './job-listing';
import { followJobLogs } from './job-logs';
import { type Submission, checkDataRoots, checkSpecsInRoots, resolveJobData } from './job-resolution';
import { type JobView, viewOf } from './job-view';

export interface JobsServiceOptions {
  readonly queues: Readonly<Record<JobType, Queue<JobData, JobResult>>>;
  readonly redis: Redis;
  readonly store: ObjectStore;
  /** The deployment's key prefix (DDPM_QUEUE_PREFIX). */
  readonly prefix: string;
  readonly limits: ServiceLimits;
  /** Folders dataset paths must lie in (the workers check again after resolving symlinks). */
  readonly dataRoots: readonly string[];
  /** Finished jobs kept per queue (count) and for how long (seconds), then removed by BullMQ. */
  readonly keepCompleted: { readonly count: number; readonly seconds: number };
  readonly keepFailed: { readonly count: number; readonly seconds: number };
  /** Log lines kept per job. */
  readonly jobLogLines: number;
  /** Concurrent log followers, and how long one may follow. */
  readonly logFollowers: number;
  readonly logFollowSeconds: number;
}

/**
 * How responses write the store's root: the keys under it are the client's business, where the
 * store lives on the server (a path, a bucket) is the operator's.
 */
export const STORE = '<store>';

export class JobsService {
  /** Log streams being followed now. */
  private followers = 0;

  /** The store's root URL and '/': shown to clients as {@link STORE}, never as the server's path. */
  private readonly storeRoot: string;

  constructor(private readonly options: JobsServiceOptions) {
    this.storeRoot = `${options.store.urlOf('')}/`;
  }

  /** `text` with the store's root (a server path, a bucket) written as {@link STORE}. */
  private redact(text: string): string {
    return text.replaceAll(this.storeRoot, `${STORE}/`);
  }

  /**
   * Resolves the request into the configuration the job will run with (every default, bound and
   * combination checked here, before anything is queued) and enqueues both. With an idempotency
   * key the same request returns the existing job (`replayed`); another request with that key is
   * a conflict.
   */
  async submit(
    submission: Submission,
    idempotencyKey?: string,
  ): Promise<{ job: Job<JobData, JobResult>; replayed: boolean }> {
    const id = jobIdFor(submission.type, idempotencyKey);
    const hash = requestHash(submission.request);
    // A path outside the data roots is refused first, before anything else is said about it.
    const asked: unknown = (submission.request as { dataset?: unknown }).dataset;
    if (typeof asked === 'string') checkSpecsInRoots([asked], this.options.dataRoots, { skipUnparsable: true });
    // Resolved and checked against the budgets before any key is reserved: a bad request leaves nothing behind.
    const data = await resolveJobData(
      submission,
      { submittedAt: new Date().toISOString(), runPrefix: runPrefixOf(id), requestHash: hash },
      this.options,
    );
    checkBudgets(data, this.options.limits, LIMIT_NAMES);
    checkDataRoots(data, this.options.dataRoots);
    if (idempotencyKey !== undefined) {
      const existing = await reserveKey(this, this.options, submission.type, idempotencyKey, id, hash);
      if (existing) return { job: existing, replayed: true };
    }
    const { keepCompleted, keepFailed, jobLogLines, redis, prefix } = this.options;
    try {
      const job = await this.options.queues[submission.type].add(submission.type, data, {
        jobId: id,
        attempts: 3,
        backoff: { type: 'exponential', delay: 5000 },
        removeOnComplete: { age: keepCompleted.seconds, count: keepCompleted.count },
        removeOnFail: { age: keepFailed.seconds, count: keepFailed.count },
        keepLogs: jobLogLines,
      });
      return { job, replayed: false };
    } catch (err) {
      // Nothing was queued: the key is free again for the client's retry.
      if (idempotencyKey !== undefined) await releaseKey(redis, prefix, id);
      throw err;
    }
  }

  async find(id: string): Promise<Job<JobData, JobResult> | undefined> {
    const type = jobTypeOf(id);
    if (type === undefined) return undefined;
    return (await this.options.queues[type].getJob(id)) ?? undefined;
  }

  /** Where train job `id` keeps its run (checkpoints, loss, history), or undefined when there is no such train job. */
  private async runPrefixOfTrainJob(id: string): Promise<string | undefined> {
    const job = await this.find(id);
    return job?.data.type === 'train' ? job.data.runPrefix : undefined;
  }

  async view(job: Job<JobData, JobResult>, base: string): Promise<JobView> {
    const [state, cancelled] = await Promise.all([
      job.getState(),
      this.options.redis.exists(cancelKey(this.options.prefix, job.id!)),
    ]);
    // Read before it finished, its state after: read it again, so that a finished job is never
    // shown without its result or error.
    if ((state === 'completed' || state === 'failed') && job.finishedOn === undefined)
      job = (await this.find(job.id!)) ?? job;
    const view = viewOf(job, state, cancelled === 1, base);
    return {
      ...view,
      ...(view.result?.checkpoint !== undefined
        ? { result: { ...view.result, checkpoint: this.redact(view.result.checkpoint) } }
        : {}),
      ...(view.error !== undefined ? { error: this.redact(view.error) } : {}),
    };
  }

  /** A job's view, or the tombstone of one cancelled before it ran. */
  async viewById(id: string, base: string): Promise<JobView | undefined> {
    const job = await this.find(id);
    if (job) return this.view(job, base);
    return readTombstone(this.options.redis, this.options.prefix, id);
  }

  /**
   * Jobs, newest first, by type and state; with `run`, only the sample and eval jobs of that train
   * job (job-listing.ts).
   */
  list(
    query: { type?: JobType; state?: ListState; run?: string; limit: number; offset: number },
    base: string,
  ): Promise<JobView[]> {
    return listJobs(this.options.queues, query, (job) => this.view(job, base));
  }

  /**
   * Cancels a job (idempotent). A queued one is removed at once and leaves a tombstone (`done`);
   * a running one is told to checkpoint and stop (`requested`); a finished one is left as it is.
   */
  cancel(id: string, base: string): Promise<{ outcome: 'done' | 'requested'; view: JobView } | undefined> {
    return cancelJob(this, this.options, id, base);
  }

  /**
   * A train job's checkpoints, newest first, each by its manifest's key in the store; undefined
   * when there is no such train job.
   */
  async checkpoints(id: string): Promise<{ step: number; key: string; bytes: number }[] | undefined> {
    const runPrefix = await this.runPrefixOfTrainJob(id);
    if (runPrefix === undefined) return undefined;
    const refs: CheckpointRef[] = await listCheckpoints(this.options.store, runPrefix);
    return refs.map((r) => ({ step: r.step, key: r.url.slice(this.storeRoot.length), bytes: r.bytes }));
  }

  /** A train job's metrics over training (its history); undefined when there is no such train job. */
  async evalHistory(id: string): Promise<EvalHistory | undefined> {
    const runPrefix = await this.runPrefixOfTrainJob(id);
    if (runPrefix === undefined) return undefined;
    return readEvalHistory(this.options.store, runPrefix);
  }

  /**
   * A train job's loss over training, as its newest readable checkpoint keeps it (empty before
   * the first); undefined when there is no such train job.
   */
  async lossCurve(id: string): Promise<{ step: number; every: number; points: LossPoint[] } | undefined> {
    const runPrefix = await this.runPrefixOfTrainJob(id);
    if (runPrefix === undefined) return undefined;
    for (const ref of await listCheckpoints(this.options.store, runPrefix)) {
      let loss: LossCurveState | undefined;
      try {
        const state = JSON.parse(new TextDecoder().decode(await this.options.store.get(`${ref.key}/state.json`))) as {
          loss?: LossCurveState;
        };
        loss = state.loss;
      } catch {
        // Pruned or torn meanwhile: the next older checkpoint has the curve up to its step.
        continue;
      }
      return loss === undefined
        ? { step: ref.step, every: 1, points: [] }
        : { step: ref.step, every: loss.every, points: lossPoints(loss) };
    }
    return { step: 0, every: 1, points: [] };
  }

  /**
   * A train job's sample grids over training (`sampleEvery`), oldest first, as sample ids
   * (`GET /samples/{id}`); undefined when there is no such train job.
   */
  async progressGrids(id: string): Promise<{ step: number; file: string }[] | undefined> {
    if ((await this.runPrefixOfTrainJob(id)) === undefined) return undefined;
    const grids: { step: number; file: string }[] = [];
    for (const o of await this.options.store.list(progressGridsPrefix(id))) {
      const step = progressGridStep(id, o.key);
      // The sample's id: /samples/{id} is its PNG, /samples/{id}.json how it was drawn.
      if (step !== undefined) grids.push({ step, file: progressGridName(id, step) });
    }
    return grids.sort((a, b) => a.step - b.step);
  }

  /** The PNG curve of one metric over a train job's training; undefined when there is none. */
  async evalCurve(id: string, metric: string): Promise<Uint8Array | undefined> {
    const runPrefix = await this.runPrefixOfTrainJob(id);
    if (runPrefix === undefined) return undefined;
    const key = evalCurveKey(runPrefix, metric);
    return (await this.options.store.exists(key)) ? this.options.store.get(key) : undefined;
  }

  /** A page of a job's log lines (`start` counts from the oldest line kept), and how many are kept. */
  async logs(job: Job<JobData, JobResult>, start: number, limit: number): Promise<{ lines: string[]; total: number }> {
    const { logs, count } = await this.options.queues[job.data.type].getJobLogs(job.id!, start, start + limit - 1);
    return { lines: logs.map((line) => this.redact(line)), total: count };
  }

  /**
   * A place among the log followers, released by the function returned; throws `unavailable` when
   * the server already streams its most (DDPM_LOG_FOLLOWERS).
   */
  acquireFollower(): () => void {
    if (this.followers >= this.options.logFollowers) {
      throw new CodedError(
        'DDPM_TOO_MANY_FOLLOWERS',
        'unavailable',
        `this server already streams ${this.options.logFollowers} logs (DDPM_LOG_FOLLOWERS); read them without follow=true or retry later`,
      );
    }
    this.followers += 1;
    let released = false;
    return () => {
      if (!released) this.followers -= 1;
      released = true;
    };
  }

  /**
   * Writes a job's log lines to `out` as they come, until the job ends, `closed()` says stop, or
   * the follow time limit passes (job-logs.ts). The caller holds a place (acquireFollower).
   */
  followLogs(job: Job<JobData, JobResult>, out: Writable, closed: () => boolean): Promise<void> {
    return followJobLogs(this.options, job, out, closed);
  }
}
