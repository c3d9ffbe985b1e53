/**
 * A worker process killed with SIGKILL mid-training: its job's lock expires, another worker
 * process picks the job up and finishes it from the last checkpoint (not from step 0).
 */
import { tinyTrain, useStack } from './service-support';

jest.setTimeout(240_000);

const stack = useStack({ workers: 0 });
// Each test starts its own worker processes: stop the previous test's.
beforeEach(() => stack.killWorkerProcesses());
const progressOf = (id: string, predicate: (step: number) => boolean): Promise<number> =>
  stack.progressOf(id, predicate);

test('SIGKILL of the worker holding a train job: another worker resumes it from its checkpoint', async () => {
  const first = stack.startWorkerProcess();
  const id = (
    await stack.app.inject({
      method: 'POST',
      url: '/jobs/train',
      payload: tinyTrain({ steps: 30, checkpointEvery: 4 }),
    })
  ).json().id as string;
  await progressOf(id, (step) => step >= 9);
  const before = (await stack.app.inject({ url: `/jobs/${id}/checkpoints` })).json().checkpoints as { step: number }[];
  expect(before.length).toBeGreaterThan(0);
  const exited = new Promise((resolve) => first.once('exit', resolve));
  first.kill('SIGKILL');
  await exited;
  // How far the killed attempt got, by its last report: what the next one redoes from its checkpoint.
  const lastReported = ((await stack.queues.train.getJob(id))!.progress as { step: number }).step;
  stack.startWorkerProcess();
  // The first progress of the new attempt starts at a checkpoint, not at 0.
  const resumedAt = await progressOf(id, () => true);
  expect(resumedAt).toBeGreaterThanOrEqual(before[0]!.step);
  const job = await stack.waitFinished(id, 200_000);
  expect(await job.getState()).toBe('completed');
  const view = (await stack.app.inject({ url: `/jobs/${id}` })).json();
  expect(view).toMatchObject({ state: 'completed', result: { status: 'completed', step: 30 } });
  const logs = (await stack.app.inject({ url: `/jobs/${id}/logs` })).body;
  expect(logs).toMatch(new RegExp(`resuming from step (${before.map((c) => c.step).join('|')}|\\d+)`));
  const resumed = Number(/resuming from step (\d+)/.exec(logs)![1]);
  expect(resumed).toBeGreaterThanOrEqual(before[0]!.step);
  // The result says it resumed, that the run's stored configuration matched the queued one, and
  // what the crash cost: the steps past the checkpoint, trained again, and the time that took.
  expect(view.result.resumedFrom).toEqual({
    step: resumed,
    ignored: [],
    redone: { steps: lastReported - resumed, seconds: expect.any(Number) },
  });
  expect(lastReported - resumed).toBeGreaterThan(0);
  expect(view.result.resumedFrom.redone.seconds).toBeGreaterThan(0);
  expect(logs).toContain(
    `the last attempt reached step ${lastReported}: ${lastReported - resumed} steps since its last checkpoint are redone`,
  );
});

test('SIGTERM: the worker checkpoints its running job and exits; the job resumes on another worker', async () => {
  const first = stack.startWorkerProcess();
  const id = (
    await stack.app.inject({
      method: 'POST',
      url: '/jobs/train',
      payload: tinyTrain({ steps: 25, checkpointEvery: 1000 }),
    })
  ).json().id as string;
  const reached = await progressOf(id, (step) => step >= 4);
  const exited = new Promise<number | null>((resolve) => first.once('exit', (code) => resolve(code)));
  first.kill('SIGTERM');
  expect(await exited).toBe(0);
  // The checkpoint written on the way out is at or past the step seen before SIGTERM.
  const checkpoints = (await stack.app.inject({ url: `/jobs/${id}/checkpoints` })).json().checkpoints as {
    step: number;
  }[];
  expect(checkpoints[0]!.step).toBeGreaterThanOrEqual(reached);
  // Handed back to the queue without using up an attempt.
  const handedBack = (await stack.queues.train.getJob(id))!;
  expect(['delayed', 'waiting']).toContain(await handedBack.getState());
  expect(handedBack.attemptsMade).toBe(0);
  stack.startWorkerProcess();
  const job = await stack.waitFinished(id, 200_000);
  expect(await job.getState()).toBe('completed');
  // One attempt in all (BullMQ counts the successful one): the hand-back was free.
  expect(job.attemptsMade).toBe(1);
  const logs = (await stack.app.inject({ url: `/jobs/${id}/logs` })).body;
  expect(logs).toContain('handed back to the queue');
  expect(logs).toContain(`resuming from step ${checkpoints[0]!.step}`);
});

test('a job whose configuration cannot work fails once, with the reason, and is not retried', async () => {
  stack.startWorkerProcess();
  const id = (
    await stack.app.inject({
      method: 'POST',
      url: '/jobs/train',
      payload: tinyTrain({ dataset: 'idx:/usr/share/datasets/nonexistent/images.idx' }),
    })
  ).json().id as string;
  const job = await stack.waitFinished(id);
  expect(await job.getState()).toBe('failed');
  expect(job.attemptsMade).toBe(1);
  const view = (await stack.app.inject({ url: `/jobs/${id}` })).json();
  expect(view).toMatchObject({ state: 'failed', attempts: 1 });
  // Which files exist on a worker is the operator's business: the client learns only that the data is unavailable.
  expect(view.error).toMatch(
    /^the dataset is not available on this server: missing, outside its data roots, or over its size caps \(operator reference [0-9a-f]{12}\)$/,
  );
});
