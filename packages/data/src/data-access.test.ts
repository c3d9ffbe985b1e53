import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { gzipSync } from 'node:zlib';

import sharp from 'sharp';

import { configureDataAccess, gunzipIfGzip, readDataFile } from './data-access';
import { listImages } from './image-folder';
import { openDataset } from './open-dataset';

let dir: string;
let root: string;
let outside: string;

function idxBytes(n: number, h: number, w: number): Buffer {
  const header = Buffer.alloc(16);
  header.writeUInt32BE(0x00000803, 0);
  header.writeUInt32BE(n, 4);
  header.writeUInt32BE(h, 8);
  header.writeUInt32BE(w, 12);
  return Buffer.concat([header, Buffer.alloc(n * h * w, 7)]);
}

beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ddpm-access-'));
  root = path.join(dir, 'root');
  outside = path.join(dir, 'outside');
  await fs.mkdir(path.join(root, 'images'), { recursive: true });
  await fs.mkdir(outside);
  await fs.writeFile(path.join(root, 'a.idx'), idxBytes(2, 4, 4));
  await fs.writeFile(path.join(outside, 'secret.idx'), idxBytes(2, 4, 4));
  await fs.symlink(path.join(outside, 'secret.idx'), path.join(root, 'link.idx'));
  const png = await sharp({ create: { width: 8, height: 8, channels: 3, background: { r: 9, g: 9, b: 9 } } })
    .png()
    .toBuffer();
  await fs.writeFile(path.join(root, 'images', 'a.png'), png);
  await fs.writeFile(path.join(outside, 'b.png'), png);
  await fs.symlink(path.join(outside, 'b.png'), path.join(root, 'images', 'b.png'));
  await fs.symlink(outside, path.join(root, 'images', 'sub'));
});
afterEach(async () => {
  await configureDataAccess({});
});
afterAll(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

describe('data access', () => {
  it('reads inside its roots and refuses outside them, symlinks resolved first', async () => {
    await configureDataAccess({ roots: [root] });
    expect((await openDataset(`idx:${path.join(root, 'a.idx')}`)).size).toBe(2);
    await expect(openDataset(`idx:${path.join(outside, 'secret.idx')}`)).rejects.toMatchObject({
      code: 'DDPM_DATA_REFUSED',
      message: expect.stringContaining('outside the data roots'),
    });
    await expect(openDataset(`idx:${path.join(root, 'link.idx')}`)).rejects.toMatchObject({
      code: 'DDPM_DATA_REFUSED',
    });
    await expect(openDataset(`idx:${path.join(root, '..', 'outside', 'secret.idx')}`)).rejects.toMatchObject({
      code: 'DDPM_DATA_REFUSED',
    });
    await expect(openDataset(`cifar10:${outside}`)).rejects.toMatchObject({ code: 'DDPM_DATA_REFUSED' });
    await expect(openDataset(`folder:${outside}`)).rejects.toMatchObject({ code: 'DDPM_DATA_REFUSED' });
  });

  it('does not follow links inside an image folder', async () => {
    await configureDataAccess({ roots: [root] });
    expect(await listImages(path.join(root, 'images'))).toEqual([path.join(root, 'images', 'a.png')]);
    expect((await openDataset(`folder:${path.join(root, 'images')}?size=8`)).size).toBe(1);
  });

  it('refuses what is not a regular file, and files over the cap', async () => {
    await configureDataAccess({ roots: ['/dev', root], maxFileBytes: 100 });
    await expect(openDataset('idx:/dev/null')).rejects.toMatchObject({
      code: 'DDPM_DATA_REFUSED',
      message: expect.stringContaining('neither a regular file'),
    });
    await expect(readDataFile(path.join(root, 'a.idx'))).resolves.toHaveLength(48);
    await fs.writeFile(path.join(root, 'big.idx'), idxBytes(10, 4, 4));
    await expect(readDataFile(path.join(root, 'big.idx'))).rejects.toMatchObject({
      code: 'DDPM_DATA_REFUSED',
      message: expect.stringContaining('over the data file cap of 100'),
    });
  });

  it('caps what a gzip file decompresses to', async () => {
    const access = await configureDataAccess({ roots: [root], maxDecodedBytes: 1 << 20 });
    const bomb = gzipSync(Buffer.alloc(64 << 20));
    expect(bomb.length).toBeLessThan(100_000);
    await expect(gunzipIfGzip(bomb, 'bomb.gz', access)).rejects.toMatchObject({
      code: 'DDPM_DATA_REFUSED',
      message: expect.stringContaining('decompresses to more than'),
    });
    await fs.writeFile(path.join(root, 'bomb.idx.gz'), bomb);
    await expect(openDataset(`idx:${path.join(root, 'bomb.idx.gz')}`)).rejects.toMatchObject({
      code: 'DDPM_DATA_REFUSED',
    });
  });

  it('stops reading when cancelled', async () => {
    const controller = new AbortController();
    controller.abort();
    await configureDataAccess({ roots: [root], signal: controller.signal });
    await expect(openDataset(`idx:${path.join(root, 'a.idx')}`)).rejects.toMatchObject({
      code: 'DDPM_DATA_ABORTED',
      kind: 'aborted',
    });
  });

  it('opens datasets from the object store by their content', async () => {
    const objects = new Map<string, Uint8Array>([
      ['datasets/plain', idxBytes(3, 4, 4)],
      ['datasets/gz', gzipSync(idxBytes(5, 4, 4))],
      ['datasets/cifar', new Uint8Array(2 * 3073)],
      ['datasets/junk', new Uint8Array([1, 2, 3])],
    ]);
    const asked: string[] = [];
    await configureDataAccess({
      roots: [],
      readStoreObject: async (key) => {
        asked.push(key);
        const body = objects.get(key);
        if (!body) throw Object.assign(new Error(`no ${key}`), { code: 'DDPM_DATA_NOT_FOUND', kind: 'not-found' });
        return body;
      },
    });
    expect((await openDataset('store:plain')).size).toBe(3);
    expect((await openDataset('store:datasets/gz')).size).toBe(5);
    const cifar = await openDataset('store:cifar');
    expect([cifar.size, cifar.channels, cifar.height]).toEqual([2, 3, 32]);
    await expect(openDataset('store:junk')).rejects.toMatchObject({
      code: 'DDPM_DATA_INVALID',
      message: 'store:junk is neither an IDX image file nor CIFAR-10 binary records',
    });
    expect(asked).toEqual(['datasets/plain', 'datasets/gz', 'datasets/cifar', 'datasets/junk']);
    await expect(openDataset('store:../x')).rejects.toMatchObject({ code: 'DDPM_DATA_SPEC' });
  });

  it('without a store reader, store datasets are not found', async () => {
    await expect(openDataset('store:plain')).rejects.toMatchObject({ code: 'DDPM_DATA_NOT_FOUND' });
  });
});
