/**
 * The all-reduce of a data-parallel group over Redis (docs/groups.md, "The all-reduce"):
 * reduce-scatter, then all-gather, with chunk ownership. The values are cut into buckets
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
 *
 * Ranks on one host (what {@link RedisCollective.negotiateSharedMemory} finds out) can keep the
 * values out of Redis, as NCCL's intra-node transport does: each value goes to a file in a
 * shared-memory directory (a tmpfs such as /dev/shm) before its ready signal, and Redis carries
 * only the signals. The files live as long as the generation and are rewritten in place, one per
 * value slot and step parity (a new file every step costs the tmpfs a fresh zeroed page per 4 KiB
 * written; docs/performance.md). A slot comes round again two steps later, and by then every
 * reader has read it: a rank writes step s + 2's values only after its all-reduce of step s + 1,
 * which needed every owner's step s + 1 sum, published only after that owner read all its step
 * s + 1 contributions, which every rank wrote only after reading the step s sums. Each file starts
 * with its step, checked by the reader. The last rank to leave deletes the generation's files (a
 * failed generation's go with {@link removeSharedMemoryFiles}). The same bytes arrive in the same
 * order, so the sums are the same bits either way.
 */
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';

import { type Redis, type RedisOptions } from 'ioredis';

import { BulkConnection, bulkTarget } from './bulk';
import { type Transport, bytesPerValue, decode, encode } from './codec';
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
  /**
   * A directory on a shared-memory filesystem (e.g. /dev/shm) that
   * {@link RedisCollective.negotiateSharedMemory} may use for the values when every rank reaches
   * the same one. Absent: the values always travel through Redis.
   */
  readonly sharedMemoryDir?: string;
}

/** Shared-memory files are named after their key with this prefix (and swept by it). */
const SHM_PREFIX = 'ddpm-';
/** A file of ours this old in the shared-memory directory belongs to no live group (keys live minutes). */
const SHM_STALE_MS = 24 * 3600 * 1000;
/** Bytes before a value in its shared-memory file: the step it belongs to and its length (float64 each). */
const SHM_HEADER_BYTES = 16;

/**
 * The shared-memory space one all-reduce of `values` float32 values needs on a host holding
 * `ranksOnHost` ranks of a group of `worldSize` (each rank keeps its outgoing values of two steps),
 * what a caller of {@link RedisCollective.negotiateSharedMemory} asks to be free.
 */
export function sharedMemoryBytes(
  values: number,
  worldSize: number,
  transport: Transport,
  ranksOnHost = worldSize,
): number {
  return 2 * ranksOnHost * (values * bytesPerValue(transport) + worldSize * SHM_HEADER_BYTES);
}

function shmName(key: string): string {
  return `${SHM_PREFIX}${key.replace(/[^A-Za-z0-9._-]/g, '_')}`;
}

async function sweepSharedMemory(dir: string, doomed: (name: string, ageMs: number) => boolean): Promise<void> {
  const now = Date.now();
  for (const name of await fs.readdir(dir)) {
    if (!name.startsWith(SHM_PREFIX)) continue;
    const file = path.join(dir, name);
    const stat = await fs.stat(file).catch(() => undefined);
    if (stat?.isFile() && doomed(name, now - stat.mtimeMs)) await fs.rm(file, { force: true }).catch(() => undefined);
  }
}

/**
 * Deletes a generation's files from a shared-memory folder: what a failed generation's values
 * left there (a killed rank cannot). The worker that ran a rank calls it once the generation is over.
 */
export async function removeSharedMemoryFiles(dir: string, namespace: string): Promise<void> {
  const mine = shmName(`${namespace}:`);
  await sweepSharedMemory(dir, (name) => name.startsWith(mine)).catch(() => undefined);
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
 * Commands sent together on one connection, in order: on a lean connection
 * ({@link BulkConnection}) where the data plane speaks plain TCP, else an ioredis pipeline.
 */
class Batch {
  private readonly commands: (string | number | Buffer)[][] = [];

  constructor(
    private readonly lean: BulkConnection | undefined,
    private readonly redis: () => Redis,
  ) {}

  add(...command: (string | number | Buffer)[]): this {
    this.commands.push(command);
    return this;
  }

  async exec(): Promise<unknown[]> {
    const lean = this.lean;
    if (lean !== undefined) return Promise.all(this.commands.map((c) => lean.command(c)));
    const pipeline = this.redis().pipeline();
    for (const [name, ...args] of this.commands) pipeline.call(String(name), ...args);
    return execOrThrow(pipeline);
  }
}

/**
 * The collective of one rank. It keeps its connections apart so that nothing large waits behind
 * something else on one socket: one streams this rank's contributions out, one publishes the sums
 * it owns, one reads, and one each blocks in the two waits (contributions arriving for its chunks;
 * sums arriving from their owners), which run at the same time: bucket b's sums are read while
 * bucket b + 1 is still being reduced. Where the data plane speaks plain TCP (`redis://`), the
 * values go out and come in on lean connections of their own ({@link BulkConnection}: no copies
 * or allocations per value in JavaScript); ioredis carries the waits and the small messages.
 * `close()` ends them all.
 */
export class RedisCollective {
  private readonly transport: Transport;
  private readonly bucketValues: number;
  /** A new ioredis connection to the data plane. */
  private readonly open: () => Redis;
  /** ioredis for the contributions where no lean connection carries them (created when first needed). */
  private contributeRedis: Redis | undefined;
  private readonly publish: Redis;
  private readonly reader: Redis;
  private readonly waitScatter: Redis;
  private readonly waitGather: Redis;
  /** The lean connections of the values (contributions out, sums out, values in), where the data plane allows. */
  private readonly lean:
    | { readonly contribute: BulkConnection; readonly publish: BulkConnection; readonly read: BulkConnection }
    | undefined;
  private maxWaitMs: number;
  /** The shared-memory directory the values travel through, once every rank agreed on it. */
  private shm: string | undefined;
  /** Buffers shared-memory values are read into, one per reading slot, reused every step. */
  private readonly readBuffers = new Map<string, Buffer>();
  /** Open shared-memory files by path: this rank's values (written) and its peers' (read). */
  private readonly shmFiles = new Map<string, Promise<fs.FileHandle>>();

  constructor(private readonly options: CollectiveOptions) {
    const { rank, worldSize } = options;
    checkRank(rank, worldSize);
    this.transport = options.transport ?? 'fp32';
    this.maxWaitMs = options.maxWaitMs ?? Number.POSITIVE_INFINITY;
    this.bucketValues = Math.max(worldSize, Math.floor((options.bucketBytes ?? 8 * 1024 * 1024) / 4));
    this.open = () => dataPlaneConnection(options.redisUrl, options.redisOptions);
    const target = bulkTarget(options.redisUrl, options.redisOptions);
    if (target !== undefined) {
      const timeout = options.redisOptions?.connectTimeout;
      this.lean = {
        contribute: new BulkConnection(target, timeout),
        publish: new BulkConnection(target, timeout),
        read: new BulkConnection(target, timeout),
      };
    }
    this.publish = this.open();
    this.reader = this.open();
    this.waitScatter = this.open();
    this.waitGather = this.open();
  }

  private contributeConnection(): Redis {
    this.contributeRedis ??= this.open();
    return this.contributeRedis;
  }

  /** See {@link CollectiveOptions.maxWaitMs}. */
  setMaxWait(ms: number): void {
    this.maxWaitMs = ms;
  }

  close(): void {
    for (const r of [this.contributeRedis, this.publish, this.reader, this.waitScatter, this.waitGather])
      r?.disconnect();
    if (this.lean !== undefined) for (const c of Object.values(this.lean)) c.close();
    for (const file of this.shmFiles.values()) void file.then((h) => h.close()).catch(() => undefined);
    this.shmFiles.clear();
  }

  /**
   * This rank is done with the generation's collectives (its last all-reduce returned): the last
   * rank of the generation to say so deletes the generation's shared-memory files. Call before
   * {@link close}; nothing to do where the values travel through Redis (their keys expire).
   */
  async leaveSharedMemory(): Promise<void> {
    const dir = this.shm;
    if (dir === undefined) return;
    const { namespace, worldSize, keyTtlSeconds } = this.options;
    const key = `${namespace}:shm-left`;
    const [left] = await execOrThrow(this.publish.pipeline().incr(key).expire(key, keyTtlSeconds));
    if (Number(left) < worldSize) return;
    for (const file of this.shmFiles.values()) await file.then((h) => h.close()).catch(() => undefined);
    this.shmFiles.clear();
    await removeSharedMemoryFiles(dir, namespace);
    await this.publish.del(key);
  }

  /** The shared-memory directory the values travel through; undefined: Redis. */
  get sharedMemory(): string | undefined {
    return this.shm;
  }

  /**
   * Whether the values can travel through `sharedMemoryDir`: every rank writes a probe file with a
   * random token there and reads every other rank's (so they share one filesystem: one host, or
   * containers sharing the volume), and the filesystem has `minFreeBytes` free; the ranks agree on
   * the answer over Redis. Every rank calls it at the same point, before its first all-reduce.
   * Also deletes our files there older than a day (left by groups whose every rank died).
   */
  async negotiateSharedMemory(minFreeBytes: number): Promise<boolean> {
    const { sharedMemoryDir: dir, rank, worldSize, namespace } = this.options;
    if (dir === undefined || worldSize === 1) return false;
    const token = randomBytes(12).toString('hex');
    const probe = (r: number): string => path.join(dir, shmName(`${namespace}:shm-probe:r${r}`));
    let usable: boolean;
    try {
      await sweepSharedMemory(dir, (name, ageMs) => ageMs > SHM_STALE_MS);
      await fs.writeFile(probe(rank), token);
      const space = await fs.statfs(dir);
      usable = space.bavail * space.bsize >= minFreeBytes;
    } catch {
      usable = false;
    }
    try {
      const tokens = await this.allGather(-1, 'shm-probe', usable ? token : '');
      let sees = usable;
      for (let r = 0; r < worldSize && sees; r++) {
        if (r === rank) continue;
        sees = tokens[r] !== '' && (await fs.readFile(probe(r), 'utf8').catch(() => '')) === tokens[r];
      }
      const verdicts = await this.allGather(-2, 'shm-verdict', sees);
      this.shm = verdicts.every(Boolean) ? dir : undefined;
    } finally {
      await fs.rm(probe(rank), { force: true }).catch(() => undefined);
    }
    return this.shm !== undefined;
  }

  /**
   * Deletes this generation's files in the shared-memory directory (a failed generation leaves
   * values nobody will read; the Redis keys go by their TTL).
   */
  async abandonSharedMemory(): Promise<void> {
    const dir = this.shm ?? this.options.sharedMemoryDir;
    if (dir !== undefined) await removeSharedMemoryFiles(dir, this.options.namespace);
  }

  /** The shared-memory file of value `rest` of `step`: one per value slot and step parity (see the top of this file). */
  private shmPath(step: number, rest: string): string {
    return path.join(this.shm!, shmName(`${this.options.namespace}:p${((step % 2) + 2) % 2}:${rest}`));
  }

  /** An open handle on a shared-memory file, kept for the generation; `write` creates the file. */
  private shmFile(file: string, write: boolean): Promise<fs.FileHandle> {
    let handle = this.shmFiles.get(file);
    if (handle === undefined) {
      handle = fs.open(file, write ? 'w' : 'r');
      this.shmFiles.set(file, handle);
      // A failed open is not kept: the next attempt tries again.
      handle.catch(() => this.shmFiles.delete(file));
    }
    return handle;
  }

  /** A value a reader will take: in its shared-memory file, or a Redis key set in `writes` (with the TTL). */
  private async put(writes: Batch, step: number, rest: string, bytes: Buffer): Promise<void> {
    if (this.shm === undefined) {
      writes.add('SET', this.key(step, rest), bytes, 'EX', this.options.keyTtlSeconds);
      return;
    }
    const header = Buffer.alloc(SHM_HEADER_BYTES);
    header.writeDoubleLE(step, 0);
    header.writeDoubleLE(bytes.length, 8);
    const handle = await this.shmFile(this.shmPath(step, rest), true);
    let written = (await handle.writev([header, bytes], 0)).bytesWritten;
    if (written < header.length + bytes.length) {
      // A short write (not seen on tmpfs) is finished from where it stopped.
      const whole = Buffer.concat([header, bytes]);
      while (written < whole.length)
        written += (await handle.write(whole, written, whole.length - written, written)).bytesWritten;
    }
  }

  /** The values `rests` of `step` (one reader each: Redis deletes them as they are read); null where gone. */
  private async takeAll(step: number, rests: readonly string[]): Promise<(Buffer | null)[]> {
    if (this.shm === undefined) {
      const lean = this.lean?.read;
      if (lean !== undefined)
        return (await Promise.all(
          rests.map((rest, i) => lean.command(['GETDEL', this.key(step, rest)], (n) => this.readBuffer(`take${i}`, n))),
        )) as (Buffer | null)[];
      const reads = this.reader.pipeline();
      for (const rest of rests) reads.getdelBuffer(this.key(step, rest));
      return (await execOrThrow(reads)) as (Buffer | null)[];
    }
    return Promise.all(rests.map((rest, i) => this.readValue(step, rest, `take${i}`)));
  }

  /**
   * Value `rest` of `step` from its shared-memory file, in a buffer kept for `slot` and reused at
   * every step (the caller is done with them before it reads into that slot again); null when the
   * file is gone. A fresh buffer per read is megabytes of new memory every step, and on VMs whose
   * page faults are slow touching it costs as much as the read (docs/performance.md).
   */
  private async readValue(step: number, rest: string, slot: string): Promise<Buffer | null> {
    const file = this.shmPath(step, rest);
    let handle: fs.FileHandle;
    try {
      handle = await this.shmFile(file, false);
    } catch {
      return null;
    }
    const readFully = async (into: Buffer, length: number, position: number): Promise<boolean> => {
      let read = 0;
      while (read < length) {
        const { bytesRead } = await handle.read(into, read, length - read, position + read);
        if (bytesRead === 0) return false;
        read += bytesRead;
      }
      return true;
    };
    const header = Buffer.alloc(SHM_HEADER_BYTES);
    if (!(await readFully(header, SHM_HEADER_BYTES, 0))) return null;
    const written = header.readDoubleLE(0);
    const size = header.readDoubleLE(8);
    // The ready signal comes after the write, and the slot is rewritten two steps later at the
    // earliest: another step here means a broken data plane, never a value to use.
    if (written !== step)
      throw collectiveError(
        'DDPM_GROUP_LOST',
        `${file} holds step ${written}'s value where step ${step}'s was announced`,
      );
    const buffer = this.readBuffer(slot, size);
    return (await readFully(buffer, size, SHM_HEADER_BYTES)) ? buffer.subarray(0, size) : null;
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

  private key(step: number, rest: string): string {
    return `${this.options.namespace}:s${step}:${rest}`;
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

  /** The next item on a list, checking liveness between wait slices. */
  private async waitOne(connection: Redis, key: string): Promise<string> {
    return (await popWaiting(connection, key, this.options, this.maxWaitMs)).toString();
  }

  /**
   * Reads value `rest` of `step` that every other rank reads too. `values`: a sum of the
   * all-reduce (from its shared-memory file when negotiated, which stays for the generation);
   * otherwise a small message, always in Redis. In Redis the readers are counted and the last of
   * the N − 1 deletes the value.
   */
  private async readShared(step: number, rest: string, values = false): Promise<Buffer> {
    const { worldSize, keyTtlSeconds: ttl } = this.options;
    if (values && this.shm !== undefined) {
      const value = await this.readValue(step, rest, 'gather');
      if (value === null)
        throw collectiveError(
          'DDPM_GROUP_LOST',
          `${this.shmPath(step, rest)} is gone (the shared-memory data plane lost it)`,
        );
      return value;
    }
    const key = this.key(step, rest);
    const lean = values ? this.lean?.read : undefined;
    if (lean !== undefined) {
      const [value, count] = await Promise.all([
        lean.command(['GET', key], (n) => this.readBuffer('gather', n)),
        lean.command(['INCR', `${key}:n`]),
        lean.command(['EXPIRE', `${key}:n`, ttl]),
      ]);
      if (value === null) throw collectiveError('DDPM_GROUP_LOST', `${key} is gone (the data plane lost it)`);
      // Every reader GETs before it INCRs, so the one that counts N − 1 is the last to read.
      if (Number(count) >= worldSize - 1) await lean.command(['DEL', key, `${key}:n`]);
      return value as Buffer;
    }
    const [value, count] = await execOrThrow(
      this.reader.pipeline().getBuffer(key).incr(`${key}:n`).expire(`${key}:n`, ttl),
    );
    if (value === null || value === undefined)
      throw collectiveError('DDPM_GROUP_LOST', `${key} is gone (the data plane lost it)`);
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
    if (out !== undefined && out.length !== values.length)
      throw collectiveError('DDPM_GROUP_ABORTED', `out has ${out.length} values for ${values.length}`);
    if (worldSize === 1) {
      const sum = out ?? new Float32Array(values.length);
      sum.set(values);
      return { sum, bytesSent: 0, bytesReceived: 0 };
    }
    const transport = this.transport;
    // Half precision carries values pre-divided by N (so sums stay in range), scaled back after.
    const scale = transport === 'fp32' ? 1 : 1 / worldSize;
    const buckets: Span[] = [];
    for (let start = 0; start < values.length; start += this.bucketValues)
      buckets.push({ start, end: Math.min(values.length, start + this.bucketValues) });
    let bytesSent = 0;
    let bytesReceived = 0;
    const sum = out ?? new Float32Array(values.length);

    // Reduce-scatter, writing: every chunk this rank does not own, bucket by bucket, streamed.
    const contributed = buckets.map(async (bucket, b) => {
      const writes = new Batch(this.lean?.contribute, () => this.contributeConnection());
      for (let c = 0; c < worldSize; c++) {
        if (c === rank) continue;
        const span = this.chunk(bucket, c);
        const bytes = encode(values.subarray(span.start, span.end), transport, scale);
        bytesSent += bytes.length;
        await this.put(writes, step, `b${b}:c${c}:from${rank}`, bytes);
        const ready = this.key(step, `b${b}:rs${c}`);
        writes.add('RPUSH', ready, String(rank)).add('EXPIRE', ready, ttl);
      }
      return writes.exec();
    });

    // Reduce-scatter, reading: this rank's chunk of each bucket, summed in rank order, published
    // (a bucket's sum goes out while the next bucket's contributions are read).
    const published: Promise<unknown>[] = [];
    const reduce = async (): Promise<void> => {
      for (let b = 0; b < buckets.length; b++) {
        const span = this.chunk(buckets[b]!, rank);
        for (let k = 1; k < worldSize; k++) await this.waitOne(this.waitScatter, this.key(step, `b${b}:rs${rank}`));
        const from: string[] = [];
        for (let r = 0; r < worldSize; r++) if (r !== rank) from.push(`b${b}:c${rank}:from${r}`);
        const parts = await this.takeAll(step, from);
        const acc = sum.subarray(span.start, span.end);
        let next = 0;
        for (let r = 0; r < worldSize; r++) {
          let contribution: Float32Array;
          if (r === rank) {
            // This rank's own values take the same trip through the codec as everyone else's.
            contribution =
              transport === 'fp32'
                ? values.subarray(span.start, span.end)
                : decode(encode(values.subarray(span.start, span.end), transport, scale), transport);
          } else {
            const part = parts[next++];
            if (!part)
              throw collectiveError(
                'DDPM_GROUP_LOST',
                `rank ${r}'s contribution to step ${step} is gone (the data plane lost it)`,
              );
            bytesReceived += part.length;
            contribution = decode(part, transport);
          }
          if (r === 0) acc.set(contribution);
          else for (let i = 0; i < acc.length; i++) acc[i] = acc[i]! + contribution[i]!;
        }
        const bytes = encode(acc, transport);
        bytesSent += bytes.length;
        if (transport !== 'fp32') acc.set(decode(bytes, transport, 1 / scale));
        const announce = new Batch(this.lean?.publish, () => this.publish);
        await this.put(announce, step, `b${b}:sum${rank}`, bytes);
        for (let r = 0; r < worldSize; r++) {
          if (r === rank) continue;
          const inbox = this.key(step, `ag${r}`);
          announce.add('RPUSH', inbox, `${b}:${rank}`).add('EXPIRE', inbox, ttl);
        }
        published.push(announce.exec());
      }
      await Promise.all(published);
    };

    // All-gather, at the same time: each sum another rank owns, as soon as it is announced.
    const gather = async (): Promise<void> => {
      for (let k = 0; k < (worldSize - 1) * buckets.length; k++) {
        const [b, c] = (await this.waitOne(this.waitGather, this.key(step, `ag${rank}`))).split(':').map(Number) as [
          number,
          number,
        ];
        const bytes = await this.readShared(step, `b${b}:sum${c}`, true);
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
      all[from] = JSON.parse((await this.readShared(step, `${tag}:r${from}`)).toString('utf8')) as T;
    }
    return all;
  }
}
