/** What the group tests share: a small group job, and reading a group's state, log, ranks and checkpoint. */
import { promises as fs } from 'node:fs';

import { loadModelFromCheckpoint } from '@ddpm/engine';
import { FileStore } from '@ddpm/storage';

import { type Stack, tinyTrain } from './service-support';

/** A small group job: nano8 on 16 procedural images, 2 images per rank per step. */
export const groupTrain = (o: Record<string, unknown>): Record<string, unknown> =>
  tinyTrain({
    batchSize: 2 * Number(o['workers'] ?? 2),
    rankTimeoutSeconds: 6,
    joinTimeoutSeconds: 60,
    checkpointEvery: 2,
    ...o,
  });

export async function submit(stack: Stack, body: Record<string, unknown>): Promise<string> {
  const r = await stack.app.inject({ method: 'POST', url: '/jobs/train', payload: body });
  expect(r.statusCode).toBe(202);
  return r.json().id as string;
}

export async function view(
  stack: Stack,
  id: string,
): Promise<{
  state: string;
  result?: {
    status: string;
    step: number;
    group?: {
      worldSize: number;
      generation: number;
      restarts: number;
      generations?: { generation: number; worldSize: number; ended?: string; restart?: boolean }[];
    };
  };
  error?: string;
}> {
  return (await stack.app.inject({ url: `/jobs/${id}` })).json();
}

export async function logs(stack: Stack, id: string): Promise<string> {
  return (await stack.app.inject({ url: `/jobs/${id}/logs` })).body;
}

/** The final checkpoint verifies and loads. */
export async function loadable(stack: Stack, id: string, step: number): Promise<void> {
  const store = new FileStore(stack.storeDir);
  const loaded = await loadModelFromCheckpoint(store, `runs/${id}`);
  expect(loaded.ref.step).toBe(step);
  loaded.model.dispose();
}

/**
 * Two worker processes, a one-step run, and a sample job of 32 images drawn by a sampling group of
 * 2 (minWorkers 1) with the given rank timeout, 10 sampling steps in; resolves to the sample job.
 */
export async function samplingGroupUnderWay(stack: Stack, rankTimeoutSeconds: number): Promise<string> {
  stack.startWorkerProcess();
  stack.startWorkerProcess();
  const trainId = await submit(stack, tinyTrain({ steps: 1, checkpointEvery: 1, sampleCount: 0 }));
  await stack.waitFinished(trainId);
  const r = await stack.app.inject({
    method: 'POST',
    url: '/jobs/sample',
    payload: {
      trainJobId: trainId,
      count: 32,
      steps: 60,
      workers: 2,
      minWorkers: 1,
      rankTimeoutSeconds,
      joinTimeoutSeconds: 16,
    },
  });
  expect(r.statusCode).toBe(202);
  const id = r.json().id as string;
  await stack.progressOf(id, (step) => step >= 10);
  return id;
}

/** The slot serving `id` as a rank other than 0 (claimed by the coordinator), once it exists. */
export async function rankSlot(stack: Stack, id: string): Promise<{ pid: number; id: string }> {
  for (let i = 0; i < 600; i++) {
    const slot = (await stack.slots()).find((s) => s.job === id && s.state === 'busy' && s.by !== '');
    if (slot) return slot;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`no rank of ${id} found`);
}

/** The job child of a worker process. */
export async function childOf(pid: number): Promise<number> {
  for (let i = 0; i < 100; i++) {
    const children = (await fs.readFile(`/proc/${pid}/task/${pid}/children`, 'utf8').catch(() => ''))
      .trim()
      .split(/\s+/)
      .filter(Boolean);
    if (children.length > 0) return Number(children[0]);
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`worker ${pid} has no child`);
}
