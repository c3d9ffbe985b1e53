/**
 * The job logic behind the routes: submission (resolution at the door, idempotency keys),
 * finding and showing jobs, listing, cancellation (with tombstones for jobs removed before they
 * ran), checkpoints and logs. Routes translate HTTP to these calls and nothing else.
 */
import * as path from 'node:path';
import { type Writable } from 'node:stream';

import {
  type ServiceLimits,
  checkBudgets,
  checkSampleSource,
  fitAccumulation,
  resolveEvalJob,
  resolveSampleJob,
  resolveTrainJob,
} from '@ddpm/config';
import { CodedError } from '@ddpm/core';
import { datasetPath, insideRoot, parseDatasetSpec } from '@ddpm/data/spec';
import {
  JOB_TYPES,
  type JobData,
  type JobRequest,
  type JobResult,
  type JobType,
  cancelChannel,
  cancelKey,
  idempotencyRecordKey,
  jobIdFor,
  jobTypeOf,
  requestHash,
  tombstoneKey,
} from '@ddpm/jobs';
import { pretrainedManifest } from '@ddpm/pretrained';
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
import { type Job, type JobType as BullState, type Queue } from 'bullmq';
import { type Redis } from 'ioredis';

import { type JobView, type PublicState, viewOf } from './job-view';

const TOMBSTONE_TTL_SECONDS = 30 * 24 * 3600;
const CANCEL_TTL_SECONDS = 30 * 24 * 3600;
/** How long a request racing another with the same Idempotency-Key waits for that one's job. */
const RACING_KEY_WAIT_MS = 3000;
/** The deepest a listing may page (offset + limit), so one request reads a bounded number of jobs. */
export const MAX_LIST_DEPTH = 1000;
/** Log lines one `GET /jobs/:id/logs` returns at most. */
export const MAX_LOG_PAGE = 5000;

/** The states a client may list by (`cancelling` jobs are listed as `active`). */
export const LIST_STATE_NAMES = [
  'queued',
  'delayed',
  'active',
  'completed',
  'cancelled',
  'failed',
] as const satisfies readonly PublicState[];
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

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Resolves when `out` drains or closes, or when `stop()` says so (checked twice a second). */
function drained(out: Writable, stop: () => boolean): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      clearInterval(poll);
      out.off('drain', done);
      out.off('close', done);
      resolve();
    };
    const poll = setInterval(() => {
      if (stop()) done();
    }, 500);
    out.once('drain', done);
    out.once('close', done);
  });
}

/**
 * How responses write the store's root: the keys under it are the client's business, where the
 * store lives on the server (a path, a bucket) is the operator's.
 */
export const STORE = '<store>';

const invalid = (message: string): CodedError => new CodedError('DDPM_REQUEST_INVALID', 'invalid', message);

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
    if (typeof asked === 'string') this.checkSpecsInRoots([asked], { skipUnparsable: true });
    // Resolved and checked against the budgets before any key is reserved: a bad request leaves nothing behind.
    const data = await this.jobData(submission, {
      submittedAt: new Date().toISOString(),
      runPrefix: runPrefixOf(id),
      requestHash: hash,
    });
    checkBudgets(data, this.options.limits);
    this.checkDataRoots(data);
    if (idempotencyKey !== undefined) {
      const existing = await this.reserveKey(submission.type, idempotencyKey, id, hash);
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
      if (idempotencyKey !== undefined) await redis.del(idempotencyRecordKey(prefix, id)).catch(() => undefined);
      throw err;
    }
  }

  /**
   * Reserves an Idempotency-Key for a request atomically (SET NX of the key's job id → the
   * request's hash, kept as long as finished jobs are). Returns the job an earlier identical
   * request created (a replay); throws a conflict for a different request, for a key whose job was
   * cancelled before it ran (its tombstone), and for a key whose run already holds checkpoints
   * (a job removed by retention: reusing its key would silently resume that run).
   */
  private async reserveKey(
    type: JobType,
    key: string,
    id: string,
    hash: string,
  ): Promise<Job<JobData, JobResult> | undefined> {
    const { redis, prefix, keepCompleted, keepFailed, store } = this.options;
    const conflict = (why: string): CodedError =>
      new CodedError('DDPM_IDEMPOTENCY_CONFLICT', 'conflict', `Idempotency-Key ${JSON.stringify(key)} ${why}`);
    const ttl = Math.max(keepCompleted.seconds, keepFailed.seconds, TOMBSTONE_TTL_SECONDS) + 86400;
    const reserved = (await redis.set(idempotencyRecordKey(prefix, id), hash, 'EX', ttl, 'NX')) === 'OK';
    if (reserved) {
      if ((await redis.exists(tombstoneKey(prefix, id))) === 1)
        throw conflict(`belonged to job ${id}, which was cancelled before it ran; use a new key`);
      if ((await listCheckpoints(store, runPrefixOf(id))).length > 0)
        throw conflict(`belonged to an earlier job ${id} whose run still holds checkpoints; use a new key`);
      return undefined;
    }
    const owner = await redis.get(idempotencyRecordKey(prefix, id));
    if (owner !== hash) throw conflict(`was already used for a different ${type} request (job ${id})`);
    // The same request: its job, once the request that reserved the key has added it.
    for (const until = Date.now() + RACING_KEY_WAIT_MS; ;) {
      const existing = await this.find(id);
      if (existing) return existing;
      if ((await redis.exists(tombstoneKey(prefix, id))) === 1)
        throw conflict(`belonged to job ${id}, which was cancelled before it ran; use a new key`);
      if (Date.now() > until)
        throw conflict(`is in use by a request still being submitted, or its job was removed; retry, or use a new key`);
      await sleep(100);
    }
  }

  /**
   * Refuses at the door a dataset path outside the data roots (as written; the worker checks
   * again after resolving symlinks, and is what really confines the job).
   */
  private checkDataRoots(data: JobData): void {
    this.checkSpecsInRoots(
      data.type === 'train'
        ? [data.config.train.dataset, data.config.evaluation?.reference.dataset]
        : data.type === 'eval'
          ? [data.config.reference.dataset]
          : [],
    );
  }

  /** Refuses specs whose path lies outside the data roots; `skipUnparsable` leaves bad specs to the resolver. */
  private checkSpecsInRoots(specs: readonly (string | undefined)[], options: { skipUnparsable?: boolean } = {}): void {
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
      if (!path.isAbsolute(location) || !this.options.dataRoots.some((root) => insideRoot(root, resolved))) {
        throw invalid(
          `dataset path ${JSON.stringify(location)} is not inside this server's data roots (${this.options.dataRoots.join(', ') || 'none'}, DDPM_DATA_ROOTS); ` +
            'upload the data with PUT /datasets/NAME and name it store:NAME',
        );
      }
    }
  }

  /** The job's data: the request as asked and the configuration resolved from it. */
  private async jobData(
    submission: Submission,
    common: Pick<JobData, 'submittedAt' | 'runPrefix' | 'requestHash'>,
  ): Promise<JobData> {
    switch (submission.type) {
      case 'train': {
        // A batch whose micro-batches would not fit the step-memory budget is split further when the request left accumulation open.
        const config = fitAccumulation(
          resolveTrainJob(submission.request),
          submission.request,
          this.options.limits.maxStepMemoryMb,
        );
        return { type: 'train', request: submission.request, config, ...common };
      }
      case 'sample': {
        const request = submission.request;
        checkSampleSource(request);
        // T of the run sampled: what its train job resolved (or, for older jobs, resolves now), or the shipped model's.
        const T = await this.sampledTimesteps(request);
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
        const T = await this.sampledTimesteps(request);
        return { type: 'eval', request, config: resolveEvalJob(request, T), ...common };
      }
      default: {
        const unreachable: never = submission;
        throw invalid(`unknown job type ${JSON.stringify(unreachable)}`);
      }
    }
  }

  private async sampledTimesteps(request: {
    readonly trainJobId?: string;
    readonly pretrained?: string;
  }): Promise<number> {
    if (request.pretrained !== undefined)
      return pretrainedManifest(request.pretrained).train.diffusion.schedule.numTimesteps;
    const run = await this.trainJobData(request.trainJobId!);
    return (run.config ?? resolveTrainJob(run.request)).train.diffusion.schedule.numTimesteps;
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
    return this.tombstone(id);
  }

  private async tombstone(id: string): Promise<JobView | undefined> {
    const raw = await this.options.redis.get(tombstoneKey(this.options.prefix, id));
    return raw ? (JSON.parse(raw) as JobView) : undefined;
  }

  /**
   * Jobs, newest first, by type and state; with `run`, only the sample and eval jobs of that train
   * job (among the newest MAX_LIST_DEPTH of each type and state).
   */
  async list(
    query: { type?: JobType; state?: ListState; run?: string; limit: number; offset: number },
    base: string,
  ): Promise<JobView[]> {
    const { limit, offset } = query;
    if (offset + limit > MAX_LIST_DEPTH)
      throw invalid(
        `offset + limit must be at most ${MAX_LIST_DEPTH}, got ${offset + limit}; filter by type or state to reach older jobs`,
      );
    const types = (query.type ? [query.type] : [...JOB_TYPES]).filter((t) => query.run === undefined || t !== 'train');
    const states: BullState[] = query.state
      ? [...LIST_STATES[query.state]]
      : ['waiting', 'prioritized', 'delayed', 'active', 'completed', 'failed'];
    const depth = query.run === undefined ? offset + limit : MAX_LIST_DEPTH;
    let jobs = (
      await Promise.all(types.map((t) => this.options.queues[t].getJobs(states, 0, depth - 1, false)))
    ).flat();
    if (query.run !== undefined)
      jobs = jobs.filter((j) => j.data.type !== 'train' && j.data.request.trainJobId === query.run);
    jobs.sort((a, b) => b.timestamp - a.timestamp);
    let views = await Promise.all(jobs.slice(0, offset + limit).map((j) => this.view(j, base)));
    if (query.state)
      views = views.filter((v) => v.state === query.state || (query.state === 'active' && v.state === 'cancelling'));
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
        const cancelled: JobView = {
          ...current,
          state: 'cancelled',
          finishedAt: new Date().toISOString(),
          result: { status: 'cancelled' },
        };
        await redis.set(tombstoneKey(prefix, id), JSON.stringify(cancelled), 'EX', TOMBSTONE_TTL_SECONDS);
        return { outcome: 'done', view: cancelled };
      } catch {
        // It became active meanwhile: the worker gets the message below.
      }
    }
    await redis.publish(cancelChannel(prefix), id);
    return { outcome: 'requested', view: await this.view(job, base) };
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
   * the follow time limit passes; waits for `out` to drain, so a reader that does not read holds
   * no more than a page of lines in memory. The caller holds a place (acquireFollower).
   */
  async followLogs(job: Job<JobData, JobResult>, out: Writable, closed: () => boolean): Promise<void> {
    const queue = this.options.queues[job.data.type];
    const cap = this.options.jobLogLines;
    const until = Date.now() + this.options.logFollowSeconds * 1000;
    const over = (): boolean => closed() || Date.now() >= until;
    /** Where the next line is in the list as it is now, and the last line sent. */
    let next = 0;
    let last: string | undefined;
    while (!over()) {
      const page = await queue.getJobLogs(job.id!, next, next + 999);
      let logs = page.logs;
      // count: the lines kept now (LLEN), whatever the range.
      const count = page.count;
      if (count >= cap && last !== undefined) {
        // At the cap every new line drops the oldest, shifting the list: find the last line sent
        // (0 when it was dropped too: those lines are gone for every reader).
        const all = (await queue.getJobLogs(job.id!, 0, -1)).logs;
        next = all.lastIndexOf(last) + 1;
        logs = all.slice(next, next + 1000);
      }
      for (const line of logs) {
        if (over()) break;
        const room = out.write(`${line}\n`);
        last = line;
        next += 1;
        // A reader that does not read holds the stream's buffer, not this loop's pages.
        if (!room) await drained(out, over);
      }
      if (logs.length === 0) {
        const state = await job.getState();
        if (state === 'completed' || state === 'failed' || state === 'unknown') return;
        await sleep(500);
      }
    }
    if (!closed())
      out.write(
        `(stopped following after ${this.options.logFollowSeconds} s, DDPM_LOG_FOLLOW_SECONDS; request again to go on)\n`,
      );
  }
}

/** A request of one job type, as the routes pass it. */
export type Submission = { [T in JobType]: { readonly type: T; readonly request: JobRequest<T> } }[JobType];
