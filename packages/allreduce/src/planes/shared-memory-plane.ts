/**
 * Ranks on one host keep the values out of Redis, as NCCL's intra-node transport does: each value
 * goes to a file in a shared-memory directory (a tmpfs such as /dev/shm) before its ready signal,
 * and the hub carries only the signals.
 *
 * The files live as long as the generation and are rewritten in place, one per value slot and
 * step parity (a new file every step costs the tmpfs a fresh zeroed page per 4 KiB written;
 * docs/performance.md). A slot comes round again two steps later, and by then every reader has
 * read it: a rank writes step s + 2's values only after its all-reduce of step s + 1, which needed
 * every owner's step s + 1 sum, published only after that owner read all its step s + 1
 * contributions, which every rank wrote only after reading the step s sums. Each file starts with
 * its step, checked by the reader. The last rank to leave deletes the generation's files (a failed
 * generation's go with {@link removeSharedMemoryFiles}).
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';

import { type Redis } from 'ioredis';

import { bytesPerValue, type Transport } from '../codec';
import { collectiveError } from '../errors';
import { type PlaneContext, type ServerConnections } from './hub-plane';
import { announcement, isSharedMemoryFile, parseAnnouncement, shmGenerationPrefix, shmValueName } from '../data-keys';
import { type Batch, type PlaneName, type ValuePlane } from './plane';

/** A file of ours this old in the shared-memory directory belongs to no live group (keys live minutes). */
export const SHM_STALE_MS = 24 * 3600 * 1000;
/** Bytes before a value in its shared-memory file: the step it belongs to and its length (float64 each). */
const SHM_HEADER_BYTES = 16;

/**
 * The shared-memory space one all-reduce of `values` float32 values needs on a host holding
 * `ranksOnHost` ranks of a group of `worldSize` (each rank keeps its outgoing values of two steps),
 * what a caller of the collective's negotiation asks to be free.
 */
export function sharedMemoryBytes(
  values: number,
  worldSize: number,
  transport: Transport,
  ranksOnHost = worldSize,
): number {
  return 2 * ranksOnHost * (values * bytesPerValue(transport) + worldSize * SHM_HEADER_BYTES);
}

export async function sweepSharedMemory(dir: string, doomed: (name: string, ageMs: number) => boolean): Promise<void> {
  const now = Date.now();
  for (const name of await fs.readdir(dir)) {
    if (!isSharedMemoryFile(name)) continue;
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
  const mine = shmGenerationPrefix(namespace);
  await sweepSharedMemory(dir, (name) => name.startsWith(mine)).catch(() => undefined);
}

export class SharedMemoryPlane implements ValuePlane {
  readonly name: PlaneName = 'shared-memory';
  readonly ownChunkLocal = false;
  readonly readsInFlight = 1;
  private readonly waitScatter: Redis;
  private readonly waitGather: Redis;
  private pending: Batch;
  /** Open files by path: this rank's values (written) and its peers' (read). */
  private readonly files = new Map<string, Promise<fs.FileHandle>>();

  constructor(
    readonly dir: string,
    private readonly namespace: string,
    private readonly hub: ServerConnections,
    private readonly ctx: PlaneContext,
  ) {
    this.waitScatter = hub.open();
    this.waitGather = hub.open();
    this.pending = hub.writes();
  }

  /** The file of value `rest` of `step`: one per value slot and step parity (see the top of this file). */
  private filePath(step: number, rest: string): string {
    return path.join(this.dir, shmValueName(this.namespace, step, rest));
  }

  /** An open handle on a file, kept for the generation; `write` creates the file. */
  private file(file: string, write: boolean): Promise<fs.FileHandle> {
    let handle = this.files.get(file);
    if (handle === undefined) {
      handle = fs.open(file, write ? 'w' : 'r');
      this.files.set(file, handle);
      // A failed open is not kept: the next attempt tries again.
      handle.catch(() => this.files.delete(file));
    }
    return handle;
  }

  private async write(step: number, rest: string, bytes: Buffer): Promise<void> {
    const header = Buffer.alloc(SHM_HEADER_BYTES);
    header.writeDoubleLE(step, 0);
    header.writeDoubleLE(bytes.length, 8);
    const handle = await this.file(this.filePath(step, rest), true);
    let written = (await handle.writev([header, bytes], 0)).bytesWritten;
    if (written < header.length + bytes.length) {
      // A short write (not seen on tmpfs) is finished from where it stopped.
      const whole = Buffer.concat([header, bytes]);
      while (written < whole.length)
        written += (await handle.write(whole, written, whole.length - written, written)).bytesWritten;
    }
  }

  /**
   * Value `rest` of `step`, in a buffer kept for `slot` and reused at every step (the caller is
   * done with it before it reads into that slot again); null when the file is gone. A fresh buffer
   * per read is megabytes of new memory every step, and on VMs whose page faults are slow touching
   * it costs as much as the read (docs/performance.md).
   */
  private async read(step: number, rest: string, slot: string): Promise<Buffer | null> {
    const file = this.filePath(step, rest);
    let handle: fs.FileHandle;
    try {
      handle = await this.file(file, false);
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
    const buffer = this.ctx.readBuffer(slot, size);
    return (await readFully(buffer, size, SHM_HEADER_BYTES)) ? buffer.subarray(0, size) : null;
  }

  async contribute(step: number, bucket: number, owner: number, bytes: Buffer): Promise<void> {
    const { keys, rank, keyTtlSeconds: ttl } = this.ctx;
    await this.write(step, `b${bucket}:c${owner}:from${rank}`, bytes);
    const ready = keys.contributionsReady(step, bucket, owner);
    this.pending.add('RPUSH', ready, String(rank)).add('EXPIRE', ready, ttl);
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
    const { rank } = this.ctx;
    return Promise.all(from.map((r, i) => this.read(step, `b${bucket}:c${rank}:from${r}`, `take${i}`)));
  }

  async publishSum(step: number, bucket: number, bytes: Buffer): Promise<void> {
    const { keys, rank, worldSize, keyTtlSeconds: ttl } = this.ctx;
    await this.write(step, `b${bucket}:sum${rank}`, bytes);
    const announce = this.hub.writes();
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

  async readSum(step: number, bucket: number, owner: number, slot: string): Promise<Buffer> {
    const value = await this.read(step, `b${bucket}:sum${owner}`, slot);
    if (value === null)
      throw collectiveError(
        'DDPM_GROUP_LOST',
        `${this.filePath(step, `b${bucket}:sum${owner}`)} is gone (the shared-memory data plane lost it)`,
      );
    return value;
  }

  /** Closes the open files (before the last rank deletes them, or on close). */
  async closeFiles(): Promise<void> {
    for (const file of this.files.values()) await file.then((h) => h.close()).catch(() => undefined);
    this.files.clear();
  }

  close(): void {
    void this.closeFiles();
  }
}
