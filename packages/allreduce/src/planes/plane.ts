/**
 * Where an all-reduce's values travel, seen from the algorithm (collective.ts): one interface,
 * one implementation per transport.
 *
 * - `hub` (hub-plane.ts): every value in one Redis, the data plane every rank reaches. It takes
 *   N·S in and gives 2(N − 1)·S out per all-reduce of S bytes.
 * - `shared-memory` (shared-memory-plane.ts): ranks on one host; values in files of a tmpfs,
 *   signals through the hub.
 * - `ranks` (rank-servers-plane.ts): every rank's own data Redis beside it; the owner of a chunk
 *   keeps that chunk's contributions and its sum in its own server, so every rank sends and
 *   receives (N − 1)/N · S and no server or host link carries more than about 2·S, whatever N.
 *
 * The algorithm is the same on every plane, and the same bytes arrive in the same order, so the
 * sums are the same bits.
 */
import { type Redis } from 'ioredis';

import { type BulkConnection } from '../bulk';
import { execOrThrow } from '../redis-waits';

export const PLANE_NAMES = ['hub', 'shared-memory', 'ranks'] as const;
export type PlaneName = (typeof PLANE_NAMES)[number];

export interface ValuePlane {
  readonly name: PlaneName;
  /**
   * Whether this rank's own chunk stays on its host: the contributions it takes and the sum it
   * publishes then cross no link, and are not counted as the rank's traffic.
   */
  readonly ownChunkLocal: boolean;
  /**
   * How many all-gather reads are in flight at once: several across a network (a read waits a
   * round trip before its bytes flow, and reads one at a time would idle the link meanwhile), one
   * from local memory.
   */
  readonly readsInFlight: number;
  /**
   * Queues this rank's contribution `bytes` to chunk `owner` of bucket `bucket` and the signal that
   * tells the owner it is there; {@link flushContributions} sends what is queued.
   */
  contribute(step: number, bucket: number, owner: number, bytes: Buffer): Promise<void>;
  flushContributions(): Promise<void>;
  /** Waits for one signal that a contribution to this rank's chunk of `bucket` has arrived. */
  waitContribution(step: number, bucket: number): Promise<void>;
  /** The contributions of ranks `from` to this rank's chunk of `bucket` (taken: one reader each); null where gone. */
  takeContributions(step: number, bucket: number, from: readonly number[]): Promise<(Buffer | null)[]>;
  /** Publishes this rank's sum of `bucket` and tells every other rank it is there. */
  publishSum(step: number, bucket: number, bytes: Buffer): Promise<void>;
  /** The next sum announced to this rank: its bucket and owner. */
  waitSum(step: number): Promise<{ bucket: number; owner: number }>;
  /**
   * Owner `owner`'s sum of `bucket` (read by the N − 1 other ranks; gone after the last, where it is
   * a key), into the buffer kept for reading slot `slot` (reads in flight at once use different slots).
   */
  readSum(step: number, bucket: number, owner: number, slot: string): Promise<Buffer>;
  /** Releases the plane's connections and files (the collective is closing). */
  close(): void;
}

/**
 * Commands sent together on one connection, in order: on a lean connection ({@link BulkConnection})
 * where the server speaks plain TCP, else an ioredis pipeline.
 */
export class Batch {
  private readonly commands: (string | number | Buffer)[][] = [];

  constructor(
    private readonly lean: BulkConnection | undefined,
    private readonly redis: () => Redis,
  ) {}

  get size(): number {
    return this.commands.length;
  }

  add(...command: (string | number | Buffer)[]): this {
    this.commands.push(command);
    return this;
  }

  async exec(): Promise<unknown[]> {
    return this.send().replies;
  }

  /**
   * Sends the commands: `written` when their bytes have left this process (on a lean connection;
   * with ioredis, when the replies are in), `replies` when the server has answered them all.
   */
  send(): { written: Promise<void>; replies: Promise<unknown[]> } {
    const commands = this.commands.splice(0);
    if (commands.length === 0) return { written: Promise.resolve(), replies: Promise.resolve([]) };
    const lean = this.lean;
    if (lean !== undefined) {
      const sent = commands.map((c) => lean.commandWritten(c));
      return { written: sent.at(-1)!.written, replies: Promise.all(sent.map((c) => c.reply)) };
    }
    const pipeline = this.redis().pipeline();
    for (const [name, ...args] of commands) pipeline.call(String(name), ...args);
    const replies = execOrThrow(pipeline);
    return { written: replies.then(() => undefined), replies };
  }
}
