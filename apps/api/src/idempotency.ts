/**
 * Idempotency keys: a submission with an Idempotency-Key reserves it for its request (by the
 * request's hash), so that the same request again returns the job the first one created, and a
 * different request with that key is a conflict.
 */
import { CodedError } from '@ddpm/core';
import { type JobData, type JobResult, type JobType, idempotencyRecordKey, tombstoneKey } from '@ddpm/service';
import { listCheckpoints } from '@ddpm/runs';
import { type ObjectStore } from '@ddpm/storage';
import { runPrefixOf } from '@ddpm/storage/layout';
import { type Job } from 'bullmq';
import { type Redis } from 'ioredis';

import { TOMBSTONE_TTL_SECONDS } from './job-cancel';

/** How long a request racing another with the same Idempotency-Key waits for that one's job. */
const RACING_KEY_WAIT_MS = 3000;

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Where the keys live, how long finished jobs are kept (a key outlives its job), and the store of runs. */
export interface IdempotencyOptions {
  readonly redis: Redis;
  readonly prefix: string;
  readonly store: ObjectStore;
  readonly keepCompleted: { readonly seconds: number };
  readonly keepFailed: { readonly seconds: number };
}

/** How a replay finds the job the key's first request created. */
export interface JobFinder {
  find(id: string): Promise<Job<JobData, JobResult> | undefined>;
}

/**
 * Reserves an Idempotency-Key for a request atomically (SET NX of the key's job id → the
 * request's hash, kept as long as finished jobs are). Returns the job an earlier identical
 * request created (a replay); throws a conflict for a different request, for a key whose job was
 * cancelled before it ran (its tombstone), and for a key whose run already holds checkpoints
 * (a job removed by retention: reusing its key would silently resume that run).
 */
export async function reserveKey(
  jobs: JobFinder,
  options: IdempotencyOptions,
  type: JobType,
  key: string,
  id: string,
  hash: string,
): Promise<Job<JobData, JobResult> | undefined> {
  const { redis, prefix, keepCompleted, keepFailed, store } = options;
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
    const existing = await jobs.find(id);
    if (existing) return existing;
    if ((await redis.exists(tombstoneKey(prefix, id))) === 1)
      throw conflict(`belonged to job ${id}, which was cancelled before it ran; use a new key`);
    if (Date.now() > until)
      throw conflict(`is in use by a request still being submitted, or its job was removed; retry, or use a new key`);
    await sleep(100);
  }
}

/** Frees the key of a request whose job was not queued, for the client's retry. */
export async function releaseKey(redis: Redis, prefix: string, id: string): Promise<void> {
  await redis.del(idempotencyRecordKey(prefix, id)).catch(() => undefined);
}
