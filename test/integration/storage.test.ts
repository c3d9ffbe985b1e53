/**
 * The ObjectStore contract (packages/storage/src/test-support.ts; its file:// run is the unit
 * test) on s3:// against a real S3 HTTP endpoint (s3rver), and a checkpoint larger than the
 * multipart threshold written and verified through the engine's checkpoint code on both stores.
 */
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { type CheckpointFiles, listCheckpoints, readCheckpoint, writeCheckpoint } from '@ddpm/runs';
import { FileStore, type ObjectStore, S3Store, openStore } from '@ddpm/storage';

import { describeObjectStoreContract } from '../support/object-store-contract';

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

function s3Store(): S3Store {
  return new S3Store({
    bucket: s3.bucket,
    prefix: 'runs',
    endpoint: s3.endpoint,
    credentials: s3.credentials,
    // Low thresholds so the test exercises multipart uploads without huge objects.
    multipartThreshold: 6 * MIB,
    partSize: 5 * MIB,
  });
}

describeObjectStoreContract('s3:// (s3rver)', s3Store);

describe.each([
  ['file://', (): ObjectStore => new FileStore(dir)],
  ['s3://', s3Store],
] as [string, () => ObjectStore][])('checkpoints on %s', (_name, make) => {
  let store: ObjectStore;
  beforeAll(() => {
    store = make();
  });
  afterAll(() => store.close());

  it('stores a checkpoint larger than the multipart threshold and verifies it on read', async () => {
    const big = new Uint8Array(randomBytes(13 * MIB));
    const files: CheckpointFiles = {
      state: {
        version: 1,
        step: 7,
        reason: 'test',
        createdAt: new Date().toISOString(),
      } as unknown as CheckpointFiles['state'],
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
