/**
 * Data-parallel groups surviving faults, with real worker processes and real Redis (the slow
 * tier: each waits out rank timeouts and restarts): a rank killed (SIGKILL) or stopped
 * (SIGSTOP) mid-run, a spare worker replacing a lost rank, a sampling group losing a rank, and
 * the data plane's Redis restarting mid-run. The group is re-formed from the last checkpoint and
 * the job completes; its result lists the generations and why each ended.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';

import { initBackend } from '@ddpm/kernels';
import { findOnPath, freePort } from '@ddpm/lab';
import { Redis } from 'ioredis';

import { childOf, groupTrain, loadable, logs, rankSlot, samplingGroupUnderWay, submit, view } from './groups-support';
import { type Stack, startStack, useStack } from './service-support';

jest.setTimeout(300_000);

beforeAll(async () => {
  await initBackend({ backend: 'wasm' });
});

describe('groups surviving failures (worker processes)', () => {
  const stack = useStack({ workers: 0 });
  beforeEach(() => stack.killWorkerProcesses());

  it('SIGKILL of one of 2 ranks mid-run: the group re-forms with the rank left (minWorkers 1) and completes', async () => {
    stack.startWorkerProcess();
    stack.startWorkerProcess();
    const id = await submit(stack, groupTrain({ workers: 2, minWorkers: 1, steps: 10, joinTimeoutSeconds: 16 }));
    await stack.progressOf(id, (step) => step >= 3);
    const victim = await rankSlot(stack, id);
    process.kill(victim.pid, 'SIGKILL');
    await stack.waitFinished(id, 240_000);
    const done = await view(stack, id);
    expect(done).toMatchObject({ state: 'completed', result: { step: 10, group: { worldSize: 1, restarts: 1 } } });
    // The generations, with why the first ended: what the console shows of a group.
    expect(done.result!.group!.generations).toMatchObject([
      { generation: 1, worldSize: 2, ended: expect.stringMatching(/./), restart: true },
      { generation: 2, worldSize: 1 },
    ]);
    expect(done.result!.group!.generations![1]!.ended).toBeUndefined();
    expect(await logs(stack, id)).toMatch(
      /generation 1 ended: .*; restart 1 of 3 from the last checkpoint[\s\S]*generation 2: 1 ranks/,
    );
    await loadable(stack, id, 10);
    // What the killed rank's generation left in shared memory is gone with it.
    expect((await fs.readdir('/dev/shm')).filter((f) => f.includes(id))).toEqual([]);
  });

  it('SIGKILL of one of 3 ranks mid-run: a spare worker replaces it and the group of 3 completes', async () => {
    for (let i = 0; i < 4; i++) stack.startWorkerProcess();
    const id = await submit(stack, groupTrain({ workers: 3, steps: 8 }));
    await stack.progressOf(id, (step) => step >= 2);
    const victim = await rankSlot(stack, id);
    process.kill(victim.pid, 'SIGKILL');
    await stack.waitFinished(id, 280_000);
    expect(await view(stack, id)).toMatchObject({
      state: 'completed',
      result: { step: 8, group: { worldSize: 3, restarts: 1 } },
    });
    await loadable(stack, id, 8);
  });

  it('SIGKILL of a sampling group’s rank 1 mid-sampling: the group samples again with the rank left and the grid is written', async () => {
    const id = await samplingGroupUnderWay(stack, 4);
    const victim = await rankSlot(stack, id);
    process.kill(victim.pid, 'SIGKILL');
    await stack.waitFinished(id, 240_000);
    expect(await view(stack, id)).toMatchObject({
      state: 'completed',
      result: { status: 'completed', step: 1, samples: [id], group: { worldSize: 1, restarts: 1 } },
    });
    expect(await logs(stack, id)).toMatch(
      /generation 1 ended: .*; restart 1 of 3, sampling again[\s\S]*generation 2: 1 ranks/,
    );
    expect((await fs.stat(path.join(stack.storeDir, 'samples', `${id}.png`))).size).toBeGreaterThan(1000);
  });

  it('a SIGSTOPped rank is noticed within the rank timeout; the group restarts and completes', async () => {
    stack.startWorkerProcess();
    stack.startWorkerProcess();
    const id = await submit(stack, groupTrain({ workers: 2, steps: 8, rankTimeoutSeconds: 4 }));
    await stack.progressOf(id, (step) => step >= 2);
    const victim = await childOf((await rankSlot(stack, id)).pid);
    process.kill(victim, 'SIGSTOP');
    const stoppedAt = Date.now();
    const ended = new Promise<number>((resolve) => {
      const poll = setInterval(() => {
        void logs(stack, id).then((text) => {
          if (/generation 1 ended/.test(text)) {
            clearInterval(poll);
            resolve(Date.now());
          }
        });
      }, 200);
    });
    const noticedAfter = (await ended) - stoppedAt;
    // Noticed by the peers' liveness checks within the timeout (plus a check slice and the log poll).
    expect(noticedAfter).toBeLessThan(4000 + 2500);
    expect(await logs(stack, id)).toMatch(/generation 1 ended: .*rank 1 sent no heartbeat within the rank timeout/);
    await stack.waitFinished(id, 240_000);
    expect(await view(stack, id)).toMatchObject({ state: 'completed', result: { step: 8, group: { restarts: 1 } } });
    // Its worker ended it once the generation was over: nothing is left holding the slot.
    expect(() => process.kill(victim, 0)).toThrow();
  });
});

describe('the data plane restarting mid-run', () => {
  let stack: Stack;
  let dataRedis: ChildProcess | undefined;
  let port: number;
  const redisServer = findOnPath('redis-server');
  const startData = (): ChildProcess =>
    spawn(redisServer!, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
      stdio: 'ignore',
    });
  async function ready(): Promise<void> {
    const probe = new Redis(port, '127.0.0.1', {
      lazyConnect: true,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
    });
    for (let i = 0; i < 100; i++) {
      if (
        await probe.connect().then(
          () => probe.ping(),
          () => undefined,
        )
      )
        break;
      await new Promise((r) => setTimeout(r, 100));
    }
    probe.disconnect();
  }
  beforeAll(async () => {
    port = await freePort();
    dataRedis = startData();
    await ready();
    // The gradients in that Redis too (not in shared memory): its restart loses them.
    stack = await startStack({
      workers: 0,
      env: { DDPM_DATA_REDIS_URL: `redis://127.0.0.1:${port}`, DDPM_SHM_DIR: 'off' },
    });
  });
  afterAll(async () => {
    await stack.close();
    dataRedis?.kill('SIGKILL');
  });

  it('kills the data-plane Redis and starts it again: the group restarts from its checkpoint and completes', async () => {
    expect(redisServer).toBeDefined();
    stack.startWorkerProcess();
    stack.startWorkerProcess();
    const id = await submit(stack, groupTrain({ workers: 2, steps: 10 }));
    await stack.progressOf(id, (step) => step >= 3);
    dataRedis!.kill('SIGKILL');
    await new Promise((r) => setTimeout(r, 1500));
    dataRedis = startData();
    await ready();
    await stack.waitFinished(id, 240_000);
    const done = await view(stack, id);
    expect(done).toMatchObject({ state: 'completed', result: { step: 10 } });
    expect(done.result!.group!.restarts).toBeGreaterThanOrEqual(1);
    await loadable(stack, id, 10);
  });
});
