/**
 * Data-parallel groups in the service, with real worker processes (or in-process workers whose
 * ranks run in real child processes), real Redis, events awaited with deadlines: a group trains
 * and reports per-rank metrics; group jobs on too few workers all complete; a cancel stops every
 * rank at one step; a rank's worker shutting down hands the job back or re-forms the group
 * without counting a restart; a writer of a dead generation cannot touch the run. A sample job's
 * sampling group draws the grid one process draws. (Ranks killed or stopped and the data plane
 * restarting are groups-faults.slow.test.ts.)
 */
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { abortGeneration } from '@ddpm/allreduce';
import { initBackend } from '@ddpm/kernels';
import { type TrainConfig, resolveTrainJob } from '@ddpm/settings';
import { Trainer, listCheckpoints } from '@ddpm/engine';
import { FileStore } from '@ddpm/storage';
import { generationFence } from '@ddpm/worker';
import { Redis } from 'ioredis';

import { groupTrain, loadable, logs, rankSlot, samplingGroupUnderWay, submit, view } from './groups-support';
import { tinyTrain, until, useStack } from './service-support';

jest.setTimeout(300_000);

beforeAll(async () => {
  await initBackend({ backend: 'wasm' });
});

describe('groups with in-process workers', () => {
  const stack = useStack({ workers: 2 });

  it('trains as one group of 2: the whole group’s progress, per-rank metrics, a loadable checkpoint', async () => {
    // A final grid long enough for rank 1 to be gone well past the rank timeout: rank 0 draws it alone.
    const id = await submit(
      stack,
      groupTrain({ workers: 2, steps: 4, rankTimeoutSeconds: 2, sampleCount: 4, sampleSteps: 250 }),
    );
    await stack.waitFinished(id);
    const done = await view(stack, id);
    expect(done).toMatchObject({
      state: 'completed',
      result: {
        status: 'completed',
        step: 4,
        samples: [`${id}-final`],
        group: { worldSize: 2, generation: 1, restarts: 0, dataPlane: 'shared-memory' },
      },
    });
    expect(await logs(stack, id)).toMatch(
      /generation 1: 2 ranks[\s\S]*rank 0 of 2 joined generation 1[\s\S]*4 steps of batch 4 as rank 0 of 2/,
    );
    // Both ranks on this host: the gradients went through shared memory, and none is left there.
    expect(await logs(stack, id)).toMatch(
      /rank 0: generation 1's gradients travel through \/dev\/shm: every rank is on this host, Redis carries the signals/,
    );
    expect((await fs.readdir('/dev/shm')).filter((f) => f.includes(id))).toEqual([]);
    await loadable(stack, id, 4);
    const metrics = (await Promise.all(stack.workers.map((w) => w.metrics.registry.metrics()))).join('\n');
    for (const rank of ['0', '1']) {
      expect(metrics).toMatch(new RegExp(`ddpm_allreduce_bytes_total\\{rank="${rank}",direction="sent"\\} [1-9]`));
      expect(metrics).toMatch(
        new RegExp(`ddpm_train_rank_compute_seconds_count\\{queue="train",rank="${rank}",backend="wasm"\\} 4`),
      );
    }
    // Steps and images are counted once for the group (by rank 0): 4 steps of 4 images.
    expect(metrics).toMatch(/ddpm_train_steps_total\{queue="train",rank="0",backend="wasm"\} 4/);
    expect(metrics).toMatch(/ddpm_train_images_total\{queue="train",rank="0",backend="wasm"\} 16/);
    expect(metrics).not.toMatch(/ddpm_train_steps_total\{queue="train",rank="1"/);
    expect(metrics).toMatch(/ddpm_world_size\{queue="train"\} 2/);
    for (const rank of ['0', '1'])
      expect(metrics).toMatch(new RegExp(`ddpm_allreduce_plane\\{rank="${rank}",plane="shared-memory"\\} 1`));
  });

  it('runs three group jobs of 2 submitted at once on 2 workers to completion (neither deadlock nor livelock)', async () => {
    const ids = [
      await submit(stack, groupTrain({ workers: 2, steps: 3 })),
      await submit(stack, groupTrain({ workers: 2, steps: 3 })),
      await submit(stack, groupTrain({ workers: 2, steps: 3 })),
    ];
    for (const id of ids) await stack.waitFinished(id, 240_000);
    for (const id of ids)
      expect(await view(stack, id)).toMatchObject({ state: 'completed', result: { step: 3, group: { worldSize: 2 } } });
  });

  it('cancels a running group: every rank stops after the same step and one checkpoint is written', async () => {
    const id = await submit(stack, groupTrain({ workers: 2, steps: 100_000, checkpointEvery: 100_000 }));
    await stack.progressOf(id, (step) => step >= 2);
    expect((await stack.app.inject({ method: 'DELETE', url: `/jobs/${id}` })).statusCode).toBe(202);
    await stack.waitFinished(id);
    const done = await view(stack, id);
    expect(done).toMatchObject({ state: 'cancelled', result: { status: 'cancelled' } });
    const checkpoints = await listCheckpoints(new FileStore(stack.storeDir), `runs/${id}`);
    expect(checkpoints.map((c) => c.step)).toEqual([done.result!.step]);
  });

  it('fails a job whose group fails more than maxRestarts times, with the reasons', async () => {
    const id = await submit(
      stack,
      groupTrain({ workers: 2, steps: 100_000, checkpointEvery: 100_000, maxRestarts: 0 }),
    );
    await stack.progressOf(id, (step) => step >= 1);
    await abortGeneration(
      stack.redis,
      `${stack.config.queuePrefix}:dp:${id}:g1`,
      { kind: 'failure', message: 'aborted by the test' },
      60_000,
    );
    await stack.waitFinished(id);
    const done = await view(stack, id);
    expect(done.state).toBe('failed');
    expect(done.error).toMatch(/^the group failed 1 times \(maxRestarts 0\): generation 1: .*aborted by the test/);
  });

  it('draws a sample job’s grid with a sampling group of 2: the same PNG as one process, batches split by rank', async () => {
    const trainId = await submit(stack, tinyTrain({ steps: 2, checkpointEvery: 2, sampleCount: 0 }));
    await stack.waitFinished(trainId);
    // 40 images in batches of 16: rank 0 draws batches 0 and 2, rank 1 batch 1.
    const body = { trainJobId: trainId, count: 40, steps: 4, seed: 5 };
    const ids: string[] = [];
    for (const workers of [1, 2]) {
      const r = await stack.app.inject({
        method: 'POST',
        url: '/jobs/sample',
        payload: { ...body, workers, rankTimeoutSeconds: 5 },
      });
      expect(r.statusCode).toBe(202);
      expect(r.json().config.group).toMatchObject({ workers, minWorkers: workers });
      ids.push(r.json().id as string);
      await stack.waitFinished(ids.at(-1)!);
    }
    const [alone, together] = ids as [string, string];
    expect(await view(stack, together)).toMatchObject({
      state: 'completed',
      result: {
        status: 'completed',
        step: 2,
        samples: [together],
        group: { worldSize: 2, generation: 1, restarts: 0 },
      },
    });
    const png = async (id: string): Promise<Buffer> => fs.readFile(path.join(stack.storeDir, 'samples', `${id}.png`));
    expect((await png(together)).equals(await png(alone))).toBe(true);
    expect(
      JSON.parse(await fs.readFile(path.join(stack.storeDir, 'samples', `${together}.json`), 'utf8')),
    ).toMatchObject({ count: 40, seed: 5, workers: 2, step: 2 });
    expect(await logs(stack, together)).toMatch(
      /generation 1: 2 ranks[\s\S]*rank 0 of 2 joined generation 1 of a sampling group[\s\S]*rank 0 of a sampling group of 2/,
    );
    // Rank 1 drew batch 1 (16 images of 8 × 8 × 1 float32) and rank 0 received it.
    const metrics = (await Promise.all(stack.workers.map((w) => w.metrics.registry.metrics()))).join('\n');
    const batchBytes = 16 * 8 * 8 * 4;
    expect(metrics).toMatch(
      new RegExp(`ddpm_sampling_relay_bytes_total\\{queue="sample",rank="1",direction="sent"\\} ${batchBytes}\\b`),
    );
    expect(metrics).toMatch(
      new RegExp(`ddpm_sampling_relay_bytes_total\\{queue="sample",rank="0",direction="received"\\} ${batchBytes}\\b`),
    );
    // Nothing of the relay is left on the data plane.
    expect(await stack.redis.keys(`${stack.config.queuePrefix}:dp:${together}:g1:relay:*`)).toEqual([]);
  });

  it('cancels a sampling group: both ranks stop, the job ends cancelled, both workers are free and the relay is gone', async () => {
    const trainId = await submit(stack, tinyTrain({ steps: 1, checkpointEvery: 1, sampleCount: 0 }));
    await stack.waitFinished(trainId);
    const r = await stack.app.inject({
      method: 'POST',
      url: '/jobs/sample',
      payload: { trainJobId: trainId, count: 64, steps: 400, workers: 2 },
    });
    const id = r.json().id as string;
    await stack.progressOf(id, (step) => step >= 5);
    expect((await stack.app.inject({ method: 'DELETE', url: `/jobs/${id}` })).statusCode).toBe(202);
    await stack.waitFinished(id);
    expect(await view(stack, id)).toMatchObject({
      state: 'cancelled',
      result: { status: 'cancelled', group: { worldSize: 2 } },
    });
    await until('both workers to be free', async () =>
      (await stack.slots()).every((s) => s.state === 'idle') ? true : undefined,
    );
    expect(await stack.redis.keys(`${stack.config.queuePrefix}:dp:${id}:g1:relay:*`)).toEqual([]);
  });

  it('fails a job that can never gather its minimum at once, saying so', async () => {
    const id = await submit(stack, groupTrain({ workers: 3, minWorkers: 3, joinTimeoutSeconds: 2, steps: 1 }));
    await stack.waitFinished(id);
    expect(await view(stack, id)).toMatchObject({
      state: 'failed',
      error: 'the job needs at least 3 workers at once and 2 are running',
    });
  });
});

describe('SIGTERM of a rank’s worker', () => {
  const stack = useStack({ workers: 0 });

  it('stops every rank after one step, checkpoints once, hands the job back; the group that forms next finishes it', async () => {
    stack.startWorkerProcess();
    stack.startWorkerProcess();
    // A short join timeout: the group of 2 that cannot form again settles for 1 after half of it.
    const id = await submit(
      stack,
      groupTrain({ workers: 2, minWorkers: 1, steps: 12, checkpointEvery: 100, joinTimeoutSeconds: 16 }),
    );
    await stack.progressOf(id, (step) => step >= 2);
    const rank = await rankSlot(stack, id);
    const worker = stack.processes.find((p) => p.pid === rank.pid)!;
    const exited = new Promise<number | null>((resolve) => worker.once('exit', (code) => resolve(code)));
    worker.kill('SIGTERM');
    expect(await exited).toBe(0);
    const handedBack = await stack.queues.train.getJob(id);
    await stack.waitFinished(id, 240_000);
    const done = await view(stack, id);
    expect(done).toMatchObject({ state: 'completed', result: { step: 12 } });
    const text = await logs(stack, id);
    const stoppedAt = Number(/stopped at step (\d+) and handed back/.exec(text)?.[1]);
    expect(stoppedAt).toBeGreaterThanOrEqual(2);
    expect(text).toContain(`checkpoint (stopped) at step ${stoppedAt}`);
    expect(text).toContain(`from the checkpoint of step ${stoppedAt}`);
    expect(handedBack?.attemptsMade ?? 0).toBe(0);
  });
});

describe('SIGTERM of a sampling rank’s worker', () => {
  const stack = useStack({ workers: 0 });

  it('ends the generation at once, not as a failure: the group re-forms without it, no restart counted, and the grid is written', async () => {
    // A long rank timeout: the generation must end by the rank's word, not by its silence.
    const id = await samplingGroupUnderWay(stack, 60);
    const rank = await rankSlot(stack, id);
    const worker = stack.processes.find((p) => p.pid === rank.pid)!;
    const exited = new Promise<number | null>((resolve) => worker.once('exit', (code) => resolve(code)));
    const stoppedAt = Date.now();
    worker.kill('SIGTERM');
    expect(await exited).toBe(0);
    await until(
      'the generation to end',
      async () => (/generation 1 ended/.test(await logs(stack, id)) ? true : undefined),
      30_000,
    );
    expect(Date.now() - stoppedAt).toBeLessThan(30_000);
    await stack.waitFinished(id, 240_000);
    expect(await view(stack, id)).toMatchObject({
      state: 'completed',
      result: {
        status: 'completed',
        samples: [id],
        group: {
          worldSize: 1,
          generation: 2,
          restarts: 0,
          generations: [
            { generation: 1, worldSize: 2, ended: expect.stringMatching(/shutting down/), restart: false },
            { generation: 2, worldSize: 1 },
          ],
        },
      },
    });
    expect(await logs(stack, id)).toMatch(
      /generation 1 ended: .*rank 1's worker is shutting down \(not a failure\); re-forming without it, sampling again \(not counted as a restart\)[\s\S]*generation 2: 1 ranks/,
    );
    expect((await fs.stat(path.join(stack.storeDir, 'samples', `${id}.png`))).size).toBeGreaterThan(1000);
  });
});

describe('the write fence', () => {
  it('refuses a rank 0 of a dead generation: the live generation’s checkpoints stay intact', async () => {
    const root = await fs.mkdtemp(path.join(os.tmpdir(), 'ddpm-fence-'));
    const control = new Redis('redis://127.0.0.1:6379');
    const key = `test-fence-${process.pid}-${Date.now()}:generation`;
    try {
      const store = new FileStore(root);
      const config: TrainConfig = resolveTrainJob({
        dataset: 'procedural:shapes?size=16&channels=1',
        preset: 'nano8',
        steps: 2,
        batchSize: 2,
        checkpointEvery: 1,
        keepCheckpoints: 1,
      }).train;
      // Generation 2 owns the run and wrote step 2 (keeping one checkpoint).
      await control.set(key, '2');
      const live = await Trainer.open(config, { store, prefix: 'run' });
      await live.run();
      const written = await Promise.all(
        (await store.list('run/')).map(async (o) => [o.key, Buffer.from(await store.get(o.key)).toString('base64')]),
      );
      // A rank 0 of generation 1 wakes up late at step 1 and 2, and tries to write (and prune).
      const stale = await Trainer.open({ ...config, steps: 1 }, { store, prefix: 'run', resume: false });
      await stale.trainStep();
      await expect(stale.checkpoint('periodic', generationFence(control, key, 1))).rejects.toMatchObject({
        code: 'DDPM_GROUP_FENCED',
        kind: 'unavailable',
      });
      await stale.trainStep();
      await expect(stale.checkpoint('periodic', generationFence(control, key, 1))).rejects.toThrow(
        'generation 1 no longer owns the run (generation 2 does)',
      );
      const after = await Promise.all(
        (await store.list('run/')).map(async (o) => [o.key, Buffer.from(await store.get(o.key)).toString('base64')]),
      );
      expect(after).toEqual(written);
      expect((await listCheckpoints(store, 'run')).map((c) => c.step)).toEqual([2]);
      // The owner's own fence lets it write.
      await expect(live.checkpoint('final', generationFence(control, key, 2))).resolves.toMatchObject({ step: 2 });
      live.dispose();
      stale.dispose();
    } finally {
      await control.del(key);
      control.disconnect();
      await fs.rm(root, { recursive: true, force: true });
    }
  });
});
