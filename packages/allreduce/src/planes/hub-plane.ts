/**
 * The values of an all-reduce in one Redis every rank reaches (the group's data plane,
 * `DDPM_DATA_REDIS_URL`): contributions and sums are keys with the generation's TTL, the signals
 * lists beside them, every key deleted by its last reader. Where the server speaks plain TCP
 * (`redis://`) the values go out and come in on lean connections of their own (bulk.ts: no copies
 * per value in JavaScript); ioredis carries the blocking waits, and everything on `rediss://`.
 *
 * Each rank keeps its connections apart so that nothing large waits behind something else on one
 * socket: one streams its contributions out, one publishes the sums it owns, one reads, and one
 * each blocks in the two waits, which run at the same time (bucket b's sums are read while bucket
 * b + 1 is still being reduced).
 */
import { type Redis, type RedisOptions } from 'ioredis';

import { BulkConnection, bulkTarget } from '../bulk';
import { collectiveError } from '../errors';
import { dataPlaneConnection, execOrThrow } from '../redis-waits';
import { type StepKeys, announcement, parseAnnouncement, readCountKey } from '../data-keys';
import { Batch, type PlaneName, type ValuePlane } from './plane';

/** What every plane's owner gives it: who this rank is, and how to wait on a list. */
export interface PlaneContext {
  readonly rank: number;
  readonly worldSize: number;
  readonly keys: StepKeys;
  readonly keyTtlSeconds: number;
  /** The next item of `key` on `connection`, checking the generation's liveness between wait slices. */
  readonly wait: (connection: Redis, key: string) => Promise<string>;
  /** A buffer kept for reading slot `slot`, at least `size` bytes (reused every step). */
  readonly readBuffer: (slot: string, size: number) => Buffer;
}

/** The connections of one Redis server as a rank uses it: lean ones for values where it can, ioredis for the rest. */
export class ServerConnections {
  readonly lean: { readonly write: BulkConnection; readonly read: BulkConnection } | undefined;
  private readonly opened: Redis[] = [];
  private ioWrite: Redis | undefined;
  private ioRead: Redis | undefined;

  constructor(
    readonly url: string,
    private readonly redisOptions?: RedisOptions,
  ) {
    const target = bulkTarget(url, redisOptions);
    if (target !== undefined) {
      const timeout = redisOptions?.connectTimeout;
      this.lean = { write: new BulkConnection(target, timeout), read: new BulkConnection(target, timeout) };
    }
  }

  /** A new ioredis connection to this server (closed with the others). */
  open(): Redis {
    const connection = dataPlaneConnection(this.url, this.redisOptions);
    this.opened.push(connection);
    return connection;
  }

  /** Commands that write values here, in order. */
  writes(): Batch {
    return new Batch(this.lean?.write, () => (this.ioWrite ??= this.open()));
  }

  /** The connection that reads values where no lean connection does. */
  reader(): Redis {
    return (this.ioRead ??= this.open());
  }

  close(): void {
    for (const c of this.opened.splice(0)) c.disconnect();
    if (this.lean !== undefined) for (const c of Object.values(this.lean)) c.close();
  }
}

/** GETDEL of each key, each value into the read buffer of its slot (`take0`, `take1`, ...). */
export async function takeKeys(
  server: ServerConnections,
  keys: readonly string[],
  ctx: PlaneContext,
): Promise<(Buffer | null)[]> {
  const lean = server.lean?.read;
  if (lean !== undefined) {
    return (await Promise.all(
      keys.map((key, i) => lean.command(['GETDEL', key], (n) => ctx.readBuffer(`take${i}`, n))),
    )) as (Buffer | null)[];
  }
  const reads = server.reader().pipeline();
  for (const key of keys) reads.getdelBuffer(key);
  return (await execOrThrow(reads)) as (Buffer | null)[];
}

/**
 * The value of `key`, which N − 1 ranks read: the readers are counted, and the last one deletes it
 * (every reader GETs before it INCRs, so the one that counts N − 1 is the last to read).
 */
export async function readCounted(
  server: ServerConnections,
  key: string,
  ctx: PlaneContext,
  slot: string,
): Promise<Buffer> {
  const { worldSize, keyTtlSeconds: ttl } = ctx;
  const lean = server.lean?.read;
  let value: unknown;
  let count: unknown;
  if (lean !== undefined) {
    [value, count] = await Promise.all([
      lean.command(['GET', key], (n) => ctx.readBuffer(slot, n)),
      lean.command(['INCR', readCountKey(key)]),
      lean.command(['EXPIRE', readCountKey(key), ttl]),
    ]);
  } else {
    [value, count] = await execOrThrow(
      server.reader().pipeline().getBuffer(key).incr(readCountKey(key)).expire(readCountKey(key), ttl),
    );
  }
  if (value === null || value === undefined)
    throw collectiveError('DDPM_GROUP_LOST', `${key} is gone (the data plane lost it)`);
  if (Number(count) >= worldSize - 1) {
    if (lean !== undefined) await lean.command(['DEL', key, readCountKey(key)]);
    else await execOrThrow(server.reader().pipeline().del(key, readCountKey(key)));
  }
  return value as Buffer;
}

export class HubPlane implements ValuePlane {
  readonly name: PlaneName = 'hub';
  readonly ownChunkLocal = false;
  readonly readsInFlight = 4;
  private readonly waitScatter: Redis;
  private readonly waitGather: Redis;
  private pending: Batch;

  constructor(
    private readonly hub: ServerConnections,
    private readonly ctx: PlaneContext,
  ) {
    this.waitScatter = hub.open();
    this.waitGather = hub.open();
    this.pending = hub.writes();
  }

  contribute(step: number, bucket: number, owner: number, bytes: Buffer): Promise<void> {
    const { keys, rank, keyTtlSeconds: ttl } = this.ctx;
    const ready = keys.contributionsReady(step, bucket, owner);
    this.pending
      .add('SET', keys.contribution(step, bucket, owner, rank), bytes, 'EX', ttl)
      .add('RPUSH', ready, String(rank))
      .add('EXPIRE', ready, ttl);
    return Promise.resolve();
  }

  async flushContributions(): Promise<void> {
    const batch = this.pending;
    this.pending = this.hub.writes();
    await batch.exec();
  }

  async waitContribution(step: number, bucket: number): Promise<void> {
    await this.ctx.wait(this.waitScatter, this.ctx.keys.contributionsReady(step, bucket, this.ctx.rank));
  }

  takeContributions(step: number, bucket: number, from: readonly number[]): Promise<(Buffer | null)[]> {
    const { keys, rank } = this.ctx;
    return takeKeys(
      this.hub,
      from.map((r) => keys.contribution(step, bucket, rank, r)),
      this.ctx,
    );
  }

  async publishSum(step: number, bucket: number, bytes: Buffer): Promise<void> {
    const { keys, rank, worldSize, keyTtlSeconds: ttl } = this.ctx;
    const announce = this.hub.writes().add('SET', keys.sum(step, bucket, rank), bytes, 'EX', ttl);
    for (let r = 0; r < worldSize; r++) {
      if (r === rank) continue;
      announce
        .add('RPUSH', keys.sumsReady(step, r), announcement(bucket, rank))
        .add('EXPIRE', keys.sumsReady(step, r), ttl);
    }
    await announce.exec();
  }

  async waitSum(step: number): Promise<{ bucket: number; owner: number }> {
    return parseAnnouncement(await this.ctx.wait(this.waitGather, this.ctx.keys.sumsReady(step, this.ctx.rank)));
  }

  readSum(step: number, bucket: number, owner: number, slot: string): Promise<Buffer> {
    return readCounted(this.hub, this.ctx.keys.sum(step, bucket, owner), this.ctx, slot);
  }

  close(): void {
    // The hub's connections belong to the collective, which closes them.
  }
}

/**
 * Every rank's `value` (JSON), in rank order, through the hub: the small messages of a
 * generation (the reports of an exchange, the plane's negotiation), never the values.
 */
export async function hubAllGather<T>(
  hub: { write: Redis; wait: Redis; keys: StepKeys; ctx: PlaneContext },
  group: { rank: number; worldSize: number; keyTtlSeconds: number },
  step: number,
  tag: string,
  value: T,
): Promise<T[]> {
  const { rank, worldSize, keyTtlSeconds: ttl } = group;
  if (worldSize === 1) return [value];
  const { keys } = hub;
  const write = hub.write.pipeline();
  write.set(keys.message(step, tag, rank), JSON.stringify(value), 'EX', ttl);
  for (let r = 0; r < worldSize; r++) {
    if (r === rank) continue;
    const inbox = keys.inbox(step, tag, r);
    write.rpush(inbox, String(rank));
    write.expire(inbox, ttl);
  }
  await execOrThrow(write);
  const all: T[] = new Array<T>(worldSize);
  all[rank] = value;
  for (let k = 1; k < worldSize; k++) {
    const from = Number(await hub.ctx.wait(hub.wait, keys.inbox(step, tag, rank)));
    const key = keys.message(step, tag, from);
    const [text, count] = await execOrThrow(
      hub.write.pipeline().get(key).incr(readCountKey(key)).expire(readCountKey(key), ttl),
    );
    if (typeof text !== 'string') throw collectiveError('DDPM_GROUP_LOST', `${key} is gone (the data plane lost it)`);
    // Every reader GETs before it INCRs, so the one that counts N − 1 is the last to read.
    if (Number(count) >= worldSize - 1) await execOrThrow(hub.write.pipeline().del(key, readCountKey(key)));
    all[from] = JSON.parse(text) as T;
  }
  return all;
}
