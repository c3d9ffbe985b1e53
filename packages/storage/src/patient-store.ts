/**
 * A store that waits out outages: an operation that fails with an I/O error (`DDPM_STORAGE_IO`:
 * an S3 endpoint away, a volume remounted read-only, a full disk) is tried again with backoff
 * (0.5 s doubling to 8 s) for up to `patienceSeconds`, then the last error is thrown. Errors of
 * other kinds (a missing object, a bad key) are answered at once. A job process writes its
 * checkpoints through one, so a brief store outage pauses training at the write instead of
 * failing the job.
 */
import { hasCode } from '@ddpm/core';

import { type ObjectInfo, type ObjectStore } from './object-store';

export interface StoreWait {
  readonly operation: 'put' | 'get' | 'list' | 'delete';
  readonly key: string;
  /** Tries that failed so far. */
  readonly failures: number;
  /** Seconds since the first failure. */
  readonly waitedSeconds: number;
  readonly error: string;
}

export interface PatientStoreOptions {
  /** The longest an operation keeps being tried after its first failure, seconds (0: no retries). */
  readonly patienceSeconds: number;
  /** Told of each failure that will be tried again. */
  readonly onWait?: (wait: StoreWait) => void;
  /** Told when an operation succeeds after failures. */
  readonly onRecovered?: (wait: Omit<StoreWait, 'error'>) => void;
  /** Backoff between tries (for tests): the first, and the cap, ms. */
  readonly backoffMs?: { readonly first: number; readonly max: number };
}

export class PatientStore implements ObjectStore {
  readonly url: string;

  constructor(
    private readonly inner: ObjectStore,
    private readonly options: PatientStoreOptions,
  ) {
    if (!(options.patienceSeconds >= 0))
      throw new RangeError(`patienceSeconds must be ≥ 0, got ${options.patienceSeconds}`);
    this.url = inner.url;
  }

  private async patiently<T>(operation: StoreWait['operation'], key: string, fn: () => Promise<T>): Promise<T> {
    const { patienceSeconds, onWait, onRecovered, backoffMs = { first: 500, max: 8000 } } = this.options;
    let failures = 0;
    let firstFailure = 0;
    let delay = backoffMs.first;
    for (;;) {
      try {
        const value = await fn();
        if (failures > 0)
          onRecovered?.({ operation, key, failures, waitedSeconds: (Date.now() - firstFailure) / 1000 });
        return value;
      } catch (err) {
        if (!hasCode(err, 'DDPM_STORAGE_IO')) throw err;
        if (failures === 0) firstFailure = Date.now();
        failures += 1;
        const waited = Date.now() - firstFailure;
        if (waited + delay > patienceSeconds * 1000) throw err;
        onWait?.({ operation, key, failures, waitedSeconds: waited / 1000, error: (err as Error).message });
        await new Promise((resolve) => setTimeout(resolve, delay));
        delay = Math.min(2 * delay, backoffMs.max);
      }
    }
  }

  put(key: string, body: Uint8Array, options?: { contentType?: string }): Promise<void> {
    return this.patiently('put', key, () => this.inner.put(key, body, options));
  }

  get(key: string): Promise<Uint8Array> {
    return this.patiently('get', key, () => this.inner.get(key));
  }

  exists(key: string): Promise<boolean> {
    return this.inner.exists(key);
  }

  list(prefix: string): Promise<ObjectInfo[]> {
    return this.patiently('list', prefix, () => this.inner.list(prefix));
  }

  delete(key: string): Promise<void> {
    return this.patiently('delete', key, () => this.inner.delete(key));
  }

  async removeTemporaries(prefix: string): Promise<number> {
    const inner = this.inner;
    if (inner.removeTemporaries === undefined) return 0;
    return this.patiently('delete', prefix, () => inner.removeTemporaries!(prefix));
  }

  urlOf(key: string): string {
    return this.inner.urlOf(key);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
