/**
 * The data plane's keys (the hub's Redis, the ranks' own servers, the shared-memory files), every
 * one built here by a typed function and nowhere else. `ns` is one generation's namespace, which
 * the control plane hands out (`<prefix>:dp:<job>:g<generation>`); everything of the generation
 * lives under it and goes by TTL, by its readers, or with the generation.
 *
 *     <ns>:alive                       the generation's marker (refreshed; gone: the plane lost it)
 *     <ns>:abort                       why the generation ended early (a JSON abort record)
 *     <ns>:hb<rank>                    a rank's heartbeat; <ns>:left<rank> it left on purpose
 *     <ns>:s<step>:b<b>:c<o>:from<r>   rank r's contribution to owner o's chunk of bucket b
 *     <ns>:s<step>:b<b>:rs<o>          the list owner o waits on for those contributions
 *     <ns>:s<step>:b<b>:sum<o>         owner o's sum of its chunk; <ns>:s<step>:ag<rank> the list
 *                                      of sums (`bucket:owner`) announced to a rank
 *     <ns>:s<step>:<tag>:r<rank>       a rank's message of an all-gather; <...>:to<rank> its inbox
 *     <key>:n                          how many readers have read <key> (the last one deletes it)
 *     <ns>:shm-left                    ranks that left the shared-memory plane
 *     <ns>:relay:b<i> / :credit<rank> / :announce   a relay's batches, credits and announcements
 *     <ns>:eval<step>                  the namespace of an evaluation's gathers inside the generation
 *     <ns>:raw                         `ddpm bench allreduce`'s plain SET and GET beside the all-reduce
 *
 * Shared-memory files are named `ddpm-` + the key they stand for, with every character outside
 * `[A-Za-z0-9._-]` made `_`: `<ns>:p<parity>:<slot>` for values, `<ns>:shm-probe:r<rank>` for the
 * probe of the negotiation.
 */

/** The generation's own keys: its marker, its abort record, the ranks' heartbeats and departures. */
export function generationKeys(ns: string): {
  readonly alive: string;
  readonly abort: string;
  heartbeat(rank: number): string;
  left(rank: number): string;
} {
  return {
    alive: `${ns}:alive`,
    abort: `${ns}:abort`,
    heartbeat: (rank) => `${ns}:hb${rank}`,
    left: (rank) => `${ns}:left${rank}`,
  };
}

/** A namespace inside a generation's, for a collective of its own (an evaluation's gathers at `step`). */
export function evaluationNamespace(ns: string, step: number): string {
  return `${ns}:eval${step}`;
}

/** The value `ddpm bench allreduce` SETs and GETs to measure raw Redis beside the all-reduce. */
export function rawTransferKey(ns: string): string {
  return `${ns}:raw`;
}

/** Keys of one generation's all-reduce values and signals: the same names on every plane. */
export class StepKeys {
  constructor(private readonly ns: string) {}

  private key(step: number, rest: string): string {
    return `${this.ns}:s${step}:${rest}`;
  }

  contribution(step: number, bucket: number, owner: number, from: number): string {
    return this.key(step, `b${bucket}:c${owner}:from${from}`);
  }

  /** The list an owner waits on for the contributions to its chunk of `bucket`. */
  contributionsReady(step: number, bucket: number, owner: number): string {
    return this.key(step, `b${bucket}:rs${owner}`);
  }

  sum(step: number, bucket: number, owner: number): string {
    return this.key(step, `b${bucket}:sum${owner}`);
  }

  /** The list rank `rank` waits on for announced sums (`bucket:owner`). */
  sumsReady(step: number, rank: number): string {
    return this.key(step, `ag${rank}`);
  }

  /** Rank `rank`'s message of the all-gather `tag` at `step`. */
  message(step: number, tag: string, rank: number): string {
    return this.key(step, `${tag}:r${rank}`);
  }

  /** The list rank `rank` waits on for the senders of the all-gather `tag` at `step`. */
  inbox(step: number, tag: string, rank: number): string {
    return this.key(step, `${tag}:to${rank}`);
  }
}

/** How many readers have read `key`: the one that counts the last deletes both. */
export function readCountKey(key: string): string {
  return `${key}:n`;
}

/** Ranks that have left the shared-memory plane (the last one deletes the files). */
export function sharedMemoryLeftKey(ns: string): string {
  return `${ns}:shm-left`;
}

/** A relay's keys: its batches, each rank's credits, its announcements, and a pattern for all of them. */
export function relayKeys(ns: string): {
  batch(index: number): string;
  credit(rank: number): string;
  readonly announce: string;
  readonly pattern: string;
} {
  return {
    batch: (index) => `${ns}:relay:b${index}`,
    credit: (rank) => `${ns}:relay:credit${rank}`,
    announce: `${ns}:relay:announce`,
    pattern: `${ns}:relay:*`,
  };
}

/** Shared-memory files are named after their key with this prefix (and swept by it). */
const SHM_PREFIX = 'ddpm-';

/** The file name standing for `key` in a shared-memory directory. */
export function shmName(key: string): string {
  return `${SHM_PREFIX}${key.replace(/[^A-Za-z0-9._-]/g, '_')}`;
}

/** Whether `name` is a file of ours (of any generation) in a shared-memory directory. */
export function isSharedMemoryFile(name: string): boolean {
  return name.startsWith(SHM_PREFIX);
}

/** The name every file of generation `ns` begins with. */
export function shmGenerationPrefix(ns: string): string {
  return shmName(`${ns}:`);
}

/** The file of value slot `slot` at `step` (one per slot and step parity). */
export function shmValueName(ns: string, step: number, slot: string): string {
  return shmName(`${ns}:p${((step % 2) + 2) % 2}:${slot}`);
}

/** Rank `rank`'s probe file of the shared-memory negotiation. */
export function shmProbeName(ns: string, rank: number): string {
  return shmName(`${ns}:shm-probe:r${rank}`);
}

/** `bucket:owner`, as a sum is announced on a sums-ready list. */
export function announcement(bucket: number, owner: number): string {
  return `${bucket}:${owner}`;
}

/** `bucket:owner` as announced on a sums-ready list. */
export function parseAnnouncement(text: string): { bucket: number; owner: number } {
  const match = /^(\d+):(\d+)$/.exec(text);
  if (match === null)
    throw new Error(`internal error: a sums announcement is "bucket:owner", got ${JSON.stringify(text)}`);
  return { bucket: Number(match[1]), owner: Number(match[2]) };
}
