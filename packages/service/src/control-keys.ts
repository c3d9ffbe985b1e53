/**
 * The control plane's Redis keys (the queues' Redis), every one built here by a typed function
 * and nowhere else. `prefix` is the deployment's `DDPM_QUEUE_PREFIX` (BullMQ's own keys live
 * under it too).
 *
 *     <prefix>:idem:<job>              an Idempotency-Key's request hash, while the key is reserved
 *     <prefix>:tombstone:<job>         the view of a job cancelled before it ran
 *     <prefix>:cancel:<job>            a cancel asked for; <prefix>:cancel is its pub/sub channel
 *     <prefix>:slots                   the workers' slots by last beat (a sorted set)
 *     <prefix>:slot:<slot>             one slot's state; <prefix>:slot:<slot>:inbox its assignments
 *     <prefix>:dp:<job>:generation     a group job's generation counter (the write fence)
 *     <prefix>:dp:<job>:g<generation>  one generation's namespace on the data plane (@ddpm/allreduce
 *                                      builds its keys under it)
 */

export function idempotencyRecordKey(prefix: string, jobId: string): string {
  return `${prefix}:idem:${jobId}`;
}

export function tombstoneKey(prefix: string, jobId: string): string {
  return `${prefix}:tombstone:${jobId}`;
}

/** Marks a job as cancelled (read by a worker that picks it up later). */
export function cancelKey(prefix: string, jobId: string): string {
  return `${prefix}:cancel:${jobId}`;
}

/** The pub/sub channel announcing cancellations to running workers. */
export function cancelChannel(prefix: string): string {
  return `${prefix}:cancel`;
}

/** The sorted set of slots by their last heartbeat. */
export function slotsKey(prefix: string): string {
  return `${prefix}:slots`;
}

/** What every slot's key starts with (the slot scripts add the id; list with `<this>*`). */
export function slotKeyPrefix(prefix: string): string {
  return `${prefix}:slot:`;
}

export function slotKey(prefix: string, slotId: string): string {
  return `${slotKeyPrefix(prefix)}${slotId}`;
}

export function slotInboxKey(prefix: string, slotId: string): string {
  return `${slotKey(prefix, slotId)}:inbox`;
}

/** The slot id of a slot's state key; undefined for any other key (an inbox, say). */
export function slotIdOf(prefix: string, key: string): string | undefined {
  const start = slotKeyPrefix(prefix);
  if (!key.startsWith(start)) return undefined;
  const id = key.slice(start.length);
  return id === '' || id.includes(':') ? undefined : id;
}

/** A group job's generation counter: the newest generation owns the run's checkpoints. */
export function generationKey(prefix: string, jobId: string): string {
  return `${prefix}:dp:${jobId}:generation`;
}

/** One generation's key namespace on the data plane. */
export function generationNamespace(prefix: string, jobId: string, generation: number): string {
  return `${prefix}:dp:${jobId}:g${generation}`;
}
