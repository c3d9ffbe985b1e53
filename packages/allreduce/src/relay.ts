/**
 * Batches of values sent by the ranks of a group to rank 0 over the data plane: how a sampling
 * group (a sample or eval job with `workers: N`) collects the images its ranks draw. Batch k is
 * drawn by rank k mod N; rank 0 receives the others' in order, as it needs them.
 *
 * Flow control by credits: a sender has `window` batches in flight at most; rank 0 returns a
 * credit for each batch it takes, so the data plane never holds more than (N − 1) · window batches
 * of a job, however far ahead the senders run. Keys are scoped by the generation's namespace with a
 * TTL, each batch's list is emptied by its one reader, rank 0 deletes the credit lists when it
 * closes, and a rank leaving a failed or cancelled generation deletes what is left: nothing stays
 * behind, and a stale rank of an older generation writes where nobody reads.
 */
import { type Redis, type RedisOptions } from 'ioredis';

import { relayKeys } from './data-keys';
import { collectiveError } from './errors';
import { type WaitOptions, checkRank, dataPlaneConnection, execOrThrow, popWaiting } from './redis-waits';

export interface RelayOptions extends WaitOptions {
  readonly redisUrl: string;
  readonly redisOptions?: RedisOptions;
  /** The generation's key namespace. */
  readonly namespace: string;
  readonly rank: number;
  readonly worldSize: number;
  /** TTL of every key, seconds. */
  readonly keyTtlSeconds: number;
  /** Batches a sender may have in flight (default 4). */
  readonly window?: number;
  /** The longest one wait may last (default: unbounded; heartbeats judge liveness). */
  readonly maxWaitMs?: number;
}

export class BatchRelay {
  private readonly write: Redis;
  private readonly wait: Redis;
  private credits: number;

  constructor(private readonly options: RelayOptions) {
    const { rank, worldSize } = options;
    checkRank(rank, worldSize);
    this.credits = options.window ?? 4;
    this.write = dataPlaneConnection(options.redisUrl, options.redisOptions);
    this.wait = dataPlaneConnection(options.redisUrl, options.redisOptions);
  }

  /** The rank that draws batch `index`. */
  ownerOf(index: number): number {
    return index % this.options.worldSize;
  }

  private itemKey(index: number): string {
    return relayKeys(this.options.namespace).batch(index);
  }

  private creditKey(rank: number): string {
    return relayKeys(this.options.namespace).credit(rank);
  }

  /** Sends batch `index` (this rank's) to rank 0, once a credit allows; resolves to the bytes sent. */
  async send(index: number, values: Float32Array): Promise<number> {
    const { rank, keyTtlSeconds: ttl } = this.options;
    if (rank === 0 || this.ownerOf(index) !== rank)
      throw collectiveError(
        'DDPM_GROUP_ABORTED',
        `rank ${rank} cannot send batch ${index} (rank ${this.ownerOf(index)} draws it, for rank 0)`,
      );
    while (this.credits === 0) {
      await popWaiting(
        this.wait,
        this.creditKey(rank),
        this.options,
        this.options.maxWaitMs ?? Number.POSITIVE_INFINITY,
      );
      this.credits += 1;
    }
    this.credits -= 1;
    const bytes = Buffer.from(values.buffer, values.byteOffset, values.byteLength);
    await execOrThrow(this.write.pipeline().rpush(this.itemKey(index), bytes).expire(this.itemKey(index), ttl));
    return bytes.byteLength;
  }

  /** Rank 0: batch `index` from the rank that draws it, waiting for it; its credit goes back. */
  async receive(index: number): Promise<Float32Array> {
    const { rank, keyTtlSeconds: ttl } = this.options;
    const from = this.ownerOf(index);
    if (rank !== 0 || from === 0)
      throw collectiveError(
        'DDPM_GROUP_ABORTED',
        `rank ${rank} cannot receive batch ${index} (rank 0 receives the batches of ranks 1 and up)`,
      );
    const bytes = await popWaiting(
      this.wait,
      this.itemKey(index),
      this.options,
      this.options.maxWaitMs ?? Number.POSITIVE_INFINITY,
    );
    await execOrThrow(this.write.pipeline().rpush(this.creditKey(from), '1').expire(this.creditKey(from), ttl));
    if (bytes.byteLength % 4 !== 0)
      throw collectiveError(
        'DDPM_GROUP_LOST',
        `batch ${index} arrived with ${bytes.byteLength} bytes, not whole float32 values`,
      );
    // A copy: the Buffer's offset need not be 4-aligned.
    const values = new Float32Array(bytes.byteLength / 4);
    new Uint8Array(values.buffer).set(bytes);
    return values;
  }

  /** Rank 0: a short message every other rank reads once (which checkpoint they all sample). */
  async announce(message: string): Promise<void> {
    const { rank, worldSize, keyTtlSeconds: ttl } = this.options;
    if (rank !== 0) throw collectiveError('DDPM_GROUP_ABORTED', `rank ${rank} cannot announce: rank 0 does`);
    if (worldSize === 1) return;
    const key = relayKeys(this.options.namespace).announce;
    await execOrThrow(
      this.write
        .pipeline()
        .rpush(key, ...Array.from({ length: worldSize - 1 }, () => message))
        .expire(key, ttl),
    );
  }

  /** Ranks 1 and up: rank 0's announcement, waiting for it. */
  async announced(): Promise<string> {
    if (this.options.rank === 0)
      throw collectiveError('DDPM_GROUP_ABORTED', 'rank 0 announces; it does not wait for an announcement');
    return (
      await popWaiting(
        this.wait,
        relayKeys(this.options.namespace).announce,
        this.options,
        this.options.maxWaitMs ?? Number.POSITIVE_INFINITY,
      )
    ).toString();
  }

  /**
   * Ends the relay. Rank 0 deletes the credit lists (the batches' lists are empty once taken).
   * `abandon` (the generation failed or was cancelled: nobody will read what is there) deletes
   * every key of the relay in the namespace, batches sent but never taken included.
   */
  async close(options: { abandon?: boolean } = {}): Promise<void> {
    const { rank, worldSize, namespace } = this.options;
    try {
      if (options.abandon === true) {
        let cursor = '0';
        do {
          const [next, keys] = await this.write.scan(cursor, 'MATCH', relayKeys(namespace).pattern, 'COUNT', 1000);
          if (keys.length > 0) await this.write.del(...keys);
          cursor = next;
        } while (cursor !== '0');
      } else if (rank === 0 && worldSize > 1) {
        await this.write.del(...Array.from({ length: worldSize - 1 }, (_, i) => this.creditKey(i + 1)));
      }
    } catch {
      // A lost data plane: the keys' TTL removes them.
    }
    this.write.disconnect();
    this.wait.disconnect();
  }
}
