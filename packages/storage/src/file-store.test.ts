import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { FileStore } from './file-store';
import { openStore } from './open-store';

let root: string;
beforeEach(async () => {
  root = await fs.mkdtemp(path.join(os.tmpdir(), 'ddpm-store-'));
});
afterEach(async () => {
  await fs.rm(root, { recursive: true, force: true });
});

describe('FileStore', () => {
  it('puts, gets, lists by prefix, and deletes objects', async () => {
    const store = new FileStore(root);
    await store.put('runs/a/x.bin', Uint8Array.from([1, 2, 3]));
    await store.put('runs/a/y.bin', Uint8Array.from([4]));
    await store.put('runs/b/z.bin', Uint8Array.from([5]));
    expect([...(await store.get('runs/a/x.bin'))]).toEqual([1, 2, 3]);
    expect(await store.list('runs/a/')).toEqual([
      { key: 'runs/a/x.bin', size: 3 },
      { key: 'runs/a/y.bin', size: 1 },
    ]);
    expect((await store.list('runs/')).map((o) => o.key)).toEqual(['runs/a/x.bin', 'runs/a/y.bin', 'runs/b/z.bin']);
    expect(await store.list('nothing/')).toEqual([]);
    await store.put('runs/a/x.bin', Uint8Array.from([9]));
    expect([...(await store.get('runs/a/x.bin'))]).toEqual([9]);
    await store.delete('runs/a/x.bin');
    await store.delete('runs/a/x.bin');
    expect(await store.exists('runs/a/x.bin')).toBe(false);
    await expect(store.get('runs/a/x.bin')).rejects.toMatchObject({ code: 'DDPM_STORAGE_NOT_FOUND' });
    expect(store.urlOf('runs/b/z.bin')).toBe(`file://${root}/runs/b/z.bin`);
  });

  it('never lists half-written temporary files', async () => {
    const store = new FileStore(root);
    await fs.mkdir(path.join(root, 'k'), { recursive: true });
    await fs.writeFile(path.join(root, 'k', 'obj.ddpm-tmp-123-abcd'), 'partial');
    expect(await store.list('k/')).toEqual([]);
  });

  it.each(['', '/abs', '../escape', 'a/../b', 'a//b', 'a\\b', 'a/./b'])('rejects the key %j', async (key) => {
    await expect(new FileStore(root).put(key, new Uint8Array(1))).rejects.toMatchObject({ code: 'DDPM_STORAGE_BAD_KEY' });
  });

  it('opens stores from URLs and paths, rejecting unknown schemes', () => {
    expect(openStore(`file://${root}`).url).toBe(`file://${root}`);
    expect(openStore(root).url).toBe(`file://${root}`);
    expect(() => openStore('ftp://host/x')).toThrow('unsupported storage URL "ftp://host/x"; use file:///path or s3://bucket/prefix');
    expect(() => openStore(' ')).toThrow(/storage URL is empty/);
  });
});
