import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { sha256Hex } from '@ddpm/core';
import { FMNIST_CNN_INPUT, FMNIST_CNN_WASM_SHA256 } from '@ddpm/eval/extractors';
import {
  pretrainedDir,
  pretrainedManifest,
  readPretrained,
  readPretrainedGrid,
  readShippedExtractor,
} from '@ddpm/pretrained';
import { FileStore } from '@ddpm/storage';
import { PRESETS } from '@ddpm/unet';
import * as tf from '@tensorflow/tfjs-core';
import sharp from 'sharp';

import { openFeatureExtractor } from './extractor-cache';
import { loadPretrainedModel, samplingCheck } from './pretrained';
import { useWasm } from './test-support';

beforeAll(useWasm);

describe('the shipped reference model fashion-mnist-cpu', () => {
  it('is at most 10 MB, matches its recorded sha256, and records its run, recipe and scores', async () => {
    const manifest = pretrainedManifest('fashion-mnist-cpu');
    const bytes = await fs.readFile(path.join(pretrainedDir('fashion-mnist-cpu'), manifest.weights));
    expect(bytes.length).toBeLessThanOrEqual(10 * 2 ** 20);
    expect(sha256Hex(new Uint8Array(bytes))).toBe(manifest.sha256);
    expect(manifest.train.dataset).toMatch(/^fashion-mnist/);
    expect(manifest.recipe.name).toBe('fashion-mnist-cpu');
    for (const score of ['fd_fmnist_cnn', 'bits_per_dim', 'pixel_mean', 'pixel_background', 'pixel_saturated']) {
      expect(Number.isFinite(manifest.scores[score]?.value)).toBe(true);
    }
    // The distance is measured against the real-data floor at the same sample count.
    expect(manifest.scores['fd_fmnist_cnn']!['realDataFloor']).toBeGreaterThan(0);
  });

  it('samples deterministically what the export measured: the same 8-bit samples, their pixel statistics within tolerance', async () => {
    const before = tf.memory().numTensors;
    const loaded = loadPretrainedModel('fashion-mnist-cpu');
    try {
      const { check } = loaded.manifest;
      const measured = await samplingCheck(loaded.model, loaded.diffusion, check);
      expect(measured.pixelMean).toBeCloseTo(check.pixelMean, 2);
      expect(measured.pixelBackground).toBeCloseTo(check.pixelBackground, 2);
      // Bit-identical on the backend it was exported with (wasm: one thread, the same kernels).
      if (check.samplesSha256 !== undefined && tf.getBackend() === 'wasm')
        expect(measured.samplesSha256).toBe(check.samplesSha256);
    } finally {
      loaded.model.dispose();
    }
    expect(tf.memory().numTensors).toBe(before);
  }, 120_000);

  it('ships the grid it is shown with: the samples its manifest describes, verified by sha256', async () => {
    const { grid, train } = pretrainedManifest('fashion-mnist-cpu');
    expect(grid).toMatchObject({ file: 'grid.png', count: 64, sampler: { kind: 'ancestral', steps: 100 }, seed: 0 });
    const png = readPretrainedGrid('fashion-mnist-cpu')!;
    const { width, height } = await sharp(png).metadata();
    // 8 × 8 tiles of the model's image size with a 2-pixel margin.
    const size = PRESETS[train.model.preset].imageSize;
    const side = 8 * size + 9 * 2;
    expect([width, height]).toEqual([side, side]);
    const root = await fs.mkdtemp(path.join(os.tmpdir(), 'ddpm-pretrained-grid-'));
    try {
      await fs.cp(pretrainedDir('fashion-mnist-cpu'), path.join(root, 'fashion-mnist-cpu'), { recursive: true });
      const file = path.join(root, 'fashion-mnist-cpu', 'grid.png');
      await fs.writeFile(file, Buffer.concat([png, Buffer.from([0])]));
      expect(() => readPretrainedGrid('fashion-mnist-cpu', root)).toThrow(/grid.png fails its check/);
    } finally {
      await fs.rm(root, { recursive: true, force: true });
    }
  });

  it('refuses weights that fail their hash, naming both, and a model it does not ship', async () => {
    const manifest = pretrainedManifest('fashion-mnist-cpu');
    // A copy of the shipped folder with one byte of the weights flipped.
    const root = await fs.mkdtemp(path.join(os.tmpdir(), 'ddpm-pretrained-'));
    try {
      await fs.cp(pretrainedDir('fashion-mnist-cpu'), path.join(root, 'fashion-mnist-cpu'), { recursive: true });
      expect(readPretrained('fashion-mnist-cpu', root).manifest.sha256).toBe(manifest.sha256);
      const weights = path.join(root, 'fashion-mnist-cpu', manifest.weights);
      const tampered = await fs.readFile(weights);
      tampered[tampered.length - 1] = tampered[tampered.length - 1]! ^ 1;
      await fs.writeFile(weights, tampered);
      expect(() => readPretrained('fashion-mnist-cpu', root)).toThrow(
        new RegExp(
          `fails its check: ${tampered.length} bytes with sha256 [0-9a-f]{64}, the manifest says ${manifest.bytes} bytes with sha256 ${manifest.sha256}`,
        ),
      );
      await fs.rm(weights);
      expect(() => readPretrained('fashion-mnist-cpu', root)).toThrow(/cannot read .*ema.safetensors/);
    } finally {
      await fs.rm(root, { recursive: true, force: true });
    }
    expect(() => readPretrained('imagenet-gpu')).toThrow(
      /no pretrained model "imagenet-gpu"; shipped: fashion-mnist-cpu/,
    );
  });
});

describe('the shipped fmnist_cnn extractor weights', () => {
  it("are what an evaluation uses when its cache has none: the recipe's pinned weights, nothing trained", async () => {
    const root = await fs.mkdtemp(path.join(os.tmpdir(), 'ddpm-shipped-extractor-'));
    const lines: string[] = [];
    try {
      const cache = new FileStore(root);
      const extractor = await openFeatureExtractor('fmnist_cnn', FMNIST_CNN_INPUT, {
        cache,
        onLog: (line) => lines.push(line),
      });
      expect(extractor.weightsSha256).toBe(FMNIST_CNN_WASM_SHA256);
      extractor.dispose();
      expect(lines).toEqual([]);
      // Nothing was written to the cache: the shipped copy is read where it ships.
      expect(await cache.list('extractors/')).toEqual([]);
    } finally {
      await fs.rm(root, { recursive: true, force: true });
    }
  });

  it('are refused when they fail their recorded size and hash', async () => {
    const root = await fs.mkdtemp(path.join(os.tmpdir(), 'ddpm-shipped-extractor-'));
    try {
      const shipped = readShippedExtractor('fmnist_cnn-v1');
      const tampered = Buffer.from(shipped);
      tampered[100] = tampered[100]! ^ 1;
      await fs.writeFile(path.join(root, 'fmnist_cnn-v1.safetensors'), tampered);
      expect(() => readShippedExtractor('fmnist_cnn-v1', root)).toThrow(
        /fmnist_cnn-v1.safetensors fails its check: 394872 bytes with sha256 [0-9a-f]{64}, expected 394872 bytes with sha256 950e9d42/,
      );
      await fs.rm(path.join(root, 'fmnist_cnn-v1.safetensors'));
      expect(() => readShippedExtractor('fmnist_cnn-v1', root)).toThrow(/cannot read .*fmnist_cnn-v1.safetensors/);
    } finally {
      await fs.rm(root, { recursive: true, force: true });
    }
  });
});
