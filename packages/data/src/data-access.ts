/**
 * Which files a dataset may be read from, and how much of them. A library user or the CLI on its
 * own machine reads what it names (the default: no roots, no bound but the size caps); a worker's
 * job process is confined with {@link configureDataAccess} before it opens anything: every path a
 * dataset spec names must resolve (symlinks followed) inside one of the data roots, be a regular
 * file or a directory as expected, and stay under the size caps; gunzipped output is capped too;
 * reads stop when the job is cancelled. A refusal is `DDPM_DATA_REFUSED`, whose message names the
 * path: the worker logs it and tells the client only that the data is unavailable (a job's error
 * must not tell anyone which files exist on a worker).
 *
 * Datasets may also live in the object store (`store:NAME`, the key `datasets/NAME`), read through
 * the reader the job process configures, so users need no server paths at all.
 */
import { constants, promises as fs } from 'node:fs';
import * as path from 'node:path';
import { gunzip } from 'node:zlib';

import { datasetKey } from '@ddpm/storage/layout';

import { dataError } from './dataset';
import { isGzip } from './formats';
import { insideRoot } from './spec';

export interface DataAccess {
  /** Absolute folders every dataset path must lie in (after resolving symlinks); undefined: anywhere. */
  readonly roots?: readonly string[];
  /** Largest file read, bytes. */
  readonly maxFileBytes: number;
  /** Largest gunzipped content, bytes. */
  readonly maxDecodedBytes: number;
  /** Most image files of one folder dataset. */
  readonly maxFolderFiles: number;
  /** Reads stop when it aborts (the job's cancellation). */
  readonly signal?: AbortSignal;
  /** Reads `datasets/NAME` from the object store, for `store:NAME` specs; undefined: no store. */
  readonly readStoreObject?: (key: string, maxBytes: number) => Promise<Uint8Array>;
}

const GIB = 2 ** 30;
export const DEFAULT_DATA_ACCESS: DataAccess = {
  maxFileBytes: 2 * GIB,
  maxDecodedBytes: 2 * GIB,
  maxFolderFiles: 1_000_000,
};

let current: DataAccess = DEFAULT_DATA_ACCESS;

/**
 * Sets the process's data access (a job process, once, before it opens a dataset). Roots are
 * resolved now; a root that does not exist is left out (it can hold nothing).
 */
export async function configureDataAccess(access: Partial<DataAccess>): Promise<DataAccess> {
  const roots =
    access.roots === undefined
      ? undefined
      : (await Promise.all(access.roots.map((r) => fs.realpath(path.resolve(r)).catch(() => undefined)))).filter(
          (r): r is string => r !== undefined,
        );
  current = { ...DEFAULT_DATA_ACCESS, ...access, ...(roots !== undefined ? { roots } : {}) };
  return current;
}

export function dataAccess(): DataAccess {
  return current;
}

function refused(message: string): never {
  throw dataError('DDPM_DATA_REFUSED', message);
}

function checkAborted(access: DataAccess): void {
  if (access.signal?.aborted) throw dataError('DDPM_DATA_ABORTED', 'reading the dataset was stopped');
}

/**
 * The real path of `location` if it lies inside the data roots and is of the kind expected;
 * otherwise `DDPM_DATA_NOT_FOUND` (nothing there) or `DDPM_DATA_REFUSED` (outside, or not a
 * regular file or folder).
 */
export async function allowedPath(
  location: string,
  kind: 'file' | 'directory' | 'any',
  access: DataAccess = current,
): Promise<{ real: string; directory: boolean }> {
  checkAborted(access);
  if (!path.isAbsolute(location)) refused(`dataset path ${JSON.stringify(location)} is not absolute`);
  let real: string;
  try {
    real = await fs.realpath(location);
  } catch (err) {
    throw dataError(
      'DDPM_DATA_NOT_FOUND',
      `${location} does not exist (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`,
    );
  }
  if (access.roots !== undefined && !access.roots.some((root) => insideRoot(root, real))) {
    refused(
      `${location}${real !== location ? ` (${real})` : ''} is outside the data roots ${access.roots.join(', ') || '(none)'}`,
    );
  }
  let stat;
  try {
    stat = await fs.stat(real);
  } catch (err) {
    refused(`cannot inspect ${real}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  const directory = stat.isDirectory();
  if (!directory && !stat.isFile()) refused(`${real} is neither a regular file nor a folder`);
  if (kind === 'file' && directory) refused(`${real} is a folder, a file was expected`);
  if (kind === 'directory' && !directory) throw dataError('DDPM_DATA_INVALID', `${real} is not a directory`);
  return { real, directory };
}

/**
 * The bytes of a data file, checked against the roots and the size cap, read without following a
 * symlink swapped in after the check (O_NOFOLLOW on the resolved path) and stopping on cancel.
 */
export async function readDataFile(location: string, access: DataAccess = current): Promise<Buffer> {
  const { real } = await allowedPath(location, 'file', access);
  let handle: fs.FileHandle;
  try {
    handle = await fs.open(real, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (err) {
    throw dataError(
      'DDPM_DATA_NOT_FOUND',
      `cannot open ${real}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
    );
  }
  try {
    const stat = await handle.stat();
    if (!stat.isFile()) refused(`${real} is not a regular file`);
    if (stat.size > access.maxFileBytes)
      refused(`${real} is ${stat.size} bytes, over the data file cap of ${access.maxFileBytes}`);
    const out = Buffer.allocUnsafe(stat.size);
    const chunk = 8 * 2 ** 20;
    for (let offset = 0; offset < stat.size;) {
      checkAborted(access);
      const { bytesRead } = await handle.read(out, offset, Math.min(chunk, stat.size - offset), offset);
      if (bytesRead === 0) break;
      offset += bytesRead;
    }
    return out;
  } finally {
    await handle.close();
  }
}

/** Gunzips `bytes` when they are gzip (magic 1f 8b), capped at the decoded-size bound. */
export async function gunzipIfGzip(bytes: Buffer, name: string, access: DataAccess = current): Promise<Buffer> {
  if (!isGzip(bytes)) return bytes;
  return new Promise<Buffer>((resolve, reject) => {
    gunzip(bytes, { maxOutputLength: access.maxDecodedBytes }, (err, out) => {
      if (!err) return resolve(out);
      if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') {
        reject(
          dataError(
            'DDPM_DATA_REFUSED',
            `${name} decompresses to more than the cap of ${access.maxDecodedBytes} bytes`,
          ),
        );
      } else {
        reject(dataError('DDPM_DATA_INVALID', `${name} is a truncated or corrupt gzip file: ${err.message}`));
      }
    });
  });
}

/** An object of the store's `datasets/` prefix, through the configured reader. */
export async function readStoreDataset(name: string, access: DataAccess = current): Promise<Buffer> {
  checkAborted(access);
  if (access.readStoreObject === undefined)
    throw dataError('DDPM_DATA_NOT_FOUND', `store:${name} names the object store, and this process has none`);
  const bytes = await access.readStoreObject(datasetKey(name), access.maxFileBytes);
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
}
