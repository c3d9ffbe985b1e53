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

import { type CodedError, codedErrorOf } from '@ddpm/core';
import { type JobData, type JobProgress, type JobResult } from '@ddpm/jobs';
import { type Logger, type TrainMetrics } from '@ddpm/telemetry';

import { type ChildGroup, type ChildMessage, type ParentMessage } from './child-protocol';

/** What a child reports at its end. */
export interface ChildOutcome {
  readonly result: JobResult;
  /** Why a train job stopped early (`cancel`, `shutdown`, or a group member's reason). */
  readonly stopReason?: string;
}

export interface RunningJob {
  readonly jobId: string;
  /** Asks the child to checkpoint and stop; `reason` is `cancel` (the user) or `shutdown` (this worker). */
  cancel(reason: string): void;
  /** Ends the child at once (a rank of a generation that is over and does not answer). */
  kill(): void;
  /** The outcome; rejects with the child's CodedError (its kind says whether a retry can help) or a plain Error for a crash. */
  readonly done: Promise<ChildOutcome>;
}

export interface JobRunnerOptions {
  readonly storageUrl: string;
  readonly backend?: string;
  readonly metrics: TrainMetrics;
  readonly logger: Logger;
  /** Path of the compiled child entry point (default: child.js next to this file). */
  readonly childPath?: string;
}

export interface ChildRun {
  readonly jobId: string;
  readonly data: JobData;
  /** The queue the job came from (a metric label). */
  readonly queue: string;
  /** This child's rank in a data-parallel group (absent: the job alone). */
  readonly group?: ChildGroup;
  /** Progress and log lines of the job (rank 0 and single jobs report them to the BullMQ job). */
  readonly onProgress?: (progress: JobProgress) => void;
  readonly onLog?: (line: string) => void;
}

/** The metrics of one evaluation into the worker's gauges, each under its extractor's name. */
function recordEvaluation(m: TrainMetrics, queue: string, e: Extract<ChildMessage, { type: 'evaluation' }>): void {
  m.evalDuration.observe({ queue }, e.seconds);
  for (const [name, value] of Object.entries(e.metrics)) {
    if (name === 'bits_per_dim') m.evalBitsPerDim.set({ queue }, value);
    else if (e.extractor !== undefined && (name === 'fid' || name === `fd_${e.extractor}`)) m.evalFid.set({ queue, extractor: e.extractor, distance: name }, value);
    else if (e.extractor !== undefined && name === `kid_${e.extractor}`) m.evalKid.set({ queue, extractor: e.extractor }, value);
    else if (e.extractor !== undefined && name === `is_${e.extractor}`) m.evalInceptionScore.set({ queue, extractor: e.extractor }, value);
  }
}

export function runInChild(run: ChildRun, options: JobRunnerOptions): RunningJob {
  const rank = run.group?.rank ?? 0;
  const log = options.logger.child({ jobId: run.jobId, queue: run.queue, ...(run.group ? { rank, generation: run.group.generation } : {}) });
  const child = fork(options.childPath ?? path.join(__dirname, 'child.js'), [], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    env: { ...process.env },
    serialization: 'advanced',
  });
  const queue = run.queue;
  const labels = { queue, rank: String(rank) };
  let settled = false;
  const done = new Promise<ChildOutcome>((resolve, reject) => {
    child.on('message', (message: ChildMessage) => {
      switch (message.type) {
        case 'progress':
          run.onProgress?.(message.progress);
          break;
        case 'log':
          run.onLog?.(message.line);
          log.info({ line: message.line }, 'job log');
          break;
        case 'step': {
          const m = options.metrics;
          const withBackend = { ...labels, backend: message.backend };
          // The group's progress is counted once, by rank 0: its counts are the whole group's.
          if (rank === 0) {
            m.stepsTotal.inc(withBackend);
            m.imagesTotal.inc(withBackend, Math.round(message.stats.imagesPerSecond * message.stats.stepSeconds));
            m.loss.set(withBackend, message.stats.loss);
          }
          m.stepDuration.observe(withBackend, message.stats.stepSeconds);
          if (message.stats.group) m.rankComputeSeconds.observe(withBackend, message.stats.group.computeSeconds);
          if (message.exchange) {
            m.allreduceDuration.observe({ rank: String(rank) }, message.exchange.seconds);
            m.allreduceBytes.inc({ rank: String(rank), direction: 'sent' }, message.exchange.bytesSent);
            m.allreduceBytes.inc({ rank: String(rank), direction: 'received' }, message.exchange.bytesReceived);
          }
          log.debug({ step: message.stats.step, loss: message.stats.loss }, 'step');
          break;
        }
        case 'checkpoint':
          options.metrics.checkpointDuration.observe({ queue, reason: message.reason }, message.seconds);
          log.info({ step: message.step, url: message.url, reason: message.reason }, 'checkpoint written');
          break;
        case 'evaluation': {
          // Rank 0 speaks for the group (every rank evaluates the same samples).
          if (rank === 0) recordEvaluation(options.metrics, queue, message);
          log.info({ step: message.step, metrics: message.metrics, seconds: message.seconds }, 'evaluation');
          break;
        }
        case 'result':
          settled = true;
          resolve({ result: message.result, ...(message.stopReason !== undefined ? { stopReason: message.stopReason } : {}) });
          break;
        case 'error':
          settled = true;
          reject(codedErrorOf(message.error) ?? new Error(message.error.message));
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
    jobId: run.jobId,
    data: run.data,
    storageUrl: options.storageUrl,
    ...(options.backend ? { backend: options.backend } : {}),
    ...(run.group ? { group: run.group } : {}),
  };
  child.send(start);
  return {
    jobId: run.jobId,
    cancel: (reason) => {
      if (child.connected) child.send({ type: 'cancel', reason } satisfies ParentMessage);
    },
    kill: () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    },
    done,
  };
}

/** Whether an error from a child means the job itself is wrong (fail once, no retry). */
export function isPermanent(err: unknown): err is CodedError {
  return codedErrorOf(err)?.permanent === true;
}
