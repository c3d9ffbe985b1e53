/**
 * Opens the store named by a URL (`DDPM_STORAGE_URL`): `file:///abs/dir`, a plain path, or
 * `s3://bucket/prefix` (endpoint from `S3_ENDPOINT`, credentials and region from the AWS
 * environment variables).
 */
import { fileURLToPath } from 'node:url';

import { FileStore } from './file-store';
import { type ObjectStore, storageError } from './object-store';
import { S3Store, type S3StoreOptions } from './s3-store';

export function openStore(
  url: string,
  env: NodeJS.ProcessEnv = process.env,
  s3?: Partial<S3StoreOptions>,
): ObjectStore {
  if (typeof url !== 'string' || url.trim() === '') {
    throw storageError('DDPM_STORAGE_BAD_URL', 'storage URL is empty; use file:///path or s3://bucket/prefix');
  }
  if (url.startsWith('file://')) {
    try {
      return new FileStore(fileURLToPath(url));
    } catch (err) {
      throw storageError('DDPM_STORAGE_BAD_URL', `invalid file URL ${JSON.stringify(url)}: ${(err as Error).message}`);
    }
  }
  if (url.startsWith('s3://')) {
    const rest = url.slice('s3://'.length);
    const slash = rest.indexOf('/');
    const bucket = slash < 0 ? rest : rest.slice(0, slash);
    const prefix = slash < 0 ? '' : rest.slice(slash + 1);
    const endpoint = env['S3_ENDPOINT'];
    return new S3Store({ bucket, prefix, ...(endpoint ? { endpoint } : {}), ...s3 });
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(url)) {
    throw storageError(
      'DDPM_STORAGE_BAD_URL',
      `unsupported storage URL ${JSON.stringify(url)}; use file:///path or s3://bucket/prefix`,
    );
  }
  return new FileStore(url);
}
