/**
 * The same storage contract on file:// and on s3:// against a real S3 HTTP endpoint (s3rver),
 * including a checkpoint larger than the multipart threshold written and verified through the
 * engine's checkpoint code.
 */
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { type CheckpointFiles, listCheckpoints, readCheckpoint, writeCheckpoint } from '@ddpm/engine';
import { FileStore, type ObjectStore, S3Store, openStore } from '@ddpm/storage';

import { type S3Endpoint, startS3rver } from './s3rver-support';

let s3: S3Endpoint;
let dir: string;
beforeAll(async () => {
  s3 = await startS3rver();
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ddpm-store-'));
});
afterAll(async () => {
  await s3.stop();
  await fs.rm(dir, { recursive: true, force: true });
});

const MIB = 1024 * 1024;

const stores: [string, () => ObjectStore][] = [
  ['file://', () => new FileStore(dir)],
  [
    's3://',
    () =>
      new S3Store({
        bucket: s3.bucket,
        prefix: 'runs',
        endpoint: s3.endpoint,
        credentials: s3.credentials,
        // Low thresholds so the test exercises multipart uploads without huge objects.
        multipartThreshold: 6 * MIB,
        partSize: 5 * MIB,
      }),
  ],
];

describe.each(stores)('the %s store', (_name, make) => {
  let store: ObjectStore;
  beforeAll(() => {
    store = make();
  });
  afterAll(() => store.close());

  it('puts, gets, lists by prefix, replaces and deletes objects', async () => {
    await store.put('c/a/x.bin', Uint8Array.from([1, 2, 3]));
    await store.put('c/a/y.bin', Uint8Array.from([4]));
    await store.put('c/b/z.bin', Uint8Array.from([5]));
    expect([...(await store.get('c/a/x.bin'))]).toEqual([1, 2, 3]);
    expect(await store.list('c/a/')).toEqual([
      { key: 'c/a/x.bin', size: 3 },
      { key: 'c/a/y.bin', size: 1 },
    ]);
    await store.put('c/a/x.bin', Uint8Array.from([9, 9]));
    expect([...(await store.get('c/a/x.bin'))]).toEqual([9, 9]);
    expect(await store.exists('c/a/x.bin')).toBe(true);
    await store.delete('c/a/x.bin');
    await store.delete('c/a/x.bin');
    expect(await store.exists('c/a/x.bin')).toBe(false);
    await expect(store.get('c/a/x.bin')).rejects.toMatchObject({ code: 'DDPM_STORAGE_NOT_FOUND' });
    await expect(store.put('../escape', new Uint8Array(1))).rejects.toMatchObject({ code: 'DDPM_STORAGE_BAD_KEY' });
  });

  it('stores a checkpoint larger than the multipart threshold and verifies it on read', async () => {
    const big = new Uint8Array(randomBytes(13 * MIB));
    const files: CheckpointFiles = {
      state: { version: 1, step: 7, reason: 'test', createdAt: new Date().toISOString() } as unknown as CheckpointFiles['state'],
      model: big,
      ema: big.subarray(0, 3 * MIB),
      optimizer: Uint8Array.from([1, 2, 3]),
    };
    const ref = await writeCheckpoint(store, 'ckpt', files);
    expect(ref.url).toBe(store.urlOf('ckpt/checkpoints/step-000000007/manifest.json'));
    expect((await listCheckpoints(store, 'ckpt')).map((r) => r.step)).toEqual([7]);
    const back = await readCheckpoint(store, ref);
    expect(Buffer.compare(Buffer.from(back.model), Buffer.from(big))).toBe(0);
    // A corrupted object is refused with the file named.
    await store.put('ckpt/checkpoints/step-000000007/optimizer.safetensors', Uint8Array.from([1, 2, 4]));
    await expect(readCheckpoint(store, ref)).rejects.toThrow(/optimizer.safetensors fails its checksum/);
  }, 60_000);
});

describe('openStore', () => {
  it('opens s3:// URLs with the endpoint from S3_ENDPOINT', async () => {
    const store = openStore(`s3://${s3.bucket}/a/b`, { S3_ENDPOINT: s3.endpoint }, { credentials: s3.credentials });
    expect(store.url).toBe(`s3://${s3.bucket}/a/b`);
    await store.put('k', Uint8Array.from([7]));
    expect([...(await store.get('k'))]).toEqual([7]);
    await store.close();
    expect(() => openStore('s3://Bad_Bucket/x')).toThrow('invalid S3 bucket name "Bad_Bucket"');
  });
});
