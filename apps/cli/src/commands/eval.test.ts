/**
 * `ddpm fid` and `ddpm eval` on real Fashion-MNIST (Debian's dataset-fashion-mnist): a folder of
 * 28 × 28 PNGs goes through exactly the preprocessing of the dataset itself, `.npz` statistics
 * give the same distance as the folder they were saved from, and a local run's report names its
 * distance after the extractor.
 */
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { initBackend } from '@ddpm/kernels';
import { openDataset, readForModel } from '@ddpm/data';
import { FMNIST_CNN_WASM_SHA256, FmnistCnn, extractFeatures } from '@ddpm/eval/extractors';

import { sharedFmnistCnnWeights } from '../../../../test/support/extractors';
import { statisticsFromNpz, writeNpz } from '@ddpm/eval';
import { pretrainedManifest } from '@ddpm/pretrained';
import sharp from 'sharp';

import { runCaptured as run } from '../../../../test/support/cli';

jest.setTimeout(300_000);

let dir: string;
const cache = (): string => path.join(dir, 'cache');

/** Test images `from …` as 28 × 28 grey PNGs in `folder`. */
async function writePngs(folder: string, from: number, count: number): Promise<void> {
  const test = await openDataset('fashion-mnist:?split=test');
  await fs.mkdir(folder, { recursive: true });
  const pixels = await test.read(Array.from({ length: count }, (_, i) => from + i));
  for (let i = 0; i < count; i++) {
    await sharp(Buffer.from(pixels.subarray(i * 784, (i + 1) * 784)), { raw: { width: 28, height: 28, channels: 1 } })
      .png()
      .toFile(path.join(folder, `${String(i).padStart(4, '0')}.png`));
  }
}

beforeAll(async () => {
  process.env['DDPM_BACKEND'] = 'wasm';
  await initBackend({ backend: 'wasm' });
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ddpm-cli-eval-'));
  await writePngs(path.join(dir, 'a'), 0, 200);
  await writePngs(path.join(dir, 'b'), 5000, 200);
}, 120_000);
afterAll(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

describe('ddpm fid', () => {
  it('compares two folders, and a saved .npz gives the same distance as its folder', async () => {
    const a = path.join(dir, 'a');
    const b = path.join(dir, 'b');
    // The extractor's weights from an earlier test (or trained now): training by the recipe inside
    // a run is the Fashion-MNIST learning test's, the recipe itself e2e/fmnist-cnn.test.ts's.
    await fs.mkdir(path.join(cache(), 'extractors'), { recursive: true });
    await fs.writeFile(path.join(cache(), 'extractors', 'fmnist_cnn-v1.safetensors'), await sharedFmnistCnnWeights());
    const first = await run('fid', a, b, '--json', '--cache', cache());
    expect(first.status).toBe(0);
    const result = JSON.parse(first.stdout);
    expect(result.fd_fmnist_cnn).toBeGreaterThan(0);
    expect(result).not.toHaveProperty('fid');
    expect(result.extractor).toMatchObject({ name: 'fmnist_cnn', weightsSha256: FMNIST_CNN_WASM_SHA256 });
    expect(result.a).toContain('200 images, 28 x 28 padded to 32 x 32');
    expect(first.stderr).not.toContain('training the fmnist_cnn extractor'); // the cache

    // Relative paths are the working directory's, as in every command line tool.
    const npz = path.join(dir, 'a.npz');
    const cwd = process.cwd();
    try {
      process.chdir(dir);
      const saved = await run('fid', '--save-stats', 'a', 'a.npz', '--cache', 'cache');
      expect([saved.status, saved.stderr]).toEqual([0, expect.stringContaining(`wrote ${npz}`)]);
    } finally {
      process.chdir(cwd);
    }
    const viaNpz = await run('fid', npz, b, '--cache', cache());
    expect(viaNpz.status).toBe(0);
    expect(viaNpz.stdout).toBe(`fd_fmnist_cnn: ${result.fd_fmnist_cnn}\n`);
    expect(viaNpz.stderr).not.toContain('training the fmnist_cnn extractor'); // the cache

    // The folder's PNGs went through exactly the data loader's preprocessing: the same statistics
    // as the dataset's own images.
    const saved = statisticsFromNpz(new Uint8Array(await fs.readFile(npz)));
    const extractor = FmnistCnn.fromWeights(
      new Uint8Array(await fs.readFile(path.join(cache(), 'extractors', 'fmnist_cnn-v1.safetensors'))),
    );
    const test = await openDataset('fashion-mnist:?split=test');
    const direct = await extractFeatures(
      extractor,
      200,
      (start, n) =>
        readForModel(
          test,
          Array.from({ length: n }, (_, i) => start + i),
          32,
        ),
      { batch: 250 },
    );
    extractor.dispose();
    expect(saved.mean).toEqual(direct.statistics.mean);
    expect(saved.count).toBe(200);
  });

  it('refuses images of another size and paths that are neither a folder nor an .npz, naming them', async () => {
    const odd = path.join(dir, 'odd');
    await fs.mkdir(odd);
    await sharp(Buffer.alloc(20 * 20, 128), { raw: { width: 20, height: 20, channels: 1 } })
      .png()
      .toFile(path.join(odd, 'x.png'));
    const refused = await run('fid', odd, path.join(dir, 'a'), '--cache', cache());
    expect(refused.status).toBe(2);
    expect(refused.stderr).toMatch(
      /x\.png is 20 x 20; fmnist_cnn takes 32 x 32 images \(or 28 x 28, padded as Fashion-MNIST is\)/,
    );
    const missing = await run('fid', path.join(dir, 'nope'), path.join(dir, 'a'), '--cache', cache());
    expect(missing.status).toBe(2);
    expect(missing.stderr).toContain('does not exist (expected an image folder or an .npz file)');
    expect((await run('fid', path.join(dir, 'a'))).stderr).toContain('expected two paths, got 1');
  });
});

describe('ddpm fid --extractor inception_fid', () => {
  it('needs the converted weights in the cache, naming where and how to get them', async () => {
    const folder = path.join(dir, 'rgb');
    await fs.mkdir(folder);
    await sharp(Buffer.alloc(16 * 16 * 3, 77), { raw: { width: 16, height: 16, channels: 3 } })
      .png()
      .toFile(path.join(folder, '0.png'));
    const missing = await run(
      'fid',
      folder,
      folder,
      '--extractor',
      'inception_fid',
      '--cache',
      path.join(dir, 'inception-cache'),
    );
    expect(missing.status).toBe(1);
    expect(missing.stderr).toMatch(
      /no FID Inception weights at .*extractors\/inception_fid.safetensors: download pytorch-fid's pt_inception-2015-12-05-6726825d.pth, convert it with scripts\/convert-fid-inception.py/,
    );
  });
});

describe('ddpm eval', () => {
  it('reports the metrics of a local run under the extractor’s name, bits/dim over the data’s 28 x 28', async () => {
    const out = path.join(dir, 'run');
    const trained = await run(
      'train',
      '--out',
      out,
      '--dataset',
      'fashion-mnist:',
      '--preset',
      'micro32',
      '--steps',
      '2',
      '--batch',
      '4',
      '--checkpoint-every',
      '2',
      '--sample-count',
      '1',
      '--sample-steps',
      '1',
    );
    expect(trained.status).toBe(0);
    const report = path.join(dir, 'report.json');
    const evaluated = await run(
      'eval',
      '--checkpoint',
      out,
      '--metrics',
      'fd,nll',
      '--count',
      '24',
      '--sampler',
      'ddim',
      '--steps',
      '2',
      '--reference-count',
      '200',
      '--reference-split',
      'test',
      '--nll-images',
      '2',
      '--cache',
      cache(),
      '--out',
      report,
    );
    expect(evaluated.status).toBe(0);
    const printed = JSON.parse(evaluated.stdout);
    expect(JSON.parse(await fs.readFile(report, 'utf8'))).toEqual(printed);
    expect(Object.keys(printed.metrics).sort()).toEqual([
      'bits_per_dim',
      'fd_fmnist_cnn',
      'pixel_background',
      'pixel_mean',
      'pixel_saturated',
    ]);
    // Pixels of the 24 samples and of the 200 reference images, both at the model's 32 x 32 (Fashion-MNIST's padding is black).
    expect(printed.pixels.samples).toMatchObject({
      values: 24 * 32 * 32,
      mean: printed.metrics.pixel_mean,
      background: printed.metrics.pixel_background,
      saturated: printed.metrics.pixel_saturated,
    });
    expect(printed.pixels.reference).toMatchObject({ images: 200, values: 200 * 32 * 32 });
    expect(printed.pixels.reference.mean).toBeGreaterThan(0.15);
    expect(printed.pixels.reference.mean).toBeLessThan(0.3);
    expect(printed.pixels.reference.background).toBeGreaterThan(0.5);
    expect(printed).toMatchObject({
      checkpoint: { step: 2 },
      ema: true,
      samples: { count: 24 },
      reference: { split: 'test', count: 200 },
      nll: { dataDims: '28 x 28 x 1 (model 32 x 32 x 1)' },
    });
    expect(printed).not.toHaveProperty('trainJobId');
    // Published-style statistics (mu, sigma only) from the store instead of the dataset's.
    await fs.mkdir(path.join(cache(), 'ref'), { recursive: true });
    await fs.writeFile(
      path.join(cache(), 'ref', 'b.npz'),
      writeNpz({
        mu: { shape: [128], data: new Float64Array(128) },
        sigma: { shape: [128, 128], data: Float64Array.from({ length: 128 * 128 }, (_, i) => (i % 129 === 0 ? 1 : 0)) },
      }),
    );
    const imported = await run(
      'eval',
      '--checkpoint',
      out,
      '--metrics',
      'fd',
      '--count',
      '24',
      '--sampler',
      'ddim',
      '--steps',
      '2',
      '--reference-statistics',
      'ref/b.npz',
      '--cache',
      cache(),
    );
    expect(imported.status).toBe(0);
    expect(JSON.parse(imported.stdout).reference).toMatchObject({ dataset: 'imported statistics ref/b.npz', count: 0 });
    // Imported statistics come without images: the samples' pixels alone.
    expect(Object.keys(JSON.parse(imported.stdout).pixels)).toEqual(['samples']);
    const noFeatures = await run(
      'eval',
      '--checkpoint',
      out,
      '--metrics',
      'kid',
      '--count',
      '24',
      '--sampler',
      'ddim',
      '--steps',
      '2',
      '--reference-statistics',
      'ref/b.npz',
      '--cache',
      cache(),
    );
    expect(noFeatures.status).toBe(1);
    expect(noFeatures.stderr).toMatch(/kid needs the reference's features, and .*ref\/b.npz has only mu and sigma/);

    // Table 4's series on a short schedule (all T terms of the bound): CSV and plot beside the run.
    const short = path.join(dir, 'short');
    expect(
      (
        await run(
          'train',
          '--out',
          short,
          '--dataset',
          'fashion-mnist:',
          '--preset',
          'micro32',
          '--timesteps',
          '50',
          '--steps',
          '1',
          '--batch',
          '2',
          '--checkpoint-every',
          '1',
        )
      ).status,
    ).toBe(0);
    const rd = await run('eval', '--checkpoint', short, '--metrics', 'rd', '--nll-images', '2', '--cache', cache());
    expect(rd.status).toBe(0);
    const table = JSON.parse(rd.stdout).rateDistortion;
    // Table 4's order: all reverse steps first, then nine tenths, ….
    expect(table.rows.map((r: { reverseSteps: number }) => r.reverseSteps)).toEqual([
      50, 45, 40, 35, 30, 25, 20, 15, 10, 5,
    ]);
    // Bits only accumulate as the receiver gets more latents; per data dimension (28 x 28) more than per model dimension.
    for (let i = 1; i < table.rows.length; i++)
      expect(table.rows[i].rateBitsPerDim).toBeLessThanOrEqual(table.rows[i - 1].rateBitsPerDim);
    for (const r of table.rows) expect(r.rateBitsPerDim).toBeCloseTo((r.rateBitsPerModelDim * 1024) / 784, 10);
    const csv = (await fs.readFile(new URL(table.csv), 'utf8')).trim().split('\n');
    expect(csv[0]).toBe('reverse_steps,t,rate_bits_per_dim,rate_bits_per_model_dim,distortion_rmse_0_255');
    expect(csv).toHaveLength(11);
    expect((await sharp(await fs.readFile(new URL(table.plot))).metadata()).format).toBe('png');

    const bad = await run('eval', '--checkpoint', out, '--metrics', 'fid');
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/metrics/);
  });

  it('evaluates a shipped model by name, and refuses a name it does not ship or a second model', async () => {
    const shipped = pretrainedManifest('fashion-mnist-cpu');
    const evaluated = await run(
      'eval',
      '--pretrained',
      'fashion-mnist-cpu',
      '--metrics',
      'fd',
      '--count',
      '16',
      '--sampler',
      'ddim',
      '--steps',
      '2',
      '--reference-count',
      '200',
      '--reference-split',
      'test',
      '--cache',
      cache(),
    );
    expect(evaluated.status).toBe(0);
    const printed = JSON.parse(evaluated.stdout);
    expect(printed).toMatchObject({
      pretrained: 'fashion-mnist-cpu',
      checkpoint: { step: shipped.step },
      ema: true,
      samples: { count: 16 },
    });
    expect(printed.checkpoint.url).toMatch(/fashion-mnist-cpu/);
    expect(printed.metrics.fd_fmnist_cnn).toBeGreaterThan(0);
    const unknown = await run('eval', '--pretrained', 'cifar10-hours', '--metrics', 'fd');
    expect(unknown.status).toBe(2);
    expect(unknown.stderr).toMatch(/--pretrained must be one of fashion-mnist-cpu, got "cifar10-hours"/);
    const both = await run(
      'eval',
      '--pretrained',
      'fashion-mnist-cpu',
      '--checkpoint',
      path.join(dir, 'run'),
      '--metrics',
      'fd',
    );
    expect(both.status).toBe(2);
    expect(both.stderr).toMatch(/give --checkpoint DIR \(a run\) or --pretrained NAME \(a shipped model\)/);
    const raw = await run(
      'eval',
      '--pretrained',
      'fashion-mnist-cpu',
      '--metrics',
      'fd',
      '--no-ema',
      '--cache',
      cache(),
    );
    expect(raw.status).toBe(2);
    expect(raw.stderr).toMatch(/ships its EMA weights only/);
  });
});
