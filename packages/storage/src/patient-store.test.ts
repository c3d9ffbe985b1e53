import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { FileStore } from './file-store';
import { type ObjectStore, storageError } from './object-store';
import { PatientStore, type StoreWait } from './patient-store';
import { describeObjectStoreContract } from '../../../test/support/object-store-contract';

let root: string;
beforeAll(async () => {
  root = await fs.mkdtemp(path.join(os.tmpdir(), 'ddpm-patient-'));
});
afterAll(async () => {
  await fs.rm(root, { recursive: true, force: true });
});

describeObjectStoreContract(
  'a patient file://',
  () => new PatientStore(new FileStore(path.join(root, 'contract')), { patienceSeconds: 1 }),
);

/** A file store whose writes fail with an I/O error while `down` is set. */
function flaky(): { store: ObjectStore; setDown(down: boolean): void; tries: () => number } {
  const inner = new FileStore(path.join(root, 'flaky'));
  let down = false;
  let tries = 0;
  const store: ObjectStore = {
    url: inner.url,
    put: async (key, body) => {
      tries += 1;
      if (down) throw storageError('DDPM_STORAGE_IO', `could not write ${key}: EROFS: read-only file system`);
      await inner.put(key, body);
    },
    get: (key) => inner.get(key),
    exists: (key) => inner.exists(key),
    list: (prefix) => inner.list(prefix),
    delete: (key) => inner.delete(key),
    urlOf: (key) => inner.urlOf(key),
    close: () => inner.close(),
  };
  return { store, setDown: (d) => (down = d), tries: () => tries };
}

describe('PatientStore', () => {
  const backoffMs = { first: 20, max: 40 };

  it('waits out an outage shorter than its patience, telling of each wait and of the recovery', async () => {
    const f = flaky();
    const waits: StoreWait[] = [];
    const recovered: unknown[] = [];
    const store = new PatientStore(f.store, {
      patienceSeconds: 5,
      backoffMs,
      onWait: (w) => waits.push(w),
      onRecovered: (r) => recovered.push(r),
    });
    f.setDown(true);
    setTimeout(() => f.setDown(false), 150);
    await store.put('a/b', new Uint8Array([1, 2, 3]));
    expect(Array.from(await store.get('a/b'))).toEqual([1, 2, 3]);
    expect(waits.length).toBeGreaterThanOrEqual(2);
    expect(waits[0]).toMatchObject({ operation: 'put', key: 'a/b', failures: 1 });
    expect(waits[0]!.error).toMatch(/EROFS/);
    expect(recovered).toEqual([expect.objectContaining({ operation: 'put', key: 'a/b', failures: waits.length })]);
  });

  it('throws the last I/O error once its patience is spent', async () => {
    const f = flaky();
    const store = new PatientStore(f.store, { patienceSeconds: 0.2, backoffMs });
    f.setDown(true);
    const started = Date.now();
    await expect(store.put('x', new Uint8Array(1))).rejects.toMatchObject({ code: 'DDPM_STORAGE_IO' });
    expect(Date.now() - started).toBeLessThan(1000);
    expect(f.tries()).toBeGreaterThan(2);
  });

  it('answers errors that no wait can cure at once (a missing object, a bad key)', async () => {
    const f = flaky();
    const store = new PatientStore(f.store, { patienceSeconds: 60, backoffMs });
    const started = Date.now();
    await expect(store.get('absent')).rejects.toMatchObject({ code: 'DDPM_STORAGE_NOT_FOUND' });
    await expect(store.put('../escape', new Uint8Array(1))).rejects.toMatchObject({ code: 'DDPM_STORAGE_BAD_KEY' });
    expect(Date.now() - started).toBeLessThan(500);
  });

  it('with patience 0, tries once', async () => {
    const f = flaky();
    f.setDown(true);
    await expect(new PatientStore(f.store, { patienceSeconds: 0 }).put('y', new Uint8Array(1))).rejects.toMatchObject({
      code: 'DDPM_STORAGE_IO',
    });
    expect(f.tries()).toBe(1);
  });
});
