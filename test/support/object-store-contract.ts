/**
 * The ObjectStore contract as one jest suite, run against every implementation: file:// (@ddpm/
 * storage's file-store.test.ts, and patient-store.test.ts around it) and s3:// against a real S3
 * endpoint (test/integration/storage.test.ts).
 */
import { type ObjectStore } from '@ddpm/storage';

/** Registers the contract's tests; `open` is called once per suite, after the implementation's setup. */
export function describeObjectStoreContract(name: string, open: () => ObjectStore): void {
  describe(`the ObjectStore contract on ${name}`, () => {
    let store: ObjectStore;
    beforeAll(() => {
      store = open();
    });
    afterAll(() => store.close());

    it('puts, gets, lists by prefix in key order, replaces and deletes objects', async () => {
      await store.put('c/b/z.bin', Uint8Array.from([5]));
      await store.put('c/a/y.bin', Uint8Array.from([4]));
      await store.put('c/a/x.bin', Uint8Array.from([1, 2, 3]));
      expect([...(await store.get('c/a/x.bin'))]).toEqual([1, 2, 3]);
      expect(await store.list('c/a/')).toEqual([
        { key: 'c/a/x.bin', size: 3 },
        { key: 'c/a/y.bin', size: 1 },
      ]);
      expect((await store.list('c/')).map((o) => o.key)).toEqual(['c/a/x.bin', 'c/a/y.bin', 'c/b/z.bin']);
      expect(await store.list('nothing/')).toEqual([]);
      await store.put('c/a/x.bin', Uint8Array.from([9, 9]));
      expect([...(await store.get('c/a/x.bin'))]).toEqual([9, 9]);
      expect(await store.exists('c/a/x.bin')).toBe(true);
      await store.delete('c/a/x.bin');
      await store.delete('c/a/x.bin');
      expect(await store.exists('c/a/x.bin')).toBe(false);
      await expect(store.get('c/a/x.bin')).rejects.toMatchObject({ code: 'DDPM_STORAGE_NOT_FOUND', kind: 'not-found' });
      expect(store.urlOf('c/b/z.bin')).toBe(`${store.url}/c/b/z.bin`);
    });

    it('stores empty and binary objects byte for byte', async () => {
      const bytes = Uint8Array.from({ length: 1000 }, (_, i) => (i * 131) % 256);
      await store.put('bin/all', bytes);
      await store.put('bin/empty', new Uint8Array(0));
      expect(Buffer.compare(Buffer.from(await store.get('bin/all')), Buffer.from(bytes))).toBe(0);
      expect((await store.get('bin/empty')).length).toBe(0);
    });

    it.each(['', '/abs', '../escape', 'a/../b', 'a//b', 'a\\b', 'a/./b', `long/${'k'.repeat(1100)}`])(
      'rejects the key %j',
      async (key) => {
        await expect(store.put(key, new Uint8Array(1))).rejects.toMatchObject({
          code: 'DDPM_STORAGE_BAD_KEY',
          kind: 'invalid',
        });
        await expect(store.get(key)).rejects.toMatchObject({ code: 'DDPM_STORAGE_BAD_KEY' });
        await expect(store.exists(key)).rejects.toMatchObject({ code: 'DDPM_STORAGE_BAD_KEY' });
        await expect(store.delete(key)).rejects.toMatchObject({ code: 'DDPM_STORAGE_BAD_KEY' });
      },
    );
  });
}
