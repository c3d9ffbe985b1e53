/**
 * The storage interface every component uses (../shared/DESIGN.md, "Storage"): flat keys with '/'
 * separators under a base URL. Writes are atomic: a reader sees a whole object or none.
 */
export type StorageErrorCode = 'DDPM_STORAGE_NOT_FOUND' | 'DDPM_STORAGE_BAD_KEY' | 'DDPM_STORAGE_BAD_URL' | 'DDPM_STORAGE_IO';

export class StorageError extends Error {
  readonly code: StorageErrorCode;

  constructor(code: StorageErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StorageError';
    this.code = code;
  }
}

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
  /** A URL naming the object (or, for '', the store itself), for logs and API responses. */
  urlOf(key: string): string;
  close(): Promise<void>;
}

/** Rejects keys that could escape the store or confuse a backend, naming the problem. */
export function checkKey(key: string): string {
  if (typeof key !== 'string' || key.length === 0) throw new StorageError('DDPM_STORAGE_BAD_KEY', 'object key must be a non-empty string');
  if (key.length > 1024) throw new StorageError('DDPM_STORAGE_BAD_KEY', `object key is ${key.length} characters long; the limit is 1024`);
  if (key.startsWith('/') || key.includes('\\') || key.includes('\0')) {
    throw new StorageError('DDPM_STORAGE_BAD_KEY', `object key ${JSON.stringify(key)} must be relative, without backslashes or NUL`);
  }
  if (key.split('/').some((part) => part === '..' || part === '.' || part === '')) {
    throw new StorageError('DDPM_STORAGE_BAD_KEY', `object key ${JSON.stringify(key)} has an empty, "." or ".." segment`);
  }
  return key;
}

/** Joins key segments with '/'. */
export function joinKey(...parts: string[]): string {
  return parts.filter((p) => p !== '').join('/');
}
