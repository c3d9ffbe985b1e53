/** Opens the store named by a URL (`DDPM_STORAGE_URL`): `file:///abs/dir`, a plain path, or s3. */
import { fileURLToPath } from 'node:url';

import { FileStore } from './file-store';
import { type ObjectStore, StorageError } from './object-store';

export function openStore(url: string): ObjectStore {
  if (typeof url !== 'string' || url.trim() === '') {
    throw new StorageError('DDPM_STORAGE_BAD_URL', 'storage URL is empty; use file:///path or s3://bucket/prefix');
  }
  if (url.startsWith('file://')) {
    try {
      return new FileStore(fileURLToPath(url));
    } catch (err) {
      throw new StorageError('DDPM_STORAGE_BAD_URL', `invalid file URL ${JSON.stringify(url)}: ${(err as Error).message}`);
    }
  }
  if (url.startsWith('s3://')) {
    throw new StorageError('DDPM_STORAGE_BAD_URL', `s3 storage is not available in this build (${url})`);
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(url)) {
    throw new StorageError('DDPM_STORAGE_BAD_URL', `unsupported storage URL ${JSON.stringify(url)}; use file:///path or s3://bucket/prefix`);
  }
  return new FileStore(url);
}
