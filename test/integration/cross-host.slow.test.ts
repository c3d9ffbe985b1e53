/**
 * Groups across hosts, on simulated hosts (network namespaces joined by links shaped to
 * 200 Mbit/s, each with a /dev/shm and a data Redis of its own; the control Redis in a namespace
 * of its own): one worker process per host, the API in this process. A train job of 4 ranks on 4
 * hosts ends with the bits of one process with accumulation 4, its gradients between the hosts'
 * own data servers (never shared memory: the hosts do not share it); a sample job of 4 draws the
 * PNG one process draws. Then the faults: a host's worker SIGKILLed, a host's data Redis
 * SIGKILLed, a host's link down past the rank timeout; each job completes with every step.
 *
 * Needs root, iproute2 (ip, tc) and redis-server: skipped, saying so, without them. `.ci/run`
 * runs as root.
 */
import { type ChildProcess } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';

import { SimulatedHosts, simulationUnavailable } from '@ddpm/lab';
import { loadModelFromCheckpoint } from '@ddpm/engine';
import { initBackend } from '@ddpm/kernels';
import { FileStore } from '@ddpm/storage';

import { type Stack, WORKER_MAIN, startStack, tinyTrain, until } from './service-support';

jest.setTimeout(600_000);

const HOSTS = 4;
const unavailable = simulationUnavailable();
if (unavailable !== undefined) console.warn(`SKIPPED: the tests across simulated hosts: ${unavailable}`);
const describeOnHosts = unavailable === undefined ? describe : describe.skip;

interface JobView {
  state: string;
  result?: {
    status: string;
    step: number;
    samples?: string[];
    group?: { worldSize: number; generation: number; restarts: number; dataPlane?: string };
  };
  error?: string;
}

describeOnHosts(`groups across ${HOSTS} simulated hosts (200 Mbit/s links, a data Redis on each)`, () => {
  let sim: SimulatedHosts;
  let stack: Stack;
  /** The worker process of each host. */
  const workers = new Map<number, ChildProcess>();

  function startWorker(host: number): void {
    const child = sim.spawn(host, [process.execPath, WORKER_MAIN], {
      env: {
        ...process.env,
        ...stack.env,
        DDPM_LOCK_DURATION_MS: '4000',
        DDPM_STALLED_INTERVAL_MS: '2000',
        DDPM_RANK_DATA_URL: sim.hosts[host]!.dataRedisUrl,
      },
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    workers.set(host, child);
  }

  /** Waits until every host's worker has an idle slot whose data server answers. */
  async function allIdle(): Promise<void> {
    await until(
      `${HOSTS} idle workers`,
      async () => {
        const slots = await stack.slots();
        const pids = new Set([...workers.values()].map((w) => w.pid));
        const idle = slots.filter((s) => pids.has(s.pid) && s.state === 'idle');
        return idle.length === HOSTS ? true : undefined;
      },
      60_000,
    );
  }

  async function submit(kind: 'train' | 'sample', body: Record<string, unknown>): Promise<string> {
    const r = await stack.app.inject({ method: 'POST', url: `/jobs/${kind}`, payload: body });
    expect(r.statusCode).toBe(202);
    return r.json().id as string;
  }

  async function view(id: string): Promise<JobView> {
    return (await stack.app.inject({ url: `/jobs/${id}` })).json();
  }

  async function logs(id: string): Promise<string> {
    return (await stack.app.inject({ url: `/jobs/${id}/logs` })).body;
  }

  /** The host of a rank of `id` other than rank 0 (a slot claimed by the coordinator). */
  async function hostOfSomeRank(id: string): Promise<number> {
    const slot = await until(`a rank of ${id} other than 0`, async () =>
      (await stack.slots()).find((s) => s.job === id && s.state === 'busy' && s.by !== ''),
    );
    const host = [...workers].find(([, w]) => w.pid === slot.pid)?.[0];
    if (host === undefined) throw new Error(`slot ${slot.id} (pid ${slot.pid}) is no host's worker`);
    return host;
  }

  /** A group train job on the 4 hosts: nano8, 2 images per rank per step, checkpoints every 2 steps. */
  const groupTrain = (o: Record<string, unknown>): Record<string, unknown> =>
    tinyTrain({
      batchSize: 8,
      steps: 10,
      checkpointEvery: 2,
      rankTimeoutSeconds: 6,
      joinTimeoutSeconds: 30,
      sampleCount: 0,
      ...o,
    });

  beforeAll(async () => {
    await initBackend({ backend: 'wasm' });
    sim = await SimulatedHosts.create({ hosts: HOSTS, linkMbit: 200 });
    // The control Redis (queues, slots, signals) of the control namespace; the API in this process.
    stack = await startStack({ workers: 0, env: { REDIS_URL: sim.control.redisUrl } });
    for (let h = 0; h < HOSTS; h++) startWorker(h);
  });

  afterAll(async () => {
    await stack?.close();
    await sim?.destroy();
  });

  beforeEach(async () => {
    for (let h = 0; h < HOSTS; h++) {
      const w = workers.get(h);
      if (w === undefined || w.exitCode !== null || w.signalCode !== null) startWorker(h);
    }
    await allIdle();
  });

  let trainId = '';

  it('trains with workers 4 to the bits of one process with accumulation 4, the gradients between the hosts’ own servers', async () => {
    const before = sim.hosts.map((h) => sim.counters(h.index));
    const id = await submit('train', groupTrain({ workers: 4, steps: 4 }));
    await stack.waitFinished(id, 300_000);
    const after = sim.hosts.map((h) => sim.counters(h.index));
    const done = await view(id);
    expect(done).toMatchObject({
      state: 'completed',
      result: { step: 4, group: { worldSize: 4, generation: 1, restarts: 0, dataPlane: 'ranks' } },
    });
    expect(await logs(id)).toMatch(/rank 0: generation 1's gradients travel between the ranks' own data servers/);
    // Every host's link carried its share of 4 all-reduces of nano8's fp32 gradients: at least
    // 2(N − 1)/N of them out (the kernel's counters; the control traffic adds a little).
    const gradientBytes = 701_345 * 4;
    for (let h = 0; h < HOSTS; h++) {
      const sent = after[h]!.sent - before[h]!.sent;
      expect(sent).toBeGreaterThan(4 * ((2 * (HOSTS - 1)) / HOSTS) * gradientBytes * 0.95);
    }

    const alone = await submit('train', groupTrain({ workers: 1, accumulation: 4, steps: 4 }));
    await stack.waitFinished(alone, 300_000);
    expect(await view(alone)).toMatchObject({ state: 'completed', result: { step: 4 } });
    const file = (job: string, name: string): Promise<Buffer> =>
      fs.readFile(path.join(stack.storeDir, 'runs', job, 'checkpoints', 'step-000000004', name));
    for (const name of ['model.safetensors', 'ema.safetensors', 'optimizer.safetensors']) {
      expect((await file(id, name)).equals(await file(alone, name))).toBe(true);
    }
    trainId = id;
  });

  it('samples with workers 4: the same PNG bytes as one process, the batches relayed to rank 0’s own server', async () => {
    expect(trainId).not.toBe('');
    // 64 images in batches of 16: one batch per rank.
    const body = { trainJobId: trainId, count: 64, steps: 4, seed: 9, rankTimeoutSeconds: 6 };
    const together = await submit('sample', { ...body, workers: 4 });
    await stack.waitFinished(together, 300_000);
    const alone = await submit('sample', { ...body, workers: 1 });
    await stack.waitFinished(alone, 300_000);
    expect(await view(together)).toMatchObject({
      state: 'completed',
      result: { status: 'completed', samples: [together], group: { worldSize: 4, restarts: 0, dataPlane: 'ranks' } },
    });
    expect(await logs(together)).toMatch(/the samples travel to rank 0 through its own data server/);
    const png = (id: string): Promise<Buffer> => fs.readFile(path.join(stack.storeDir, 'samples', `${id}.png`));
    expect((await png(together)).equals(await png(alone))).toBe(true);
  });

  it('SIGKILL of a host’s worker mid-run: the group re-forms on the hosts left and completes every step', async () => {
    const id = await submit('train', groupTrain({ workers: 4, minWorkers: 3 }));
    await stack.progressOf(id, (step) => step >= 3);
    const host = await hostOfSomeRank(id);
    workers.get(host)!.kill('SIGKILL');
    await stack.waitFinished(id, 300_000);
    const done = await view(id);
    expect(done).toMatchObject({ state: 'completed', result: { step: 10, group: { dataPlane: 'ranks' } } });
    expect(done.result!.group!.restarts).toBeGreaterThanOrEqual(1);
    expect(await logs(id)).toMatch(/generation 1 ended: .*; restart 1 of 3 from the last checkpoint/);
    await loadable(id, 10);
  });

  it('SIGKILL of a host’s data Redis mid-run: the generation ends, the group re-forms without that host and completes', async () => {
    const id = await submit('train', groupTrain({ workers: 4, minWorkers: 3 }));
    await stack.progressOf(id, (step) => step >= 3);
    const host = await hostOfSomeRank(id);
    await sim.killDataRedis(host);
    try {
      await stack.waitFinished(id, 300_000);
      const done = await view(id);
      expect(done).toMatchObject({ state: 'completed', result: { step: 10, group: { dataPlane: 'ranks' } } });
      expect(done.result!.group!.restarts).toBeGreaterThanOrEqual(1);
      const text = await logs(id);
      expect(text).toMatch(/generation 1 ended: .*; restart 1 of 3 from the last checkpoint/);
      // The host whose data server is down is not claimed again: the next generation has 3 ranks.
      expect(text).toMatch(/generation 2: 3 ranks/);
      await loadable(id, 10);
    } finally {
      await sim.startRedis(host);
    }
  });

  it('a host’s link down past the rank timeout: the generation ends within it and re-forms without that host', async () => {
    const id = await submit('train', groupTrain({ workers: 4, minWorkers: 3, rankTimeoutSeconds: 4, steps: 12 }));
    await stack.progressOf(id, (step) => step >= 3);
    const host = await hostOfSomeRank(id);
    sim.setLink(host, false);
    const downAt = Date.now();
    try {
      await until('generation 1 ended', async () =>
        (await logs(id)).includes('generation 1 ended') ? true : undefined,
      ).catch(async (e: Error) => {
        throw new Error(`${e.message}; the job's log:\n${await logs(id)}`);
      });
      // Noticed by the peers within the rank timeout (plus a liveness slice and the log poll).
      expect(Date.now() - downAt).toBeLessThan(4000 + 3000);
      await until('generation 2', async () => (/generation 2: 3 ranks/.test(await logs(id)) ? true : undefined));
    } finally {
      sim.setLink(host, true);
    }
    await stack.waitFinished(id, 300_000);
    const done = await view(id);
    expect(done).toMatchObject({ state: 'completed', result: { step: 12 } });
    expect(await logs(id)).toMatch(/generation 1 ended: .*rank \d sent no heartbeat within the rank timeout/);
    await loadable(id, 12);
  });

  async function loadable(id: string, step: number): Promise<void> {
    const loaded = await loadModelFromCheckpoint(new FileStore(stack.storeDir), `runs/${id}`);
    expect(loaded.ref.step).toBe(step);
    loaded.model.dispose();
  }
});
