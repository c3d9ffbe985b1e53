/**
 * The all-reduce of a data-parallel group over Redis (../shared/DESIGN.md, "Data-parallel
 * groups"): reduce-scatter, then all-gather, with chunk ownership. The values are cut into buckets
 * (tens of MB) and each bucket into N chunks; rank c owns chunk c. Every rank writes the chunks it
 * does not own; each owner reads its chunk from every other rank, sums the N contributions in rank
 * order (float32 additions, so the result equals one process adding the same values in the same
 * order) and publishes the sum once; every rank then reads the N − 1 sums it does not own. Each
 * rank sends and receives 2(N − 1)/N · S bytes per call (S = the values' bytes on the wire); the
 * Redis hub carries N·S in and 2(N − 1)·S out.
 *
 * Keys are scoped by (run, generation, step, bucket) with a TTL: a stale rank of an older
 * generation writes where nobody reads, and every key is deleted by its last reader (GETDEL, or a
 * count of readers), so nothing is left behind. Waits are cut into slices; between
 * slices the generation's liveness is checked, so a lost peer ends the wait within its timeout.
 */
import { type Redis, type RedisOptions } from 'ioredis';

import { type Transport, decode, encode } from './codec';
import { collectiveError } from './errors';
import { type WaitOptions, checkRank, dataPlaneConnection, execOrThrow, popWaiting } from './redis-waits';

export interface CollectiveOptions extends WaitOptions {
  /** The data plane. The collective opens its own connections to it (see {@link RedisCollective}). */
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
}

export interface AllReduceResult {
  /** The sum over ranks, identical bytes on every rank. */
  readonly sum: Float32Array;
  readonly bytesSent: number;
  readonly bytesReceived: number;
}

interface Span {
  readonly start: number;
  readonly end: number;
}

/**
 * The collective of one rank. It keeps five connections so that nothing large waits behind
 * something else on one socket: one streams this rank's contributions out, one publishes the sums
 * it owns, one reads, and one each blocks in the two waits (contributions arriving for its chunks;
 * sums arriving from their owners), which run at the same time: bucket b's sums are read while
 * bucket b + 1 is still being reduced. `close()` ends them.
 */
export class RedisCollective {
  private readonly transport: Transport;
  private readonly bucketValues: number;
  private readonly contribute: Redis;
  private readonly publish: Redis;
  private readonly reader: Redis;
  private readonly waitScatter: Redis;
  private readonly waitGather: Redis;
  private maxWaitMs: number;

  constructor(private readonly options: CollectiveOptions) {
    const { rank, worldSize } = options;
    checkRank(rank, worldSize);
    this.transport = options.transport ?? 'fp32';
    this.maxWaitMs = options.maxWaitMs ?? Number.POSITIVE_INFINITY;
    this.bucketValues = Math.max(worldSize, Math.floor((options.bucketBytes ?? 8 * 1024 * 1024) / 4));
    const open = (): Redis => dataPlaneConnection(options.redisUrl, options.redisOptions);
    this.contribute = open();
    this.publish = open();
    this.reader = open();
    this.waitScatter = open();
    this.waitGather = open();
  }

  /** See {@link CollectiveOptions.maxWaitMs}. */
  setMaxWait(ms: number): void {
    this.maxWaitMs = ms;
  }

  close(): void {
    for (const r of [this.contribute, this.publish, this.reader, this.waitScatter, this.waitGather]) r.disconnect();
  }

  private key(step: number, rest: string): string {
    return `${this.options.namespace}:s${step}:${rest}`;
  }

  /** Chunk `c` of a bucket (contiguous, sizes differing by at most one). */
  private chunk(bucket: Span, c: number): Span {
    const n = bucket.end - bucket.start;
    const { worldSize } = this.options;
    return { start: bucket.start + Math.floor((c * n) / worldSize), end: bucket.start + Math.floor(((c + 1) * n) / worldSize) };
  }

  /** The next item on a list, checking liveness between wait slices. */
  private async waitOne(connection: Redis, key: string): Promise<string> {
    return (await popWaiting(connection, key, this.options, this.maxWaitMs)).toString();
  }

  /** Reads a published value and counts its readers; the last of the N − 1 readers deletes it. */
  private async readShared(key: string): Promise<Buffer> {
    const { worldSize, keyTtlSeconds: ttl } = this.options;
    const [value, count] = await execOrThrow(this.reader.pipeline().getBuffer(key).incr(`${key}:n`).expire(`${key}:n`, ttl));
    if (value === null || value === undefined) throw collectiveError('DDPM_GROUP_LOST', `${key} is gone (the data plane lost it)`);
    // Every reader GETs before it INCRs, so the one that counts N − 1 is the last to read.
    if (Number(count) >= worldSize - 1) await execOrThrow(this.reader.pipeline().del(key, `${key}:n`));
    return value as Buffer;
  }

  /**
   * The sum of every rank's `values` (same length on every rank), in rank order, written into
   * `out` when given (a caller that reduces the same size every step saves allocating it, and the
   * garbage collections that large allocations bring).
   */
  async allReduceSum(step: number, values: Float32Array, out?: Float32Array): Promise<AllReduceResult> {
    const { rank, worldSize, keyTtlSeconds: ttl } = this.options;
    if (out !== undefined && out.length !== values.length) throw collectiveError('DDPM_GROUP_ABORTED', `out has ${out.length} values for ${values.length}`);
    if (worldSize === 1) {
      const sum = out ?? new Float32Array(values.length);
      sum.set(values);
      return { sum, bytesSent: 0, bytesReceived: 0 };
    }
    const transport = this.transport;
    // Half precision carries values pre-divided by N (so sums stay in range), scaled back after.
    const scale = transport === 'fp32' ? 1 : 1 / worldSize;
    const buckets: Span[] = [];
    for (let start = 0; start < values.length; start += this.bucketValues) buckets.push({ start, end: Math.min(values.length, start + this.bucketValues) });
    let bytesSent = 0;
    let bytesReceived = 0;
    const sum = out ?? new Float32Array(values.length);

    // Reduce-scatter, writing: every chunk this rank does not own, bucket by bucket, streamed.
    const contributed = buckets.map((bucket, b) => {
      const writes = this.contribute.pipeline();
      for (let c = 0; c < worldSize; c++) {
        if (c === rank) continue;
        const span = this.chunk(bucket, c);
        const bytes = encode(values.subarray(span.start, span.end), transport, scale);
        bytesSent += bytes.length;
        writes.set(this.key(step, `b${b}:c${c}:from${rank}`), bytes, 'EX', ttl);
        const ready = this.key(step, `b${b}:rs${c}`);
        writes.rpush(ready, String(rank));
        writes.expire(ready, ttl);
      }
      return execOrThrow(writes);
    });

    // Reduce-scatter, reading: this rank's chunk of each bucket, summed in rank order, published
    // (a bucket's sum goes out while the next bucket's contributions are read).
    const published: Promise<unknown>[] = [];
    const reduce = async (): Promise<void> => {
      for (let b = 0; b < buckets.length; b++) {
        const span = this.chunk(buckets[b]!, rank);
        for (let k = 1; k < worldSize; k++) await this.waitOne(this.waitScatter, this.key(step, `b${b}:rs${rank}`));
        const reads = this.reader.pipeline();
        for (let r = 0; r < worldSize; r++) if (r !== rank) reads.getdelBuffer(this.key(step, `b${b}:c${rank}:from${r}`));
        const parts = (await execOrThrow(reads)) as (Buffer | null)[];
        const acc = sum.subarray(span.start, span.end);
        let next = 0;
        for (let r = 0; r < worldSize; r++) {
          let contribution: Float32Array;
          if (r === rank) {
            // This rank's own values take the same trip through the codec as everyone else's.
            contribution = transport === 'fp32' ? values.subarray(span.start, span.end) : decode(encode(values.subarray(span.start, span.end), transport, scale), transport);
          } else {
            const part = parts[next++];
            if (!part) throw collectiveError('DDPM_GROUP_LOST', `rank ${r}'s contribution to step ${step} is gone (the data plane lost it)`);
            bytesReceived += part.length;
            contribution = decode(part, transport);
          }
          if (r === 0) acc.set(contribution);
          else for (let i = 0; i < acc.length; i++) acc[i] = acc[i]! + contribution[i]!;
        }
        const bytes = encode(acc, transport);
        bytesSent += bytes.length;
        if (transport !== 'fp32') acc.set(decode(bytes, transport, 1 / scale));
        const announce = this.publish.pipeline();
        announce.set(this.key(step, `b${b}:sum${rank}`), bytes, 'EX', ttl);
        for (let r = 0; r < worldSize; r++) {
          if (r === rank) continue;
          const inbox = this.key(step, `ag${r}`);
          announce.rpush(inbox, `${b}:${rank}`);
          announce.expire(inbox, ttl);
        }
        published.push(execOrThrow(announce));
      }
      await Promise.all(published);
    };

    // All-gather, at the same time: each sum another rank owns, as soon as it is announced.
    const gather = async (): Promise<void> => {
      for (let k = 0; k < (worldSize - 1) * buckets.length; k++) {
        const [b, c] = (await this.waitOne(this.waitGather, this.key(step, `ag${rank}`))).split(':').map(Number) as [number, number];
        const bytes = await this.readShared(this.key(step, `b${b}:sum${c}`));
        bytesReceived += bytes.length;
        sum.set(decode(bytes, transport, 1 / scale), this.chunk(buckets[b]!, c).start);
      }
    };

    await Promise.all([...contributed, reduce(), gather()]);
    return { sum, bytesSent, bytesReceived };
  }

  /**
   * One data-parallel step's traffic: the sum of every rank's `values` and every rank's `report`
   * (small JSON), the same on every rank.
   */
  async exchange<R>(step: number, values: Float32Array, report: R, out?: Float32Array): Promise<AllReduceResult & { reports: R[] }> {
    // The reports do not wait for the sum: both travel at once.
    const [reduced, reports] = await Promise.all([this.allReduceSum(step, values, out), this.allGather(step, 'report', report)]);
    return { ...reduced, reports };
  }

  /** Every rank's `value` (JSON), in rank order. */
  async allGather<T>(step: number, tag: string, value: T): Promise<T[]> {
    const { rank, worldSize, keyTtlSeconds: ttl } = this.options;
    if (worldSize === 1) return [value];
    const write = this.publish.pipeline();
    write.set(this.key(step, `${tag}:r${rank}`), JSON.stringify(value), 'EX', ttl);
    for (let r = 0; r < worldSize; r++) {
      if (r === rank) continue;
      const inbox = this.key(step, `${tag}:to${r}`);
      write.rpush(inbox, String(rank));
      write.expire(inbox, ttl);
    }
    await execOrThrow(write);
    const all: T[] = new Array<T>(worldSize);
    all[rank] = value;
    for (let k = 1; k < worldSize; k++) {
      const from = Number(await this.waitOne(this.waitGather, this.key(step, `${tag}:to${rank}`)));
      all[from] = JSON.parse((await this.readShared(this.key(step, `${tag}:r${from}`))).toString('utf8')) as T;
    }
    return all;
  }
}
