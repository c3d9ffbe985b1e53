/**
 * The worker process: one slot (slot.ts) that runs one thing at a time, be it a job from the
 * queues (train, sample, eval), a group job it coordinates (group-coordinator.ts), or a rank of
 * another worker's group job; a Redis subscription for cancellations; a /metrics endpoint
 * (worker-http.ts); graceful shutdown (SIGTERM checkpoints what runs, hands jobs back to the
 * queue, then closes).
 */
import type * as http from 'node:http';

import {
  JOB_TYPES,
  type JobData,
  type JobResult,
  type JobType,
  type ServiceConfig,
  bearerMatches,
  cancelChannel,
  cancelKey,
  generationKey,
  isLoopback,
  redisConnectionOptions,
  tensorSettingsOf,
} from '@ddpm/service';
import { openStore } from '@ddpm/storage';
import { type Logger, createWorkerMetrics } from '@ddpm/telemetry';
import { type Job, UnrecoverableError, Worker } from 'bullmq';
import { Redis } from 'ioredis';

import { type ChildFence } from './child-protocol';
import { coordinateGroup, serveInbox } from './group-coordinator';
import { groupOf } from './group';
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
import { type WorkerConnections, type WorkerContext, handBack, jobIdOf, sleep, trainingStepOf } from './worker-context';
import { startWorkerHttp } from './worker-http';

export interface WorkerServiceOptions {
  readonly config: ServiceConfig;
  readonly logger: Logger;
  /** Queues to consume (default: all of them, train, sample and eval). */
  readonly queues?: readonly JobType[];
  readonly childPath?: string;
}

export class WorkerService implements WorkerContext {
  private readonly workers: Worker<JobData, JobResult>[] = [];
  readonly running = new Map<string, RunningJob>();
  private opened: WorkerConnections | undefined;
  /** What the slot runs now; one thing at a time (one compute process per worker). */
  private occupied: 'job' | 'rank' | undefined;
  private inboxLoop: Promise<void> | undefined;
  private metricsServer: http.Server | undefined;
  readonly metrics = createWorkerMetrics();
  closing = false;
  /** The tensor backend a job process loads here, once probed (`failed`: none loads). */
  private backend = 'loading';
  /** When the lock of each job this worker holds was last renewed (or taken). */
  private readonly lockRenewedAt = new Map<string, number>();
  private lockWatch: NodeJS.Timeout | undefined;
  /** The port /metrics listens on, once started (METRICS_PORT=0 picks a free one). */
  metricsPort: number | undefined;

  constructor(private readonly options: WorkerServiceOptions) {}

  get config(): ServiceConfig {
    return this.options.config;
  }

  get logger(): Logger {
    return this.options.logger;
  }

  /** The connections, once start() opened them. */
  get connections(): WorkerConnections {
    if (this.opened === undefined) throw new Error('internal error: the worker is not started');
    return this.opened;
  }

  /** This worker's slot id on the control plane (tests name it). */
  get slotId(): string | undefined {
    return this.opened?.slot.id;
  }

  async start(): Promise<{ metricsPort: number }> {
    const { config, logger } = this.options;
    this.opened = this.connect();
    await this.opened.slot.start();
    await this.subscribeToCancels();
    for (const name of this.options.queues ?? JOB_TYPES) this.workers.push(this.queueWorker(name));
    this.inboxLoop = serveInbox(this);
    this.watchLocks();
    this.probeBackend();
    const { server, port } = await startWorkerHttp({
      host: config.host,
      port: config.metricsPort,
      registry: this.metrics.registry,
      health: (authorization) => this.health(authorization),
      ready: () => this.readiness(),
    });
    this.metricsServer = server;
    this.metricsPort = port;
    logger.info(
      { queues: this.options.queues ?? JOB_TYPES, metricsPort: port, prefix: config.queuePrefix, slot: this.slotId },
      'worker started',
    );
    return { metricsPort: port };
  }

  /** Opens the connections: three on the queues' Redis, one on the data plane's, the store, the slot. */
  private connect(): WorkerConnections {
    const { config, logger } = this.options;
    const commands = new Redis(config.redisUrl, { maxRetriesPerRequest: null });
    const subscriber = new Redis(config.redisUrl, { maxRetriesPerRequest: null });
    const inbox = new Redis(config.redisUrl, { maxRetriesPerRequest: null });
    // While the queue Redis is away these connections retry; say so once per outage, not per try
    // (without a listener ioredis prints every failed reconnection to stderr).
    let queueRedisDown = false;
    for (const connection of [commands, subscriber, inbox]) {
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
    const data = new Redis(config.dataRedisUrl, { maxRetriesPerRequest: 1 });
    data.on('error', (err) => logger.debug({ err: err.message }, 'data-plane Redis error'));
    const slot = new Slot(commands, inbox, config.queuePrefix, config.rankDataUrl);
    return { commands, subscriber, inbox, data, store: openStore(config.storageUrl), slot };
  }

  private async subscribeToCancels(): Promise<void> {
    const { subscriber } = this.connections;
    await subscriber.subscribe(cancelChannel(this.options.config.queuePrefix));
    subscriber.on('message', (_channel, jobId: string) => {
      const job = this.running.get(jobId);
      if (job) {
        this.options.logger.info({ jobId }, 'cancel requested: checkpointing and stopping');
        job.cancel('cancel');
      }
    });
  }

  /** The BullMQ worker of one queue: one job at a time, its locks watched. */
  private queueWorker(name: JobType): Worker<JobData, JobResult> {
    const { config, logger } = this.options;
    const worker = new Worker<JobData, JobResult>(name, (job, token) => this.process(job, token), {
      connection: { ...redisConnectionOptions(config.redisUrl), maxRetriesPerRequest: null },
      prefix: config.queuePrefix,
      concurrency: 1,
      lockDuration: config.lockDurationMs,
      stalledInterval: config.stalledIntervalMs,
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
    return worker;
  }

  /**
   * Redis unreachable: renewals fail with errors, not refusals. Past the lock duration without a
   * renewal, the lock has expired and another worker may hold the job: stop without waiting for Redis.
   */
  private watchLocks(): void {
    const lockDuration = this.options.config.lockDurationMs;
    this.lockWatch = setInterval(() => {
      const now = Date.now();
      for (const [jobId, at] of this.lockRenewedAt)
        if (now - at > lockDuration) this.lockLost(jobId, `not renewed for ${Math.round((now - at) / 1000)} s`);
    }, 1000);
    this.lockWatch.unref();
  }

  /**
   * Readiness waits for the backend a job would load (a broken native binding, a GPU that is not
   * there): probed once, in a child, as a job would load it.
   */
  private probeBackend(): void {
    const { config, logger } = this.options;
    void probeBackend({
      tensors: tensorSettingsOf(config),
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
  }

  /**
   * Liveness: this event loop answers, and every job process shows life (its heartbeat, or a step
   * within ten times its longest). A wedged one is killed as soon as it is seen (job-runner.ts); one
   * that stays (a process that cannot be killed) fails the probe, and the container is restarted.
   */
  private health(authorization: string | undefined): { ok: boolean; body: Record<string, unknown> } {
    const wedged = [...this.running.values()].some((r) => r.overdueSeconds() > 0);
    const status = { status: this.closing ? 'closing' : wedged ? 'job process not responding' : 'ok' };
    // Which jobs run here is for the operator: shown on loopback, with the token, or when told it is safe.
    return {
      ok: !this.closing && !wedged,
      body: this.mayShowDetails(authorization)
        ? { ...status, slot: this.slotId, running: [...this.running.keys()] }
        : status,
    };
  }

  /**
   * Ready to take work: not shutting down, the tensor backend loads (probed in a child at start),
   * and the queues' Redis answers within a second.
   */
  private async readiness(): Promise<{ ok: boolean; body: Record<string, unknown> }> {
    const redis = await this.redisAnswers();
    const backend = this.backend;
    const ok = redis && !this.closing && backend !== 'loading' && backend !== 'failed';
    return { ok, body: { status: ok ? 'ready' : 'not ready', redis, backend, closing: this.closing } };
  }

  childOptions(fence?: ChildFence): JobRunnerOptions {
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
      tensors: tensorSettingsOf(config),
      metrics: this.metrics,
      logger,
      ...(this.options.childPath ? { childPath: this.options.childPath } : {}),
    };
  }

  private async redisAnswers(): Promise<boolean> {
    const ping =
      this.opened?.commands.ping().then(
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
  async nextWriter(jobId: string): Promise<number> {
    const { config } = this.options;
    const key = generationKey(config.queuePrefix, jobId);
    const ttl = Math.max(config.keepCompleted.seconds, config.keepFailed.seconds) + config.limits.maxJobSeconds;
    const [[, value]] = (await this.connections.commands.multi().incr(key).expire(key, ttl).exec()) as [
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

  cancelRequested(jobId: string): Promise<boolean> {
    return this.connections.commands.exists(cancelKey(this.options.config.queuePrefix, jobId)).then((n) => n === 1);
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
    const jobId = jobIdOf(job);
    this.lockRenewedAt.set(jobId, Date.now());
    try {
      return await this.processLocked(job, token);
    } finally {
      this.lockRenewedAt.delete(jobId);
    }
  }

  private async processLocked(job: Job<JobData, JobResult>, token: string | undefined): Promise<JobResult> {
    const jobId = jobIdOf(job);
    const slot = this.connections.slot;
    if (await this.cancelRequested(jobId)) {
      await job.log(`${new Date().toISOString()} cancelled before it started`);
      return { status: 'cancelled' };
    }
    // One thing at a time: a job fetched while this worker is busy (a fetch already under way when
    // the queues were paused) goes straight back.
    if (this.occupied !== undefined)
      return handBack(job, token, 1000, 'this worker was busy; handed back to the queue');
    await this.occupy('job');
    try {
      const data = job.data;
      const group = data.config !== undefined && groupOf(data).workers > 1;
      if (!(await slot.enter(group ? 'waiting' : 'busy', { job: jobId, priority: job.timestamp }))) {
        return await handBack(
          job,
          token,
          1000,
          'this worker was just claimed by a data-parallel group; handed back to the queue',
        );
      }
      if (group) return await coordinateGroup(this, job, data, token);
      const previousStep = trainingStepOf(data, job.progress);
      const { result } = await this.runChild({
        jobId,
        data,
        queue: job.queueName,
        // How far an earlier attempt got: the steps past its last checkpoint are redone.
        ...(previousStep !== undefined ? { previousStep } : {}),
        onProgress: (p) => void job.updateProgress(p).catch(() => undefined),
        onLog: (line) => void job.log(line).catch(() => undefined),
      }).catch((err: unknown) => {
        throw isPermanent(err) ? new UnrecoverableError((err as Error).message) : err;
      });
      if (result.status === 'cancelled' && this.closing && !(await this.cancelRequested(jobId))) {
        // Stopped by our shutdown, not by the user: another worker resumes it from the checkpoint just written.
        await handBack(job, token, 0, `worker shutting down at step ${result.step ?? '?'}; handed back to the queue`);
      }
      return result;
    } finally {
      await this.release();
    }
  }

  get busy(): boolean {
    return this.occupied !== undefined;
  }

  /** The slot runs `what` now: no fetching from the queues meanwhile (the running job continues). */
  async occupy(what: 'job' | 'rank'): Promise<void> {
    this.occupied = what;
    await Promise.all(this.workers.map((w) => w.pause(true)));
  }

  /**
   * The slot is free again, and the queues are fetched from (unless shutting down). A slot claimed
   * meanwhile (by an older group job) stays claimed: its assignment is on the way to the inbox loop.
   */
  async release(): Promise<void> {
    this.occupied = undefined;
    await this.connections.slot.leave().catch(() => undefined);
    if (this.closing) return;
    for (const w of this.workers) w.resume();
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
    const opened = this.opened;
    await opened?.slot.stop();
    await opened?.store.close();
    await opened?.subscriber.quit();
    await opened?.commands.quit();
    opened?.inbox.disconnect();
    opened?.data.disconnect();
    await new Promise<void>((resolve) => (this.metricsServer ? this.metricsServer.close(() => resolve()) : resolve()));
  }
}
