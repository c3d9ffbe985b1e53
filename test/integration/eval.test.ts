/**
 * Evaluation through the real service: a model trained on Fashion-MNIST, then an eval job asking
 * for every metric. The worker finds the offline extractor's weights in the store's cache (put
 * there from an earlier test's training by the recipe, checked against the pinned wasm weights;
 * training inside a run is the Fashion-MNIST learning test's), computes and caches the reference statistics,
 * samples, and reports the numbers under the extractor's name, never as FID; a second job reuses the cache and, with the same seed, gets
 * the same numbers, and so does a third whose samples a sampling group of 2 draws. A train job with evalEvery keeps a history and curves, a train
 * group's ranks share its evaluations' samples and record what one process measures, and a real Prometheus
 * (the Debian package) scraping the worker sees ddpm_eval_fid change.
 */
import { spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';

import { findOnPath, freePort } from '@ddpm/lab';
import { FMNIST_CNN_NAME, FMNIST_CNN_RECIPE, FMNIST_CNN_WASM_SHA256 } from '@ddpm/eval/extractors';
import { pretrainedManifest } from '@ddpm/pretrained';

import { sharedFmnistCnnWeights } from '../support/extractors';
import { until, useStack } from './service-support';

jest.setTimeout(600_000);

/** The offline extractor's weights where the workers look for them in the store. */
async function putExtractorWeights(storeDir: string): Promise<void> {
  await fs.mkdir(path.join(storeDir, 'extractors'), { recursive: true });
  await fs.writeFile(
    path.join(storeDir, 'extractors', `${FMNIST_CNN_NAME}-v${FMNIST_CNN_RECIPE.version}.safetensors`),
    await sharedFmnistCnnWeights(),
  );
}

describe('eval jobs', () => {
  // Two workers: an eval job's sampling group takes both.
  const stack = useStack({ workers: 2 });

  it('computes fd, kid, is and nll of a checkpoint with the offline extractor, recording what makes them comparable', async () => {
    await putExtractorWeights(stack.storeDir);
    const train = await stack.app.inject({
      method: 'POST',
      url: '/jobs/train',
      payload: {
        dataset: 'fashion-mnist:?split=train',
        preset: 'micro32',
        steps: 2,
        batchSize: 4,
        checkpointEvery: 2,
        sampleCount: 1,
        sampleSteps: 2,
      },
    });
    expect(train.statusCode).toBe(202);
    const trainId = train.json().id as string;
    expect((await stack.waitFinished(trainId, 300_000)).returnvalue).toMatchObject({ status: 'completed', step: 2 });

    const body = {
      trainJobId: trainId,
      metrics: ['fd', 'kid', 'is', 'nll'],
      count: 48,
      sampler: 'ddim',
      steps: 2,
      referenceCount: 400,
      nllImages: 2,
    };
    const submitted = await stack.app.inject({ method: 'POST', url: '/jobs/eval', payload: body });
    expect(submitted.statusCode).toBe(202);
    const view = submitted.json();
    expect(view.config).toEqual({
      trainJobId: trainId,
      metrics: ['fd', 'kid', 'is', 'nll'],
      samples: { count: 48, sampler: { kind: 'ddim', steps: 2, eta: 0 }, seed: 0, ema: true },
      extractor: 'fmnist_cnn',
      reference: { split: 'train', count: 400 },
      nll: { images: 2 },
      group: { workers: 1, minWorkers: 1, joinTimeoutSeconds: 600, rankTimeoutSeconds: 30, maxRestarts: 3 },
    });
    await stack.waitFinished(view.id, 500_000);
    const done = (await stack.app.inject({ url: `/jobs/${view.id}` })).json();
    expect(done).toMatchObject({ state: 'completed', result: { status: 'completed', step: 2 } });
    const metrics = done.result.metrics as Record<string, number>;
    expect(Object.keys(metrics).sort()).toEqual([
      'bits_per_dim',
      'fd_fmnist_cnn',
      'is_fmnist_cnn',
      'kid_fmnist_cnn',
      'pixel_background',
      'pixel_mean',
      'pixel_saturated',
    ]);
    expect(metrics).not.toHaveProperty('fid');
    // Two steps of training: the samples are nearly noise, far from the data.
    expect(metrics.fd_fmnist_cnn).toBeGreaterThan(10);
    expect(metrics.is_fmnist_cnn).toBeGreaterThanOrEqual(1);
    expect(metrics.bits_per_dim).toBeGreaterThan(1);

    const reportFile = new URL(done.result.report as string).pathname;
    const report = JSON.parse(await fs.readFile(reportFile, 'utf8'));
    expect(report).toMatchObject({
      trainJobId: trainId,
      checkpoint: { step: 2 },
      ema: true,
      backend: 'wasm',
      samples: { count: 48, sampler: { kind: 'ddim', steps: 2, eta: 0 }, seed: 0, ema: true },
      extractor: {
        name: 'fmnist_cnn',
        distanceName: 'fd_fmnist_cnn',
        weightsSha256: FMNIST_CNN_WASM_SHA256,
        featureDim: 128,
        classes: 10,
      },
      reference: { split: 'train', count: 400 },
      fd: { name: 'fd_fmnist_cnn', value: metrics.fd_fmnist_cnn },
      kid: { name: 'kid_fmnist_cnn', subsetSize: 48 },
      is: { name: 'is_fmnist_cnn', splits: 10, count: 40 },
      nll: { count: 2, dataDims: '28 x 28 x 1 (model 32 x 32 x 1)' },
    });
    expect(report.nll.bitsPerDim).toBeCloseTo((report.nll.bitsPerModelDim * 1024) / 784, 10);
    expect(report.reference.dataset).toMatch(/train-images-idx3-ubyte/);
    expect(report.comparability).toMatch(/not with published FID/);
    // The extractor's weights and the reference statistics are artifacts of the store.
    expect(await fs.readdir(path.join(stack.storeDir, 'extractors'))).toEqual(['fmnist_cnn-v1.safetensors']);
    expect((await fs.readdir(path.join(stack.storeDir, 'reference-stats'))).length).toBe(1);

    // Again, without nll: the cached statistics and the same seed give the same distance.
    const again = await stack.app.inject({ method: 'POST', url: '/jobs/eval', payload: { ...body, metrics: ['fd'] } });
    await stack.waitFinished(again.json().id, 300_000);
    const second = (await stack.app.inject({ url: `/jobs/${again.json().id}` })).json();
    // The same samples: the same distance and the same pixel statistics.
    const pixels = {
      pixel_mean: metrics.pixel_mean,
      pixel_background: metrics.pixel_background,
      pixel_saturated: metrics.pixel_saturated,
    };
    expect(second.result.metrics).toEqual({ fd_fmnist_cnn: metrics.fd_fmnist_cnn, ...pixels });
    expect((await stack.app.inject({ url: `/jobs/${again.json().id}/logs` })).body).toMatch(
      /reference statistics from the cache/,
    );

    // A sampling group of 2 draws the same 48 samples (rank 1 batch 1 of 3): the same numbers, to the bit.
    const grouped = await stack.app.inject({
      method: 'POST',
      url: '/jobs/eval',
      payload: { ...body, metrics: ['fd', 'kid', 'is'], workers: 2 },
    });
    expect(grouped.statusCode).toBe(202);
    await stack.waitFinished(grouped.json().id, 300_000);
    const third = (await stack.app.inject({ url: `/jobs/${grouped.json().id}` })).json();
    expect(third).toMatchObject({ state: 'completed', result: { group: { worldSize: 2, restarts: 0 } } });
    expect(third.result.metrics).toEqual({
      fd_fmnist_cnn: metrics.fd_fmnist_cnn,
      kid_fmnist_cnn: metrics.kid_fmnist_cnn,
      is_fmnist_cnn: metrics.is_fmnist_cnn,
      ...pixels,
    });
    expect((await stack.app.inject({ url: `/jobs/${grouped.json().id}/logs` })).body).toMatch(
      /48 samples \(ddim, 2 steps, seed 0, EMA weights of step 2, drawn by 2 ranks\)/,
    );
  });

  it('evaluates the EMA weights during training: history, curves, and a real Prometheus sees ddpm_eval_fid change', async () => {
    const binary = findOnPath('prometheus');
    if (!binary) throw new Error('no prometheus binary (apt-get install prometheus)');
    const dir = path.join(stack.storeDir, 'prometheus');
    await fs.mkdir(dir, { recursive: true });
    const config = [
      'global:',
      '  scrape_interval: 500ms',
      'scrape_configs:',
      '  - job_name: ddpm-worker',
      `    static_configs: [{ targets: [${stack.workers.map((w) => `'127.0.0.1:${w.metricsPort}'`).join(', ')}] }]`,
    ].join('\n');
    await fs.writeFile(path.join(dir, 'prometheus.yml'), config);
    const port = await freePort();
    const prometheus = spawn(
      binary,
      [
        `--config.file=${path.join(dir, 'prometheus.yml')}`,
        `--storage.tsdb.path=${path.join(dir, 'data')}`,
        `--web.listen-address=127.0.0.1:${port}`,
      ],
      { stdio: 'ignore' },
    );
    try {
      const base = `http://127.0.0.1:${port}`;
      await until('prometheus to be ready', async () => ((await fetch(`${base}/-/ready`)).ok ? true : undefined));
      const started = Date.now() / 1000;
      const train = await stack.app.inject({
        method: 'POST',
        url: '/jobs/train',
        payload: {
          dataset: 'fashion-mnist:',
          preset: 'micro32',
          steps: 9,
          batchSize: 8,
          learningRate: 1e-3,
          warmupSteps: 1,
          emaDecay: 0.5,
          checkpointEvery: 3,
          evalEvery: 3,
          evalMetrics: ['fd', 'nll'],
          evalCount: 32,
          evalSampler: 'ddim',
          evalSteps: 3,
          evalReferenceCount: 300,
          evalNllImages: 2,
        },
      });
      expect(train.statusCode).toBe(202);
      expect(train.json().config.evaluation).toMatchObject({
        every: 3,
        metrics: ['fd', 'nll'],
        samples: { count: 32, sampler: { kind: 'ddim', steps: 3 } },
      });
      const id = train.json().id as string;
      expect((await stack.waitFinished(id, 400_000)).returnvalue).toMatchObject({ status: 'completed', step: 9 });

      const history = (await stack.app.inject({ url: `/jobs/${id}/metrics` })).json();
      expect(history.entries.map((e: { step: number }) => e.step)).toEqual([3, 6, 9]);
      for (const e of history.entries) {
        expect(Object.keys(e.metrics).sort()).toEqual([
          'bits_per_dim',
          'fd_fmnist_cnn',
          'pixel_background',
          'pixel_mean',
          'pixel_saturated',
        ]);
        expect(e.extractor).toEqual({ name: 'fmnist_cnn', weightsSha256: FMNIST_CNN_WASM_SHA256 });
        // The run's training time when the weights were evaluated, and the pixels beside the reference's.
        expect(e.trainSeconds).toBeGreaterThan(0);
        expect(e.pixels.reference.images).toBeGreaterThan(0);
      }
      expect(history.entries.map((e: { trainSeconds: number }) => e.trainSeconds)).toEqual(
        [...history.entries.map((e: { trainSeconds: number }) => e.trainSeconds)].sort((a, b) => a - b),
      );
      expect(Object.keys(history.curves).sort()).toEqual([
        'bits_per_dim',
        'fd_fmnist_cnn',
        'pixel_background',
        'pixel_mean',
        'pixel_saturated',
      ]);
      const curve = await stack.app.inject({ url: new URL(history.curves.fd_fmnist_cnn).pathname });
      expect(curve.statusCode).toBe(200);
      expect(curve.headers['content-type']).toBe('image/png');
      expect(curve.rawPayload.subarray(1, 4).toString()).toBe('PNG');
      expect((await stack.app.inject({ url: `/jobs/${id}/metrics/nope.png` })).statusCode).toBe(404);
      expect((await stack.app.inject({ url: `/jobs/${id}/logs` })).body).toMatch(
        /evaluation at step 6: .*fd_fmnist_cnn/,
      );

      // Every value the worker exported was scraped: the series changed during training.
      const fds = new Set(history.entries.map((e: { metrics: Record<string, number> }) => e.metrics.fd_fmnist_cnn));
      expect(fds.size).toBeGreaterThan(1);
      const seen = await until('ddpm_eval_fid to take more than one value', async () => {
        const q = `ddpm_eval_fid{queue="train",extractor="fmnist_cnn",distance="fd_fmnist_cnn"}`;
        const r = (await (
          await fetch(
            `${base}/api/v1/query_range?query=${encodeURIComponent(q)}&start=${started}&end=${Date.now() / 1000}&step=0.5`,
          )
        ).json()) as { data: { result: { values: [number, string][] }[] } };
        const values = new Set(r.data.result.flatMap((series) => series.values.map(([, v]) => Number(v))));
        return values.size > 1 ? values : undefined;
      });
      for (const v of seen) expect(fds.has(v)).toBe(true);
    } finally {
      prometheus.kill('SIGKILL');
    }
  });

  it('a train group of 2 shares its evaluations’ samples: its history holds what an eval job of the same checkpoint measures alone', async () => {
    await putExtractorWeights(stack.storeDir);
    const train = await stack.app.inject({
      method: 'POST',
      url: '/jobs/train',
      payload: {
        dataset: 'fashion-mnist:',
        preset: 'micro32',
        steps: 2,
        batchSize: 4,
        workers: 2,
        checkpointEvery: 2,
        sampleCount: 0,
        evalEvery: 2,
        evalMetrics: ['fd'],
        evalCount: 48,
        evalSampler: 'ddim',
        evalSteps: 2,
        evalSeed: 5,
        evalReferenceCount: 300,
      },
    });
    expect(train.statusCode).toBe(202);
    const id = train.json().id as string;
    expect((await stack.waitFinished(id, 300_000)).returnvalue).toMatchObject({
      status: 'completed',
      step: 2,
      group: { worldSize: 2 },
    });
    const history = (await stack.app.inject({ url: `/jobs/${id}/metrics` })).json();
    expect(history.entries.map((e: { step: number }) => e.step)).toEqual([2]);
    expect((await stack.app.inject({ url: `/jobs/${id}/logs` })).body).toMatch(
      /48 samples \(ddim, 2 steps, seed 5, EMA weights at step 2, drawn by 2 ranks and measured by each\)/,
    );

    // One process, the same checkpoint's EMA and the same samples: the same numbers, to the bit.
    const evaluated = await stack.app.inject({
      method: 'POST',
      url: '/jobs/eval',
      payload: { trainJobId: id, metrics: ['fd'], count: 48, sampler: 'ddim', steps: 2, seed: 5, referenceCount: 300 },
    });
    expect(evaluated.statusCode).toBe(202);
    await stack.waitFinished(evaluated.json().id, 300_000);
    const alone = (await stack.app.inject({ url: `/jobs/${evaluated.json().id}` })).json();
    expect(alone).toMatchObject({ state: 'completed', result: { step: 2 } });
    expect(history.entries[0].metrics).toEqual(alone.result.metrics);
  });

  it('evaluates a shipped model named by pretrained, its samples drawn by a sampling group of 2', async () => {
    await putExtractorWeights(stack.storeDir);
    const refused = await stack.app.inject({ method: 'POST', url: '/jobs/eval', payload: { metrics: ['fd'] } });
    expect(refused.statusCode).toBe(400);
    expect(refused.json().message).toMatch(/an eval job names either trainJobId .* or pretrained/);
    const submitted = await stack.app.inject({
      method: 'POST',
      url: '/jobs/eval',
      payload: {
        pretrained: 'fashion-mnist-cpu',
        metrics: ['fd'],
        count: 32,
        sampler: 'ddim',
        steps: 2,
        referenceCount: 300,
        workers: 2,
      },
    });
    expect(submitted.statusCode).toBe(202);
    expect(submitted.json().config).toMatchObject({
      pretrained: 'fashion-mnist-cpu',
      samples: { count: 32, sampler: { kind: 'ddim', steps: 2 } },
      group: { workers: 2 },
    });
    const id = submitted.json().id as string;
    await stack.waitFinished(id, 300_000);
    const done = (await stack.app.inject({ url: `/jobs/${id}` })).json();
    const shipped = pretrainedManifest('fashion-mnist-cpu');
    expect(done).toMatchObject({ state: 'completed', result: { step: shipped.step, group: { worldSize: 2 } } });
    const report = JSON.parse(await fs.readFile(new URL(done.result.report as string).pathname, 'utf8'));
    expect(report).toMatchObject({ pretrained: 'fashion-mnist-cpu', checkpoint: { step: shipped.step }, ema: true });
    expect(report).not.toHaveProperty('trainJobId');
    // The reference is the dataset the shipped model was trained on.
    expect(report.reference.dataset).toMatch(/train-images-idx3-ubyte/);
  });

  it('refuses an eval job whose extractor does not fit the run, naming both shapes', async () => {
    const train = await stack.app.inject({
      method: 'POST',
      url: '/jobs/train',
      payload: {
        dataset: 'procedural:shapes?size=8&channels=3',
        preset: 'tiny32',
        steps: 1,
        batchSize: 2,
        checkpointEvery: 1,
        sampleCount: 1,
        sampleSteps: 1,
      },
    });
    const trainId = train.json().id as string;
    expect((await stack.waitFinished(trainId, 300_000)).returnvalue).toMatchObject({ status: 'completed' });
    const submitted = await stack.app.inject({
      method: 'POST',
      url: '/jobs/eval',
      payload: { trainJobId: trainId, metrics: ['fd'], dataset: 'fashion-mnist:', count: 4, steps: 1 },
    });
    expect(submitted.statusCode).toBe(202);
    const job = await stack.waitFinished(submitted.json().id, 300_000);
    expect(job.failedReason).toMatch(
      /fmnist_cnn extractor takes 32 x 32 x 1 images; this run's model makes 32 x 32 x 3/,
    );
    expect(job.attemptsMade).toBe(1); // permanent: not retried
  });
});
