/**
 * The two Redis idioms of the data plane: a pipeline whose failure is the group's (a lost data
 * plane ends the generation, it does not fail the job), and a blocking pop cut into slices with the
 * generation's liveness checked between them, so that a lost peer ends the wait within its timeout.
 */
import { Redis, type RedisOptions } from 'ioredis';

import { collectiveError } from './errors';

/** Refuses a (rank, world size) that is not a place in a group. */
export function checkRank(rank: number, worldSize: number): void {
  if (!Number.isInteger(worldSize) || worldSize < 1 || !Number.isInteger(rank) || rank < 0 || rank >= worldSize) {
    throw collectiveError('DDPM_GROUP_ABORTED', `rank ${rank} of ${worldSize} is not a rank of a group`);
  }
}

/** One connection to the data plane: a failed command reports it; reconnecting is ioredis's business. */
export function dataPlaneConnection(url: string, options?: RedisOptions): Redis {
  const r = new Redis(url, { maxRetriesPerRequest: 2, ...options });
  r.on('error', () => undefined);
  return r;
}

export async function execOrThrow(pipeline: { exec(): Promise<[Error | null, unknown][] | null> }): Promise<unknown[]> {
  let results: [Error | null, unknown][] | null;
  try {
    results = await pipeline.exec();
  } catch (err) {
    throw collectiveError('DDPM_GROUP_LOST', `the data plane failed: ${(err as Error).message}`);
  }
  if (results === null) throw collectiveError('DDPM_GROUP_LOST', 'a Redis pipeline of the data plane was discarded');
  return results.map(([err, value]) => {
    if (err) throw collectiveError('DDPM_GROUP_LOST', `the data plane failed a command: ${err.message}`);
    return value;
  });
}

export interface WaitOptions {
  /** Length of one blocking wait before liveness is checked again (default 1000 ms). */
  readonly waitSliceMs?: number;
  /** Throws when the generation is over (a lost or aborted rank, a lost data plane). */
  readonly checkAlive: () => Promise<void>;
  /** Called after every wait slice: the rank is alive and waiting, not wedged. */
  readonly onWait?: () => void;
  readonly signal?: AbortSignal;
}

/** The next item of a list (its bytes), waiting for it at most `maxWaitMs`. */
export async function popWaiting(
  connection: Redis,
  key: string,
  options: WaitOptions,
  maxWaitMs: number,
): Promise<Buffer> {
  const { waitSliceMs = 1000, checkAlive, signal } = options;
  const started = Date.now();
  for (;;) {
    if (Date.now() - started > maxWaitMs) {
      throw collectiveError(
        'DDPM_GROUP_LOST',
        `peers alive but silent: nothing arrived for ${Math.round((Date.now() - started) / 1000)} s, far longer than a step takes`,
      );
    }
    if (signal?.aborted)
      throw collectiveError('DDPM_GROUP_ABORTED', `stopped while waiting for peers: ${String(signal.reason)}`);
    let got: [Buffer, Buffer] | null;
    try {
      got = await connection.blpopBuffer(key, waitSliceMs / 1000);
    } catch (err) {
      throw collectiveError('DDPM_GROUP_LOST', `the data plane failed a wait: ${(err as Error).message}`);
    }
    if (got) return got[1];
    options.onWait?.();
    await checkAlive();
  }
}
