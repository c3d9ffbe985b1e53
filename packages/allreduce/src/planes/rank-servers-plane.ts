/**
 * The values of an all-reduce in the ranks' own data servers: every worker runs a Redis of its own
 * beside it (a sidecar in its pod, a second `redis-server` on a bare host) and advertises it when
 * a generation forms. The owner of chunk c keeps chunk c's contributions and its sum in its own
 * server:
 *
 * - reduce-scatter: rank r writes its part of chunk c, and the signal that it is there, to rank
 *   c's server (one connection, in order); the owner waits on and takes them from its own server;
 * - all-gather: the owner writes its sum to its own server, then tells every other rank on that
 *   rank's server; each rank reads the sum from the owner's server, and the last reader deletes it.
 *
 * So every rank sends (N − 1)/N · S and receives (N − 1)/N · S per all-reduce of S bytes, each
 * server takes in (N − 1)/N · S and gives out as much, whatever N: no link and no server carries
 * more than about 2·S, where one hub carries N·S in and 2(N − 1)·S out. The bytes and the order of
 * the additions are the hub's, so the sums are the same bits.
 *
 * A server that dies fails the commands sent to it (DDPM_GROUP_LOST): the generation ends and the
 * group re-forms.
 */
import { type Redis, type RedisOptions } from 'ioredis';

import { collectiveError } from '../errors';
import { type PlaneContext, ServerConnections, readCounted, takeKeys } from './hub-plane';
import { announcement, parseAnnouncement } from '../data-keys';
import { type Batch, type PlaneName, type ValuePlane } from './plane';

/**
 * Whether this rank reaches the data server at `url` (a PING within `timeoutMs`, logging in as the
 * URL says): the check every rank makes of every peer's advertised server before the group uses them.
 */
export async function reachable(url: string, timeoutMs: number, redisOptions?: RedisOptions): Promise<boolean> {
  const probe = new ServerConnections(url, { ...redisOptions, connectTimeout: timeoutMs, maxRetriesPerRequest: 0 });
  try {
    const ping = probe.lean !== undefined ? probe.lean.read.command(['PING']) : probe.reader().ping();
    const timer = new Promise<never>((_, reject) => setTimeout(() => reject(new Error('timeout')), timeoutMs).unref());
    return (await Promise.race([ping, timer])) === 'PONG';
  } catch {
    return false;
  } finally {
    probe.close();
  }
}

export class RankServersPlane implements ValuePlane {
  readonly name: PlaneName = 'ranks';
  readonly ownChunkLocal = true;
  readonly readsInFlight = 4;
  private readonly servers: ServerConnections[];
  private readonly waitScatter: Redis;
  private readonly waitGather: Redis;
  /** Contributions queued per owner, each to be sent on that owner's server. */
  private readonly pending = new Map<number, Batch>();
  /** Settles once the contributions being sent have left this process (buckets go out one after another). */
  private writing: Promise<void> = Promise.resolve();

  /** `endpoints[r]`: rank r's data server. */
  constructor(
    readonly endpoints: readonly string[],
    private readonly ctx: PlaneContext,
    redisOptions?: RedisOptions,
  ) {
    if (endpoints.length !== ctx.worldSize) {
      throw collectiveError('DDPM_GROUP_ABORTED', `${endpoints.length} data servers for a group of ${ctx.worldSize}`);
    }
    this.servers = endpoints.map((url) => new ServerConnections(url, redisOptions));
    const own = this.servers[ctx.rank]!;
    this.waitScatter = own.open();
    this.waitGather = own.open();
  }

  private get own(): ServerConnections {
    return this.servers[this.ctx.rank]!;
  }

  contribute(step: number, bucket: number, owner: number, bytes: Buffer): Promise<void> {
    const { keys, rank, keyTtlSeconds: ttl } = this.ctx;
    let batch = this.pending.get(owner);
    if (batch === undefined) {
      batch = this.servers[owner]!.writes();
      this.pending.set(owner, batch);
    }
    const ready = keys.contributionsReady(step, bucket, owner);
    batch
      .add('SET', keys.contribution(step, bucket, owner, rank), bytes, 'EX', ttl)
      .add('RPUSH', ready, String(rank))
      .add('EXPIRE', ready, ttl);
    return Promise.resolve();
  }

  async flushContributions(): Promise<void> {
    const { rank, worldSize } = this.ctx;
    // One owner at a time, each rank starting with the next one up: at any moment every server
    // takes one rank's contributions and every link carries one stream each way, instead of N − 1
    // streams converging on each link (which a switch's queue answers with drops and timeouts).
    // The next owner's bytes follow as soon as the last one's have left this process, not after
    // its reply: waiting a round trip per owner would idle the link N − 1 times a bucket.
    const owners = [...this.pending.keys()].sort(
      (a, b) => ((a - rank + worldSize) % worldSize) - ((b - rank + worldSize) % worldSize),
    );
    const batches = owners.map((o) => this.pending.get(o)!);
    this.pending.clear();
    const previous = this.writing;
    let allWritten!: () => void;
    this.writing = new Promise<void>((resolve) => (allWritten = resolve));
    try {
      await previous;
      const replies: Promise<unknown[]>[] = [];
      for (const batch of batches) {
        const { written, replies: answered } = batch.send();
        // Failures surface below; until then they must not go unhandled.
        answered.catch(() => undefined);
        replies.push(answered);
        await written;
      }
      // The next bucket may go out now, while this one's replies come back.
      allWritten();
      await Promise.all(replies);
    } finally {
      allWritten();
    }
  }

  async waitContribution(step: number, bucket: number): Promise<void> {
    await this.ctx.wait(this.waitScatter, this.ctx.keys.contributionsReady(step, bucket, this.ctx.rank));
  }

  takeContributions(step: number, bucket: number, from: readonly number[]): Promise<(Buffer | null)[]> {
    const { keys, rank } = this.ctx;
    return takeKeys(
      this.own,
      from.map((r) => keys.contribution(step, bucket, rank, r)),
      this.ctx,
    );
  }

  async publishSum(step: number, bucket: number, bytes: Buffer): Promise<void> {
    const { keys, rank, worldSize, keyTtlSeconds: ttl } = this.ctx;
    // The sum is whole in the owner's server before anyone is told of it.
    await this.own
      .writes()
      .add('SET', keys.sum(step, bucket, rank), bytes, 'EX', ttl)
      .exec();
    const announcements: Promise<unknown>[] = [];
    for (let r = 0; r < worldSize; r++) {
      if (r === rank) continue;
      const inbox = keys.sumsReady(step, r);
      announcements.push(
        this.servers[r]!.writes().add('RPUSH', inbox, announcement(bucket, rank)).add('EXPIRE', inbox, ttl).exec(),
      );
    }
    await Promise.all(announcements);
  }

  async waitSum(step: number): Promise<{ bucket: number; owner: number }> {
    return parseAnnouncement(await this.ctx.wait(this.waitGather, this.ctx.keys.sumsReady(step, this.ctx.rank)));
  }

  readSum(step: number, bucket: number, owner: number, slot: string): Promise<Buffer> {
    return readCounted(this.servers[owner]!, this.ctx.keys.sum(step, bucket, owner), this.ctx, slot);
  }

  close(): void {
    for (const server of this.servers) server.close();
  }
}
