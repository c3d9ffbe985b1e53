/**
 * The worker process: one BullMQ Worker per queue (train, sample), a Redis subscription for
 * cancellations, a /metrics endpoint, and graceful shutdown (SIGTERM checkpoints running jobs,
 * then closes the workers).
 */
import * as http from 'node:http';

import { type JobData, type JobResult, type ServiceConfig, cancelChannel, cancelKey, redisConnectionOptions } from '@ddpm/jobs';
import { type Logger, createWorkerMetrics } from '@ddpm/telemetry';
import { DelayedError, type Job, Worker } from 'bullmq';
import { Redis } from 'ioredis';

import { type RunningJob, runJobInChild } from './job-runner';

export interface WorkerServiceOptions {
  readonly config: ServiceConfig;
  readonly logger: Logger;
  /** Queues to consume (default train and sample). */
  readonly queues?: readonly ('train' | 'sample')[];
  /** Jobs run at once per queue (default 1: one job's tensor work per core). */
  readonly concurrency?: number;
  /** BullMQ lock duration in ms (default 30 s); a dead worker's job is picked up after it. */
  readonly lockDuration?: number;
  readonly stalledInterval?: number;
  readonly childPath?: string;
}

export class WorkerService {
  private readonly workers: Worker<JobData, JobResult>[] = [];
  private readonly running = new Map<string, RunningJob>();
  private subscriber: Redis | undefined;
  private commands: Redis | undefined;
  private metricsServer: http.Server | undefined;
  readonly metrics = createWorkerMetrics();
  private closing = false;
  /** The port /metrics listens on, once started (METRICS_PORT=0 picks a free one). */
  metricsPort: number | undefined;

  constructor(private readonly options: WorkerServiceOptions) {}

  async start(): Promise<{ metricsPort: number }> {
    const { config, logger } = this.options;
    this.commands = new Redis(config.redisUrl, { maxRetriesPerRequest: null });
    this.subscriber = new Redis(config.redisUrl, { maxRetriesPerRequest: null });
    await this.subscriber.subscribe(cancelChannel(config.queuePrefix));
    this.subscriber.on('message', (_channel, jobId: string) => {
      const job = this.running.get(jobId);
      if (job) {
        logger.info({ jobId }, 'cancel requested: checkpointing and stopping');
        job.cancel('cancelled by request');
      }
    });
    for (const name of this.options.queues ?? ['train', 'sample']) {
      const worker = new Worker<JobData, JobResult>(name, (job, token) => this.process(job, token), {
        connection: { ...redisConnectionOptions(config.redisUrl), maxRetriesPerRequest: null },
        prefix: config.queuePrefix,
        concurrency: this.options.concurrency ?? 1,
        lockDuration: this.options.lockDuration ?? 30_000,
        stalledInterval: this.options.stalledInterval ?? 30_000,
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
      this.workers.push(worker);
    }
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
        res.writeHead(this.closing ? 503 : 200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ status: this.closing ? 'closing' : 'ok', running: [...this.running.keys()] }));
      } else {
        res.writeHead(404);
        res.end();
      }
    });
    await new Promise<void>((resolve) => this.metricsServer!.listen(config.metricsPort, config.host, resolve));
    const address = this.metricsServer.address();
    const metricsPort = typeof address === 'object' && address ? address.port : config.metricsPort;
    this.metricsPort = metricsPort;
    logger.info({ queues: this.options.queues ?? ['train', 'sample'], metricsPort, prefix: config.queuePrefix }, 'worker started');
    return { metricsPort };
  }

  private async process(job: Job<JobData, JobResult>, token: string | undefined): Promise<JobResult> {
    const { config, logger } = this.options;
    if (await this.commands!.exists(cancelKey(config.queuePrefix, job.id!))) {
      await job.log(`${new Date().toISOString()} cancelled before it started`);
      return { status: 'cancelled' };
    }
    const running = runJobInChild(job, {
      storageUrl: config.storageUrl,
      ...(config.backend ? { backend: config.backend } : {}),
      metrics: this.metrics,
      logger,
      ...(this.options.childPath ? { childPath: this.options.childPath } : {}),
    });
    this.running.set(job.id!, running);
    try {
      // A cancel that raced the start: deliver it now.
      if (await this.commands!.exists(cancelKey(config.queuePrefix, job.id!))) running.cancel('cancelled by request');
      if (this.closing) running.cancel('worker shutting down');
      const result = await running.done;
      if (result.status === 'cancelled' && this.closing && !(await this.commands!.exists(cancelKey(config.queuePrefix, job.id!)))) {
        // Stopped by our shutdown, not by the user: hand it back (due now) without using up an
        // attempt, so another worker resumes it from the checkpoint just written.
        await job.log(`${new Date().toISOString()} worker shutting down at step ${result.step ?? '?'}; handed back to the queue`);
        await job.moveToDelayed(Date.now(), token);
        throw new DelayedError();
      }
      return result;
    } finally {
      this.running.delete(job.id!);
    }
  }

  /** SIGTERM: stop taking jobs, checkpoint and stop the running ones, close everything. */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    this.options.logger.info({ running: [...this.running.keys()] }, 'shutting down: checkpointing running jobs');
    for (const job of this.running.values()) job.cancel('worker shutting down');
    await Promise.all(this.workers.map((w) => w.close()));
    await this.subscriber?.quit();
    await this.commands?.quit();
    await new Promise<void>((resolve) => (this.metricsServer ? this.metricsServer.close(() => resolve()) : resolve()));
  }
}
