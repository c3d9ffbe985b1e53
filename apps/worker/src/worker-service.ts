/**
 * The worker process: one slot (slot.ts) that runs one thing at a time, be it a job from the
 * queues (train, sample, eval), a group job it coordinates, or a rank of another worker's group job;
 * a Redis subscription for cancellations; a /metrics endpoint; graceful shutdown (SIGTERM
 * checkpoints what runs, hands jobs back to the queue, then closes).
 */
import * as http from 'node:http';

import { type PlaneName, removeSharedMemoryFiles } from '@ddpm/allreduce';
import { hasCode } from '@ddpm/core';
import { listCheckpoints } from '@ddpm/runs';
import {
  JOB_TYPES,
  type GroupGeneration,
  type JobData,
  type JobProgress,
  type JobResult,
  type JobType,
  type ServiceConfig,
  bearerMatches,
  cancelChannel,
  cancelKey,
  generationKey,
  generationNamespace,
  isLoopback,
  redisConnectionOptions,
} from '@ddpm/jobs';
import { type ObjectStore, openStore } from '@ddpm/storage';
import { type Logger, createWorkerMetrics } from '@ddpm/telemetry';
import { DelayedError, type Job, UnrecoverableError, Worker } from 'bullmq';
import { Redis } from 'ioredis';

import {
  type GroupAssignment,
  childGroupOf,
  endGeneration,
  groupOf,
  parseGroupAssignment,
  peerShutDown,
  rankFailure,
  rankShutdown,
  startGeneration,
  watchGeneration,
} from './group';
import { type ChildFence } from './child-protocol';
import {
  type ChildOutcome,
  type ChildRun,
  type JobRunnerOptions,
  type RunningJob,
  isPermanent,
  probeBackend,
  runInChild,
} from './job-runner';
import { Slot } from './slot';

export interface WorkerServiceOptions {
  readonly config: ServiceConfig;
  readonly logger: Logger;
  /** Queues to consume (default: all of them, train, sample and eval). */
  readonly queues?: readonly JobType[];
  readonly childPath?: string;
}

/** Handed back to the queue: due again after `ms`, without using up an attempt. */
async function handBack(
  job: Job<JobData, JobResult>,
  token: string | undefined,
  ms: number,
  line: string,
): Promise<never> {
  await job.log(`${new Date().toISOString()} ${line}`);
  await job.moveToDelayed(Date.now() + ms, token);
  throw new DelayedError();
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

export class WorkerService {
  private readonly workers: Worker<JobData, JobResult>[] = [];
  private readonly running = new Map<string, RunningJob>();
  private subscriber: Redis | undefined;
  private commands: Redis | undefined;
  private inboxConnection: Redis | undefined;
  private data: Redis | undefined;
  private store: ObjectStore | undefined;
  private slot: Slot | undefined;
  /** What the slot runs now; one thing at a time (one compute process per worker). */
  private occupied: 'job' | 'rank' | undefined;
  private inboxLoop: Promise<void> | undefined;
  private metricsServer: http.Server | undefined;
  readonly metrics = createWorkerMetrics();
  private closing = false;
  /** The tensor backend a job process loads here, once probed (`failed`: none loads). */
  private backend = 'loading';
  /** When the lock of each job this worker holds was last renewed (or taken). */
  private readonly lockRenewedAt = new Map<string, number>();
  private lockWatch: NodeJS.Timeout | undefined;
  /** The port /metrics listens on, once started (METRICS_PORT=0 picks a free one). */
  metricsPort: number | undefined;

  constructor(private readonly options: WorkerServiceOptions) {}

  /** This worker's slot id on the control plane (tests name it). */
  get slotId(): string | undefined {
    return this.slot?.id;
  }

  async start(): Promise<{ metricsPort: number }> {
    const { config, logger } = this.options;
    this.commands = new Redis(config.redisUrl, { maxRetriesPerRequest: null });
    this.subscriber = new Redis(config.redisUrl, { maxRetriesPerRequest: null });
    this.inboxConnection = new Redis(config.redisUrl, { maxRetriesPerRequest: null });
    // While the queue Redis is away these connections retry; say so once per outage, not per try
    // (without a listener ioredis prints every failed reconnection to stderr).
    let queueRedisDown = false;
    for (const connection of [this.commands, this.subscriber, this.inboxConnection]) {
      connection.on('error', (err: Error) => {
        if (queueRedisDown) return;
        queueRedisDown = true;
        logger.warn({ err: err.message }, 'queue Redis unreachable: retrying');
      });
      connection.on('ready', () => {
        if (!queueRedisDown) return;
        queueRedisDown = false;
        logger.info('queue Redis reachable again');
      });
    }
    // The data plane may restart under a running group: commands fail fast and are retried by the next tick.
    this.data = new Redis(config.dataRedisUrl, { maxRetriesPerRequest: 1 });
    this.data.on('error', (err) => logger.debug({ err: err.message }, 'data-plane Redis error'));
    this.store = openStore(config.storageUrl);
    this.slot = new Slot(this.commands, this.inboxConnection, config.queuePrefix, config.rankDataUrl);
    await this.slot.start();
    await this.subscriber.subscribe(cancelChannel(config.queuePrefix));
    this.subscriber.on('message', (_channel, jobId: string) => {
      const job = this.running.get(jobId);
      if (job) {
        logger.info({ jobId }, 'cancel requested: checkpointing and stopping');
        job.cancel('cancel');
      }
    });
    for (const name of this.options.queues ?? JOB_TYPES) {
      const worker = new Worker<JobData, JobResult>(name, (job, token) => this.process(job, token), {
        connection: { ...redisConnectionOptions(config.redisUrl), maxRetriesPerRequest: null },
        prefix: config.queuePrefix,
        concurrency: 1,
        lockDuration: this.options.config.lockDurationMs,
        stalledInterval: this.options.config.stalledIntervalMs,
        maxStalledCount: 5,
        autorun: true,
      });
      worker.on('failed', (job, err) => {
        this.metrics.jobsTotal.inc({ queue: name, outcome: 'failed' });
        logger.warn({ jobId: job?.id, err: err.message, attempts: job?.attemptsMade }, 'job failed');
      });
      worker.on('completed', (job, result) => {
        this.metrics.jobsTotal.inc({ queue: name, outcome: result.status });
        logger.info({ jobId: job.id, status: result.status, step: result.step }, 'job finished');
      });
      worker.on('error', (err) => logger.error({ err: err.message }, 'worker error'));
      // Lost locks (a Redis stall longer than the lock): another worker may take the job over, so
      // this one's process stops now, without a checkpoint (its writes are fenced anyway).
      worker.on('lockRenewalFailed', (jobIds: string[]) => {
        for (const jobId of jobIds) this.lockLost(jobId, 'its renewal was refused');
      });
      worker.on('locksRenewed', ({ jobIds }: { jobIds: string[] }) => {
        for (const jobId of jobIds) if (this.lockRenewedAt.has(jobId)) this.lockRenewedAt.set(jobId, Date.now());
      });
      this.workers.push(worker);
    }
    this.inboxLoop = this.serveInbox();
    // Redis unreachable: renewals fail with errors, not refusals. Past the lock duration without a
    // renewal, the lock has expired and another worker may hold the job: stop without waiting for Redis.
    const lockDuration = this.options.config.lockDurationMs;
    this.lockWatch = setInterval(() => {
      const now = Date.now();
      for (const [jobId, at] of this.lockRenewedAt)
        if (now - at > lockDuration) this.lockLost(jobId, `not renewed for ${Math.round((now - at) / 1000)} s`);
    }, 1000);
    this.lockWatch.unref();
    // Readiness waits for the backend a job would load (a broken native binding, a GPU that is not
    // there): probed once, in a child, as a job would load it.
    void probeBackend({
      ...(config.backend ? { backend: config.backend } : {}),
      ...(this.options.childPath ? { childPath: this.options.childPath } : {}),
    }).then(
      (name) => {
        this.backend = name;
        logger.info({ backend: name }, 'tensor backend loads');
      },
      (err: unknown) => {
        this.backend = 'failed';
        logger.error(
          { err: err instanceof Error ? err.message : String(err) },
          'tensor backend does not load: not ready',
        );
      },
    );
    this.metricsServer = http.createServer((req, res) => {
      if (req.url === '/metrics') {
        this.metrics.registry.metrics().then(
          (text) => {
            res.writeHead(200, { 'content-type': this.metrics.registry.contentType });
            res.end(text);
          },
          () => {
            res.writeHead(500);
            res.end();
          },
        );
      } else if (req.url === '/healthz') {
        // Liveness: this event loop answers, and every job process shows life (its heartbeat, or
        // a step within ten times its longest). A wedged one is killed as soon as it is seen
        // (job-runner.ts); one that stays (a process that cannot be killed) fails the probe, and the
        // container is restarted.
        const wedged = [...this.running.values()].some((r) => r.overdueSeconds() > 0);
        res.writeHead(this.closing || wedged ? 503 : 200, { 'content-type': 'application/json' });
        const status = { status: this.closing ? 'closing' : wedged ? 'job process not responding' : 'ok' };
        // Which jobs run here is for the operator: shown on loopback, with the token, or when told it is safe.
        res.end(
          JSON.stringify(
            this.mayShowDetails(req.headers.authorization)
              ? { ...status, slot: this.slot?.id, running: [...this.running.keys()] }
              : status,
          ),
        );
      } else if (req.url === '/readyz') {
        // Ready to take work: not shutting down, the tensor backend loads (probed in a child at
        // start), and the queues' Redis answers within a second.
        void this.redisAnswers().then((redis) => {
          const backend = this.backend;
          const ready = redis && !this.closing && backend !== 'loading' && backend !== 'failed';
          res.writeHead(ready ? 200 : 503, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ status: ready ? 'ready' : 'not ready', redis, backend, closing: this.closing }));
        });
      } else {
        res.writeHead(404);
        res.end();
      }
    });
    await new Promise<void>((resolve) => this.metricsServer!.listen(config.metricsPort, config.host, resolve));
    const address = this.metricsServer.address();
    const metricsPort = typeof address === 'object' && address ? address.port : config.metricsPort;
    this.metricsPort = metricsPort;
    logger.info(
      { queues: this.options.queues ?? JOB_TYPES, metricsPort, prefix: config.queuePrefix, slot: this.slot.id },
      'worker started',
    );
    return { metricsPort };
  }

  private childOptions(fence?: ChildFence): JobRunnerOptions {
    const { config, logger } = this.options;
    return {
      storageUrl: config.storageUrl,
      storagePatienceSeconds: config.storagePatienceSeconds,
      dataAccess: { roots: config.dataRoots, maxFileBytes: config.dataMaxFileBytes },
      memoryBytes: config.jobMemoryBytes,
      maxSeconds: config.limits.maxJobSeconds,
      stopGraceSeconds: config.stopGraceSeconds,
      stallSeconds: config.childStallSeconds,
      ...(fence ? { fence } : {}),
      ...(config.backend ? { backend: config.backend } : {}),
      metrics: this.metrics,
      logger,
      ...(this.options.childPath ? { childPath: this.options.childPath } : {}),
    };
  }

  private async redisAnswers(): Promise<boolean> {
    const ping =
      this.commands?.ping().then(
        () => true,
        () => false,
      ) ?? Promise.resolve(false);
    const timeout = new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 1000).unref());
    return Promise.race([ping, timeout]);
  }

  /**
   * The next number of a run's writer counter (a run alone, or a group generation). The counter
   * outlives the job's record by the longest a run may last, then expires with nothing left behind.
   */
  private async nextWriter(jobId: string): Promise<number> {
    const { config } = this.options;
    const key = generationKey(config.queuePrefix, jobId);
    const ttl = Math.max(config.keepCompleted.seconds, config.keepFailed.seconds) + config.limits.maxJobSeconds;
    const [[, value]] = (await this.commands!.multi().incr(key).expire(key, ttl).exec()) as [
      [Error | null, number],
      unknown,
    ];
    return value;
  }

  /** The lock of a job this worker runs is gone: its process stops now (its writes are fenced anyway). */
  private lockLost(jobId: string, why: string): void {
    this.lockRenewedAt.delete(jobId);
    const running = this.running.get(jobId);
    if (!running) return;
    this.options.logger.error(
      { jobId, why },
      'lost the job lock: killing its process so that only one worker runs the job',
    );
    running.kill(`this worker lost the job lock (${why}); the job resumes from its last checkpoint`);
  }

  private mayShowDetails(authorization: string | undefined): boolean {
    const { config } = this.options;
    if (config.apiToken !== undefined) return bearerMatches(authorization, config.apiToken);
    return isLoopback(config.host) || config.insecure;
  }

  private cancelRequested(jobId: string): Promise<boolean> {
    return this.commands!.exists(cancelKey(this.options.config.queuePrefix, jobId)).then((n) => n === 1);
  }

  /**
   * Runs a child for a job, with cancellation delivered, and its outcome. A train job's run takes
   * the next number of the run's writer counter: its checkpoint writes go on only while the
   * counter holds it, so a run that lost its lock (and another worker's run of the same job, which
   * took the next number) can never both write.
   */
  private async runChild(run: ChildRun): Promise<ChildOutcome> {
    const { config } = this.options;
    let fence: ChildFence | undefined;
    if (run.data.type === 'train') {
      const key = generationKey(config.queuePrefix, run.jobId);
      fence = { controlRedisUrl: config.redisUrl, key, value: await this.nextWriter(run.jobId) };
    }
    const running = runInChild(run, this.childOptions(fence));
    this.running.set(run.jobId, running);
    try {
      // A cancel that raced the start: deliver it now.
      if (await this.cancelRequested(run.jobId)) running.cancel('cancel');
      if (this.closing) running.cancel('shutdown');
      return await running.done;
    } finally {
      this.running.delete(run.jobId);
    }
  }

  private async process(job: Job<JobData, JobResult>, token: string | undefined): Promise<JobResult> {
    this.lockRenewedAt.set(job.id!, Date.now());
    try {
      return await this.processLocked(job, token);
    } finally {
      this.lockRenewedAt.delete(job.id!);
    }
  }

  private async processLocked(job: Job<JobData, JobResult>, token: string | undefined): Promise<JobResult> {
    if (await this.cancelRequested(job.id!)) {
      await job.log(`${new Date().toISOString()} cancelled before it started`);
      return { status: 'cancelled' };
    }
    // One thing at a time: a job fetched while this worker is busy (a fetch already under way when
    // the queues were paused) goes straight back.
    if (this.occupied !== undefined)
      return handBack(job, token, 1000, 'this worker was busy; handed back to the queue');
    this.occupied = 'job';
    await this.pauseQueues();
    try {
      const data = job.data;
      const group = data.config !== undefined && groupOf(data).workers > 1;
      if (!(await this.slot!.enter(group ? 'waiting' : 'busy', { job: job.id!, priority: job.timestamp }))) {
        return await handBack(
          job,
          token,
          1000,
          'this worker was just claimed by a data-parallel group; handed back to the queue',
        );
      }
      if (group) return await this.coordinate(job, data, token);
      const previousStep = trainingStepOf(data, job.progress);
      const { result } = await this.runChild({
        jobId: job.id!,
        data,
        queue: job.queueName,
        // How far an earlier attempt got: the steps past its last checkpoint are redone.
        ...(previousStep !== undefined ? { previousStep } : {}),
        onProgress: (p) => void job.updateProgress(p).catch(() => undefined),
        onLog: (line) => void job.log(line).catch(() => undefined),
      }).catch((err: unknown) => {
        throw isPermanent(err) ? new UnrecoverableError((err as Error).message) : err;
      });
      if (result.status === 'cancelled' && this.closing && !(await this.cancelRequested(job.id!))) {
        // Stopped by our shutdown, not by the user: another worker resumes it from the checkpoint just written.
        await handBack(job, token, 0, `worker shutting down at step ${result.step ?? '?'}; handed back to the queue`);
      }
      return result;
    } finally {
      this.occupied = undefined;
      // A slot claimed meanwhile (by an older group job) stays claimed: its assignment is on the way to the inbox loop.
      await this.slot!.leave().catch(() => undefined);
      this.resumeQueues();
    }
  }

  /** Stops fetching from every queue while the slot is busy (the running job continues). */
  private async pauseQueues(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.pause(true)));
  }

  private resumeQueues(): void {
    if (this.closing) return;
    for (const w of this.workers) w.resume();
  }

  /**
   * A group job: claim the ranks all at once, run generation after generation (rank 0 here)
   * until the job completes, stops or fails more than maxRestarts times.
   */
  private async coordinate(job: Job<JobData, JobResult>, data: JobData, token: string | undefined): Promise<JobResult> {
    const { config } = this.options;
    const prefix = config.queuePrefix;
    const group = groupOf(data);
    const slot = this.slot!;
    const jobId = job.id!;
    const priority = job.timestamp;
    const failures: string[] = [];
    let restarts = 0;
    // The generations this coordinator formed, and how each ended (the last one: finished the job).
    const generations: GroupGeneration[] = [];
    let reached = trainingStepOf(data, job.progress);
    const log = (line: string): void => void job.log(`${new Date().toISOString()} ${line}`).catch(() => undefined);
    for (let formation = 0; ; formation++) {
      // Form a group: everything at once or nothing (slot.ts); prefer all `workers` for a while, then accept `minWorkers`.
      // (The first time, process() put the slot in `waiting`; after a failed generation it is `busy`.)
      if (formation > 0 && !(await slot.enter('waiting', { job: jobId, priority }))) {
        return handBack(
          job,
          token,
          1000,
          'this worker was claimed by an older group job while re-forming; handed back to the queue',
        );
      }
      const formedBy = Date.now() + group.joinTimeoutSeconds * 1000;
      const settleAt = Date.now() + Math.min((group.joinTimeoutSeconds * 1000) / 2, 60_000);
      let claimed: readonly string[] | undefined;
      while (claimed === undefined) {
        if (await this.cancelRequested(jobId)) {
          log('cancelled while forming its group');
          return { status: 'cancelled' };
        }
        if (this.closing)
          return handBack(job, token, 0, 'worker shutting down while forming a group; handed back to the queue');
        const atLeast = (Date.now() < settleAt ? group.workers : group.minWorkers) - 1;
        const claim = await slot.claim(jobId, priority, group.workers - 1, atLeast);
        if (claim.outcome === 'ok') {
          claimed = claim.slots;
        } else if (claim.outcome === 'preempted') {
          // An older job took this worker: it goes first; this job waits in the queue.
          return handBack(
            job,
            token,
            1000,
            `an older group job (${claim.by}) claimed this worker; handed back to the queue`,
          );
        } else if (Date.now() > formedBy) {
          const live = await slot.liveSlots();
          if (live < group.minWorkers) {
            throw new UnrecoverableError(
              `the job needs at least ${group.minWorkers} workers at once and ${live} are running`,
            );
          }
          return handBack(
            job,
            token,
            5000 + Math.floor(Math.random() * 5000),
            `no group of ${group.minWorkers}-${group.workers} could form in ${group.joinTimeoutSeconds} s (${claim.claimable} of ${claim.live} workers free); back to the queue, nobody holds a worker meanwhile`,
          );
        } else {
          await sleep(300 + Math.floor(Math.random() * 400));
        }
      }
      // A new generation: its number fences writers; its marker says it lives.
      const generation = await this.nextWriter(jobId);
      const worldSize = claimed.length + 1;
      const namespace = generationNamespace(prefix, jobId, generation);
      await startGeneration(this.data!, namespace, group.rankTimeoutSeconds);
      // A train job resumes from its last checkpoint; a sampling group starts its sampling again.
      const resumeStep =
        data.type === 'train' ? (await listCheckpoints(this.store!, data.runPrefix))[0]?.step : undefined;
      const base = {
        jobId,
        data,
        worldSize,
        generation,
        namespace,
        coordinator: slot.id,
        ...(resumeStep !== undefined ? { resumeStep } : {}),
      };
      await Promise.all(claimed.map((id, i) => slot.assign(id, { ...base, rank: i + 1 } satisfies GroupAssignment)));
      this.metrics.worldSize.set({ queue: job.queueName }, worldSize);
      log(
        `generation ${generation}: ${worldSize} ranks (this worker is rank 0)${resumeStep !== undefined ? `, from the checkpoint of step ${resumeStep}` : ''}`,
      );
      const formed: GroupGeneration = {
        generation,
        worldSize,
        ...(resumeStep !== undefined ? { fromStep: resumeStep } : {}),
      };
      generations.push(formed);
      const assignment: GroupAssignment = { ...base, rank: 0 };
      let dataPlane: PlaneName | undefined;
      try {
        const { result, stopReason } = await this.runRankChild(assignment, true, {
          // How far the last generation (or an earlier coordinator) got: the steps past the
          // checkpoint this one starts from are redone.
          ...(reached !== undefined ? { previousStep: reached } : {}),
          onProgress: (p) => {
            reached = trainingStepOf(data, p) ?? reached;
            void job.updateProgress({ ...p, group: { worldSize, generation, restarts } }).catch(() => undefined);
          },
          onLog: (line) => void job.log(line).catch(() => undefined),
          onPlane: (plane) => (dataPlane = plane),
        });
        if (result.status === 'cancelled' && stopReason === 'shutdown' && !(await this.cancelRequested(jobId))) {
          // A rank's worker is shutting down: the group stopped after a common step and checkpointed.
          await handBack(
            job,
            token,
            0,
            `a worker of the group is shutting down; stopped at step ${result.step ?? '?'} and handed back to the queue`,
          );
        }
        return {
          ...result,
          group: { worldSize, generation, restarts, ...(dataPlane !== undefined ? { dataPlane } : {}), generations },
        };
      } catch (err) {
        if (err instanceof DelayedError) throw err;
        const message = err instanceof Error ? err.message : String(err);
        await endGeneration(this.data!, namespace, rankFailure(0, message), group.rankTimeoutSeconds);
        await this.removeGenerationFiles(namespace);
        if (isPermanent(err) && !hasCode(err, 'DDPM_GROUP_FENCED')) throw new UnrecoverableError(message);
        const shutDown = await peerShutDown(this.data!, namespace, worldSize);
        if (shutDown !== undefined) {
          generations[generations.length - 1] = { ...formed, ended: shutDown, restart: false };
          log(
            `generation ${generation} ended: ${shutDown}; re-forming without it${data.type === 'train' ? ' from the last checkpoint' : ', sampling again'} (not counted as a restart)`,
          );
          continue;
        }
        restarts += 1;
        generations[generations.length - 1] = { ...formed, ended: message, restart: true };
        failures.push(`generation ${generation}: ${message}`);
        this.metrics.groupRestarts.inc({ queue: job.queueName });
        if (restarts > group.maxRestarts)
          throw new UnrecoverableError(
            `the group failed ${restarts} times (maxRestarts ${group.maxRestarts}): ${failures.join('; ')}`,
          );
        log(
          `generation ${generation} ended: ${message}; restart ${restarts} of ${group.maxRestarts}${data.type === 'train' ? ' from the last checkpoint' : ', sampling again'}`,
        );
      }
    }
  }

  /** A failed generation's gradients left in this host's shared-memory folder (a killed job process cannot delete them). */
  private async removeGenerationFiles(namespace: string): Promise<void> {
    const dir = this.options.config.sharedMemoryDir;
    if (dir !== undefined) await removeSharedMemoryFiles(dir, namespace);
  }

  /** Runs this worker's rank of a generation, watching the generation while it runs. */
  private async runRankChild(
    a: GroupAssignment,
    coordinator: boolean,
    report: Pick<ChildRun, 'onProgress' | 'onLog' | 'onPlane' | 'previousStep'> = {},
  ): Promise<ChildOutcome> {
    const { config, logger } = this.options;
    const rankTimeoutSeconds = groupOf(a.data).rankTimeoutSeconds;
    const running = runInChild(
      {
        jobId: a.jobId,
        data: a.data,
        queue: a.data.type,
        group: childGroupOf(
          a,
          {
            data: config.dataRedisUrl,
            control: config.redisUrl,
            ...(config.sharedMemoryDir !== undefined ? { sharedMemoryDir: config.sharedMemoryDir } : {}),
            ...(config.rankDataUrl !== undefined ? { ownData: config.rankDataUrl } : {}),
          },
          config.queuePrefix,
        ),
        ...report,
      },
      this.childOptions(),
    );
    this.running.set(a.jobId, running);
    const stopWatching = watchGeneration({
      data: this.data!,
      namespace: a.namespace,
      worldSize: a.worldSize,
      rankTimeoutSeconds,
      coordinator,
      running,
      onEnded: (why) =>
        logger.warn(
          { jobId: a.jobId, rank: a.rank, generation: a.generation, why },
          'generation over and the rank does not stop: killing it',
        ),
    });
    try {
      if (await this.cancelRequested(a.jobId)) running.cancel('cancel');
      if (this.closing) running.cancel('shutdown');
      const outcome = await running.done;
      // A sampling rank stopped by its worker's shutdown: its peers cannot finish without its share.
      // Say so at once (rather than at their heartbeat timeout), and that it is no failure: the
      // coordinator re-forms without counting a restart. (A train group stops together and is handed back.)
      if (!coordinator && a.data.type !== 'train' && outcome.stopReason === 'shutdown') {
        await endGeneration(this.data!, a.namespace, rankShutdown(a.rank), rankTimeoutSeconds);
      }
      return outcome;
    } catch (err) {
      // This rank cannot go on: end the generation for everyone now rather than at their timeouts.
      await endGeneration(
        this.data!,
        a.namespace,
        rankFailure(a.rank, err instanceof Error ? err.message : String(err)),
        rankTimeoutSeconds,
      );
      await this.removeGenerationFiles(a.namespace);
      throw err;
    } finally {
      stopWatching();
      this.running.delete(a.jobId);
    }
  }

  /** Assignments from coordinators: run them as a rank, one at a time, between jobs. */
  private async serveInbox(): Promise<void> {
    const { logger } = this.options;
    while (!this.closing) {
      let raw: string | undefined;
      try {
        raw = await this.slot!.nextAssignment(1);
      } catch (err) {
        if (this.closing) return;
        logger.warn({ err: (err as Error).message }, 'could not read the slot inbox');
        await sleep(1000);
        continue;
      }
      if (raw === undefined) continue;
      const assignment = parseGroupAssignment(raw);
      if ('problem' in assignment) {
        // Not from a coordinator of this version (or damaged): nothing to run; its coordinator, if
        // any, sees no heartbeat from this rank and re-forms its group.
        logger.error(
          { problem: assignment.problem, raw: raw.slice(0, 200) },
          'an unreadable group assignment: skipped',
        );
        continue;
      }
      // The coordinating path of this worker may still be handing its own job back.
      for (let waited = 0; this.occupied !== undefined && waited < 30_000; waited += 100) await sleep(100);
      if (this.occupied !== undefined || this.closing) {
        await endGeneration(
          this.data!,
          assignment.namespace,
          {
            kind: 'failure',
            rank: assignment.rank,
            message: `rank ${assignment.rank}'s worker was not free`,
          },
          groupOf(assignment.data).rankTimeoutSeconds,
        );
        continue;
      }
      this.occupied = 'rank';
      await this.pauseQueues();
      await this.slot!.setState('busy', { job: assignment.jobId });
      logger.info(
        {
          jobId: assignment.jobId,
          rank: assignment.rank,
          worldSize: assignment.worldSize,
          generation: assignment.generation,
        },
        'serving as a rank',
      );
      try {
        const { result } = await this.runRankChild(assignment, false);
        logger.info(
          { jobId: assignment.jobId, rank: assignment.rank, status: result.status, step: result.step },
          'rank finished',
        );
      } catch (err) {
        logger.warn({ jobId: assignment.jobId, rank: assignment.rank, err: (err as Error).message }, 'rank failed');
      } finally {
        this.occupied = undefined;
        await this.slot!.leave().catch(() => undefined);
        this.resumeQueues();
      }
    }
  }

  /** SIGTERM: stop taking work, checkpoint and stop what runs, close everything. */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    clearInterval(this.lockWatch);
    this.options.logger.info({ running: [...this.running.keys()] }, 'shutting down: checkpointing running jobs');
    for (const job of this.running.values()) job.cancel('shutdown');
    await Promise.all(this.workers.map((w) => w.close()));
    // A rank still running waits for its group to stop at a common step; then the inbox loop ends.
    while (this.occupied !== undefined) await sleep(100);
    await this.inboxLoop;
    await this.slot?.stop();
    await this.store?.close();
    await this.subscriber?.quit();
    await this.commands?.quit();
    this.inboxConnection?.disconnect();
    this.data?.disconnect();
    await new Promise<void>((resolve) => (this.metricsServer ? this.metricsServer.close(() => resolve()) : resolve()));
  }
}

/** The training step a train job's progress reports, when it was training (or checkpointing). */
function trainingStepOf(data: JobData, progress: unknown): number | undefined {
  if (data.type !== 'train' || typeof progress !== 'object' || progress === null) return undefined;
  const p = progress as Partial<JobProgress>;
  return p.phase === 'training' || p.phase === 'checkpointing' ? (p.step ?? 0) : undefined;
}
