/**
 * The storage interface every component uses (docs/architecture.md, "Storage"): flat keys with '/'
 * separators under a base URL. Writes are atomic: a reader sees a whole object or none.
 */
import { errorCodes } from '@ddpm/core';

/** Storage errors, each code declared once with its kind (see @ddpm/core): only I/O is worth a retry. */
export const storageError = errorCodes({
  DDPM_STORAGE_NOT_FOUND: 'not-found',
  DDPM_STORAGE_BAD_KEY: 'invalid',
  DDPM_STORAGE_BAD_URL: 'invalid',
  DDPM_STORAGE_IO: 'unavailable',
});
export type StorageErrorCode = Parameters<typeof storageError>[0];

export interface ObjectInfo {
  readonly key: string;
  readonly size: number;
}

export interface ObjectStore {
  /** The base URL, e.g. `file:///var/lib/ddpm` or `s3://bucket/prefix`. */
  readonly url: string;
  /** Writes an object atomically (replacing any previous one). */
  put(key: string, body: Uint8Array, options?: { contentType?: string }): Promise<void>;
  /** Reads a whole object; `DDPM_STORAGE_NOT_FOUND` if absent. */
  get(key: string): Promise<Uint8Array>;
  exists(key: string): Promise<boolean>;
  /** Objects whose key starts with `prefix`, sorted by key. */
  list(prefix: string): Promise<ObjectInfo[]>;
  /** Deletes an object; absent objects are not an error. */
  delete(key: string): Promise<void>;
  /**
   * Removes what interrupted writes under `prefix` left behind (a file store's temporary files;
   * stores whose writes leave nothing need not have it) and says how many. For the keys' owner.
   */
  removeTemporaries?(prefix: string): Promise<number>;
  /** A URL naming the object (or, for '', the store itself), for logs and API responses. */
  urlOf(key: string): string;
  close(): Promise<void>;
}

/** Rejects keys that could escape the store or confuse a backend, naming the problem. */
export function checkKey(key: string): string {
  if (typeof key !== 'string' || key.length === 0)
    throw storageError('DDPM_STORAGE_BAD_KEY', 'object key must be a non-empty string');
  if (key.length > 1024)
    throw storageError('DDPM_STORAGE_BAD_KEY', `object key is ${key.length} characters long; the limit is 1024`);
  if (key.startsWith('/') || key.includes('\\') || key.includes('\0')) {
    throw storageError(
      'DDPM_STORAGE_BAD_KEY',
      `object key ${JSON.stringify(key)} must be relative, without backslashes or NUL`,
    );
  }
  if (key.split('/').some((part) => part === '..' || part === '.' || part === '')) {
    throw storageError('DDPM_STORAGE_BAD_KEY', `object key ${JSON.stringify(key)} has an empty, "." or ".." segment`);
  }
  return key;
}

/** Joins key segments with '/'. */
export function joinKey(...parts: string[]): string {
  return parts.filter((p) => p !== '').join('/');
}
