import { GaussianDiffusion } from '@ddpm/diffusion';
import { UNet, preset } from '@ddpm/unet';
import * as tf from '@tensorflow/tfjs-core';
import sharp from 'sharp';

import { composeGrid, encodePng, gridColumns, toUint8, viewScale } from './images';
import {
  type SampleSplit,
  generateSamples,
  interpolationFigure,
  progressiveStrip,
  sampleGrid,
  samplingDiffusion,
  sharedLatentFigure,
} from './sampling';
import { useWasm } from './test-support';

beforeAll(useWasm);

const config = preset('micro32', { ch: 32 });

function model(): UNet {
  let s = 7;
  return new UNet(config, {
    uniform: () => {
      s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
      return (s + 0.5) / 2 ** 32;
    },
  });
}

describe('pictures', () => {
  it('maps [-1, 1] to bytes and tiles square-ish grids with margins', () => {
    expect([...toUint8(Float32Array.from([-1, 0, 1, 2, -3]))]).toEqual([0, 128, 255, 255, 0]);
    expect([1, 2, 4, 5, 64, 65].map(gridColumns)).toEqual([1, 2, 2, 3, 8, 9]);
    const grid = composeGrid(new Uint8Array(5 * 2 * 2).fill(7), 5, 2, 1, { margin: 1 });
    expect([grid.width, grid.height]).toEqual([3 * 3 + 1, 2 * 3 + 1]);
    expect(grid.pixels[0]).toBe(255);
    expect(grid.pixels[grid.width + 1]).toBe(7);
  });

  it('encodes PNGs that decode to the same pixels', async () => {
    const picture = composeGrid(
      Uint8Array.from({ length: 4 * 4 * 3 }, (_, i) => (i * 37) % 256),
      1,
      4,
      3,
      { margin: 0 },
    );
    const png = await encodePng(picture, 1);
    const { data, info } = await sharp(Buffer.from(png)).raw().toBuffer({ resolveWithObject: true });
    expect([info.width, info.height, info.channels]).toEqual([4, 4, 3]);
    expect([...data]).toEqual([...picture.pixels]);
    // By default small pictures are enlarged twice for viewing (nearest neighbour), large ones not.
    expect((await sharp(Buffer.from(await encodePng(picture))).metadata()).width).toBe(8);
    expect(viewScale({ ...picture, width: 256 })).toBe(1);
  });
});

describe('sampling tools', () => {
  const base = new GaussianDiffusion({ schedule: { kind: 'linear' } });

  it('samples reproducibly from a seed with strided and DDIM samplers', async () => {
    const net = model();
    const a = await generateSamples(net, base, 3, { seed: 4, sampler: { kind: 'ancestral', steps: 5 }, batch: 2 });
    const b = await generateSamples(net, base, 3, { seed: 4, sampler: { kind: 'ancestral', steps: 5 }, batch: 2 });
    expect(a.values).toHaveLength(3 * 32 * 32);
    expect([...a.values]).toEqual([...b.values]);
    const d = await generateSamples(net, base, 2, { seed: 4, sampler: { kind: 'ddim', steps: 4, eta: 0 } });
    expect(d.values.every(Number.isFinite)).toBe(true);
    expect(samplingDiffusion(base, { kind: 'ddim', steps: 50, eta: 0 }).timestepMap[1]).toBe(20);
    expect(() => samplingDiffusion(base, { kind: 'ancestral', steps: 0 })).toThrow(
      'sampling steps must be an integer in [1, 1000], got 0',
    );
    const { picture } = await sampleGrid(net, base, 5, { seed: 1, sampler: { kind: 'ancestral', steps: 3 } });
    expect([picture.width, picture.height]).toEqual([3 * 34 + 2, 2 * 34 + 2]);
    net.dispose();
  });

  it('splits batches over a group: rank 0 ends with the bytes one process draws, each rank drawing only batches k ≡ rank', async () => {
    const net = model();
    const options = { seed: 9, sampler: { kind: 'ancestral' as const, steps: 3 }, batch: 2 };
    const alone = await generateSamples(net, base, 7, options);
    for (const worldSize of [2, 3]) {
      // The transport between ranks in one process: rank 0 takes batches from a mailbox.
      const mailbox = new Map<number, (values: Float32Array) => void>();
      const arrived = new Map<number, Promise<Float32Array>>();
      const slot = (index: number): Promise<Float32Array> => {
        if (!arrived.has(index)) arrived.set(index, new Promise((resolve) => mailbox.set(index, resolve)));
        return arrived.get(index)!;
      };
      const drawnBy: number[][] = [];
      const splits: SampleSplit[] = Array.from({ length: worldSize }, (_, rank) => ({
        rank,
        worldSize,
        send: async (index, values) => {
          (drawnBy[rank] ??= []).push(index);
          void slot(index);
          mailbox.get(index)!(Float32Array.from(values));
        },
        receive: (index) => slot(index),
      }));
      const results = await Promise.all(splits.map((split) => generateSamples(net, base, 7, { ...options, split })));
      expect(Buffer.compare(Buffer.from(results[0]!.values.buffer), Buffer.from(alone.values.buffer))).toBe(0);
      expect(drawnBy.slice(1)).toEqual(
        Array.from({ length: worldSize - 1 }, (_, r) => [0, 1, 2, 3].filter((k) => k % worldSize === r + 1)),
      );
      // Another rank fills in only its own batches.
      const per = 32 * 32;
      expect(results[1]!.values.subarray(0, 2 * per).every((v) => v === 0)).toBe(true);
      expect(
        Buffer.compare(
          Buffer.from(results[1]!.values.slice(2 * per, 4 * per).buffer),
          Buffer.from(alone.values.slice(2 * per, 4 * per).buffer),
        ),
      ).toBe(0);
    }
    net.dispose();
  });

  it('builds progressive strips, interpolation and shared-latent figures without leaking tensors', async () => {
    const net = model();
    const before = tf.memory().numTensors;
    const strip = await progressiveStrip(net, base, 2, 2, { seed: 1, sampler: { kind: 'ancestral', steps: 6 } });
    expect(strip.frames).toEqual([6, 4, 2, 1]);
    expect([strip.picture.width, strip.picture.height]).toEqual([4 * 34 + 2, 2 * 34 + 2]);
    const a = tf.fill<tf.Rank.R4>([1, 32, 32, 1], -0.5);
    const b = tf.fill<tf.Rank.R4>([1, 32, 32, 1], 0.5);
    const interp = await interpolationFigure(
      net,
      samplingDiffusion(base, { kind: 'ancestral', steps: 10 }),
      a,
      b,
      [0, 5],
      { seed: 2, lambdas: [0, 0.5, 1] },
    );
    expect([interp.picture.width, interp.picture.height]).toEqual([3 * 34 + 2, 2 * 34 + 2]);
    // At t = 0 the row is the pixel mix: -0.5 → 64, 0 → 128, 0.5 → 191.
    const row0 = interp.picture.pixels;
    expect([
      row0[2 * interp.picture.width + 2],
      row0[2 * interp.picture.width + 36],
      row0[2 * interp.picture.width + 70],
    ]).toEqual([64, 128, 191]);
    const shared = await sharedLatentFigure(net, base, [6, 1], 3, {
      seed: 3,
      sampler: { kind: 'ancestral', steps: 6 },
    });
    expect([shared.picture.width, shared.picture.height]).toEqual([4 * 34 + 2, 2 * 34 + 2]);
    tf.dispose([a, b]);
    expect(tf.memory().numTensors).toBe(before);
    net.dispose();
  });
});
