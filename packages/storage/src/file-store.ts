/**
 * `file://` storage: objects are files under a root directory. A write goes to a temporary file in
 * the same directory, is flushed, then renamed over the target, so readers never see a partial
 * object and a crash leaves at most a stray temporary file.
 */
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';

import { type ObjectInfo, type ObjectStore, storageError, checkKey } from './object-store';

const TEMP_MARKER = '.ddpm-tmp-';

export class FileStore implements ObjectStore {
  readonly url: string;

  constructor(readonly root: string) {
    this.root = path.resolve(root);
    this.url = pathToFileURL(this.root).href;
  }

  private pathOf(key: string): string {
    return path.join(this.root, ...checkKey(key).split('/'));
  }

  async put(key: string, body: Uint8Array): Promise<void> {
    const target = this.pathOf(key);
    await fs.mkdir(path.dirname(target), { recursive: true });
    const temp = `${target}${TEMP_MARKER}${process.pid}-${randomBytes(4).toString('hex')}`;
    try {
      const handle = await fs.open(temp, 'w');
      try {
        await handle.writeFile(body);
        await handle.sync();
      } finally {
        await handle.close();
      }
      await fs.rename(temp, target);
    } catch (err) {
      await fs.rm(temp, { force: true });
      throw storageError('DDPM_STORAGE_IO', `could not write ${this.urlOf(key)}: ${(err as Error).message}`, {
        cause: err,
      });
    }
  }

  async get(key: string): Promise<Uint8Array> {
    const file = this.pathOf(key); // a bad key is the caller's error, not an I/O one
    try {
      return new Uint8Array(await fs.readFile(file));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        throw storageError('DDPM_STORAGE_NOT_FOUND', `no object ${this.urlOf(key)}`);
      }
      throw storageError('DDPM_STORAGE_IO', `could not read ${this.urlOf(key)}: ${(err as Error).message}`, {
        cause: err,
      });
    }
  }

  async exists(key: string): Promise<boolean> {
    const file = this.pathOf(key);
    try {
      return (await fs.stat(file)).isFile();
    } catch {
      return false;
    }
  }

  async list(prefix: string): Promise<ObjectInfo[]> {
    return (await this.walk(prefix)).objects;
  }

  /**
   * Removes the temporary files that writes under `prefix` left when their process died between
   * creating and renaming them. Only for the owner of those keys: a write still under way there
   * would fail (and be tried again by a patient store).
   */
  async removeTemporaries(prefix: string): Promise<number> {
    const { temporaries } = await this.walk(prefix);
    await Promise.all(temporaries.map((file) => fs.rm(file, { force: true })));
    return temporaries.length;
  }

  private async walk(prefix: string): Promise<{ objects: ObjectInfo[]; temporaries: string[] }> {
    const out: ObjectInfo[] = [];
    const temporaries: string[] = [];
    const walk = async (dir: string, rel: string): Promise<void> => {
      let entries: import('node:fs').Dirent[];
      try {
        entries = await fs.readdir(dir, { withFileTypes: true });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
        throw storageError('DDPM_STORAGE_IO', `could not list ${dir}: ${(err as Error).message}`, { cause: err });
      }
      for (const entry of entries) {
        const key = rel === '' ? entry.name : `${rel}/${entry.name}`;
        if (entry.isDirectory()) {
          if (key.startsWith(prefix) || prefix.startsWith(`${key}/`)) await walk(path.join(dir, entry.name), key);
        } else if (entry.isFile() && key.startsWith(prefix)) {
          if (entry.name.includes(TEMP_MARKER)) {
            temporaries.push(path.join(dir, entry.name));
            continue;
          }
          const stat = await fs.stat(path.join(dir, entry.name)).catch(() => undefined);
          if (stat) out.push({ key, size: stat.size });
        }
      }
    };
    await walk(this.root, '');
    return { objects: out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0)), temporaries };
  }

  async delete(key: string): Promise<void> {
    await fs.rm(this.pathOf(key), { force: true });
  }

  urlOf(key: string): string {
    return key === '' ? this.url : `${this.url}/${checkKey(key)}`;
  }

  async close(): Promise<void> {}
}
