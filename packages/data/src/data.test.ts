import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { gzipSync } from 'node:zlib';

import sharp from 'sharp';

import { openCifar10 } from './cifar10';
import { openIdx } from './idx';
import { DataLoader, toModelInput } from './loader';
import { proceduralShapes } from './procedural';
import { openDataset } from './open-dataset';
import { FASHION_MNIST_DIR, parseDatasetSpec, withAbsoluteLocation } from './spec';

let dir: string;
beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ddpm-data-'));
});
afterAll(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

function idxBytes(n: number, h: number, w: number, fill: (i: number) => number): Buffer {
  const header = Buffer.alloc(16);
  header.writeUInt32BE(0x00000803, 0);
  header.writeUInt32BE(n, 4);
  header.writeUInt32BE(h, 8);
  header.writeUInt32BE(w, 12);
  return Buffer.concat([header, Buffer.from(Array.from({ length: n * h * w }, (_, i) => fill(i)))]);
}

describe('IDX reader', () => {
  it('reads plain and gzipped files written here', async () => {
    const bytes = idxBytes(3, 2, 2, (i) => i * 10);
    await fs.writeFile(path.join(dir, 'a.idx'), bytes);
    await fs.writeFile(path.join(dir, 'a.idx.gz'), gzipSync(bytes));
    for (const file of ['a.idx', 'a.idx.gz']) {
      const ds = await openIdx(path.join(dir, file));
      expect([ds.size, ds.height, ds.width, ds.channels]).toEqual([3, 2, 2, 1]);
      expect([...(await ds.read([2, 0]))]).toEqual([80, 90, 100, 110, 0, 10, 20, 30]);
      await expect(ds.read([3])).rejects.toThrow(/index 3 is outside the 3 examples of idx:/);
    }
  });

  it('names the file and the problem for bad inputs', async () => {
    const bytes = idxBytes(3, 2, 2, () => 1);
    const truncated = path.join(dir, 'trunc.idx');
    await fs.writeFile(truncated, bytes.subarray(0, 20));
    await expect(openIdx(truncated)).rejects.toThrow(
      `${truncated} is truncated: the header declares 3 images of 2x2 (28 bytes) but it has 20`,
    );
    const labels = Buffer.alloc(8 + 3);
    labels.writeUInt32BE(0x00000801, 0);
    labels.writeUInt32BE(3, 4);
    await fs.writeFile(path.join(dir, 'labels.idx'), labels);
    await expect(openIdx(path.join(dir, 'labels.idx'))).rejects.toThrow(
      /has 1 dimensions; image files have 3 \(N, H, W\) — is this a label file\?/,
    );
    await fs.writeFile(path.join(dir, 'junk.idx'), Buffer.from('hello world, not idx'));
    await expect(openIdx(path.join(dir, 'junk.idx'))).rejects.toThrow(/is not an IDX file \(bad magic number\)/);
    await fs.writeFile(path.join(dir, 'bad.gz'), gzipSync(bytes).subarray(0, 15));
    await expect(openIdx(path.join(dir, 'bad.gz'))).rejects.toThrow(/bad.gz is a truncated or corrupt gzip file/);
    await expect(openIdx(path.join(dir, 'missing.idx'))).rejects.toThrow(/missing.idx does not exist \(ENOENT\)/);
  });

  const fashion = path.join(FASHION_MNIST_DIR, 't10k-images-idx3-ubyte.gz');
  it("reads the Debian package's Fashion-MNIST files when present", async () => {
    try {
      await fs.access(fashion);
    } catch {
      console.warn(`skipped: ${fashion} is absent (apt-get install dataset-fashion-mnist)`);
      return;
    }
    const test = await openDataset('fashion-mnist?split=test');
    const train = await openDataset('fashion-mnist');
    expect([test.size, test.height, test.width, test.channels]).toEqual([10_000, 28, 28, 1]);
    expect(train.size).toBe(60_000);
    const pixels = await train.read([0]);
    // Fashion-MNIST's images are dark backgrounds with a bright object in the middle.
    expect(pixels[0]).toBe(0);
    expect(Math.max(...pixels)).toBeGreaterThan(200);
  });
});

describe('CIFAR-10 binary reader', () => {
  it('reads records, turning planar RGB into HWC', async () => {
    const record = (label: number, r: number, g: number, b: number): Buffer =>
      Buffer.concat([Buffer.from([label]), Buffer.alloc(1024, r), Buffer.alloc(1024, g), Buffer.alloc(1024, b)]);
    const cifarDir = path.join(dir, 'cifar-10-batches-bin');
    await fs.mkdir(cifarDir);
    await fs.writeFile(
      path.join(cifarDir, 'test_batch.bin'),
      Buffer.concat([record(3, 1, 2, 3), record(5, 200, 100, 50)]),
    );
    const ds = await openCifar10(cifarDir, 'test');
    expect([ds.size, ds.height, ds.width, ds.channels]).toEqual([2, 32, 32, 3]);
    const px = await ds.read([1, 0]);
    expect([...px.subarray(0, 6)]).toEqual([200, 100, 50, 200, 100, 50]);
    expect([...px.subarray(3072, 3075)]).toEqual([1, 2, 3]);
    await expect(openCifar10(cifarDir, 'train')).rejects.toThrow(/CIFAR-10 train file .*data_batch_1.bin is missing/);
    await fs.writeFile(path.join(dir, 'short.bin'), Buffer.alloc(3000));
    await expect(openCifar10(path.join(dir, 'short.bin'))).rejects.toThrow(
      /short.bin is 3000 bytes, not a whole number of 3073-byte CIFAR-10 records/,
    );
  });
});

describe('image folder', () => {
  it('decodes PNG and JPEG recursively with centre crop and resize', async () => {
    const root = path.join(dir, 'images');
    await fs.mkdir(path.join(root, 'sub'), { recursive: true });
    // 40×20 image: left half red, right half blue; the centre crop keeps the middle 20×20.
    const wide = Buffer.alloc(40 * 20 * 3);
    for (let y = 0; y < 20; y++)
      for (let x = 0; x < 40; x++) wide.set(x < 20 ? [255, 0, 0] : [0, 0, 255], (y * 40 + x) * 3);
    await sharp(wide, { raw: { width: 40, height: 20, channels: 3 } })
      .png()
      .toFile(path.join(root, 'a.png'));
    await sharp({ create: { width: 16, height: 16, channels: 3, background: { r: 0, g: 255, b: 0 } } })
      .jpeg()
      .toFile(path.join(root, 'sub', 'b.JPG'));
    await fs.writeFile(path.join(root, 'notes.txt'), 'ignored');
    const ds = await openDataset(`folder:${root}?size=8&channels=3`);
    expect([ds.size, ds.height, ds.width, ds.channels]).toEqual([2, 8, 8, 3]);
    const px = await ds.read([0, 1]);
    expect([...px.subarray(0, 3)]).toEqual([255, 0, 0]); // left edge of the crop: red
    expect([...px.subarray(7 * 3, 7 * 3 + 3)]).toEqual([0, 0, 255]); // right edge: blue
    expect(px[192 + 1]).toBeGreaterThan(240); // the JPEG is green
  });

  it('reports empty folders and undecodable files by name', async () => {
    const empty = path.join(dir, 'empty');
    await fs.mkdir(empty);
    await expect(openDataset(`folder:${empty}`)).rejects.toThrow(
      `image folder ${empty} contains no .png, .jpg or .jpeg files`,
    );
    const broken = path.join(dir, 'broken');
    await fs.mkdir(broken);
    await fs.writeFile(path.join(broken, 'x.png'), 'not a png');
    const ds = await openDataset(`folder:${broken}?size=8&channels=1`);
    await expect(ds.read([0])).rejects.toThrow(/cannot decode image .*x.png/);
    await expect(openDataset(`folder:${path.join(dir, 'nope')}`)).rejects.toThrow(/nope does not exist \(ENOENT\)/);
  });
});

describe('procedural dataset and specs', () => {
  it('draws the same image for the same (seed, index) and different ones otherwise', async () => {
    const a = proceduralShapes({ size: 10, seed: 1 });
    const b = proceduralShapes({ size: 10, seed: 1 });
    const c = proceduralShapes({ size: 10, seed: 2 });
    expect([...(await a.read([4]))]).toEqual([...(await b.read([4]))]);
    expect([...(await a.read([4]))]).not.toEqual([...(await a.read([5]))]);
    expect([...(await a.read([4]))]).not.toEqual([...(await c.read([4]))]);
  });

  it.each([
    ['', 'dataset spec is empty'],
    [
      'imagenet:/x',
      'unknown dataset kind "imagenet" in "imagenet:/x"; expected one of fashion-mnist, mnist, idx, cifar10, folder, procedural',
    ],
    ['idx', 'dataset idx needs a location, e.g. idx:/path'],
    ['fashion-mnist?split=valid', 'split must be train or test, got "valid"'],
    ['procedural:shapes?size=-3', 'dataset option size must be an integer from 1 to 2147483647, got "-3"'],
    ['procedural:circles', 'unknown procedural dataset "circles"; the one available is "shapes"'],
    ['folder:/x?channels=2', 'channels must be 1 or 3, got 2'],
    ['fashion-mnist?split=%E0%A4%A', 'dataset option split has a malformed %-escape: "%E0%A4%A"'],
    [
      'procedural:shapes?colour=red',
      'dataset procedural has no option "colour"; it takes size, imageSize, channels, seed',
    ],
    ['folder:/x?size', 'dataset option "size" must be key=value'],
  ])('rejects %j without touching a file', async (spec, message) => {
    expect(() => parseDatasetSpec(spec)).toThrow(message);
    await expect(openDataset(spec)).rejects.toMatchObject({ code: 'DDPM_DATA_SPEC', kind: 'invalid' });
  });

  it('parses specs into typed options, the model filling what is left out', () => {
    expect(parseDatasetSpec('fashion-mnist?split=test')).toEqual({
      kind: 'fashion-mnist',
      dir: FASHION_MNIST_DIR,
      split: 'test',
    });
    expect(parseDatasetSpec('procedural:shapes?size=16&channels=1')).toEqual({
      kind: 'procedural',
      name: 'shapes',
      size: 16,
      channels: 1,
      seed: 0,
    });
    expect(parseDatasetSpec('folder:/data/x%20y?size=64')).toEqual({ kind: 'folder', dir: '/data/x%20y', size: 64 });
    expect(parseDatasetSpec('cifar10:/data/c')).toEqual({ kind: 'cifar10', location: '/data/c', split: 'train' });
  });

  it("makes a command line's relative locations absolute against its working directory, leaving the rest as written", () => {
    expect(withAbsoluteLocation('folder:imgs?size=64', '/home/u/work')).toBe('folder:/home/u/work/imgs?size=64');
    expect(withAbsoluteLocation('cifar10:../c?split=test', '/home/u/work')).toBe('cifar10:/home/u/c?split=test');
    expect(withAbsoluteLocation('idx:./train.idx.gz', '/d')).toBe('idx:/d/train.idx.gz');
    expect(withAbsoluteLocation('mnist:m', '/d')).toBe('mnist:/d/m');
    for (const unchanged of [
      'folder:/data/x?size=64',
      'fashion-mnist?split=test',
      'procedural:shapes?size=16',
      'store:my-set',
    ]) {
      expect(withAbsoluteLocation(unchanged, '/d')).toBe(unchanged);
    }
    expect(() => withAbsoluteLocation('imagenet:x', '/d')).toThrow('unknown dataset kind "imagenet"');
  });
});

describe('DataLoader', () => {
  const ds = proceduralShapes({ size: 10, imageSize: 8, channels: 1, seed: 3 });

  it('skips a batch exactly as reading it would advance, without reading', async () => {
    const read = new DataLoader(ds, { batchSize: 3, seed: 4, imageSize: 8, channels: 1 });
    const skipping = new DataLoader(ds, { batchSize: 3, seed: 4, imageSize: 8, channels: 1 });
    for (let i = 0; i < 5; i++) {
      const a = await read.next();
      expect([...skipping.skip().indices]).toEqual([...a.indices]);
    }
    expect(skipping.state()).toEqual(read.state());
    expect([...(await skipping.next()).pixels]).toEqual([...(await read.next()).pixels]);
  });

  it('visits every example once per epoch in a seeded order, and resumes exactly from its state', async () => {
    const loader = new DataLoader(ds, { batchSize: 4, seed: 9, imageSize: 8, channels: 1 });
    const seen: number[] = [];
    for (let i = 0; i < 5; i++) seen.push(...(await loader.next()).indices);
    expect([...seen.slice(0, 10)].sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect([...seen.slice(10, 20)].sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(seen.slice(0, 10)).not.toEqual(seen.slice(10, 20));
    // Stop after 2 batches, restore, continue: identical batches to the straight run.
    const a = new DataLoader(ds, { batchSize: 4, seed: 9, imageSize: 8, channels: 1 });
    await a.next();
    await a.next();
    const state = JSON.parse(JSON.stringify(a.state()));
    const b = new DataLoader(ds, { batchSize: 4, seed: 9, imageSize: 8, channels: 1, state });
    for (let i = 0; i < 3; i++) {
      const [x, y] = [await a.next(), await b.next()];
      expect([...y.indices]).toEqual([...x.indices]);
      expect([...y.pixels]).toEqual([...x.pixels]);
    }
  });

  it('scales to [-1, 1], pads centrally with -1, and flips horizontally', () => {
    const raw = Uint8Array.from([0, 255, 51, 102]); // one 2×2 image
    const padded = toModelInput(raw, 1, { height: 2, width: 2, channels: 1 }, 4);
    const [a, b] = [51 / 127.5 - 1, 102 / 127.5 - 1];
    const expected = [-1, -1, -1, -1, -1, -1, 1, -1, -1, a, b, -1, -1, -1, -1, -1];
    expected.forEach((v, i) => expect(padded[i]).toBeCloseTo(v, 6));
    const flipped = toModelInput(raw, 1, { height: 2, width: 2, channels: 1 }, 2, [true]);
    [1, -1, b, a].forEach((v, i) => expect(flipped[i]).toBeCloseTo(v, 6));
  });

  it('rejects images larger than the model and channel mismatches', () => {
    expect(() => new DataLoader(ds, { batchSize: 2, seed: 1, imageSize: 4, channels: 1 })).toThrow(
      /has 8x8 images but the model takes 4x4/,
    );
    expect(() => new DataLoader(ds, { batchSize: 2, seed: 1, imageSize: 8, channels: 3 })).toThrow(
      /has 1 channel\(s\) but the model takes 3/,
    );
    expect(() => new DataLoader(ds, { batchSize: 0, seed: 1, imageSize: 8, channels: 1 })).toThrow(
      'batch size must be a positive integer, got 0',
    );
  });
});
