import { resolveTrainJob } from '@ddpm/settings';
import { readEvalHistory } from '@ddpm/runs';
import * as tf from '@tensorflow/tfjs-core';
import sharp from 'sharp';

import { tempStore, useWasm } from './test-support';
import { runTrainJob } from './train-job';

beforeAll(useWasm);

const job = (extra: Record<string, unknown> = {}) =>
  resolveTrainJob({
    dataset: 'procedural:shapes?size=16&channels=1',
    preset: 'micro32',
    steps: 2,
    batchSize: 2,
    sampleCount: 3,
    sampleSteps: 4,
    sampleSeed: 5,
    ...extra,
  });

describe('runTrainJob', () => {
  it('trains, checkpoints, then writes the EMA grid with its metadata; a resumed job says what it kept', async () => {
    const { store, cleanup } = await tempStore();
    try {
      const lines: string[] = [];
      const before = tf.memory().numTensors;
      const outcome = await runTrainJob(job(), {
        store,
        prefix: 'run',
        gridKey: (step) => `grids/step-${step}`,
        gridMetadata: { job: 'j1' },
        onLog: (l) => lines.push(l),
      });
      // Nothing stays behind: not the weights, the EMA, Adam's moments, nor the sampling tensors.
      expect(tf.memory().numTensors).toBe(before);
      expect(outcome).toMatchObject({
        status: 'completed',
        step: 2,
        checkpoint: { step: 2 },
        grid: { key: 'grids/step-2', count: 3, seed: 5, sampler: { kind: 'ancestral', steps: 4 } },
      });
      expect(outcome.resumedFrom).toBeUndefined();
      const png = await store.get('grids/step-2.png');
      const meta = await sharp(Buffer.from(png)).metadata();
      // 3 tiles of 32 px in a 2 × 2 grid with 2 px margins, enlarged twice for viewing.
      expect([meta.width, meta.height]).toEqual([2 * (2 * 34 + 2), 2 * (2 * 34 + 2)]);
      const described = JSON.parse(new TextDecoder().decode(await store.get('grids/step-2.json')));
      expect(described).toMatchObject({
        job: 'j1',
        kind: 'grid',
        step: 2,
        count: 3,
        seed: 5,
        ema: true,
        sampler: { kind: 'ancestral', steps: 4 },
        width: 70,
        height: 70,
      });
      expect(lines[0]).toMatch(/^starting: micro32 \(1,112,801 parameters\) on procedural:shapes/);
      expect(lines).toContainEqual(expect.stringMatching(/^sample grid: file:\/\//));

      const resumed = await runTrainJob(job({ steps: 3, learningRate: 1e-3, sampleCount: 0 }), {
        store,
        prefix: 'run',
        gridKey: () => 'unused',
        onLog: (l) => lines.push(l),
      });
      expect(resumed).toMatchObject({
        status: 'completed',
        step: 3,
        resumedFrom: { step: 2, ignored: ['optimizer.learningRate: 0.001 requested, 0.0002 kept'] },
      });
      expect(resumed.grid).toBeUndefined();
      expect(tf.memory().numTensors).toBe(before);
      expect(lines).toContainEqual(
        'the run keeps its stored configuration; ignored from this request: optimizer.learningRate: 0.001 requested, 0.0002 kept',
      );
    } finally {
      await cleanup();
    }
  }, 120_000);

  it('ends at its time budget as at its length: final checkpoint, evaluation and grid; a resume with a larger budget goes on', async () => {
    const { store, cleanup } = await tempStore();
    try {
      const lines: string[] = [];
      const before = tf.memory().numTensors;
      // 6 ms of training: spent by the first step.
      const budgeted = job({
        steps: 50,
        budgetMinutes: 0.0001,
        timesteps: 20,
        evalEvery: 1000,
        evalMetrics: ['nll'],
        evalNllImages: 2,
      });
      const outcome = await runTrainJob(budgeted, {
        store,
        prefix: 'run',
        gridKey: (step) => `grids/step-${step}`,
        onLog: (l) => lines.push(l),
      });
      expect(outcome).toMatchObject({
        status: 'completed',
        step: 1,
        budgetSpent: true,
        checkpoint: { step: 1 },
        grid: { key: 'grids/step-1' },
      });
      expect(lines).toContainEqual('the time budget (0.0001 min of training) is spent: the run ends at step 1 of 50');
      expect(tf.memory().numTensors).toBe(before);
      const history = await readEvalHistory(store, 'run');
      expect(history.entries.map((e) => e.step)).toEqual([1]);
      expect(history.entries[0]!.trainSeconds).toBeGreaterThan(0);
      expect(history.entries[0]!.metrics['bits_per_dim']).toBeGreaterThan(0);

      const longer = await runTrainJob(
        {
          ...budgeted,
          train: { ...budgeted.train, steps: 3, budgetMinutes: 1000 },
          finalGrid: { ...budgeted.finalGrid, count: 0 },
        },
        { store, prefix: 'run', gridKey: () => 'unused' },
      );
      expect(outcome.budgetSpent).toBe(true);
      expect(longer).toMatchObject({ status: 'completed', step: 3, resumedFrom: { step: 1, ignored: [] } });
      expect(longer.budgetSpent).toBeUndefined();
      expect((await readEvalHistory(store, 'run')).entries.map((e) => e.step)).toEqual([1, 3]);
    } finally {
      await cleanup();
    }
  }, 120_000);

  it('stops on abort with a checkpoint and draws no grid', async () => {
    const { store, cleanup } = await tempStore();
    try {
      const controller = new AbortController();
      const outcome = await runTrainJob(job({ steps: 50 }), {
        store,
        prefix: 'run',
        signal: controller.signal,
        gridKey: () => 'grid',
        onStep: (s) => {
          if (s.step === 2) controller.abort();
        },
      });
      expect(outcome).toMatchObject({ status: 'stopped', step: 2, checkpoint: { step: 2 } });
      expect(await store.exists('grid.png')).toBe(false);
    } finally {
      await cleanup();
    }
  }, 60_000);
});
