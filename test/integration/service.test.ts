/**
 * The service against the real Redis: submit → progress → completed → PNG served, sampling from a
 * finished run, idempotency keys, cancellation (running and queued), an API restart that loses
 * nothing, a real HTTP listener, auth, and 40+ malformed requests that enqueue nothing.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';

import { runCli } from '@ddpm/cli';
import { type TrainRequest, resolveTrainJob } from '@ddpm/settings';
import { type JobData, type JobResult } from '@ddpm/service';
import { pretrainedManifest } from '@ddpm/pretrained';
import { type Job } from 'bullmq';

import { tinyTrain, until, useStack } from './service-support';

jest.setTimeout(180_000);

describe('the job service (in-process API, worker children, real Redis)', () => {
  const stack = useStack({ workers: 1 });

  it('runs a train job to completion with progress, checkpoints, logs and a served PNG; then samples from it', async () => {
    // Training steps as the progress reports them (while sampling a grid or evaluating, `step`
    // counts that phase's own steps).
    const progress: number[] = [];
    const onProgress = ({ jobId, data }: { jobId: string; data: unknown }): void => {
      const p = data as { phase?: string; step: number } | null;
      if (jobId === id && p?.phase === 'training') progress.push(p.step);
    };
    stack.events.train.on('progress', onProgress);
    const submitted = await stack.app.inject({
      method: 'POST',
      url: '/jobs/train',
      payload: tinyTrain({ sampleCount: 2, sampleSteps: 3, sampleEvery: 2 }),
    });
    expect(submitted.statusCode).toBe(202);
    const id = submitted.json().id as string;
    expect(submitted.headers['location']).toBe(`/jobs/${id}`);
    expect(submitted.json()).toMatchObject({ type: 'train', state: 'queued' });
    await stack.waitFinished(id);
    stack.events.train.off('progress', onProgress);
    const done = (await stack.app.inject({ url: `/jobs/${id}` })).json();
    expect(done).toMatchObject({
      state: 'completed',
      result: { status: 'completed', step: 3 },
      progress: { step: 3, totalSteps: 3 },
    });
    expect(progress.length).toBeGreaterThan(0);
    for (let i = 1; i < progress.length; i++) expect(progress[i]).toBeGreaterThanOrEqual(progress[i - 1]!);
    const checkpoints = (await stack.app.inject({ url: `/jobs/${id}/checkpoints` })).json().checkpoints;
    expect(checkpoints.map((c: { step: number }) => c.step)).toEqual([3, 2, 1]);
    // Keys in the store, never the server's path to it: in the listing, the view and the log.
    expect(checkpoints[0]).toEqual({
      step: 3,
      key: `runs/${id}/checkpoints/step-000000003/manifest.json`,
      bytes: expect.any(Number),
    });
    // Each checkpoint's size is its files' together, as they lie in the store.
    const folder = path.join(stack.storeDir, 'runs', id, 'checkpoints', 'step-000000003');
    let onDisk = 0;
    for (const f of await fs.readdir(folder)) onDisk += (await fs.stat(path.join(folder, f))).size;
    expect(checkpoints[0].bytes).toBe(onDisk);
    expect(done.result.checkpoint).toBe(`<store>/runs/${id}/checkpoints/step-000000003/manifest.json`);
    // The loss over training, from the newest checkpoint: a point per step, each the step's mean loss.
    const loss = (await stack.app.inject({ url: `/jobs/${id}/loss` })).json();
    expect(loss).toMatchObject({ step: 3, every: 1 });
    expect(loss.points.map((p: { step: number; steps: number }) => [p.step, p.steps])).toEqual([
      [1, 1],
      [2, 1],
      [3, 1],
    ]);
    for (const p of loss.points as { loss: number }[]) expect(p.loss).toBeGreaterThan(0);
    // The grid during training (sampleEvery 2: at step 2; the end's grid is the final one), with
    // the final grid's noise: the same seed and sampler.
    const grids = (await stack.app.inject({ url: `/jobs/${id}/grids` })).json().grids as {
      step: number;
      url: string;
    }[];
    expect(grids.map((g) => g.step)).toEqual([2]);
    const during = await stack.app.inject({ url: new URL(grids[0]!.url).pathname });
    expect([during.statusCode, during.headers['content-type']]).toEqual([200, 'image/png']);
    expect((await stack.app.inject({ url: `${new URL(grids[0]!.url).pathname}.json` })).json()).toMatchObject({
      step: 2,
      seed: 0,
      count: 2,
      sampler: { kind: 'ancestral', steps: 3 },
    });
    const logs = (await stack.app.inject({ url: `/jobs/${id}/logs` })).body;
    expect(logs).toMatch(/starting: nano8/);
    expect(logs).toMatch(/checkpoint \((periodic|final)\) at step 3: <store>\/runs\//);
    expect(logs).not.toContain(stack.storeDir);
    const sampleUrl = done.links.samples[0] as string;
    const png = await stack.app.inject({ url: new URL(sampleUrl).pathname });
    expect(png.statusCode).toBe(200);
    expect(png.headers['content-type']).toBe('image/png');
    expect(png.rawPayload.subarray(1, 4).toString()).toBe('PNG');
    const meta = (await stack.app.inject({ url: `${new URL(sampleUrl).pathname}.json` })).json();
    expect(meta).toMatchObject({ step: 3, seed: 0, count: 2, ema: true, sampler: { kind: 'ancestral', steps: 3 } });

    const sample = await stack.app.inject({
      method: 'POST',
      url: '/jobs/sample',
      payload: { trainJobId: id, count: 2, steps: 2, seed: 7 },
    });
    expect(sample.statusCode).toBe(202);
    const sampleId = sample.json().id as string;
    await stack.waitFinished(sampleId);
    const sampleView = (await stack.app.inject({ url: `/jobs/${sampleId}` })).json();
    expect(sampleView).toMatchObject({ state: 'completed', result: { samples: [sampleId] } });
    const grid = await stack.app.inject({ url: `/samples/${sampleId}` });
    expect(grid.statusCode).toBe(200);
    expect((await stack.app.inject({ url: `/samples/${sampleId}.json` })).json()).toMatchObject({
      trainJobId: id,
      step: 3,
      seed: 7,
      count: 2,
    });
    // The jobs of a run: the sample job just made, not the train job itself nor other runs' jobs.
    const ofRun = (await stack.app.inject({ url: `/jobs?run=${id}` })).json();
    expect(ofRun.jobs.map((j: { id: string }) => j.id)).toEqual([sampleId]);
    expect((await stack.app.inject({ url: `/jobs?run=train-knotarun&type=sample` })).json().jobs).toEqual([]);
    expect((await stack.app.inject({ url: `/jobs?run=${id}&type=train` })).json().jobs).toEqual([]);
    expect((await stack.app.inject({ url: '/jobs?run=..%2Fx' })).statusCode).toBe(400);

    // The shipped reference model, sampled by name: no train job of this service behind it.
    const shipped = pretrainedManifest('fashion-mnist-cpu');
    const pretrained = await stack.app.inject({
      method: 'POST',
      url: '/jobs/sample',
      payload: { pretrained: 'fashion-mnist-cpu', count: 2, steps: 2, seed: 3 },
    });
    expect(pretrained.statusCode).toBe(202);
    expect(pretrained.json().config).toMatchObject({
      pretrained: 'fashion-mnist-cpu',
      sampler: { kind: 'ancestral', steps: 2 },
    });
    await stack.waitFinished(pretrained.json().id);
    expect((await stack.app.inject({ url: `/jobs/${pretrained.json().id}` })).json()).toMatchObject({
      state: 'completed',
      result: { step: shipped.step },
    });
    expect((await stack.app.inject({ url: `/samples/${pretrained.json().id}.json` })).json()).toMatchObject({
      pretrained: 'fashion-mnist-cpu',
      checkpoint: 'pretrained:fashion-mnist-cpu',
      step: shipped.step,
      count: 2,
    });
    for (const [payload, message] of [
      [{ pretrained: 'fashion-mnist-cpu', trainJobId: id }, /either trainJobId .* or pretrained/],
      [{}, /either trainJobId .* or pretrained/],
      [{ pretrained: 'fashion-mnist-cpu', step: 3 }, /step applies to a train job's checkpoints/],
      [{ pretrained: 'fashion-mnist-cpu', ema: false }, /ships its EMA weights only/],
      [{ pretrained: 'imagenet-gpu' }, /pretrained/],
    ] as const) {
      const refused = await stack.app.inject({ method: 'POST', url: '/jobs/sample', payload });
      expect([refused.statusCode, refused.json().message]).toEqual([400, expect.stringMatching(message)]);
    }
  });

  it('returns the same job for a repeated Idempotency-Key and refuses the key for another request', async () => {
    const headers = { 'idempotency-key': `k-${Date.now()}` };
    const first = await stack.app.inject({
      method: 'POST',
      url: '/jobs/train',
      payload: tinyTrain({ steps: 1 }),
      headers,
    });
    const again = await stack.app.inject({
      method: 'POST',
      url: '/jobs/train',
      payload: tinyTrain({ steps: 1 }),
      headers,
    });
    expect(first.statusCode).toBe(202);
    expect(again.statusCode).toBe(200);
    expect(again.headers['idempotent-replayed']).toBe('true');
    expect(again.json().id).toBe(first.json().id);
    const other = await stack.app.inject({
      method: 'POST',
      url: '/jobs/train',
      payload: tinyTrain({ steps: 2 }),
      headers,
    });
    expect(other.statusCode).toBe(409);
    expect(other.json().message).toMatch(/was already used for a different train request/);
    await stack.waitFinished(first.json().id);
  });

  it('cancels a running train job: it checkpoints and ends as cancelled; cancelling again changes nothing', async () => {
    const submitted = await stack.app.inject({
      method: 'POST',
      url: '/jobs/train',
      payload: tinyTrain({ steps: 100000, checkpointEvery: 100000 }),
    });
    const id = submitted.json().id as string;
    await new Promise<void>((resolve) => {
      const onProgress = ({ jobId, data }: { jobId: string; data: unknown }): void => {
        if (jobId === id && (data as { step: number }).step >= 2) {
          stack.events.train.off('progress', onProgress);
          resolve();
        }
      };
      stack.events.train.on('progress', onProgress);
    });
    const cancel = await stack.app.inject({ method: 'DELETE', url: `/jobs/${id}` });
    expect(cancel.statusCode).toBe(202);
    expect(cancel.json().state).toBe('cancelling');
    await stack.waitFinished(id);
    const view = (await stack.app.inject({ url: `/jobs/${id}` })).json();
    expect(view.state).toBe('cancelled');
    expect(view.result.status).toBe('cancelled');
    expect(view.result.step).toBeGreaterThanOrEqual(2);
    const checkpoints = (await stack.app.inject({ url: `/jobs/${id}/checkpoints` })).json().checkpoints;
    expect(checkpoints[0].step).toBe(view.result.step);
    const again = await stack.app.inject({ method: 'POST', url: `/jobs/${id}/cancel` });
    expect(again.statusCode).toBe(200);
    expect(again.json().state).toBe('cancelled');
  });

  it('reports its phases in order: starting, training, checkpointing, sampling, finishing', async () => {
    const phases: string[] = [];
    const onProgress = ({ jobId, data }: { jobId: string; data: unknown }): void => {
      const phase = (data as { phase?: string }).phase;
      if (jobId === id && phase !== undefined && phases[phases.length - 1] !== phase) phases.push(phase);
    };
    stack.events.train.on('progress', onProgress);
    const submitted = await stack.app.inject({
      method: 'POST',
      url: '/jobs/train',
      payload: tinyTrain({ steps: 2, checkpointEvery: 2, sampleCount: 2, sampleSteps: 3 }),
    });
    const id = submitted.json().id as string;
    await stack.waitFinished(id);
    // The last event may still be on its way from the queue's event stream.
    await until('the finishing phase', async () => (phases.includes('finishing') ? true : undefined), 10_000);
    stack.events.train.off('progress', onProgress);
    expect(phases).toEqual(['starting', 'training', 'checkpointing', 'sampling', 'finishing']);
  });

  it('reports a budgeted run’s training time against its budget, and ends it there as completed', async () => {
    const progress: Record<string, unknown>[] = [];
    const onProgress = ({ jobId, data }: { jobId: string; data: unknown }): void => {
      if (
        jobId === id &&
        typeof data === 'object' &&
        data !== null &&
        (data as { phase?: string }).phase === 'training'
      )
        progress.push(data as Record<string, unknown>);
    };
    stack.events.train.on('progress', onProgress);
    // 1.5 s of training; steps far beyond it.
    const submitted = await stack.app.inject({
      method: 'POST',
      url: '/jobs/train',
      payload: tinyTrain({ steps: 100000, checkpointEvery: 100000, budgetMinutes: 0.025 }),
    });
    const id = submitted.json().id as string;
    await stack.waitFinished(id);
    stack.events.train.off('progress', onProgress);
    const view = (await stack.app.inject({ url: `/jobs/${id}` })).json();
    expect(view).toMatchObject({ state: 'completed', result: { status: 'completed' } });
    expect(view.result.step).toBeLessThan(100000);
    const stepping = progress.filter((p) => typeof p['imagesPerSecond'] === 'number');
    expect(stepping.length).toBeGreaterThan(0);
    for (const p of stepping) {
      expect(p['budgetSeconds']).toBe(1.5);
      expect(p['trainSeconds']).toEqual(expect.any(Number));
      // Time left is the budget's, not 100000 steps' worth.
      expect(p['etaSeconds']).toBeLessThanOrEqual(1.5);
      expect(p['etaSeconds']).toBeCloseTo(Math.max(0, 1.5 - (p['trainSeconds'] as number)), 5);
    }
    const spent = stepping.map((p) => p['trainSeconds'] as number);
    expect(spent).toEqual([...spent].sort((a, b) => a - b));
  });

  it('survives an API restart while jobs run: nothing is lost', async () => {
    const id = (await stack.app.inject({ method: 'POST', url: '/jobs/train', payload: tinyTrain({ steps: 4 }) })).json()
      .id as string;
    const app = await stack.restartApp();
    const during = (await app.inject({ url: `/jobs/${id}` })).json();
    expect(['queued', 'active', 'completed']).toContain(during.state);
    await stack.waitFinished(id);
    expect((await app.inject({ url: `/jobs/${id}` })).json()).toMatchObject({
      state: 'completed',
      result: { step: 4 },
    });
    const listed = (await app.inject({ url: '/jobs?type=train&state=completed&limit=50' })).json();
    expect(listed.jobs.map((j: { id: string }) => j.id)).toContain(id);
  });

  it('serves the same API on a real HTTP listener, with OpenAPI docs and health', async () => {
    const address = await stack.app.listen({ port: 0, host: '127.0.0.1' });
    const health = await fetch(`${address}/healthz`);
    expect(await health.json()).toEqual({ status: 'ok' });
    expect(((await (await fetch(`${address}/readyz`)).json()) as { status: string }).status).toBe('ready');
    const spec = (await (await fetch(`${address}/docs/json`)).json()) as { paths: Record<string, unknown> };
    expect(Object.keys(spec.paths)).toEqual(
      expect.arrayContaining(['/jobs/train', '/jobs/sample', '/jobs/eval', '/jobs/{id}', '/samples/{file}']),
    );
    const bad = await fetch(`${address}/jobs/train`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"steps": 1',
    });
    expect(bad.status).toBe(400);
    const metrics = await (await fetch(`${address}/metrics`)).text();
    expect(metrics).toMatch(/bullmq_job_count\{queue="train",state="completed"\} \d+/);
    expect(metrics).toMatch(
      /ddpm_api_request_duration_seconds_count\{route="\/healthz",method="GET",status="2xx"\} [1-9]/,
    );

    // The `ddpm jobs` client against the same listener.
    let stdout = '';
    let stderr = '';
    const io = { stdout: (t: string) => void (stdout += t), stderr: (t: string) => void (stderr += t) };
    expect(
      await runCli(
        [
          'jobs',
          'submit',
          'train',
          '--api',
          address,
          '--dataset',
          'procedural:shapes?size=16&channels=1',
          '--preset',
          'nano8',
          '--steps',
          '2',
          '--batch',
          '2',
          '--wait',
        ],
        io,
      ),
    ).toBe(0);
    const done = JSON.parse(stdout) as { id: string; state: string; result: { step: number } };
    expect(done).toMatchObject({ state: 'completed', result: { step: 2 } });
    stdout = '';
    expect(await runCli(['jobs', 'list', '--api', address, '--type', 'train', '--limit', '5'], io)).toBe(0);
    expect((JSON.parse(stdout) as { jobs: { id: string }[] }).jobs.map((j) => j.id)).toContain(done.id);
    stdout = '';
    expect(await runCli(['jobs', 'status', done.id, '--api', address], io)).toBe(0);
    expect(JSON.parse(stdout)).toMatchObject({ id: done.id, state: 'completed' });
    expect(await runCli(['jobs', 'status', 'train-nope', '--api', address], io)).toBe(1);
    expect(stderr).toContain('404: no job train-nope');
  });
});

describe('cancelling a queued job and authentication', () => {
  const stack = useStack({ workers: 0, env: { DDPM_API_TOKEN: 'a-long-enough-test-token' } });
  const auth = { authorization: 'Bearer a-long-enough-test-token' };

  it('requires the bearer token except for health and metrics', async () => {
    expect((await stack.app.inject({ url: '/jobs' })).statusCode).toBe(401);
    expect(
      (await stack.app.inject({ url: '/jobs', headers: { authorization: 'Bearer wrong-token-of-some-length' } }))
        .statusCode,
    ).toBe(401);
    expect((await stack.app.inject({ url: '/jobs', headers: auth })).statusCode).toBe(200);
    expect((await stack.app.inject({ url: '/healthz' })).statusCode).toBe(200);
    expect((await stack.app.inject({ url: '/metrics' })).statusCode).toBe(200);
  });

  it('cancels a job no worker has taken yet at once', async () => {
    const id = (
      await stack.app.inject({ method: 'POST', url: '/jobs/train', payload: tinyTrain(), headers: auth })
    ).json().id as string;
    const cancel = await stack.app.inject({ method: 'DELETE', url: `/jobs/${id}`, headers: auth });
    expect(cancel.statusCode).toBe(200);
    expect(cancel.json()).toMatchObject({ id, state: 'cancelled', result: { status: 'cancelled' } });
    expect((await stack.app.inject({ url: `/jobs/${id}`, headers: auth })).json().state).toBe('cancelled');
    expect(await stack.queues.train.getJobCountByTypes('waiting')).toBe(0);
  });
});

describe('resolution at the door: the effective config is shown, queued, and what the worker runs', () => {
  const stack = useStack({ workers: 0 });

  it('shows what was asked and the effective config with every default filled in', async () => {
    const submitted = await stack.app.inject({
      method: 'POST',
      url: '/jobs/train',
      payload: tinyTrain({ timesteps: 50, sampleCount: 2 }),
    });
    expect(submitted.statusCode).toBe(202);
    const view = (await stack.app.inject({ url: `/jobs/${submitted.json().id}` })).json();
    expect(view.request).toEqual(tinyTrain({ timesteps: 50, sampleCount: 2 }));
    expect(view.config).toEqual(resolveTrainJob(tinyTrain({ timesteps: 50, sampleCount: 2 }) as TrainRequest));
    expect(view.config.train).toMatchObject({
      batchSize: 2,
      accumulation: 1,
      optimizer: { learningRate: 2e-4, warmupSteps: 5000 },
      ema: { decay: 0.9999 },
      randomFlip: true,
    });
    expect(view.config.finalGrid).toEqual({ count: 2, sampler: { kind: 'ancestral', steps: 50 }, seed: 0 });
    // A sample job resolves its sampler against the T of the run it samples.
    const sample = (
      await stack.app.inject({
        method: 'POST',
        url: '/jobs/sample',
        payload: { trainJobId: view.id, kind: 'progressive' },
      })
    ).json();
    expect(sample.config).toEqual({
      trainJobId: view.id,
      kind: 'progressive',
      count: 4,
      sampler: { kind: 'ancestral', steps: 50 },
      seed: 0,
      ema: true,
      every: 5,
      group: { workers: 1, minWorkers: 1, joinTimeoutSeconds: 600, rankTimeoutSeconds: 30, maxRestarts: 3 },
    });
    const tooMany = await stack.app.inject({
      method: 'POST',
      url: '/jobs/sample',
      payload: { trainJobId: view.id, steps: 51 },
    });
    expect(tooMany.statusCode).toBe(400);
    expect(tooMany.json().message).toBe("steps 51 exceeds the model's T = 50 diffusion steps");
  });

  it('the worker runs the queued config, not the request', async () => {
    const id = (await stack.app.inject({ method: 'POST', url: '/jobs/train', payload: tinyTrain({ steps: 3 }) })).json()
      .id as string;
    // BullMQ's getJob distributes the JobData union into a union of Job types; one Job<JobData> takes any of them.
    const job: Job<JobData, JobResult> = (await stack.queues.train.getJob(id))!;
    const data = job.data as JobData<'train'>;
    const edited: JobData<'train'> = { ...data, config: { ...data.config, train: { ...data.config.train, steps: 2 } } };
    await job.updateData(edited);
    await stack.startWorker();
    const done = await stack.waitFinished(id);
    expect(done.returnvalue).toMatchObject({ status: 'completed', step: 2 });
    expect((await stack.app.inject({ url: `/jobs/${id}` })).json()).toMatchObject({
      request: { steps: 3 },
      config: { train: { steps: 2 } },
      result: { step: 2 },
    });
  });
});
