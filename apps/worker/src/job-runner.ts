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
import { type ChildProcess, fork } from 'node:child_process';
import { promises as fs, readFileSync } from 'node:fs';
import * as path from 'node:path';

import { PLANE_NAMES, type PlaneName } from '@ddpm/allreduce';
import { CodedError, type StopReason, codedErrorOf, stopReasonOf } from '@ddpm/core';
import { type JobData, type JobProgress, type JobResult, progressProblem } from '@ddpm/jobs';
import { kernelExecArgv } from '@ddpm/kernels/v8-flags';
import { type Logger, type TrainMetrics } from '@ddpm/telemetry';

import {
  type ChildDataAccess,
  type ChildFence,
  type ChildGroup,
  type ChildMessage,
  type ParentMessage,
} from './child-protocol';

/**
 * The environment a job process gets: what Node, the tensor backends and the object store's
 * client need, and nothing else (not the API token, not the queue's Redis URL).
 */
const CHILD_ENV_NAMES = new Set([
  'PATH',
  'HOME',
  'TMPDIR',
  'TZ',
  'LANG',
  'NODE_ENV',
  'NODE_OPTIONS',
  'NODE_EXTRA_CA_CERTS',
  'LOG_LEVEL',
  'DDPM_BACKEND',
  'S3_ENDPOINT',
  'XDG_CACHE_HOME',
  'CUDA_VISIBLE_DEVICES',
  'NVIDIA_VISIBLE_DEVICES',
  'TF_CPP_MIN_LOG_LEVEL',
  'TF_FORCE_GPU_ALLOW_GROWTH',
  'HTTPS_PROXY',
  'HTTP_PROXY',
  'NO_PROXY',
]);
const CHILD_ENV_PREFIXES = ['AWS_', 'DDPM_WASM_', 'LC_'];

export function childEnvironment(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  return Object.fromEntries(
    Object.entries(env).filter(
      ([k, v]) => v !== undefined && (CHILD_ENV_NAMES.has(k) || CHILD_ENV_PREFIXES.some((p) => k.startsWith(p))),
    ),
  );
}

/** Resident set size of a process, bytes (Linux /proc), or undefined when it cannot be read. */
export async function residentBytes(pid: number): Promise<number | undefined> {
  try {
    const status = await fs.readFile(`/proc/${pid}/status`, 'utf8');
    const kb = /^VmRSS:\s+(\d+) kB/m.exec(status);
    return kb ? Number(kb[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Files that count the out-of-memory killer's kills: this process's memory cgroup (v2
 * `memory.events`, v1 `memory.oom_control`; a job process is forked into it) and the machine's
 * `/proc/vmstat`. Read once: the cgroup does not change.
 */
const OOM_COUNTERS: readonly string[] = (() => {
  const files = ['/proc/vmstat'];
  try {
    for (const line of readFileSync('/proc/self/cgroup', 'utf8').split('\n')) {
      const [, controllers, where] = line.split(':');
      if (where === undefined) continue;
      if (controllers === '') files.push(path.join('/sys/fs/cgroup', where, 'memory.events'));
      else if (controllers?.split(',').includes('memory'))
        files.push(path.join('/sys/fs/cgroup/memory', where, 'memory.oom_control'));
    }
  } catch {
    // Not Linux, or no /proc: the vmstat read below fails the same way.
  }
  return files;
})();

/**
 * Kills by the out-of-memory killer so far, summed over the counters this machine lets us read
 * (any rise means one happened), or undefined when none can be read.
 */
export function oomKillCount(): number | undefined {
  let total: number | undefined;
  for (const file of OOM_COUNTERS) {
    try {
      const m = /^oom_kill (\d+)$/m.exec(readFileSync(file, 'utf8'));
      if (m) total = (total ?? 0) + Number(m[1]);
    } catch {
      // Not readable here (a container without the cgroup mounted): the others decide.
    }
  }
  return total;
}

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
  readonly backend?: string;
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

/** A job process: the child entry point, with the allow-listed environment. */
function forkChild(childPath: string | undefined): ChildProcess {
  return fork(childPath ?? path.join(__dirname, 'child.js'), [], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    env: childEnvironment(),
    // The V8 flags our fused kernels need on this Node, given at start-up as Node supports.
    execArgv: kernelExecArgv(),
    serialization: 'advanced',
    // Not detached: a session of its own would put the child in a scheduler autogroup of its own
    // (measured: the 2-worker demo trained 5% slower). Group signals are ignored by the child
    // instead (child.ts); the worker stops it over IPC, then with SIGKILL.
  });
}

export function runInChild(run: ChildRun, options: JobRunnerOptions): RunningJob {
  const rank = run.group?.rank ?? 0;
  const log = options.logger.child({
    jobId: run.jobId,
    queue: run.queue,
    ...(run.group ? { rank, generation: run.group.generation } : {}),
  });
  const oomBefore = oomKillCount();
  const child = forkChild(options.childPath);
  /** Why this side ended the child, when it did (the job's failure names it). */
  let endedBy: CodedError | undefined;
  const end = (why: CodedError): void => {
    endedBy ??= why;
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };
  let lastSign = Date.now();
  let slowestStepMs = 0;
  /** Whether the child has reported progress yet: until then it is loading (modules, backend, data, checkpoint). */
  let working = false;
  /**
   * How long the child may be silent: the stall allowance, or ten of its longest steps; while it
   * loads, at least STARTUP_ALLOWANCE_MS (loading blocks its event loop, and on a busy machine
   * for longer than a step).
   */
  const allowedMs = (): number =>
    Math.max(options.stallSeconds * 1000, 10 * slowestStepMs, working ? 0 : STARTUP_ALLOWANCE_MS);
  const overdueMs = (): number => Date.now() - lastSign - allowedMs();
  const memoryWatch = setInterval(() => {
    if (child.pid === undefined) return;
    if (overdueMs() > 0 && endedBy === undefined) {
      const silent = Math.round((Date.now() - lastSign) / 1000);
      log.error(
        { silentSeconds: silent, slowestStepSeconds: slowestStepMs / 1000, stallSeconds: options.stallSeconds },
        'job process shows no sign of life: killed',
      );
      end(
        new CodedError(
          'DDPM_JOB_WEDGED',
          'unavailable',
          `the job process showed no sign of life for ${silent} s (allowed: ${Math.round(allowedMs() / 1000)} s, DDPM_CHILD_STALL_SECONDS or ten of its longest steps); it was killed and the job resumes from its last checkpoint`,
        ),
      );
    }
    void residentBytes(child.pid).then((rss) => {
      if (rss !== undefined && rss > options.memoryBytes) {
        log.error({ rss, limit: options.memoryBytes }, 'job process over its memory limit: killed');
        end(
          new CodedError(
            'DDPM_JOB_MEMORY',
            'invalid',
            `the job used ${(rss / 2 ** 30).toFixed(2)} GiB of memory, over this worker's limit of ${(options.memoryBytes / 2 ** 30).toFixed(2)} GiB (DDPM_JOB_MEMORY_MB); use a smaller batch (or more accumulation) or a smaller model`,
          ),
        );
      }
    });
  }, 1000);
  memoryWatch.unref();
  let stopTimer: NodeJS.Timeout | undefined;
  const stop = (reason: StopReason): void => {
    if (child.connected) child.send({ type: 'cancel', reason } satisfies ParentMessage);
    // Asked to stop, the job checkpoints (a step and a write): past the grace period it is killed.
    stopTimer ??= setTimeout(() => {
      log.warn({ reason, graceSeconds: options.stopGraceSeconds }, 'job did not stop within its grace period: killed');
      end(
        new CodedError(
          'DDPM_JOB_STOP_TIMEOUT',
          'unavailable',
          `the job did not stop within ${options.stopGraceSeconds} s of being asked to (${reason}); it was killed and resumes from its last checkpoint`,
        ),
      );
    }, options.stopGraceSeconds * 1000);
    stopTimer.unref();
  };
  let overTime = false;
  const wallTimer = setTimeout(
    () => {
      overTime = true;
      log.warn({ maxSeconds: options.maxSeconds }, 'job reached its wall-time limit: stopping it');
      // It stops as a cancel would; `overTime` turns its end into the wall-time error below.
      stop('cancel');
    },
    Math.min(options.maxSeconds * 1000, 2 ** 31 - 1),
  );
  wallTimer.unref();
  const cleanup = (): void => {
    clearInterval(memoryWatch);
    clearTimeout(wallTimer);
    if (stopTimer) clearTimeout(stopTimer);
  };
  const queue = run.queue;
  const labels = { queue, rank: String(rank) };
  let settled = false;
  const done = new Promise<ChildOutcome>((resolve, reject) => {
    child.on('message', (message: ChildMessage) => {
      lastSign = Date.now();
      if (message.type === 'step' || (message.type === 'progress' && message.progress.phase !== 'starting'))
        working = true;
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
          slowestStepMs = Math.max(slowestStepMs, message.stats.stepSeconds * 1000);
          if (message.stats.group) m.rankComputeSeconds.observe(withBackend, message.stats.group.computeSeconds);
          if (message.exchange) {
            m.allreduceDuration.observe({ rank: String(rank) }, message.exchange.seconds);
            m.allreduceBytes.inc({ rank: String(rank), direction: 'sent' }, message.exchange.bytesSent);
            m.allreduceBytes.inc({ rank: String(rank), direction: 'received' }, message.exchange.bytesReceived);
          }
          log.debug({ step: message.stats.step, loss: message.stats.loss }, 'step');
          break;
        }
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
        case 'evaluation': {
          // Rank 0 speaks for the group (every rank evaluates the same samples).
          if (rank === 0) recordEvaluation(options.metrics, queue, message);
          log.info({ step: message.step, metrics: message.metrics, seconds: message.seconds }, 'evaluation');
          break;
        }
        case 'result':
          settled = true;
          if (overTime && message.result.status === 'cancelled') {
            reject(
              new CodedError(
                'DDPM_JOB_WALL_TIME',
                'invalid',
                `the job ran for its wall-time limit of ${options.maxSeconds} s (DDPM_MAX_JOB_SECONDS) and was stopped at step ${message.result.step ?? '?'}${message.result.checkpoint ? ` (checkpoint ${message.result.checkpoint})` : ''}`,
              ),
            );
          } else {
            resolve({
              result: message.result,
              // Checked as it arrives, like every reason crossing the process boundary.
              ...(message.stopReason !== undefined ? { stopReason: stopReasonOf(message.stopReason) } : {}),
            });
          }
          break;
        case 'server-log':
          // Details for the operator only (a refused dataset path): never the job's own log.
          log.warn({ detail: message.detail, ref: message.ref }, message.message);
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
      cleanup();
      if (settled) return;
      settled = true;
      if (endedBy) reject(endedBy);
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
    });
  });
  const start: ParentMessage = {
    type: 'start',
    jobId: run.jobId,
    data: run.data,
    storageUrl: options.storageUrl,
    storagePatienceSeconds: options.storagePatienceSeconds,
    dataAccess: options.dataAccess,
    ...(options.backend ? { backend: options.backend } : {}),
    ...(run.group ? { group: run.group } : {}),
    ...(options.fence && !run.group ? { fence: options.fence } : {}),
    ...(run.previousStep !== undefined ? { previousStep: run.previousStep } : {}),
  };
  child.send(start);
  return {
    jobId: run.jobId,
    cancel: stop,
    kill: (why = 'the job process was stopped') => end(new CodedError('DDPM_JOB_KILLED', 'unavailable', why)),
    overdueSeconds: () => Math.max(0, overdueMs() / 1000),
    done,
  };
}

/**
 * Loads the tensor backend in a child, as a job would, and returns its name (the worker's
 * readiness: a worker whose backend does not load is never ready, so a rollout stops at it).
 * Rejects with the child's error, or after `timeoutMs`.
 */
export function probeBackend(options: { backend?: string; childPath?: string; timeoutMs?: number }): Promise<string> {
  const child = forkChild(options.childPath);
  return new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`the backend did not load within ${(options.timeoutMs ?? 120_000) / 1000} s`));
    }, options.timeoutMs ?? 120_000);
    timer.unref();
    child.on('message', (message: ChildMessage) => {
      if (message.type === 'probed') resolve(message.backend);
      else if (message.type === 'error') reject(codedErrorOf(message.error) ?? new Error(message.error.message));
    });
    child.on('error', (err) => reject(err));
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`the backend probe exited (${signal ?? `code ${code}`}) without an answer`));
    });
    child.send({ type: 'probe', ...(options.backend ? { backend: options.backend } : {}) } satisfies ParentMessage);
  });
}

/** Whether an error from a child means the job itself is wrong (fail once, no retry). */
export function isPermanent(err: unknown): err is CodedError {
  return codedErrorOf(err)?.permanent === true;
}
