/**
 * The all-reduce of a data-parallel group (docs/groups.md, "The all-reduce"): reduce-scatter, then
 * all-gather, with chunk ownership. The values are cut into buckets (tens of MB) and each bucket
 * into N chunks; rank c owns chunk c. Every rank contributes the chunks it does not own; each owner
 * takes its chunk's N − 1 contributions, sums the N of them in rank order (float32 additions, so
 * the result equals one process adding the same values in the same order) and publishes the sum
 * once; every rank then reads the N − 1 sums it does not own. The phases overlap across buckets.
 *
 * Where the values travel is a {@link ValuePlane}, chosen once per generation by the ranks
 * together (see {@link RedisCollective.negotiatePlane}): shared memory when every rank is on one
 * host, the ranks' own data servers when every rank advertised one that every other rank reaches,
 * otherwise the group's hub (`redisUrl`). The same bytes arrive in the same order on every plane,
 * so the sums are the same bits.
 *
 * Keys are scoped by (run, generation, step, bucket) with a TTL: a stale rank of an older
 * generation writes where nobody reads, and every key is deleted by its last reader (GETDEL, or a
 * count of readers), so nothing is left behind. Waits are cut into slices; between slices the
 * generation's liveness is checked, so a lost peer ends the wait within its timeout. The small
 * messages (reports, the plane's negotiation) always go through the hub, which also carries the
 * group's heartbeats and generation markers (liveness.ts).
 */
import { type Redis, type RedisOptions } from 'ioredis';

import { type Transport, decode, encode } from './codec';
import { StepKeys, announcement, sharedMemoryLeftKey } from './data-keys';
import { collectiveError } from './errors';
import { type PlaneContext, HubPlane, ServerConnections, hubAllGather } from './planes/hub-plane';
import { type PlaneName, type ValuePlane } from './planes/plane';
import { type Gather, type RankServersVerdict, rankServersAgreed, sharedMemoryAgreed } from './planes/negotiation';
import { RankServersPlane } from './planes/rank-servers-plane';
import { SharedMemoryPlane, removeSharedMemoryFiles } from './planes/shared-memory-plane';
import { type WaitOptions, checkRank, execOrThrow, popWaiting } from './redis-waits';

export { removeSharedMemoryFiles, sharedMemoryBytes } from './planes/shared-memory-plane';
export { PLANE_NAMES, type PlaneName } from './planes/plane';

export interface CollectiveOptions extends WaitOptions {
  /** The group's hub: values travel here unless a better plane is negotiated; signals and small messages always do. */
  readonly redisUrl: string;
  readonly redisOptions?: RedisOptions;
  /** The generation's key namespace (run and generation in it). */
  readonly namespace: string;
  readonly rank: number;
  readonly worldSize: number;
  /** Bytes of values per bucket (default 8 MiB): bounds every Redis value and lets the phases overlap. */
  readonly bucketBytes?: number;
  readonly transport?: Transport;
  /** TTL of every key, seconds: long enough for the slowest rank to read what it waits for. */
  readonly keyTtlSeconds: number;
  /**
   * The longest one wait may last (default: unbounded). Peers that beat but never deliver (a rank
   * hung on a promise that never settles) end the wait after this; {@link RedisCollective.setMaxWait}
   * adjusts it as step times become known.
   */
  readonly maxWaitMs?: number;
  /**
   * A directory on a shared-memory filesystem (e.g. /dev/shm) that the negotiation may use for the
   * values when every rank reaches the same one. Absent: never shared memory.
   */
  readonly sharedMemoryDir?: string;
  /**
   * This rank's own data server, as the other ranks reach it (a sidecar in its pod, a second
   * redis-server on its host): the negotiation uses the ranks' servers when every rank advertised
   * one and every rank reaches every other's. Absent: never the ranks' servers.
   */
  readonly ownDataUrl?: string;
}

/** What the ranks agreed on for the values, and why not a better plane. */
export interface PlaneChoice {
  readonly plane: PlaneName;
  /** The shared-memory folder or the ranks' data servers (by rank), where used. */
  readonly where?: string | readonly string[];
  /** Why the better planes were not taken (for the log). */
  readonly reasons: readonly string[];
}

export interface AllReduceResult {
  /** The sum over ranks, identical bytes on every rank. */
  readonly sum: Float32Array;
  /**
   * Bytes of values this rank moved to and from the data plane (its own data server, which its
   * host keeps, not counted): 2(N − 1)/N · S each way through the hub or shared memory, (N − 1)/N · S
   * each way with the ranks' own servers (whose owners' servers send the rest).
   */
  readonly bytesSent: number;
  readonly bytesReceived: number;
}

interface Span {
  readonly start: number;
  readonly end: number;
}

/**
 * The collective of one rank. `close()` ends every connection it opened (the hub's and the
 * plane's).
 */
export class RedisCollective {
  private readonly transport: Transport;
  private readonly bucketValues: number;
  private readonly hub: ServerConnections;
  /** Small messages on the hub: the reports and the negotiation (never the values). */
  private readonly messages: Redis;
  private readonly messagesWait: Redis;
  private readonly keys: StepKeys;
  private readonly ctx: PlaneContext;
  private maxWaitMs: number;
  private plane: ValuePlane;
  /** Buffers values are read into, one per reading slot, reused every step. */
  private readonly readBuffers = new Map<string, Buffer>();

  constructor(private readonly options: CollectiveOptions) {
    const { rank, worldSize } = options;
    checkRank(rank, worldSize);
    this.transport = options.transport ?? 'fp32';
    this.maxWaitMs = options.maxWaitMs ?? Number.POSITIVE_INFINITY;
    this.bucketValues = Math.max(worldSize, Math.floor((options.bucketBytes ?? 8 * 1024 * 1024) / 4));
    this.hub = new ServerConnections(options.redisUrl, options.redisOptions);
    this.messages = this.hub.open();
    this.messagesWait = this.hub.open();
    this.keys = new StepKeys(options.namespace);
    this.ctx = {
      rank,
      worldSize,
      keys: this.keys,
      keyTtlSeconds: options.keyTtlSeconds,
      wait: async (connection, key) => (await popWaiting(connection, key, this.options, this.maxWaitMs)).toString(),
      readBuffer: (slot, size) => this.readBuffer(slot, size),
    };
    this.plane = new HubPlane(this.hub, this.ctx);
  }

  /** See {@link CollectiveOptions.maxWaitMs}. */
  setMaxWait(ms: number): void {
    this.maxWaitMs = ms;
  }

  close(): void {
    this.plane.close();
    this.hub.close();
  }

  /** The plane the values travel through now. */
  get planeName(): PlaneName {
    return this.plane.name;
  }

  /** The shared-memory directory the values travel through; undefined: another plane. */
  get sharedMemory(): string | undefined {
    return this.plane instanceof SharedMemoryPlane ? this.plane.dir : undefined;
  }

  /**
   * The best plane every rank can use, agreed by all (every rank calls it at the same point, before
   * its first all-reduce): shared memory where every rank sees the others' files and there is room
   * for `sharedMemoryBytes`; else the ranks' own data servers where every rank advertised one and
   * reaches every other's; else the hub.
   */
  async negotiatePlane(sharedMemoryBytes: number): Promise<PlaneChoice> {
    const reasons: string[] = [];
    if (this.options.worldSize === 1) return { plane: 'hub', reasons: ['a group of one exchanges nothing'] };
    const dir = this.options.sharedMemoryDir;
    if (dir !== undefined && (await this.negotiateSharedMemory(sharedMemoryBytes)))
      return { plane: 'shared-memory', where: dir, reasons };
    reasons.push(
      this.options.sharedMemoryDir === undefined
        ? 'no shared-memory folder'
        : 'the ranks are on more than one host, or their shared memory is short',
    );
    const servers = await this.agreeOnRankServers();
    if (servers.endpoints !== undefined) {
      this.useRankServers(servers.endpoints);
      return { plane: 'ranks', where: servers.endpoints, reasons };
    }
    reasons.push(servers.why);
    return { plane: 'hub', reasons };
  }

  /**
   * Whether the values can travel through `sharedMemoryDir`: every rank writes a probe file with a
   * random token there and reads every other rank's (so they share one filesystem: one host, or
   * containers sharing the volume), and the filesystem has `minFreeBytes` free; the ranks agree on
   * the answer over the hub. Every rank calls it at the same point, before its first all-reduce.
   * Also deletes our files there older than a day (left by groups whose every rank died).
   */
  async negotiateSharedMemory(minFreeBytes: number): Promise<boolean> {
    const { sharedMemoryDir: dir, rank, worldSize, namespace } = this.options;
    if (dir === undefined || worldSize === 1) return false;
    const gather: Gather = (step, tag, value) => this.allGather(step, tag, value);
    const agreed = await sharedMemoryAgreed({ dir, namespace, rank, worldSize, minFreeBytes }, gather);
    if (agreed) this.usePlane(new SharedMemoryPlane(dir, namespace, this.hub, this.ctx));
    return agreed;
  }

  /**
   * The ranks' own data servers (by rank), if every rank advertised one (`ownDataUrl`) and reaches
   * every other's: each rank advertises its server over the hub and PINGs every other rank's, and
   * the ranks agree on the answer (every rank calls it at the same point). Otherwise why not.
   */
  async agreeOnRankServers(): Promise<RankServersVerdict> {
    const { rank, ownDataUrl, redisOptions } = this.options;
    const gather: Gather = (step, tag, value) => this.allGather(step, tag, value);
    return rankServersAgreed({ rank, ownDataUrl, redisOptions }, gather);
  }

  /**
   * Sends the values between the ranks' own data servers (`endpoints[r]`: rank r's), which the
   * ranks agreed on before (another collective of the same generation negotiated them).
   */
  useRankServers(endpoints: readonly string[]): void {
    this.usePlane(new RankServersPlane(endpoints, this.ctx, this.options.redisOptions));
  }

  private usePlane(plane: ValuePlane): void {
    this.plane.close();
    this.plane = plane;
  }

  /**
   * This rank is done with the generation's collectives (its last all-reduce returned): the last
   * rank of the generation to say so deletes the generation's shared-memory files. Call before
   * {@link close}; nothing to do on the other planes (their keys are deleted by their readers, or expire).
   */
  async leaveSharedMemory(): Promise<void> {
    const plane = this.plane;
    if (!(plane instanceof SharedMemoryPlane)) return;
    const { namespace, worldSize, keyTtlSeconds } = this.options;
    const key = sharedMemoryLeftKey(namespace);
    const [left] = await execOrThrow(this.messages.pipeline().incr(key).expire(key, keyTtlSeconds));
    if (Number(left) < worldSize) return;
    await plane.closeFiles();
    await removeSharedMemoryFiles(plane.dir, namespace);
    await this.messages.del(key);
  }

  /**
   * Deletes this generation's files in the shared-memory directory (a failed generation leaves
   * values nobody will read; the Redis keys go by their TTL).
   */
  async abandonSharedMemory(): Promise<void> {
    const dir = this.sharedMemory ?? this.options.sharedMemoryDir;
    if (dir !== undefined) await removeSharedMemoryFiles(dir, this.options.namespace);
  }

  /** The buffer kept for reading slot `slot`, at least `size` bytes (grown when needed). */
  private readBuffer(slot: string, size: number): Buffer {
    let buffer = this.readBuffers.get(slot);
    if (buffer === undefined || buffer.length < size) {
      buffer = Buffer.allocUnsafeSlow(size);
      this.readBuffers.set(slot, buffer);
    }
    return buffer;
  }

  /** Chunk `c` of a bucket (contiguous, sizes differing by at most one). */
  private chunk(bucket: Span, c: number): Span {
    const n = bucket.end - bucket.start;
    const { worldSize } = this.options;
    return {
      start: bucket.start + Math.floor((c * n) / worldSize),
      end: bucket.start + Math.floor(((c + 1) * n) / worldSize),
    };
  }

  /**
   * The sum of every rank's `values` (same length on every rank), in rank order, written into
   * `out` when given (a caller that reduces the same size every step saves allocating it, and the
   * garbage collections that large allocations bring).
   */
  async allReduceSum(step: number, values: Float32Array, out?: Float32Array): Promise<AllReduceResult> {
    const { worldSize } = this.options;
    if (out !== undefined && out.length !== values.length)
      throw collectiveError('DDPM_GROUP_ABORTED', `out has ${out.length} values for ${values.length}`);
    if (worldSize === 1) {
      const sum = out ?? new Float32Array(values.length);
      sum.set(values);
      return { sum, bytesSent: 0, bytesReceived: 0 };
    }
    const buckets: Span[] = [];
    for (let start = 0; start < values.length; start += this.bucketValues) {
      buckets.push({ start, end: Math.min(values.length, start + this.bucketValues) });
    }
    const traffic = { sent: 0, received: 0 };
    const sum = out ?? new Float32Array(values.length);
    await Promise.all([
      this.contribute(step, values, buckets, traffic),
      this.reduce(step, values, sum, buckets, traffic),
      this.gather(step, sum, buckets, traffic),
    ]);
    return { sum, bytesSent: traffic.sent, bytesReceived: traffic.received };
  }

  /** Half precision carries values pre-divided by N (so sums stay in range), scaled back after. */
  private get scale(): number {
    return this.transport === 'fp32' ? 1 : 1 / this.options.worldSize;
  }

  /** Reduce-scatter, writing: every chunk this rank does not own, bucket by bucket, streamed. */
  private async contribute(
    step: number,
    values: Float32Array,
    buckets: readonly Span[],
    traffic: { sent: number },
  ): Promise<void> {
    const { rank, worldSize } = this.options;
    const flushed: Promise<void>[] = [];
    for (let b = 0; b < buckets.length; b++) {
      for (let c = 0; c < worldSize; c++) {
        if (c === rank) continue;
        const span = this.chunk(buckets[b]!, c);
        const bytes = encode(values.subarray(span.start, span.end), this.transport, this.scale);
        traffic.sent += bytes.length;
        await this.plane.contribute(step, b, c, bytes);
      }
      // A bucket goes out while the next one is encoded.
      flushed.push(this.plane.flushContributions());
    }
    await Promise.all(flushed);
  }

  /**
   * Reduce-scatter, reading: this rank's chunk of each bucket, summed in rank order, published (a
   * bucket's sum goes out while the next bucket's contributions are read).
   */
  private async reduce(
    step: number,
    values: Float32Array,
    sum: Float32Array,
    buckets: readonly Span[],
    traffic: { sent: number; received: number },
  ): Promise<void> {
    const { rank, worldSize } = this.options;
    const transport = this.transport;
    const published: Promise<void>[] = [];
    for (let b = 0; b < buckets.length; b++) {
      const span = this.chunk(buckets[b]!, rank);
      for (let k = 1; k < worldSize; k++) await this.plane.waitContribution(step, b);
      const from: number[] = [];
      for (let r = 0; r < worldSize; r++) if (r !== rank) from.push(r);
      const parts = await this.plane.takeContributions(step, b, from);
      const acc = sum.subarray(span.start, span.end);
      let next = 0;
      for (let r = 0; r < worldSize; r++) {
        let contribution: Float32Array;
        if (r === rank) {
          // This rank's own values take the same trip through the codec as everyone else's.
          const own = values.subarray(span.start, span.end);
          contribution = transport === 'fp32' ? own : decode(encode(own, transport, this.scale), transport);
        } else {
          const part = parts[next++];
          if (!part)
            throw collectiveError(
              'DDPM_GROUP_LOST',
              `rank ${r}'s contribution to step ${step} is gone (the data plane lost it)`,
            );
          if (!this.plane.ownChunkLocal) traffic.received += part.length;
          contribution = decode(part, transport);
        }
        if (r === 0) acc.set(contribution);
        else for (let i = 0; i < acc.length; i++) acc[i] = acc[i]! + contribution[i]!;
      }
      const bytes = encode(acc, transport);
      if (!this.plane.ownChunkLocal) traffic.sent += bytes.length;
      if (transport !== 'fp32') acc.set(decode(bytes, transport, 1 / this.scale));
      published.push(this.plane.publishSum(step, b, bytes));
    }
    await Promise.all(published);
  }

  /**
   * All-gather, at the same time: each sum another rank owns, bucket by bucket, and within a bucket
   * rank r reads owners r + 1, r + 2, ... in turn (waiting for each one's announcement, keeping
   * the others; across a network, several reads in flight): all ranks would otherwise read the
   * first sum announced at once, from one owner whose link then serves N − 1 readers while the
   * others idle. The order changes no bit: each sum lands in its own place.
   */
  private async gather(
    step: number,
    sum: Float32Array,
    buckets: readonly Span[],
    traffic: { received: number },
  ): Promise<void> {
    const { rank, worldSize } = this.options;
    const announced = new Set<string>();
    const inFlight: Promise<void>[] = [];
    const depth = this.plane.readsInFlight;
    let reads = 0;
    for (let bucket = 0; bucket < buckets.length; bucket++) {
      for (let i = 1; i < worldSize; i++) {
        const owner = (rank + i) % worldSize;
        while (!announced.has(announcement(bucket, owner))) {
          const next = await this.plane.waitSum(step);
          announced.add(announcement(next.bucket, next.owner));
        }
        // The next read is asked for before the last one's bytes are in: one at a time would idle
        // the link for a round trip per read. Each read in flight has a buffer of its own.
        if (inFlight.length >= depth) await inFlight.shift();
        const slot = `gather${reads++ % depth}`;
        const read = this.plane.readSum(step, bucket, owner, slot).then((bytes) => {
          traffic.received += bytes.length;
          sum.set(decode(bytes, this.transport, 1 / this.scale), this.chunk(buckets[bucket]!, owner).start);
        });
        // Awaited below or above; a failure meanwhile must not go unhandled.
        read.catch(() => undefined);
        inFlight.push(read);
      }
    }
    await Promise.all(inFlight);
  }

  /**
   * One data-parallel step's traffic: the sum of every rank's `values` and every rank's `report`
   * (small JSON), the same on every rank.
   */
  async exchange<R>(
    step: number,
    values: Float32Array,
    report: R,
    out?: Float32Array,
  ): Promise<AllReduceResult & { reports: R[] }> {
    // The reports do not wait for the sum: both travel at once.
    const [reduced, reports] = await Promise.all([
      this.allReduceSum(step, values, out),
      this.allGather(step, 'report', report),
    ]);
    return { ...reduced, reports };
  }

  /** Every rank's `value` (JSON), in rank order, through the hub. */
  async allGather<T>(step: number, tag: string, value: T): Promise<T[]> {
    const { rank, worldSize, keyTtlSeconds } = this.options;
    const hub = { write: this.messages, wait: this.messagesWait, keys: this.keys, ctx: this.ctx };
    return hubAllGather(hub, { rank, worldSize, keyTtlSeconds }, step, tag, value);
  }
}
