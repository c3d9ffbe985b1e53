/**
 * Data-parallel groups on the worker side. The worker that takes a group job from the queue
 * coordinates it: it claims the other ranks' slots all at once (slot.ts), opens a generation (a
 * number from the control plane, which also fences checkpoint writers, and a marker on the data
 * plane), sends each claimed slot its assignment, and runs rank 0 itself. A sample or eval job
 * with `workers > 1` forms a sampling group the same way (its ranks draw batches of the images and
 * rank 0 collects them); its restarts start the sampling again. When a generation fails
 * (a rank lost, stopped, wedged or diverged, the data plane restarted) it is aborted for everyone,
 * and the coordinator forms the next one from the last checkpoint, with replacements or down to
 * `minWorkers`, up to `maxRestarts` times. Other ranks run their assignment and go back to idle.
 */
import {
  type GenerationAbort,
  abortGeneration,
  collectiveError,
  generationEnded,
  openGeneration,
  refreshGeneration,
} from '@ddpm/allreduce';
import { type SamplingGroupConfig, oneProcessGroup } from '@ddpm/settings';
import { JOB_TYPES, type JobData, generationKey } from '@ddpm/service';
import { type Redis } from 'ioredis';

import { type ChildGroup } from './child-protocol';
import { type RunningJob } from './job-runner';

/** What forms and watches a group: a train job's data-parallel group, or a sample or eval job's sampling group. */
export type GroupSettings = Pick<
  SamplingGroupConfig,
  'workers' | 'minWorkers' | 'joinTimeoutSeconds' | 'rankTimeoutSeconds' | 'maxRestarts'
>;

const ONE_PROCESS: GroupSettings = oneProcessGroup();

/** A job's group (a sample or eval job queued before sampling groups existed: one process). */
export function groupOf(data: JobData): GroupSettings {
  return data.config?.group ?? ONE_PROCESS;
}

/** What a claimed slot receives in its inbox. */
export interface GroupAssignment {
  readonly jobId: string;
  readonly data: JobData;
  readonly rank: number;
  readonly worldSize: number;
  readonly generation: number;
  readonly namespace: string;
  readonly resumeStep?: number;
  /** The coordinating slot. */
  readonly coordinator: string;
}

/**
 * An assignment as read from a slot's inbox: JSON that another process wrote, checked before it is
 * trusted. What is wrong with it, in words, when it is not an assignment.
 */
export function parseGroupAssignment(raw: string): GroupAssignment | { readonly problem: string } {
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    return { problem: 'not JSON' };
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return { problem: 'not a JSON object' };
  const a = value as Record<string, unknown>;
  const problems: string[] = [];
  for (const key of ['jobId', 'namespace', 'coordinator'])
    if (typeof a[key] !== 'string' || a[key] === '') problems.push(`${key} is not a non-empty string`);
  const integer = (key: string, min: number, optional = false): void => {
    if (optional && a[key] === undefined) return;
    if (!Number.isInteger(a[key]) || (a[key] as number) < min) problems.push(`${key} is not an integer ≥ ${min}`);
  };
  // Assignments go to the ranks other than the coordinator's (rank 0).
  integer('rank', 1);
  integer('worldSize', 2);
  integer('generation', 1);
  integer('resumeStep', 0, true);
  if (problems.length === 0 && (a['rank'] as number) >= (a['worldSize'] as number))
    problems.push(`rank ${String(a['rank'])} is not below worldSize ${String(a['worldSize'])}`);
  const data = a['data'] as Record<string, unknown> | null | undefined;
  if (typeof data !== 'object' || data === null || !(JOB_TYPES as readonly unknown[]).includes(data['type']))
    problems.push('data is not a job of a known type');
  else if (typeof data['config'] !== 'object' || data['config'] === null) problems.push("data has no job's config");
  return problems.length > 0 ? { problem: problems.join('; ') } : (a as unknown as GroupAssignment);
}

export function childGroupOf(
  a: GroupAssignment,
  urls: { data: string; control: string; sharedMemoryDir?: string; ownData?: string },
  prefix: string,
): ChildGroup {
  return {
    rank: a.rank,
    worldSize: a.worldSize,
    generation: a.generation,
    namespace: a.namespace,
    ...(a.resumeStep !== undefined ? { resumeStep: a.resumeStep } : {}),
    dataRedisUrl: urls.data,
    ...(urls.sharedMemoryDir !== undefined ? { sharedMemoryDir: urls.sharedMemoryDir } : {}),
    ...(urls.ownData !== undefined ? { ownDataUrl: urls.ownData } : {}),
    controlRedisUrl: urls.control,
    generationKey: generationKey(prefix, a.jobId),
  };
}

/** The marker's lifetime: the coordinator refreshes it every second while the generation runs. */
export function markerTtlMs(rankTimeoutSeconds: number): number {
  return Math.max(10_000, 3 * rankTimeoutSeconds * 1000);
}

export async function startGeneration(data: Redis, namespace: string, rankTimeoutSeconds: number): Promise<void> {
  await openGeneration(data, namespace, markerTtlMs(rankTimeoutSeconds));
}

/**
 * Watches a generation while this worker's rank runs: keeps the marker alive (the coordinator),
 * and ends a child that does not stop on its own once the generation is over (a stopped or wedged
 * rank would otherwise hold its worker forever). Heartbeats are not judged while the ranks are
 * still joining.
 */
export function watchGeneration(options: {
  readonly data: Redis;
  readonly namespace: string;
  readonly worldSize: number;
  readonly rankTimeoutSeconds: number;
  readonly coordinator: boolean;
  readonly running: RunningJob;
  readonly onEnded: (why: string) => void;
}): () => void {
  const { data, namespace, worldSize, rankTimeoutSeconds, coordinator, running } = options;
  const timeoutMs = rankTimeoutSeconds * 1000;
  const startedAt = Date.now();
  const joinGraceMs = Math.max(2 * timeoutMs, 15_000) + 10_000;
  let endedSince: number | undefined;
  let stopped = false;
  const tick = async (): Promise<void> => {
    if (coordinator && !(await refreshGeneration(data, namespace, markerTtlMs(rankTimeoutSeconds)))) {
      await abortGeneration(
        data,
        namespace,
        { kind: 'failure', message: 'the data plane lost the generation' },
        markerTtlMs(rankTimeoutSeconds),
      ).catch(() => undefined);
    }
    const ended = await generationEnded(data, { namespace, worldSize });
    const judged = ended !== undefined && (ended.cause !== 'heartbeat' || Date.now() - startedAt > joinGraceMs);
    if (!judged) {
      endedSince = undefined;
      return;
    }
    endedSince ??= Date.now();
    // A live child sees an abort at its next liveness check (a second); one whose peers vanished
    // waits out the rank timeout first. Past that, it is stopped or wedged: end it.
    const graceMs = ended.cause === 'heartbeat' ? timeoutMs + 5000 : 5000;
    if (Date.now() - endedSince > graceMs) {
      options.onEnded(ended.message);
      running.kill();
    }
  };
  const timer = setInterval(() => {
    if (!stopped) void tick().catch(() => undefined);
  }, 1000);
  timer.unref();
  return () => {
    stopped = true;
    clearInterval(timer);
  };
}

/**
 * The write fence of a generation's rank 0: it may write the run's checkpoints only while the
 * control plane still names its generation as the run's; a rank of a dead generation waking up
 * late is refused before it can tear or prune what the live generation wrote.
 */
export function generationFence(control: Redis, key: string, generation: number): () => Promise<void> {
  return async () => {
    const current = await control.get(key);
    if (current !== String(generation)) {
      throw collectiveError(
        'DDPM_GROUP_FENCED',
        `generation ${generation} no longer owns the run (generation ${current ?? 'none'} does): its writes are refused`,
      );
    }
  };
}

export async function endGeneration(
  data: Redis,
  namespace: string,
  abort: GenerationAbort,
  rankTimeoutSeconds: number,
): Promise<void> {
  await abortGeneration(data, namespace, abort, markerTtlMs(rankTimeoutSeconds)).catch(() => undefined);
}

/** A rank that cannot go on ends the generation as a failure, saying why. */
export function rankFailure(rank: number, why: string): GenerationAbort {
  return { kind: 'failure', rank, message: `rank ${rank}: ${why}` };
}

/** How a rank of a sampling group whose worker shuts down ends the generation (see {@link peerShutDown}). */
export function rankShutdown(rank: number): GenerationAbort {
  return { kind: 'shutdown', rank, message: `rank ${rank}'s worker is shutting down (not a failure)` };
}

/**
 * Why a generation ended, when a rank's worker shut down (a deploy, a scale-in): the group
 * re-forms without it, and that is not a restart counted against maxRestarts. Undefined otherwise.
 */
export async function peerShutDown(data: Redis, namespace: string, worldSize: number): Promise<string | undefined> {
  const ended = await generationEnded(data, { namespace, worldSize }).catch(() => undefined);
  return ended?.abort?.kind === 'shutdown' ? ended.message : undefined;
}
