/**
 * An evaluation fails on what it cannot read before it does anything slow: a reference dataset
 * that is missing, or reference statistics that are not in the cache, are reported before the
 * feature extractor is opened (training fmnist_cnn by its recipe takes a minute or more).
 */
import { GaussianDiffusion } from '@ddpm/diffusion';
import { UNet, preset } from '@ddpm/unet';
import * as tf from '@tensorflow/tfjs-core';

import { type EvalSpec } from '@ddpm/settings';

import { evaluateModel } from './model-evaluation';
import { tempStore, useWasm } from './test-support';

beforeAll(useWasm);

const spec = (reference: EvalSpec['reference']): EvalSpec => ({
  metrics: ['fd'],
  samples: { count: 4, sampler: { kind: 'ancestral', steps: 10 }, seed: 0, ema: false },
  extractor: 'fmnist_cnn',
  reference,
  nll: { images: 4 },
});

describe('evaluateModel', () => {
  it.each([
    [
      'a missing reference dataset',
      { dataset: 'idx:/nonexistent/ddpm/images-idx3-ubyte', split: 'train' },
      /nonexistent/,
    ],
    [
      'reference statistics not in the cache',
      { split: 'train', statistics: 'stats/none.npz' },
      /no reference statistics/,
    ],
  ] as const)('refuses %s before it opens (or trains) the extractor', async (_what, reference, message) => {
    const { store, cleanup } = await tempStore();
    const before = tf.memory().numTensors;
    const model = new UNet(preset('micro32'), { uniform: () => 0.5 });
    const lines: string[] = [];
    try {
      await expect(
        evaluateModel(
          model,
          new GaussianDiffusion({
            schedule: { kind: 'linear', numTimesteps: 10, betaStart: 1e-4, betaEnd: 0.02 },
            meanType: 'epsilon',
            varianceType: 'fixedlarge',
            lossType: 'mse',
          }),
          'procedural:shapes?size=8',
          spec(reference as EvalSpec['reference']),
          { cache: store, shippedWeights: false, onLog: (line) => lines.push(line) },
        ),
      ).rejects.toThrow(message);
      expect(lines.filter((l) => /extractor/.test(l))).toEqual([]);
      expect(await store.list('extractors/')).toEqual([]);
    } finally {
      model.dispose();
      await cleanup();
    }
    expect(tf.memory().numTensors).toBe(before);
  });
});
