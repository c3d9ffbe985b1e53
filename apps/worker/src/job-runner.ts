/**
 * Runs one BullMQ job in a child process (child.ts) and relays what it reports: progress to the
 * job, log lines to the job's log, step statistics to the metrics. Cancellation reaches the child
 * as a message; it checkpoints and finishes as cancelled. An error whose kind is permanent (bad
 * configuration, corrupt checkpoint, missing data) fails the job once (UnrecoverableError);
 * anything else (a crashed child, a storage outage) is retried with backoff.
 *
 * Why a child of our own rather than BullMQ's sandboxed processors (which since 5.x also pass an
 * AbortSignal): (1) BullMQ keeps sandbox children in a pool and reuses them across jobs, while a
 * tensor job must leave in a fresh process: the wasm heap only grows (up to 4 GiB) and is never
 * given back, and backend state (registered kernels, the chosen backend) must not leak into the
 * next job; (2) the child reports every training step (loss, timings, images) to this process's
 * Prometheus registry over IPC, where the sandbox's only channels (progress, log, data) each
 * write to Redis; (3) on SIGTERM the worker needs the child's "stopped at step N, checkpoint
 * written" answer to hand the job back to the queue with its lock token (moveToDelayed), not a
 * completed or failed job; (4) a data-parallel rank needs a control channel (rank, world size,
 * group abort) from this process to the child that the sandbox does not offer.
 */
import { fork } from 'node:child_process';
import * as path from 'node:path';

import { codedErrorOf } from '@ddpm/core';
import { type JobData, type JobResult } from '@ddpm/jobs';
import { type Logger, type TrainMetrics } from '@ddpm/telemetry';
import { type Job, UnrecoverableError } from 'bullmq';

import { type ChildMessage, type ParentMessage } from './child-protocol';

export interface RunningJob {
  readonly jobId: string;
  cancel(reason: string): void;
  readonly done: Promise<JobResult>;
}

export interface JobRunnerOptions {
  readonly storageUrl: string;
  readonly backend?: string;
  readonly metrics: TrainMetrics;
  readonly logger: Logger;
  /** Path of the compiled child entry point (default: child.js next to this file). */
  readonly childPath?: string;
}

export function runJobInChild(job: Job<JobData, JobResult>, options: JobRunnerOptions): RunningJob {
  const log = options.logger.child({ jobId: job.id, queue: job.queueName });
  const child = fork(options.childPath ?? path.join(__dirname, 'child.js'), [], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    env: { ...process.env },
    serialization: 'advanced',
  });
  const queue = job.queueName;
  let settled = false;
  const done = new Promise<JobResult>((resolve, reject) => {
    child.on('message', (message: ChildMessage) => {
      switch (message.type) {
        case 'progress':
          void job.updateProgress(message.progress).catch((err) => log.warn({ err }, 'could not update progress'));
          break;
        case 'log':
          void job.log(message.line).catch(() => undefined);
          log.info({ line: message.line }, 'job log');
          break;
        case 'step': {
          const labels = { queue, rank: '0', backend: message.backend };
          options.metrics.stepsTotal.inc(labels);
          options.metrics.imagesTotal.inc(labels, Math.round(message.stats.imagesPerSecond * message.stats.stepSeconds));
          options.metrics.stepDuration.observe(labels, message.stats.stepSeconds);
          options.metrics.loss.set(labels, message.stats.loss);
          log.debug({ step: message.stats.step, loss: message.stats.loss }, 'step');
          break;
        }
        case 'checkpoint':
          options.metrics.checkpointDuration.observe({ queue, reason: message.reason }, message.seconds);
          log.info({ step: message.step, url: message.url, reason: message.reason }, 'checkpoint written');
          break;
        case 'result':
          settled = true;
          resolve(message.result);
          break;
        case 'error':
          settled = true;
          // The error says itself whether a retry can help (@ddpm/core's kinds); a crash or a plain
          // error is worth retrying from the last checkpoint.
          reject(codedErrorOf(message.error)?.permanent ? new UnrecoverableError(message.error.message) : new Error(message.error.message));
          break;
        default: {
          const unreachable: never = message;
          log.warn({ message: unreachable }, 'unknown message from child');
        }
      }
    });
    child.on('error', (err) => {
      if (!settled) {
        settled = true;
        reject(new Error(`job process failed: ${err.message}`));
      }
    });
    child.on('exit', (code, signal) => {
      if (!settled) {
        settled = true;
        reject(new Error(`job process exited (${signal ?? `code ${code}`}) before finishing; the job will be retried from its last checkpoint`));
      }
    });
  });
  const start: ParentMessage = {
    type: 'start',
    jobId: job.id!,
    data: job.data,
    storageUrl: options.storageUrl,
    ...(options.backend ? { backend: options.backend } : {}),
  };
  child.send(start);
  return {
    jobId: job.id!,
    cancel: (reason) => {
      if (child.connected) child.send({ type: 'cancel', reason } satisfies ParentMessage);
    },
    done,
  };
}
