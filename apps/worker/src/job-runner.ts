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
import { type ChildProcess } from 'node:child_process';

import { PLANE_NAMES, type PlaneName } from '@ddpm/allreduce';
import { CodedError, type StopReason, codedErrorOf, stopReasonOf } from '@ddpm/core';
import { type JobData, type JobProgress, type JobResult, type TensorSettings, progressProblem } from '@ddpm/service';
import { type Logger, type TrainMetrics } from '@ddpm/telemetry';

import {
  type ChildDataAccess,
  type ChildFence,
  type ChildGroup,
  type ChildMessage,
  type ParentMessage,
} from './child-protocol';
import { forkChild, oomKillCount, residentBytes } from './job-process';

export { childEnvironment, oomKillCount, probeBackend, residentBytes } from './job-process';

/** What a child reports at its end. */
export interface ChildOutcome {
  readonly result: JobResult;
  /** Why a train job stopped early (`cancel`, `shutdown`, or a group member's reason). */
  readonly stopReason?: StopReason;
}

export interface RunningJob {
  readonly jobId: string;
  /** Asks the child to checkpoint and stop; `reason` is `cancel` (the user) or `shutdown` (this worker). */
  cancel(reason: StopReason): void;
  /**
   * Ends the child at once (a rank of a generation that is over and does not answer, a job whose
   * lock was lost); the outcome rejects with `why`, which a retry may cure.
   */
  kill(why?: string): void;
  /**
   * Seconds since the child last showed life (a beat, a step, any message) beyond what it is
   * allowed (the stall allowance, or ten times its longest step): above 0, it is wedged.
   */
  overdueSeconds(): number;
  /** The outcome; rejects with the child's CodedError (its kind says whether a retry can help) or a plain Error for a crash. */
  readonly done: Promise<ChildOutcome>;
}

/** The least a job process may be silent before its first progress report (it is loading). */
const STARTUP_ALLOWANCE_MS = 30_000;

export interface JobRunnerOptions {
  readonly storageUrl: string;
  /** How long the job process keeps trying a store operation that fails with an I/O error, seconds. */
  readonly storagePatienceSeconds: number;
  /** The backend to load and the kernels' switches. */
  readonly tensors: TensorSettings;
  /** What the job process may read data from (its confinement, data-access.ts of @ddpm/data). */
  readonly dataAccess: ChildDataAccess;
  /** Resident memory the job process may use, bytes: over it, the process is killed and the job fails for good. */
  readonly memoryBytes: number;
  /** Wall time of this run, seconds: at it the job is asked to checkpoint and stop, and then fails for good. */
  readonly maxSeconds: number;
  /** Seconds a job asked to stop has before its process is killed. */
  readonly stopGraceSeconds: number;
  /**
   * Seconds the child may go without a sign of life (its beat, once a second while its event loop
   * is free) before it counts as wedged and is killed; a step that has been seen to take longer
   * raises the allowance to ten times that step.
   */
  readonly stallSeconds: number;
  /** Writes of a train job are fenced by this (the run's generation counter on the control plane). */
  readonly fence?: ChildFence;
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
  /** The plane a group generation's values travel through, once its ranks agreed. */
  readonly onPlane?: (plane: PlaneName) => void;
  /** The training step an earlier attempt of the job reported last (a train job resumed after a crash). */
  readonly previousStep?: number;
}

/** The metrics of one evaluation into the worker's gauges, each under its extractor's name. */
function recordEvaluation(m: TrainMetrics, queue: string, e: Extract<ChildMessage, { type: 'evaluation' }>): void {
  m.evalDuration.observe({ queue }, e.seconds);
  for (const [name, value] of Object.entries(e.metrics)) {
    if (name === 'bits_per_dim') m.evalBitsPerDim.set({ queue }, value);
    else if (name === 'pixel_mean' || name === 'pixel_background' || name === 'pixel_saturated')
      m.evalPixels.set({ queue, statistic: name.slice('pixel_'.length) }, value);
    else if (e.extractor !== undefined && (name === 'fid' || name === `fd_${e.extractor}`))
      m.evalFid.set({ queue, extractor: e.extractor, distance: name }, value);
    else if (e.extractor !== undefined && name === `kid_${e.extractor}`)
      m.evalKid.set({ queue, extractor: e.extractor }, value);
    else if (e.extractor !== undefined && name === `is_${e.extractor}`)
      m.evalInceptionScore.set({ queue, extractor: e.extractor }, value);
  }
}

/**
 * One job in its process: relays what the child reports (progress, log lines, step statistics,
 * the result), watches its liveness and memory, asks it to stop (cancel, shutdown, its wall time)
 * and kills it past its grace.
 */
class JobProcess implements RunningJob {
  readonly jobId: string;
  readonly done: Promise<ChildOutcome>;
  private readonly rank: number;
  private readonly log: Logger;
  private readonly child: ChildProcess;
  private readonly oomBefore: number | undefined;
  /** Why this side ended the child, when it did (the job's failure names it). */
  private endedBy: CodedError | undefined;
  private lastSign = Date.now();
  private slowestStepMs = 0;
  /** Whether the child has reported progress yet: until then it is loading (modules, backend, data, checkpoint). */
  private working = false;
  private stopTimer: NodeJS.Timeout | undefined;
  private overTime = false;
  private settled = false;
  private readonly memoryWatch: NodeJS.Timeout;
  private readonly wallTimer: NodeJS.Timeout;

  constructor(
    private readonly run: ChildRun,
    private readonly options: JobRunnerOptions,
  ) {
    this.jobId = run.jobId;
    this.rank = run.group?.rank ?? 0;
    this.log = options.logger.child({
      jobId: run.jobId,
      queue: run.queue,
      ...(run.group ? { rank: this.rank, generation: run.group.generation } : {}),
    });
    this.oomBefore = oomKillCount();
    this.child = forkChild(options.childPath);
    this.memoryWatch = setInterval(() => this.watch(), 1000);
    this.memoryWatch.unref();
    this.wallTimer = setTimeout(
      () => {
        this.overTime = true;
        this.log.warn({ maxSeconds: options.maxSeconds }, 'job reached its wall-time limit: stopping it');
        // It stops as a cancel would; `overTime` turns its end into the wall-time error.
        this.cancel('cancel');
      },
      Math.min(options.maxSeconds * 1000, 2 ** 31 - 1),
    );
    this.wallTimer.unref();
    this.done = new Promise<ChildOutcome>((resolve, reject) => {
      this.child.on('message', (message: ChildMessage) => this.onMessage(message, resolve, reject));
      this.child.on('error', (err) => {
        if (!this.settled) {
          this.settled = true;
          reject(new Error(`job process failed: ${err.message}`));
        }
      });
      this.child.on('exit', (code, signal) => this.onExit(code, signal, reject));
    });
    this.child.send(this.startMessage());
  }

  /** Asks the child to checkpoint and stop; past the grace period it is killed. */
  cancel(reason: StopReason): void {
    const { child, options } = this;
    if (child.connected) child.send({ type: 'cancel', reason } satisfies ParentMessage);
    // Asked to stop, the job checkpoints (a step and a write): past the grace period it is killed.
    this.stopTimer ??= setTimeout(() => {
      this.log.warn(
        { reason, graceSeconds: options.stopGraceSeconds },
        'job did not stop within its grace period: killed',
      );
      this.end(
        new CodedError(
          'DDPM_JOB_STOP_TIMEOUT',
          'unavailable',
          `the job did not stop within ${options.stopGraceSeconds} s of being asked to (${reason}); it was killed and resumes from its last checkpoint`,
        ),
      );
    }, options.stopGraceSeconds * 1000);
    this.stopTimer.unref();
  }

  kill(why = 'the job process was stopped'): void {
    this.end(new CodedError('DDPM_JOB_KILLED', 'unavailable', why));
  }

  overdueSeconds(): number {
    return Math.max(0, this.overdueMs() / 1000);
  }

  private end(why: CodedError): void {
    this.endedBy ??= why;
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
  }

  /**
   * How long the child may be silent: the stall allowance, or ten of its longest steps; while it
   * loads, at least STARTUP_ALLOWANCE_MS (loading blocks its event loop, and on a busy machine
   * for longer than a step).
   */
  private allowedMs(): number {
    return Math.max(this.options.stallSeconds * 1000, 10 * this.slowestStepMs, this.working ? 0 : STARTUP_ALLOWANCE_MS);
  }

  private overdueMs(): number {
    return Date.now() - this.lastSign - this.allowedMs();
  }

  /** Once a second: a child silent past its allowance, or over its memory, is killed. */
  private watch(): void {
    const { child, options, log } = this;
    if (child.pid === undefined) return;
    if (this.overdueMs() > 0 && this.endedBy === undefined) {
      const silent = Math.round((Date.now() - this.lastSign) / 1000);
      log.error(
        { silentSeconds: silent, slowestStepSeconds: this.slowestStepMs / 1000, stallSeconds: options.stallSeconds },
        'job process shows no sign of life: killed',
      );
      this.end(
        new CodedError(
          'DDPM_JOB_WEDGED',
          'unavailable',
          `the job process showed no sign of life for ${silent} s (allowed: ${Math.round(this.allowedMs() / 1000)} s, DDPM_CHILD_STALL_SECONDS or ten of its longest steps); it was killed and the job resumes from its last checkpoint`,
        ),
      );
    }
    void residentBytes(child.pid).then((rss) => {
      if (rss !== undefined && rss > options.memoryBytes) {
        log.error({ rss, limit: options.memoryBytes }, 'job process over its memory limit: killed');
        this.end(
          new CodedError(
            'DDPM_JOB_MEMORY',
            'invalid',
            `the job used ${(rss / 2 ** 30).toFixed(2)} GiB of memory, over this worker's limit of ${(options.memoryBytes / 2 ** 30).toFixed(2)} GiB (DDPM_JOB_MEMORY_MB); use a smaller batch (or more accumulation) or a smaller model`,
          ),
        );
      }
    });
  }

  private cleanup(): void {
    clearInterval(this.memoryWatch);
    clearTimeout(this.wallTimer);
    if (this.stopTimer) clearTimeout(this.stopTimer);
  }

  private startMessage(): ParentMessage {
    const { run, options } = this;
    return {
      type: 'start',
      jobId: run.jobId,
      data: run.data,
      storageUrl: options.storageUrl,
      storagePatienceSeconds: options.storagePatienceSeconds,
      dataAccess: options.dataAccess,
      tensors: options.tensors,
      ...(run.group ? { group: run.group } : {}),
      ...(options.fence && !run.group ? { fence: options.fence } : {}),
      ...(run.previousStep !== undefined ? { previousStep: run.previousStep } : {}),
    };
  }

  private onMessage(
    message: ChildMessage,
    resolve: (outcome: ChildOutcome) => void,
    reject: (err: Error) => void,
  ): void {
    this.lastSign = Date.now();
    if (message.type === 'step' || (message.type === 'progress' && message.progress.phase !== 'starting'))
      this.working = true;
    switch (message.type) {
      case 'result':
        this.settled = true;
        this.onResult(message, resolve, reject);
        break;
      case 'error':
        this.settled = true;
        reject(codedErrorOf(message.error) ?? new Error(message.error.message));
        break;
      default:
        this.relay(message);
    }
  }

  /** The child's result: the job's outcome, or the wall-time error for a run stopped at its limit. */
  private onResult(
    message: Extract<ChildMessage, { type: 'result' }>,
    resolve: (outcome: ChildOutcome) => void,
    reject: (err: Error) => void,
  ): void {
    if (this.overTime && message.result.status === 'cancelled') {
      reject(
        new CodedError(
          'DDPM_JOB_WALL_TIME',
          'invalid',
          `the job ran for its wall-time limit of ${this.options.maxSeconds} s (DDPM_MAX_JOB_SECONDS) and was stopped at step ${message.result.step ?? '?'}${message.result.checkpoint ? ` (checkpoint ${message.result.checkpoint})` : ''}`,
        ),
      );
    } else {
      resolve({
        result: message.result,
        // Checked as it arrives, like every reason crossing the process boundary.
        ...(message.stopReason !== undefined ? { stopReason: stopReasonOf(message.stopReason) } : {}),
      });
    }
  }

  /** What the child reports along the way, to the job, its log and the metrics. */
  private relay(message: Exclude<ChildMessage, { type: 'result' | 'error' }>): void {
    const { run, options, log, rank } = this;
    const queue = run.queue;
    switch (message.type) {
      case 'beat':
      case 'probed':
        break;
      case 'progress': {
        // Checked as it arrives, like everything crossing the process boundary.
        const problem = progressProblem(message.progress);
        if (problem !== undefined) log.warn({ problem }, 'a progress report that is not one: ignored');
        else run.onProgress?.(message.progress);
        break;
      }
      case 'log':
        run.onLog?.(message.line);
        log.info({ line: message.line }, 'job log');
        break;
      case 'step':
        this.recordStep(message);
        break;
      case 'relayed':
        options.metrics.relayBytes.inc({ queue, rank: String(rank), direction: message.direction }, message.bytes);
        break;
      case 'plane':
        for (const plane of PLANE_NAMES)
          options.metrics.allreducePlane.set({ rank: String(rank), plane }, plane === message.plane ? 1 : 0);
        log.info({ plane: message.plane, reasons: message.reasons }, 'data plane agreed');
        run.onPlane?.(message.plane);
        break;
      case 'checkpoint':
        options.metrics.checkpointDuration.observe({ queue, reason: message.reason }, message.seconds);
        log.info({ step: message.step, url: message.url, reason: message.reason }, 'checkpoint written');
        break;
      case 'evaluation':
        // Rank 0 speaks for the group (every rank evaluates the same samples).
        if (rank === 0) recordEvaluation(options.metrics, queue, message);
        log.info({ step: message.step, metrics: message.metrics, seconds: message.seconds }, 'evaluation');
        break;
      case 'server-log':
        // Details for the operator only (a refused dataset path): never the job's own log.
        log.warn({ detail: message.detail, ref: message.ref }, message.message);
        break;
      default: {
        const unreachable: never = message;
        log.warn({ message: unreachable }, 'unknown message from child');
      }
    }
  }

  /** A training step's statistics into the metrics. */
  private recordStep(message: Extract<ChildMessage, { type: 'step' }>): void {
    const m = this.options.metrics;
    const rank = String(this.rank);
    const withBackend = { queue: this.run.queue, rank, backend: message.backend };
    // The group's progress is counted once, by rank 0: its counts are the whole group's.
    if (this.rank === 0) {
      m.stepsTotal.inc(withBackend);
      m.imagesTotal.inc(withBackend, Math.round(message.stats.imagesPerSecond * message.stats.stepSeconds));
      m.loss.set(withBackend, message.stats.loss);
    }
    m.stepDuration.observe(withBackend, message.stats.stepSeconds);
    this.slowestStepMs = Math.max(this.slowestStepMs, message.stats.stepSeconds * 1000);
    if (message.stats.group) m.rankComputeSeconds.observe(withBackend, message.stats.group.computeSeconds);
    if (message.exchange) {
      m.allreduceDuration.observe({ rank }, message.exchange.seconds);
      m.allreduceBytes.inc({ rank, direction: 'sent' }, message.exchange.bytesSent);
      m.allreduceBytes.inc({ rank, direction: 'received' }, message.exchange.bytesReceived);
    }
    this.log.debug({ step: message.stats.step, loss: message.stats.loss }, 'step');
  }

  private onExit(code: number | null, signal: NodeJS.Signals | null, reject: (err: Error) => void): void {
    this.cleanup();
    if (this.settled) return;
    this.settled = true;
    const oomBefore = this.oomBefore;
    if (this.endedBy) reject(this.endedBy);
    // SIGKILL from no one here, while the out-of-memory killer's count rose (or where it cannot
    // be read), is most likely that killer: retrying would only repeat it. Another SIGKILL (an
    // operator, a node agent) is retried from the last checkpoint like any crash.
    else if (signal === 'SIGKILL' && (oomBefore === undefined || (oomKillCount() ?? Infinity) > oomBefore))
      reject(
        new CodedError(
          'DDPM_JOB_MEMORY',
          'invalid',
          'the job process was killed (SIGKILL, most likely out of memory); use a smaller batch (or more accumulation) or a smaller model',
        ),
      );
    else
      reject(
        new Error(
          `job process exited (${signal === 'SIGKILL' ? 'SIGKILL, not from the out-of-memory killer' : (signal ?? `code ${code}`)}) before finishing; the job will be retried from its last checkpoint`,
        ),
      );
  }
}

export function runInChild(run: ChildRun, options: JobRunnerOptions): RunningJob {
  return new JobProcess(run, options);
}

/** Whether an error from a child means the job itself is wrong (fail once, no retry). */
export function isPermanent(err: unknown): err is CodedError {
  return codedErrorOf(err)?.permanent === true;
}
