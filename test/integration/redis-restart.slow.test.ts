/**
 * The queue's Redis restarting under a running train job (docs/security.md: production runs it with AOF):
 * a redis-server of the test's own, with appendonly and fsync on every write, is killed mid-job
 * (SIGKILL: a crash, not a shutdown) and started again on the same files after longer than the
 * job lock lasts. The job must finish, from its checkpoints, with every kept checkpoint whole and
 * nothing lost: the job, its log and its result survive in the restarted Redis. Then restarts
 * shorter than the lock, three during one job: it goes on through them, with no attempt used and
 * no step redone.
 */
import { type ChildProcess } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { freePort } from '@ddpm/lab';
import { listCheckpoints, loadCheckpointAt } from '@ddpm/runs';
import { openStore } from '@ddpm/storage';

import { type Stack, startRedis, startStack, tinyTrain, until } from './service-support';

jest.setTimeout(300_000);

let dir: string;
let port: number;
let redis: ChildProcess | undefined;
let stack: Stack | undefined;

beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ddpm-aof-'));
  port = await freePort();
  redis = await startRedis(port, dir);
  stack = await startStack({ env: { REDIS_URL: `redis://127.0.0.1:${port}` } });
});
afterAll(async () => {
  await stack?.close().catch(() => undefined);
  redis?.kill('SIGKILL');
  await fs.rm(dir, { recursive: true, force: true });
});

/** Stops the test's Redis with `signal`, waits `downMs`, and starts it again on the same files. */
async function restartRedis(signal: NodeJS.Signals, downMs: number): Promise<void> {
  redis!.kill(signal);
  await new Promise((resolve) => redis!.once('exit', resolve));
  await new Promise((resolve) => setTimeout(resolve, downMs));
  redis = await startRedis(port, dir);
}

/** The training step a job last reported (0 before its first report), read from Redis. */
async function stepOf(s: Stack, id: string): Promise<number> {
  return ((await s.queues.train.getJob(id))?.progress as { step?: number } | undefined)?.step ?? 0;
}

/** The state a train job ends in (completed or failed). */
function finished(s: Stack, id: string): Promise<string> {
  return until(
    'the job to finish',
    async () => {
      const st = await (await s.queues.train.getJob(id))?.getState();
      return st === 'completed' || st === 'failed' ? st : undefined;
    },
    300_000,
  );
}

test('a train job survives its queue Redis crashing and restarting (AOF): it finishes from whole checkpoints, nothing lost', async () => {
  const s = stack!;
  s.startWorkerProcess();
  const res = await s.app.inject({
    method: 'POST',
    url: '/jobs/train',
    payload: tinyTrain({ steps: 40, checkpointEvery: 5 }),
  });
  expect(res.statusCode).toBe(202);
  const id = res.json().id as string;
  await until('training to pass step 8', async () => ((await stepOf(s, id)) >= 8 ? true : undefined), 120_000);

  // A crash, then 6 s down: longer than the worker's 4 s lock, so the job is taken up anew.
  await restartRedis('SIGKILL', 6000);

  const state = await finished(s, id);
  const job = (await s.queues.train.getJob(id))!;
  expect([state, job.returnvalue?.status, job.returnvalue?.step]).toEqual(['completed', 'completed', 40]);
  // The job's record, request and log came through the crash.
  expect(job.data.request).toMatchObject({ steps: 40 });
  const logs = (await s.queues.train.getJobLogs(id)).logs.join('\n');
  expect(logs).toMatch(/starting: nano8/);
  // The worker could not renew its lock for longer than it lasts: it stopped the job's process, and the job was taken up again from its checkpoint.
  expect(logs).toMatch(/resuming from step \d+/);
  const store = openStore(s.config.storageUrl);
  const refs = await listCheckpoints(store, job.data.runPrefix);
  expect(refs[0]!.step).toBe(40);
  for (const ref of refs)
    await expect(loadCheckpointAt(store, job.data.runPrefix, ref.step)).resolves.toMatchObject({
      ref: { step: ref.step },
    });
  expect(await s.queues.train.getJobCounts('failed', 'completed')).toEqual({ failed: 0, completed: 1 });
});

test('three restarts of the queue Redis (SIGTERM, 6 s down each) during one job cost it no attempt and no step', async () => {
  const s = stack!;
  // A worker with the default lock (30 s): the outages are shorter than it.
  for (const p of s.processes) p.kill('SIGKILL');
  s.startWorkerProcess({ DDPM_LOCK_DURATION_MS: '30000', DDPM_STALLED_INTERVAL_MS: '30000' });
  const res = await s.app.inject({
    method: 'POST',
    url: '/jobs/train',
    payload: tinyTrain({ steps: 400, checkpointEvery: 10 }),
  });
  expect(res.statusCode).toBe(202);
  const id = res.json().id as string;
  let reached = 0;
  for (let restart = 0; restart < 3; restart++) {
    const after = reached + 5;
    reached = await until(
      `step ${after}`,
      async () => ((await stepOf(s, id)) >= after ? stepOf(s, id) : undefined),
      120_000,
    );
    await restartRedis('SIGTERM', 6000);
  }
  const state = await finished(s, id);
  const job = (await s.queues.train.getJob(id))!;
  const logs = (await s.queues.train.getJobLogs(id)).logs.join('\n');
  expect([state, job.returnvalue?.step, job.failedReason]).toEqual(['completed', 400, undefined]);
  expect({ attemptsMade: job.attemptsMade, logs }).toMatchObject({ attemptsMade: 1 });
  // Each outage was shorter than the job's lock: the job process went on (its checkpoint writes
  // waited for Redis), and nothing was redone.
  expect(logs).not.toMatch(/resuming from step/);
  expect(logs.match(/starting: nano8/g)).toHaveLength(1);
}, 600_000);
