/**
 * Whether a group's generation is alive, and this rank's part in saying so.
 *
 * - Every rank's heartbeat key is written by a thread of the rank's own process (not by the event
 *   loop, which a long synchronous training step blocks, and not by the worker that forked it,
 *   which would keep beating for a stopped child): it expires `rankTimeoutMs` after the last beat,
 *   so a killed or SIGSTOPped rank disappears within that time. The thread also stops beating when
 *   the rank's main thread makes no progress for longer than it should (a wedged rank).
 * - The generation's marker key is created by whoever forms the generation and refreshed while it
 *   runs (only if it still exists): a data-plane Redis that restarted without its state has no
 *   marker, and the generation is over.
 * - Any member may abort the generation with a reason; everyone else sees it at its next check.
 */
import { Worker } from 'node:worker_threads';

import { type Redis } from 'ioredis';

import { generationKeys } from './data-keys';
import { collectiveError } from './errors';

export interface GenerationKeys {
  /** Key namespace of one generation of one run, e.g. `ddpm:dp:<job>:g3`. */
  readonly namespace: string;
  readonly worldSize: number;
}

const markerKey = (ns: string): string => generationKeys(ns).alive;
const abortKey = (ns: string): string => generationKeys(ns).abort;
const heartbeatKey = (ns: string, rank: number): string => generationKeys(ns).heartbeat(rank);
/** Set by a rank that stopped beating on purpose (its work done): not a lost rank. */
const leftKey = (ns: string, rank: number): string => generationKeys(ns).left(rank);

/** Creates the generation's marker (by whoever forms the generation). */
export async function openGeneration(redis: Redis, ns: string, ttlMs: number): Promise<void> {
  await redis.set(markerKey(ns), String(Date.now()), 'PX', ttlMs);
}

/** Keeps the marker alive; false when it is gone (the data plane lost its state). */
export async function refreshGeneration(redis: Redis, ns: string, ttlMs: number): Promise<boolean> {
  return (await redis.set(markerKey(ns), String(Date.now()), 'PX', ttlMs, 'XX')) === 'OK';
}

/**
 * Why a member ended a generation: a `failure` (its job counts it against the group's restarts)
 * or its worker `shutdown` (a deploy or scale-in: the group re-forms without it, uncounted).
 */
export const ABORT_KINDS = ['failure', 'shutdown'] as const;
export type AbortKind = (typeof ABORT_KINDS)[number];

/** The record a member leaves when it ends a generation, read back by every other member. */
export interface GenerationAbort {
  readonly kind: AbortKind;
  /** The rank that ended it, when a rank did (not the data plane, say). */
  readonly rank?: number;
  /** In words, for logs and the job's result. */
  readonly message: string;
}

/** Ends the generation for every member, saying why (the first record stays). */
export async function abortGeneration(redis: Redis, ns: string, abort: GenerationAbort, ttlMs: number): Promise<void> {
  await redis.set(abortKey(ns), JSON.stringify(abort), 'PX', ttlMs, 'NX');
}

/**
 * An abort record as read from Redis, checked field by field: anything else there (a member of
 * an older version, a hand-set key) counts as a failure, its text kept as the message.
 */
export function parseGenerationAbort(raw: string): GenerationAbort {
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    return { kind: 'failure', message: raw };
  }
  if (typeof value !== 'object' || value === null) return { kind: 'failure', message: raw };
  const { kind, rank, message } = value as Record<string, unknown>;
  if (
    !(ABORT_KINDS as readonly unknown[]).includes(kind) ||
    typeof message !== 'string' ||
    (rank !== undefined && !(Number.isInteger(rank) && (rank as number) >= 0))
  )
    return { kind: 'failure', message: raw };
  return { kind: kind as AbortKind, ...(rank !== undefined ? { rank: rank as number } : {}), message };
}

/** Why a generation is over. */
export interface GenerationEnd {
  /** `aborted` by a member; its marker gone (`data-plane`); ranks without a heartbeat (`heartbeat`). */
  readonly cause: 'aborted' | 'data-plane' | 'heartbeat';
  readonly message: string;
  /** The member's record, when it was `aborted`. */
  readonly abort?: GenerationAbort;
}

/** Why the generation is over, or undefined while it runs. */
export async function generationEnded(redis: Redis, keys: GenerationKeys): Promise<GenerationEnd | undefined> {
  const ns = keys.namespace;
  const ranks = Array.from({ length: keys.worldSize }, (_, r) => r);
  const [marker, aborted, ...rest] = await redis.mget(
    markerKey(ns),
    abortKey(ns),
    ...ranks.map((r) => heartbeatKey(ns, r)),
    ...ranks.map((r) => leftKey(ns, r)),
  );
  if (aborted !== null && aborted !== undefined) {
    const abort = parseGenerationAbort(aborted);
    return { cause: 'aborted', message: `the generation was aborted: ${abort.message}`, abort };
  }
  if (marker === null || marker === undefined)
    return {
      cause: 'data-plane',
      message: 'the data plane lost the generation (its Redis restarted or the generation expired)',
    };
  const beats = rest.slice(0, keys.worldSize);
  const left = rest.slice(keys.worldSize);
  const lost = ranks.filter(
    (r) => (beats[r] === null || beats[r] === undefined) && (left[r] === null || left[r] === undefined),
  );
  if (lost.length > 0)
    return {
      cause: 'heartbeat',
      message: `rank${lost.length > 1 ? 's' : ''} ${lost.join(', ')} sent no heartbeat within the rank timeout`,
    };
  return undefined;
}

/** Throws DDPM_GROUP_LOST / DDPM_GROUP_ABORTED when the generation is over. */
export async function assertGenerationAlive(redis: Redis, keys: GenerationKeys): Promise<void> {
  const ended = await generationEnded(redis, keys);
  if (ended !== undefined)
    throw collectiveError(ended.cause === 'aborted' ? 'DDPM_GROUP_ABORTED' : 'DDPM_GROUP_LOST', ended.message);
}

export interface HeartbeatOptions {
  readonly redisUrl: string;
  readonly namespace: string;
  readonly rank: number;
  /** The key expires this long after the last beat: how soon peers notice a dead rank. */
  readonly rankTimeoutMs: number;
  /** Beats this often (default a tenth of the timeout, at most 1 s). */
  readonly intervalMs?: number;
  /** The main thread may go this long without {@link Heartbeat.progress} before the rank counts as wedged. */
  readonly stallMs: number;
}

/*
 * The thread's program (CommonJS, evaluated): a Redis connection of its own, a beat every
 * interval while the main thread's progress counter has moved within the allowed stall.
 */
const THREAD = `
const { workerData, parentPort } = require('node:worker_threads');
const { Redis } = require(workerData.ioredis);
const shared = new Int32Array(workerData.shared);
const redis = new Redis(workerData.url, { maxRetriesPerRequest: 1, enableOfflineQueue: true });
redis.on('error', () => undefined);
let seen = Atomics.load(shared, 0);
let movedAt = Date.now();
const beat = () => {
  const now = Date.now();
  const progress = Atomics.load(shared, 0);
  if (progress !== seen) { seen = progress; movedAt = now; }
  if (now - movedAt > Atomics.load(shared, 1)) return;
  redis.set(workerData.key, String(now), 'PX', workerData.ttl).catch(() => undefined);
};
beat();
const timer = setInterval(beat, workerData.interval);
parentPort.on('message', (message) => {
  clearInterval(timer);
  const end = redis.multi();
  if (message.left) end.set(workerData.left, '1', 'PX', workerData.leftTtl);
  end.del(workerData.key).exec().catch(() => undefined).finally(() => { redis.disconnect(); process.exit(0); });
});
`;

/**
 * This rank's heartbeat, from a thread of its own. The main thread also ticks a progress counter
 * whenever its event loop is free (once a second), so the stall the thread measures is the longest
 * synchronous stretch: a training step, never a checkpoint write or a sampling loop that yields.
 */
export class Heartbeat {
  private readonly shared = new Int32Array(new SharedArrayBuffer(8));
  private readonly worker: Worker;
  private readonly ticker: NodeJS.Timeout;

  constructor(options: HeartbeatOptions) {
    this.setAllowedStall(options.stallMs);
    this.worker = new Worker(THREAD, {
      eval: true,
      workerData: {
        ioredis: require.resolve('ioredis'),
        url: options.redisUrl,
        key: heartbeatKey(options.namespace, options.rank),
        left: leftKey(options.namespace, options.rank),
        leftTtl: 24 * 3600 * 1000,
        ttl: options.rankTimeoutMs,
        interval: options.intervalMs ?? Math.min(1000, Math.max(50, Math.floor(options.rankTimeoutMs / 10))),
        shared: this.shared.buffer,
      },
    });
    this.worker.unref();
    this.ticker = setInterval(() => this.progress(), 1000);
    this.ticker.unref();
  }

  /** The main thread is alive and working (a step ended, a wait slice passed). */
  progress(): void {
    Atomics.add(this.shared, 0, 1);
  }

  /** How long the main thread may be silent before the rank counts as wedged. */
  setAllowedStall(ms: number): void {
    Atomics.store(this.shared, 1, Math.min(2 ** 31 - 1, Math.ceil(ms)));
  }

  /**
   * Stops beating. `left`: the rank's work is done, so peers still finishing (rank 0 drawing the
   * final grid) do not take it for lost; otherwise its silence reads as a lost rank.
   */
  async stop(options: { left?: boolean } = {}): Promise<void> {
    clearInterval(this.ticker);
    const exited = new Promise<void>((resolve) => this.worker.once('exit', () => resolve()));
    this.worker.postMessage({ left: options.left === true });
    await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 2000).unref())]);
    await this.worker.terminate();
  }
}
