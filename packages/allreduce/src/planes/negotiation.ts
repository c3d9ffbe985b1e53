/**
 * How the ranks of a generation agree on a value plane: each probes what it can see (a common
 * shared-memory folder, the other ranks' data servers) and they agree over the hub, so that every
 * rank takes the same plane. Every rank calls these at the same point, before its first all-reduce.
 */
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';

import { type RedisOptions } from 'ioredis';

import { shmProbeName } from '../data-keys';
import { reachable } from './rank-servers-plane';
import { SHM_STALE_MS, sweepSharedMemory } from './shared-memory-plane';

/** Every rank's `value`, in rank order, through the hub (the collective's all-gather). */
export type Gather = <T>(step: number, tag: string, value: T) => Promise<T[]>;

/** How long a rank waits for a peer's advertised data server to answer the negotiation's PING. */
const PROBE_TIMEOUT_MS = 5000;

/**
 * Whether the values can travel through `dir`: every rank writes a probe file with a random token
 * there and reads every other rank's (so they share one filesystem: one host, or containers sharing
 * the volume), and the filesystem has `minFreeBytes` free; the ranks agree on the answer. Also
 * deletes our files there older than a day (left by groups whose every rank died).
 */
export async function sharedMemoryAgreed(
  where: { dir: string; namespace: string; rank: number; worldSize: number; minFreeBytes: number },
  gather: Gather,
): Promise<boolean> {
  const { dir, namespace, rank, worldSize, minFreeBytes } = where;
  const token = randomBytes(12).toString('hex');
  const probe = (r: number): string => path.join(dir, shmProbeName(namespace, r));
  let usable: boolean;
  try {
    await sweepSharedMemory(dir, (_name, ageMs) => ageMs > SHM_STALE_MS);
    await fs.writeFile(probe(rank), token);
    const space = await fs.statfs(dir);
    usable = space.bavail * space.bsize >= minFreeBytes;
  } catch {
    usable = false;
  }
  try {
    const tokens = await gather(-1, 'shm-probe', usable ? token : '');
    let sees = usable;
    for (let r = 0; r < worldSize && sees; r++) {
      if (r === rank) continue;
      sees = tokens[r] !== '' && (await fs.readFile(probe(r), 'utf8').catch(() => '')) === tokens[r];
    }
    return (await gather(-2, 'shm-verdict', sees)).every(Boolean);
  } finally {
    await fs.rm(probe(rank), { force: true }).catch(() => undefined);
  }
}

/** The ranks' data servers (by rank) when every rank can use them, or why not. */
export interface RankServersVerdict {
  readonly endpoints?: readonly string[];
  readonly why: string;
}

/**
 * The ranks' own data servers (by rank), if every rank advertised one (`ownDataUrl`) and reaches
 * every other's: each rank advertises its server over the hub and PINGs every other rank's, and
 * the ranks agree on the answer. Otherwise why not.
 */
export async function rankServersAgreed(
  self: { rank: number; ownDataUrl: string | undefined; redisOptions: RedisOptions | undefined },
  gather: Gather,
): Promise<RankServersVerdict> {
  const { rank, ownDataUrl, redisOptions } = self;
  const endpoints = await gather(-3, 'data-endpoint', ownDataUrl ?? '');
  const missing = endpoints.flatMap((e, r) => (e === '' ? [r] : []));
  let sees = missing.length === 0;
  const unreachable: number[] = [];
  if (sees) {
    const answers = await Promise.all(
      endpoints.map((url, r) => (r === rank ? Promise.resolve(true) : reachable(url, PROBE_TIMEOUT_MS, redisOptions))),
    );
    answers.forEach((ok, r) => {
      if (!ok) unreachable.push(r);
    });
    sees = unreachable.length === 0;
  }
  const verdicts = await gather(-4, 'data-endpoint-verdict', { sees, unreachable });
  if (missing.length > 0)
    return { why: `rank${missing.length > 1 ? 's' : ''} ${missing.join(', ')} advertised no data server` };
  const blind = verdicts.flatMap((v, r) =>
    v.sees ? [] : [`rank ${r} cannot reach rank${v.unreachable.length > 1 ? 's' : ''} ${v.unreachable.join(', ')}`],
  );
  if (blind.length > 0) return { why: `not every data server is reachable: ${blind.join('; ')}` };
  return { endpoints, why: '' };
}
