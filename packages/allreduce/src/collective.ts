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
 * script that counts readers), so nothing is left behind. Waits are cut into slices; between
 * slices the generation's liveness is checked, so a lost peer ends the wait within its timeout.
 */
import { type Redis } from 'ioredis';

import { type Transport, bytesPerValue, decode, encode } from './codec';
import { collectiveError } from './errors';

export interface CollectiveOptions {
  /** Data-plane connection for commands. */
  readonly redis: Redis;
  /** A second connection to the same Redis for blocking waits (BLPOP holds its connection). */
  readonly blocking: Redis;
  /** The generation's key namespace (run and generation in it). */
  readonly namespace: string;
  readonly rank: number;
  readonly worldSize: number;
  /** Bytes of values per bucket (default 32 MiB): bounds every Redis value and keeps buckets pipelined. */
  readonly bucketBytes?: number;
  readonly transport?: Transport;
  /** TTL of every key, seconds: long enough for the slowest rank to read what it waits for. */
  readonly keyTtlSeconds: number;
  /** Length of one blocking wait before liveness is checked again (default 1000 ms). */
  readonly waitSliceMs?: number;
  /** Throws when the generation is over (a lost or aborted rank, a lost data plane). */
  readonly checkAlive: () => Promise<void>;
  /** Called after every wait slice: the rank is alive and waiting, not wedged. */
  readonly onWait?: () => void;
  readonly signal?: AbortSignal;
}

export interface AllReduceResult {
  /** The sum over ranks, identical bytes on every rank. */
  readonly sum: Float32Array;
  readonly bytesSent: number;
  readonly bytesReceived: number;
}

/** Reads a key and counts its readers; the last of `readers` deletes it (and the count). */
const READ_AND_COUNT = `
local v = redis.call('GET', KEYS[1])
local n = redis.call('INCR', KEYS[2])
redis.call('EXPIRE', KEYS[2], ARGV[2])
if n >= tonumber(ARGV[1]) then redis.call('DEL', KEYS[1], KEYS[2]) end
return v
`;

interface Span {
  readonly start: number;
  readonly end: number;
}

export class RedisCollective {
  private readonly transport: Transport;
  private readonly bucketValues: number;

  constructor(private readonly options: CollectiveOptions) {
    const { rank, worldSize } = options;
    if (!Number.isInteger(worldSize) || worldSize < 1 || !Number.isInteger(rank) || rank < 0 || rank >= worldSize) {
      throw collectiveError('DDPM_GROUP_ABORTED', `rank ${rank} of ${worldSize} is not a rank of a group`);
    }
    this.transport = options.transport ?? 'fp32';
    this.bucketValues = Math.max(worldSize, Math.floor((options.bucketBytes ?? 32 * 1024 * 1024) / 4));
    options.redis.defineCommand('ddpmReadCount', { numberOfKeys: 2, lua: READ_AND_COUNT });
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

  /** Waits until `count` items arrived on a list, checking liveness between slices. */
  private async waitList(key: string, count: number): Promise<string[]> {
    const { blocking, waitSliceMs = 1000, checkAlive, signal } = this.options;
    const items: string[] = [];
    while (items.length < count) {
      if (signal?.aborted) throw collectiveError('DDPM_GROUP_ABORTED', `stopped while waiting for peers: ${String(signal.reason)}`);
      const got = await blocking.blpop(key, waitSliceMs / 1000);
      if (got) {
        items.push(got[1]);
      } else {
        this.options.onWait?.();
        await checkAlive();
      }
    }
    return items;
  }

  /** The sum of every rank's `values` (same length on every rank), in rank order. */
  async allReduceSum(step: number, values: Float32Array): Promise<AllReduceResult> {
    const { redis, rank, worldSize, keyTtlSeconds: ttl } = this.options;
    if (worldSize === 1) return { sum: Float32Array.from(values), bytesSent: 0, bytesReceived: 0 };
    const transport = this.transport;
    // Half precision carries values pre-divided by N (so sums stay in range), scaled back after.
    const scale = transport === 'fp32' ? 1 : 1 / worldSize;
    const buckets: Span[] = [];
    for (let start = 0; start < values.length; start += this.bucketValues) buckets.push({ start, end: Math.min(values.length, start + this.bucketValues) });
    let bytesSent = 0;
    let bytesReceived = 0;

    // Reduce-scatter, writing: every chunk this rank does not own, all buckets in one pipeline.
    const writes = redis.pipeline();
    buckets.forEach((bucket, b) => {
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
    });
    await execOrThrow(writes);

    // Reduce-scatter, reading: the chunks this rank owns, summed in rank order; then publish the sums.
    const sum = new Float32Array(values.length);
    for (let b = 0; b < buckets.length; b++) {
      const span = this.chunk(buckets[b]!, rank);
      await this.waitList(this.key(step, `b${b}:rs${rank}`), worldSize - 1);
      const reads = redis.pipeline();
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
      const published = encode(acc, transport);
      bytesSent += published.length;
      if (transport !== 'fp32') acc.set(decode(published, transport, 1 / scale));
      const announce = redis.pipeline();
      announce.set(this.key(step, `b${b}:sum${rank}`), published, 'EX', ttl);
      for (let r = 0; r < worldSize; r++) {
        if (r === rank) continue;
        const inbox = this.key(step, `ag${r}`);
        announce.rpush(inbox, `${b}:${rank}`);
        announce.expire(inbox, ttl);
      }
      await execOrThrow(announce);
    }

    // All-gather: the sums of the chunks other ranks own.
    const arrivals = await this.waitList(this.key(step, `ag${rank}`), (worldSize - 1) * buckets.length);
    const reads = redis.pipeline() as unknown as ScriptPipeline;
    const spans = arrivals.map((a) => {
      const [b, c] = a.split(':').map(Number) as [number, number];
      const key = this.key(step, `b${b}:sum${c}`);
      reads.ddpmReadCountBuffer(key, `${key}:n`, worldSize - 1, ttl);
      return this.chunk(buckets[b]!, c);
    });
    const results = await execOrThrow(reads);
    results.forEach((raw, i) => {
      if (raw === null) throw collectiveError('DDPM_GROUP_LOST', `a sum of step ${step} is gone (the data plane lost it)`);
      const bytes = raw as Buffer;
      bytesReceived += bytes.length;
      const span = spans[i]!;
      sum.set(decode(bytes, transport, 1 / scale), span.start);
    });
    return { sum, bytesSent, bytesReceived };
  }

  /**
   * One data-parallel step's traffic: the sum of every rank's `values` and every rank's `report`
   * (small JSON), the same on every rank.
   */
  async exchange<R>(step: number, values: Float32Array, report: R): Promise<AllReduceResult & { reports: R[] }> {
    const reduced = await this.allReduceSum(step, values);
    return { ...reduced, reports: await this.allGather(step, 'report', report) };
  }

  /** Every rank's `value` (JSON), in rank order. */
  async allGather<T>(step: number, tag: string, value: T): Promise<T[]> {
    const { redis, rank, worldSize, keyTtlSeconds: ttl } = this.options;
    if (worldSize === 1) return [value];
    const write = redis.pipeline();
    write.set(this.key(step, `${tag}:r${rank}`), JSON.stringify(value), 'EX', ttl);
    for (let r = 0; r < worldSize; r++) {
      if (r === rank) continue;
      const inbox = this.key(step, `${tag}:to${r}`);
      write.rpush(inbox, String(rank));
      write.expire(inbox, ttl);
    }
    await execOrThrow(write);
    await this.waitList(this.key(step, `${tag}:to${rank}`), worldSize - 1);
    const reads = redis.pipeline() as unknown as ScriptPipeline;
    const others: number[] = [];
    for (let r = 0; r < worldSize; r++) {
      if (r === rank) continue;
      const key = this.key(step, `${tag}:r${r}`);
      reads.ddpmReadCount(key, `${key}:n`, worldSize - 1, ttl);
      others.push(r);
    }
    const results = await execOrThrow(reads);
    const all: T[] = new Array<T>(worldSize);
    all[rank] = value;
    results.forEach((raw, i) => {
      if (raw === null || raw === undefined) throw collectiveError('DDPM_GROUP_LOST', `rank ${others[i]}'s ${tag} for step ${step} is gone (the data plane lost it)`);
      all[others[i]!] = JSON.parse(String(raw)) as T;
    });
    return all;
  }
}

/** A pipeline with the read-and-count script defined on its connection (ioredis adds the methods at run time). */
interface ScriptPipeline {
  ddpmReadCount(key: string, counter: string, readers: number, ttl: number): void;
  ddpmReadCountBuffer(key: string, counter: string, readers: number, ttl: number): void;
  exec(): Promise<[Error | null, unknown][] | null>;
}

/** Runs a pipeline; any command's error (or a lost connection) becomes the call's error. */
async function execOrThrow(pipeline: { exec(): Promise<[Error | null, unknown][] | null> }): Promise<unknown[]> {
  const results = await pipeline.exec();
  if (results === null) throw collectiveError('DDPM_GROUP_LOST', 'a Redis pipeline of the data plane was discarded');
  return results.map(([err, value]) => {
    if (err) throw collectiveError('DDPM_GROUP_LOST', `the data plane failed a command: ${err.message}`);
    return value;
  });
}

export { bytesPerValue };
