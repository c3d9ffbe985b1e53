/** Queue names, job ids and request hashes shared by the API and the workers (keys: control-keys.ts, `@ddpm/storage/layout`). */
import { createHash, randomUUID } from 'node:crypto';

import { type JobType } from './schemas';

/** BullMQ queue name for a job type; the prefix separates deployments and tests. */
export function queueName(type: JobType): string {
  return type;
}

/** A new job id, or a deterministic one derived from an Idempotency-Key. */
export function jobIdFor(type: JobType, idempotencyKey?: string): string {
  if (idempotencyKey === undefined) return `${type}-${randomUUID()}`;
  return `${type}-k${createHash('sha256').update(`${type}\n${idempotencyKey}`).digest('hex').slice(0, 40)}`;
}

/** The job type encoded in a job id, or undefined for ids we never issue. */
export function jobTypeOf(jobId: string): JobType | undefined {
  const type = jobId.split('-', 1)[0];
  return type === 'train' || type === 'sample' || type === 'eval' ? type : undefined;
}

/** sha256 of a request with sorted keys, so equal requests hash equally. */
export function requestHash(request: unknown): string {
  const canonical = (value: unknown): unknown => {
    if (Array.isArray(value)) return value.map(canonical);
    if (value !== null && typeof value === 'object') {
      return Object.fromEntries(
        Object.keys(value)
          .sort()
          .map((k) => [k, canonical((value as Record<string, unknown>)[k])]),
      );
    }
    return value;
  };
  return createHash('sha256')
    .update(JSON.stringify(canonical(request)))
    .digest('hex');
}
