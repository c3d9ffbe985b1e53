/**
 * Cancellation: a queued job is removed at once and leaves a tombstone in its place (what it was
 * and that it was cancelled, for as long as a client may still ask); a running one is told to
 * checkpoint and stop.
 */
import { type JobData, type JobResult, cancelChannel, cancelKey, tombstoneKey } from '@ddpm/service';
import { type Job } from 'bullmq';
import { type Redis } from 'ioredis';

import { type JobView } from './job-view';

export const TOMBSTONE_TTL_SECONDS = 30 * 24 * 3600;
const CANCEL_TTL_SECONDS = 30 * 24 * 3600;

/** How cancelling finds a job and shows it. */
export interface JobLookup {
  find(id: string): Promise<Job<JobData, JobResult> | undefined>;
  view(job: Job<JobData, JobResult>, base: string): Promise<JobView>;
}

/** The tombstone of job `id`, cancelled before it ran, or undefined when there is none. */
export async function readTombstone(redis: Redis, prefix: string, id: string): Promise<JobView | undefined> {
  const raw = await redis.get(tombstoneKey(prefix, id));
  return raw ? (JSON.parse(raw) as JobView) : undefined;
}

/**
 * Cancels a job (idempotent). A queued one is removed at once and leaves a tombstone (`done`);
 * a running one is told to checkpoint and stop (`requested`); a finished one is left as it is.
 */
export async function cancelJob(
  jobs: JobLookup,
  options: { readonly redis: Redis; readonly prefix: string },
  id: string,
  base: string,
): Promise<{ outcome: 'done' | 'requested'; view: JobView } | undefined> {
  const { redis, prefix } = options;
  const job = await jobs.find(id);
  if (!job) {
    const dead = await readTombstone(redis, prefix, id);
    return dead ? { outcome: 'done', view: dead } : undefined;
  }
  const state = await job.getState();
  if (state === 'completed' || state === 'failed') return { outcome: 'done', view: await jobs.view(job, base) };
  await redis.set(cancelKey(prefix, id), '1', 'EX', CANCEL_TTL_SECONDS);
  if (state === 'waiting' || state === 'delayed' || state === 'prioritized' || state === 'waiting-children') {
    try {
      const current = await jobs.view(job, base);
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
  return { outcome: 'requested', view: await jobs.view(job, base) };
}
