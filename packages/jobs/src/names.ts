/** Redis and storage naming shared by the API and the workers. */
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

export function runPrefixOf(jobId: string): string {
  return `runs/${jobId}`;
}

/** Storage key of a sample picture without its extension (`.png` and `.json` are written). */
export function sampleKeyBase(sampleId: string): string {
  return `samples/${sampleId}`;
}

/** The sample id of a train job's grid drawn at `step` during training (`sampleEvery`). */
export function progressGridName(jobId: string, step: number): string {
  return `${jobId}-step-${String(step).padStart(9, '0')}`;
}

/** The steps of a train job's grids drawn during training, from the names of its sample objects. */
export function progressGridStep(jobId: string, name: string): number | undefined {
  const m = /^(.+)-step-(\d{9})\.png$/.exec(name);
  return m && m[1] === jobId ? Number(m[2]) : undefined;
}

export function sampleKey(sampleId: string, extension: 'png' | 'json'): string {
  return `${sampleKeyBase(sampleId)}.${extension}`;
}

/** Redis key marking a job as cancelled (read by a worker that picks it up later). */
export function cancelKey(prefix: string, jobId: string): string {
  return `${prefix}:cancel:${jobId}`;
}

/** Redis pub/sub channel announcing cancellations to running workers. */
export function cancelChannel(prefix: string): string {
  return `${prefix}:cancel`;
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
