/**
 * Hardening (safe by default, data roots, budgets, one writer per run, nothing grows), each case
 * tried as a user or an attacker would, against real processes: the API's executable, worker
 * processes (one traced with strace to see every file it and its job processes open), Redis.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { promises as fs, mkdtempSync } from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { gzipSync } from 'node:zlib';

import { loadCheckpointAt, listCheckpoints } from '@ddpm/runs';
import { openStore } from '@ddpm/storage';
import { createLogger } from '@ddpm/telemetry';
import { WorkerService } from '@ddpm/worker';

import { API_SERVER, WORKER_CHILD, WORKER_MAIN, tinyTrain, until, useStack } from './service-support';

jest.setTimeout(240_000);

function idxImages(n: number, side: number): Buffer {
  const header = Buffer.alloc(16);
  header.writeUInt32BE(0x00000803, 0);
  header.writeUInt32BE(n, 4);
  header.writeUInt32BE(side, 8);
  header.writeUInt32BE(side, 12);
  const pixels = Buffer.alloc(n * side * side);
  for (let i = 0; i < pixels.length; i++) pixels[i] = (i * 37) % 251;
  return Buffer.concat([header, pixels]);
}

/** Runs the API executable with `env` until it exits or prints `ready`; its output and exit code. */
function runApi(
  env: Record<string, string>,
  ready: RegExp,
): Promise<{ code: number | null; output: string; child: ChildProcess }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [API_SERVER], {
      env: {
        PATH: process.env['PATH'] ?? '',
        REDIS_URL: 'redis://127.0.0.1:6379',
        PORT: '0',
        DDPM_QUEUE_PREFIX: 'test-insecure',
        ...env,
      },
    });
    let output = '';
    const onData = (d: Buffer): void => {
      output += d.toString();
      if (ready.test(output)) resolve({ code: null, output, child });
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('exit', (code) => resolve({ code, output, child }));
  });
}

describe('safe by default', () => {
  it('the API refuses to listen beyond loopback without a token, and with DDPM_INSECURE=1 says so loudly', async () => {
    const refused = await runApi({ HOST: '0.0.0.0' }, /$^/);
    expect(refused.code).toBe(2);
    expect(refused.output).toMatch(
      /ddpm-api: HOST=0.0.0.0 is reachable from other machines and DDPM_API_TOKEN is not set/,
    );
    const insecure = await runApi({ HOST: '0.0.0.0', DDPM_INSECURE: '1' }, /Server listening/);
    insecure.child.kill('SIGTERM');
    expect(insecure.output).toMatch(/INSECURE: listening on 0.0.0.0 without DDPM_API_TOKEN/);
    const token = await runApi({ HOST: '0.0.0.0', DDPM_API_TOKEN: 'a-token-of-16-chars-or-more' }, /Server listening/);
    token.child.kill('SIGTERM');
    expect(token.output).not.toMatch(/INSECURE/);
  });
});

describe('behind a token', () => {
  const TOKEN = 'hardening-token-0123456789';
  const stack = useStack({ env: { DDPM_API_TOKEN: TOKEN } });

  it('samples are private to caches, and a worker beyond loopback shows its jobs only to the token', async () => {
    await fs.mkdir(path.join(stack.storeDir, 'samples'), { recursive: true });
    await fs.writeFile(path.join(stack.storeDir, 'samples', 'pic.png'), Buffer.from([0x89, 0x50, 0x4e, 0x47]));
    expect((await stack.app.inject({ url: '/samples/pic' })).statusCode).toBe(401);
    const pic = await stack.app.inject({ url: '/samples/pic', headers: { authorization: `Bearer ${TOKEN}` } });
    expect(pic.statusCode).toBe(200);
    expect(pic.headers['cache-control']).toBe('private, max-age=31536000, immutable');

    const worker = new WorkerService({
      config: { ...stack.config, host: '0.0.0.0' },
      logger: createLogger('test-worker', 'warn'),
      childPath: WORKER_CHILD,
    });
    await worker.start();
    try {
      const health = async (headers: Record<string, string>): Promise<Record<string, unknown>> =>
        (await fetch(`http://127.0.0.1:${worker.metricsPort}/healthz`, { headers })).json() as Promise<
          Record<string, unknown>
        >;
      expect(await health({})).toEqual({ status: 'ok' });
      expect(await health({ authorization: 'Bearer wrong-token-0123456789' })).toEqual({ status: 'ok' });
      expect(await health({ authorization: `Bearer ${TOKEN}` })).toEqual({
        status: 'ok',
        slot: worker.slotId,
        running: [],
      });
      expect((await fetch(`http://127.0.0.1:${worker.metricsPort}/metrics`)).status).toBe(200);
      // Ready once its backend has loaded in a probe child (not ready, saying so, until then).
      const first = (await (await fetch(`http://127.0.0.1:${worker.metricsPort}/readyz`)).json()) as Record<
        string,
        unknown
      >;
      expect(['loading', 'wasm']).toContain(first['backend']);
      const ready = await until('the worker to be ready', async () => {
        const res = await fetch(`http://127.0.0.1:${worker.metricsPort}/readyz`);
        return res.status === 200 ? res.json() : undefined;
      });
      expect(ready).toEqual({ status: 'ready', redis: true, backend: 'wasm', closing: false });
    } finally {
      await worker.close();
    }
  });
});

describe('data access', () => {
  // The stack starts before beforeAll below runs: its data root must exist by then.
  const dataRoot = mkdtempSync(path.join(os.tmpdir(), 'ddpm-roots-'));
  const outside = mkdtempSync(path.join(os.tmpdir(), 'ddpm-outside-'));
  const canary = path.join(outside, 'canary-images.idx');
  const trace = path.join(outside, 'strace.txt');
  const stack = useStack({ env: { DDPM_DATA_ROOTS: dataRoot } });
  let worker: ChildProcess | undefined;

  beforeAll(async () => {
    await fs.writeFile(canary, idxImages(4, 28));
    await fs.writeFile(path.join(dataRoot, 'real.idx'), idxImages(8, 28));
    await fs.symlink(canary, path.join(dataRoot, 'link.idx'));
  });
  afterAll(async () => {
    // strace and the worker it traces share a process group: end both (a killed strace would leave its tracee running).
    if (worker?.pid !== undefined) process.kill(-worker.pid, 'SIGKILL');
    await fs.rm(dataRoot, { recursive: true, force: true });
    await fs.rm(outside, { recursive: true, force: true });
  });

  /** One worker process confined to dataRoot, every file it and its children open written down by strace. */
  function startTracedWorker(): void {
    worker = spawn(
      'strace',
      ['-f', '-qq', '-e', 'trace=open,openat,openat2', '-o', trace, process.execPath, WORKER_MAIN],
      {
        env: { ...process.env, ...stack.env, DDPM_LOCK_DURATION_MS: '4000', DDPM_STALLED_INTERVAL_MS: '2000' },
        stdio: ['ignore', 'ignore', 'inherit'],
        detached: true,
      },
    );
  }

  it('refuses paths outside the data roots at the door, and queues nothing', async () => {
    const before = await stack.queues.train.getJobCounts();
    for (const dataset of [
      'folder:/root',
      'cifar10:/etc/passwd',
      'idx:/etc/shadow',
      'idx:/usr/share/datasets/../../../etc/shadow',
      'mnist:relative/dir',
    ]) {
      const res = await stack.app.inject({ method: 'POST', url: '/jobs/train', payload: tinyTrain({ dataset }) });
      expect({ dataset, status: res.statusCode }).toEqual({ dataset, status: 400 });
      expect(res.json().message).toContain(
        `is not inside this server's data roots (${dataRoot}, DDPM_DATA_ROOTS); upload the data with PUT /datasets/NAME`,
      );
    }
    expect(await stack.queues.train.getJobCounts()).toEqual(before);
  });

  it('a link inside a root that leads out of it fails the job once, generically, and the file behind it is never opened', async () => {
    startTracedWorker();
    // As written the path lies inside the root, so the API lets it through; the worker resolves the link.
    const res = await stack.app.inject({
      method: 'POST',
      url: '/jobs/train',
      payload: tinyTrain({ dataset: `idx:${path.join(dataRoot, 'link.idx')}` }),
    });
    expect(res.statusCode).toBe(202);
    const job = (await stack.queues.train.getJob(res.json().id))!;
    const done = await stack.waitFinished(job.id!, 120_000);
    expect(await done.getState()).toBe('failed');
    expect(done.attemptsMade).toBe(1);
    expect(done.failedReason).toMatch(
      /^the dataset is not available on this server: missing, outside its data roots, or over its size caps \(operator reference [0-9a-f]{12}\)$/,
    );
    const logs = (await stack.app.inject({ url: `/jobs/${job.id}/logs` })).body;
    expect(logs).not.toContain(outside);
    // Nothing under the outside folder was opened by the worker or its job process.
    const opened = await fs.readFile(trace, 'utf8');
    expect(opened).toMatch(/openat\(/);
    expect(opened).toContain(path.join(WORKER_MAIN, '..'));
    expect(opened.split('\n').filter((l) => l.includes(canary) || l.includes(outside))).toEqual([]);
  });

  it('trains on a dataset uploaded to the object store, and refuses uploads that are not datasets', async () => {
    const put = await stack.app.inject({
      method: 'PUT',
      url: '/datasets/stripes',
      headers: { 'content-type': 'application/octet-stream' },
      payload: idxImages(8, 28),
    });
    expect(put.statusCode).toBe(201);
    expect(put.json()).toEqual({ name: 'stripes', bytes: 16 + 8 * 28 * 28, spec: 'store:stripes' });
    const junk = await stack.app.inject({
      method: 'PUT',
      url: '/datasets/junk',
      headers: { 'content-type': 'application/octet-stream' },
      payload: Buffer.from('hello'),
    });
    expect(junk.statusCode).toBe(400);
    expect(junk.json().message).toMatch(/not a dataset: the body \(5 bytes\) is neither an IDX image file/);
    // Files whose header contradicts their length, plain or gzipped, and CIFAR-10 with a label past 9.
    const whole = idxImages(8, 28);
    const cifar = Buffer.alloc(2 * 3073);
    cifar[3073] = 42;
    const contradictions: [string, Buffer, RegExp][] = [
      [
        'truncated',
        whole.subarray(0, whole.length - 100),
        /IDX header says 8 images of 28x28 \(6288 bytes .*\), but it has 6188 bytes/,
      ],
      ['padded', Buffer.concat([whole, Buffer.alloc(5)]), /but it has 6293 bytes/],
      [
        'gzipped, truncated',
        gzipSync(whole.subarray(0, 1000)),
        /IDX header says 8 images of 28x28 .* but it has 1000 bytes/,
      ],
      ['gzip cut short', gzipSync(whole).subarray(0, 40), /the gzip stream is corrupt or truncated/],
      ['header only', whole.subarray(0, 10), /an IDX header is 16 bytes and the file has 10/],
      ['CIFAR-100 labels', cifar, /record 1 has label 42; CIFAR-10 labels are 0-9/],
    ];
    for (const [what, payload, message] of contradictions) {
      const r = await stack.app.inject({
        method: 'PUT',
        url: '/datasets/contradiction',
        headers: { 'content-type': 'application/octet-stream' },
        payload,
      });
      expect([what, r.statusCode]).toEqual([what, 400]);
      expect(r.json().message).toMatch(message);
    }
    const gz = await stack.app.inject({
      method: 'PUT',
      url: '/datasets/gzipped',
      headers: { 'content-type': 'application/octet-stream' },
      payload: gzipSync(whole),
    });
    expect(gz.statusCode).toBe(201);
    expect((await stack.app.inject({ method: 'DELETE', url: '/datasets/gzipped' })).statusCode).toBe(204);
    expect(
      (
        await stack.app.inject({
          method: 'PUT',
          url: '/datasets/..%2Fx',
          headers: { 'content-type': 'application/octet-stream' },
          payload: idxImages(1, 4),
        })
      ).statusCode,
    ).toBe(400);
    expect((await stack.app.inject({ url: '/datasets' })).json()).toEqual({
      datasets: [{ name: 'stripes', bytes: 16 + 8 * 28 * 28, spec: 'store:stripes' }],
    });
    const res = await stack.app.inject({
      method: 'POST',
      url: '/jobs/train',
      payload: tinyTrain({ dataset: 'store:stripes', preset: 'micro32', steps: 2 }),
    });
    expect(res.statusCode).toBe(202);
    const job = await stack.waitFinished(res.json().id, 120_000);
    expect([await job.getState(), job.returnvalue?.status]).toEqual(['completed', 'completed']);
    expect((await stack.app.inject({ method: 'DELETE', url: '/datasets/stripes' })).statusCode).toBe(204);
    expect((await stack.app.inject({ method: 'DELETE', url: '/datasets/stripes' })).statusCode).toBe(404);
  });
});

describe('budgets and limits', () => {
  // A budget for a GPU pool (100 GB a step): the wasm worker's own ceiling is what stops the paper's batch below.
  const stack = useStack({
    env: {
      DDPM_JOB_MEMORY_MB: '350',
      DDPM_KEEP_COMPLETED_JOBS: '7',
      DDPM_JOB_LOG_LINES: '50',
      DDPM_MAX_STEP_MEMORY_MB: '100000',
    },
  });

  it('refuses requests over a budget at submission, naming the limit, and queues nothing', async () => {
    const cases: [Record<string, unknown>, RegExp][] = [
      [
        tinyTrain({ dataset: 'procedural:shapes?size=2000000000' }),
        /procedural dataset's size 2000000000 is more than 1000000, over this server's limit DDPM_MAX_DATASET_IMAGES/,
      ],
      [
        tinyTrain({
          preset: 'celebahq256',
          batchSize: 4096,
          accumulation: 1,
          dataset: 'procedural:shapes?size=16&channels=3',
        }),
        /over this server's limit DDPM_MAX_STEP_MEMORY_MB; raise accumulation/,
      ],
      [tinyTrain({ steps: 5_000_000 }), /steps 5000000 is more than 1000000, over this server's limit DDPM_MAX_STEPS/],
    ];
    for (const [payload, message] of cases) {
      const res = await stack.app.inject({ method: 'POST', url: '/jobs/train', payload });
      expect(res.statusCode).toBe(400);
      expect(res.json().message).toMatch(message);
    }
    expect(await stack.queues.train.getJobCounts()).toEqual(
      expect.objectContaining({ waiting: 0, active: 0, delayed: 0 }),
    );
  });

  it('splits a batch that does not fit the step memory into micro-batches when the request leaves accumulation open, and says so', async () => {
    const res = await stack.app.inject({
      method: 'POST',
      url: '/jobs/train',
      payload: tinyTrain({ preset: 'celebahq256', batchSize: 4096, dataset: 'procedural:shapes?size=16&channels=3' }),
    });
    expect(res.statusCode).toBe(202);
    const view = (await stack.app.inject({ method: 'GET', url: `/jobs/${res.json().id}` })).json();
    expect(view.config.train.accumulation).toBe(512);
    expect(view.config.adjustments).toEqual([
      expect.objectContaining({
        setting: 'accumulation',
        requested: 1,
        chosen: 512,
        reason: expect.stringContaining(
          'over the step-memory budget of 100000 MiB (DDPM_MAX_STEP_MEMORY_MB); 512 micro-batches of 8',
        ),
      }),
    ]);
    await stack.app.inject({ method: 'DELETE', url: `/jobs/${res.json().id}` });
  });

  it('a job process over its memory limit is killed and the job fails for good with that reason', async () => {
    await stack.startWorker();
    const res = await stack.app.inject({
      method: 'POST',
      url: '/jobs/train',
      payload: tinyTrain({ preset: 'micro32', batchSize: 32, steps: 2 }),
    });
    const job = await stack.waitFinished(res.json().id, 120_000);
    expect(await job.getState()).toBe('failed');
    expect(job.attemptsMade).toBe(1);
    expect(job.failedReason).toMatch(
      /^the job used [0-9.]+ GiB of memory, over this worker's limit of 0.34 GiB \(DDPM_JOB_MEMORY_MB\)/,
    );
  });

  it('a job process gets an allow-listed environment: no API token, no queue Redis URL', async () => {
    const saved = { ...process.env };
    Object.assign(process.env, {
      DDPM_API_TOKEN: 'secret-token-0123456789',
      REDIS_URL: 'redis://127.0.0.1:6379',
      AWS_REGION: 'eu-west-1',
      SOMETHING_ELSE: 'x',
    });
    try {
      const res = await stack.app.inject({
        method: 'POST',
        url: '/jobs/train',
        payload: tinyTrain({ steps: 100_000, checkpointEvery: 100_000 }),
      });
      const id = res.json().id as string;
      await stack.progressOf(id, (step) => step >= 1);
      const [pid] = await jobProcesses();
      const environ = (await fs.readFile(`/proc/${pid}/environ`, 'utf8')).split('\0').map((kv) => kv.split('=', 1)[0]);
      expect(environ).toEqual(expect.arrayContaining(['PATH', 'AWS_REGION']));
      expect(environ).not.toEqual(expect.arrayContaining(['DDPM_API_TOKEN']));
      expect(environ).not.toEqual(expect.arrayContaining(['REDIS_URL']));
      expect(environ).not.toEqual(expect.arrayContaining(['SOMETHING_ELSE']));
      await stack.app.inject({ method: 'DELETE', url: `/jobs/${id}` });
      await stack.waitFinished(id);
    } finally {
      for (const key of ['DDPM_API_TOKEN', 'REDIS_URL', 'AWS_REGION', 'SOMETHING_ELSE']) {
        if (saved[key] === undefined) delete process.env[key];
        else process.env[key] = saved[key];
      }
    }
  });

  it('a wasm worker refuses a step that cannot fit its 4 GiB heap, for good, before training', async () => {
    const res = await stack.app.inject({
      method: 'POST',
      url: '/jobs/train',
      payload: tinyTrain({ preset: 'cifar10', batchSize: 128, dataset: 'procedural:shapes?size=16&channels=3' }),
    });
    expect(res.statusCode).toBe(202);
    const job = await stack.waitFinished(res.json().id);
    expect([await job.getState(), job.attemptsMade]).toEqual(['failed', 1]);
    expect(job.failedReason).toMatch(
      /^a training micro-batch of 128 images of cifar10 needs an estimated \d+ MiB, more than the wasm backend's 4 GiB heap; raise accumulation/,
    );
  });

  it('finished jobs and their logs are kept by count and age, as configured', async () => {
    const res = await stack.app.inject({ method: 'POST', url: '/jobs/train', payload: tinyTrain({ steps: 1 }) });
    const job = (await stack.queues.train.getJob(res.json().id))!;
    expect(job.opts).toMatchObject({
      removeOnComplete: { count: 7, age: 30 * 86400 },
      removeOnFail: { count: 5000, age: 90 * 86400 },
      keepLogs: 50,
    });
    await stack.waitFinished(job.id!);
  });
});

/** Pids of this process's children running the job child (the in-process workers' job processes). */
async function jobProcesses(): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await fs.readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = await fs.readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    const cmdline = await fs.readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    if (ppid === process.pid && cmdline.includes('child.js')) pids.push(Number(entry));
  }
  return pids;
}

describe('wall time', () => {
  const stack = useStack({ workers: 1, env: { DDPM_MAX_JOB_SECONDS: '6' } });

  it('a job that reaches the wall-time limit checkpoints, stops and fails for good', async () => {
    const res = await stack.app.inject({
      method: 'POST',
      url: '/jobs/train',
      payload: tinyTrain({ steps: 100_000, checkpointEvery: 100_000 }),
    });
    const job = await stack.waitFinished(res.json().id, 120_000);
    expect(await job.getState()).toBe('failed');
    expect(job.attemptsMade).toBe(1);
    expect(job.failedReason).toMatch(
      /^the job ran for its wall-time limit of 6 s \(DDPM_MAX_JOB_SECONDS\) and was stopped at step \d+ \(checkpoint .*manifest.json\)$/,
    );
    const refs = await listCheckpoints(openStore(stack.config.storageUrl), job.data.runPrefix);
    expect(refs.length).toBe(1);
  });
});

describe('stopping', () => {
  const stack = useStack({ env: { DDPM_STOP_GRACE_SECONDS: '1' } });

  it("a group signal (Ctrl-C) is the worker's, not its job process's: the job checkpoints and goes back to the queue", async () => {
    const worker = spawn(process.execPath, [WORKER_MAIN], {
      env: { ...process.env, ...stack.env, DDPM_LOCK_DURATION_MS: '4000', DDPM_STALLED_INTERVAL_MS: '2000' },
      stdio: ['ignore', 'ignore', 'inherit'],
      detached: true,
    });
    const res = await stack.app.inject({
      method: 'POST',
      url: '/jobs/train',
      payload: tinyTrain({ steps: 100_000, checkpointEvery: 100_000 }),
    });
    const id = res.json().id as string;
    const step = await stack.progressOf(id, (s) => s >= 2);
    expect(step).toBeGreaterThanOrEqual(2);
    process.kill(-worker.pid!, 'SIGINT');
    const exit = await new Promise<number | null>((resolve) => worker.once('exit', resolve));
    expect(exit).toBe(0);
    const job = (await stack.queues.train.getJob(id))!;
    expect(['delayed', 'waiting']).toContain(await job.getState());
    const logs = (await stack.app.inject({ url: `/jobs/${id}/logs` })).body;
    expect(logs).toMatch(/checkpoint \(stopped\) at step \d+/);
    expect(logs).toMatch(/worker shutting down at step \d+; handed back to the queue/);
    await stack.app.inject({ method: 'DELETE', url: `/jobs/${id}` });
  });

  it('a cancelled job that does not stop within the grace period is killed', async () => {
    const worker = await stack.startWorker();
    // One step of this model takes a few seconds: far longer than the 1 s grace.
    const res = await stack.app.inject({
      method: 'POST',
      url: '/jobs/train',
      payload: tinyTrain({ preset: 'fashion32', batchSize: 16, steps: 1000, checkpointEvery: 1000 }),
    });
    const id = res.json().id as string;
    await stack.progressOf(id, (s) => s >= 1);
    const started = Date.now();
    await stack.app.inject({ method: 'DELETE', url: `/jobs/${id}` });
    const job = await stack.waitFinished(id, 60_000);
    expect(job.returnvalue).toEqual({ status: 'cancelled' });
    // The kill, then the retry's backoff (5 s), which sees the cancellation and ends the job.
    expect(Date.now() - started).toBeLessThan(30_000);
    expect((await stack.app.inject({ url: `/jobs/${id}/logs` })).body).not.toMatch(/checkpoint \(stopped\)/);
    expect(worker.metricsPort).toBeDefined();
  });
});

describe('liveness', () => {
  const stack = useStack({ env: { DDPM_CHILD_STALL_SECONDS: '3' } });

  it('a worker is ready once its backend loads; a job process that stops beating is killed and the job resumes', async () => {
    const worker = await stack.startWorker();
    const ready = await until('the worker to be ready', async () => {
      const res = await fetch(`http://127.0.0.1:${worker.metricsPort}/readyz`);
      return res.status === 200 ? ((await res.json()) as Record<string, unknown>) : undefined;
    });
    expect(ready).toMatchObject({ status: 'ready', redis: true, backend: 'wasm' });
    const res = await stack.app.inject({
      method: 'POST',
      url: '/jobs/train',
      payload: tinyTrain({ steps: 8, checkpointEvery: 2 }),
    });
    const id = res.json().id as string;
    await stack.progressOf(id, (s) => s >= 3);
    const [pid] = await jobProcesses();
    expect((await fetch(`http://127.0.0.1:${worker.metricsPort}/healthz`)).status).toBe(200);
    const stoppedAt = Date.now();
    process.kill(pid!, 'SIGSTOP');
    // Silent for longer than its 3 s allowance (its steps take far less): killed, and the job retried.
    await until(
      'the wedged job process to be gone',
      async () => ((await jobProcesses()).includes(pid!) ? undefined : true),
      20_000,
    );
    expect(Date.now() - stoppedAt).toBeGreaterThanOrEqual(3000);
    const job = await stack.waitFinished(id, 120_000);
    expect([await job.getState(), job.returnvalue.step]).toEqual(['completed', 8]);
    // One attempt killed, the next completed (a failure says why each attempt ended).
    expect({ attempts: job.attemptsMade, why: job.stacktrace }).toMatchObject({ attempts: 2 });
    expect((job.stacktrace ?? []).join('\n')).toMatch(
      /showed no sign of life for \d+ s \(allowed: \d+ s, DDPM_CHILD_STALL_SECONDS/,
    );
    expect((await fetch(`http://127.0.0.1:${worker.metricsPort}/healthz`)).status).toBe(200);
  });
});

describe('idempotency keys', () => {
  const stack = useStack();

  it('concurrent requests with one key and different bodies: one body wins, the other gets 409', async () => {
    const bodies = [tinyTrain({ seed: 1 }), tinyTrain({ seed: 2 })];
    const responses = await Promise.all(
      Array.from({ length: 12 }, (_, i) =>
        stack.app.inject({
          method: 'POST',
          url: '/jobs/train',
          headers: { 'idempotency-key': 'race-1' },
          payload: bodies[i % 2],
        }),
      ),
    );
    const accepted = responses.filter((r) => r.statusCode === 200 || r.statusCode === 202);
    const conflicts = responses.filter((r) => r.statusCode === 409);
    expect(accepted.length + conflicts.length).toBe(12);
    expect(responses.filter((r) => r.statusCode === 202)).toHaveLength(1);
    const winner = accepted[0]!.json();
    expect(new Set(accepted.map((r) => r.json().id))).toEqual(new Set([winner.id]));
    expect(new Set(accepted.map((r) => r.json().request.seed))).toEqual(new Set([winner.request.seed]));
    expect(accepted.length).toBe(6);
  });

  it('the key of a job cancelled before it ran is refused, not silently resumed', async () => {
    const first = await stack.app.inject({
      method: 'POST',
      url: '/jobs/train',
      headers: { 'idempotency-key': 'tomb-1' },
      payload: tinyTrain(),
    });
    expect(first.statusCode).toBe(202);
    expect((await stack.app.inject({ method: 'DELETE', url: `/jobs/${first.json().id}` })).json().state).toBe(
      'cancelled',
    );
    for (const payload of [tinyTrain(), tinyTrain({ seed: 9 })]) {
      const again = await stack.app.inject({
        method: 'POST',
        url: '/jobs/train',
        headers: { 'idempotency-key': 'tomb-1' },
        payload,
      });
      expect(again.statusCode).toBe(409);
    }
    const reused = await stack.app.inject({
      method: 'POST',
      url: '/jobs/train',
      headers: { 'idempotency-key': 'tomb-1' },
      payload: tinyTrain(),
    });
    expect(reused.json().message).toMatch(/was cancelled before it ran; use a new key/);
  });
});

describe('listing and logs', () => {
  const stack = useStack({ workers: 1, env: { DDPM_LOG_FOLLOWERS: '1', DDPM_LOG_FOLLOW_SECONDS: '2' } });

  it('caps how deep a listing pages', async () => {
    expect((await stack.app.inject({ url: '/jobs?offset=999999' })).statusCode).toBe(400);
    const deep = await stack.app.inject({ url: '/jobs?offset=990&limit=20' });
    expect(deep.statusCode).toBe(400);
    expect(deep.json().message).toMatch(/offset \+ limit must be at most 1000/);
    expect((await stack.app.inject({ url: '/jobs?offset=900&limit=100' })).statusCode).toBe(200);
  });

  it('pages log lines and bounds following in followers and time', async () => {
    const res = await stack.app.inject({ method: 'POST', url: '/jobs/train', payload: tinyTrain({ steps: 3 }) });
    const id = res.json().id as string;
    await stack.waitFinished(id);
    const all = await stack.app.inject({ url: `/jobs/${id}/logs` });
    const total = Number(all.headers['log-total']);
    expect(total).toBeGreaterThan(3);
    const page = await stack.app.inject({ url: `/jobs/${id}/logs?start=1&limit=2` });
    expect(page.body.split('\n').filter(Boolean)).toEqual(all.body.split('\n').filter(Boolean).slice(1, 3));
    expect(page.headers['log-next']).toBe('3');
    expect((await stack.app.inject({ url: `/jobs/${id}/logs?limit=9999` })).statusCode).toBe(400);

    // A job that runs long: one follower at a time, each for at most 2 s.
    const long = (
      await stack.app.inject({
        method: 'POST',
        url: '/jobs/train',
        payload: tinyTrain({ steps: 100_000, checkpointEvery: 100_000 }),
      })
    ).json().id as string;
    await stack.app.listen({ port: 0, host: '127.0.0.1' });
    const port = (stack.app.server.address() as { port: number }).port;
    const follow = (): Promise<{ status: number; body: string }> =>
      new Promise((resolve, reject) => {
        http
          .get(`http://127.0.0.1:${port}/jobs/${long}/logs?follow=true`, (r) => {
            let body = '';
            r.on('data', (d: Buffer) => (body += d.toString()));
            r.on('end', () => resolve({ status: r.statusCode ?? 0, body }));
          })
          .on('error', reject);
      });
    const started = Date.now();
    const first = follow();
    await new Promise((resolve) => setTimeout(resolve, 300));
    const second = await follow();
    expect(second.status).toBe(503);
    expect(second.body).toMatch(/DDPM_LOG_FOLLOWERS/);
    const firstDone = await first;
    expect(firstDone.status).toBe(200);
    expect(firstDone.body).toMatch(/stopped following after 2 s, DDPM_LOG_FOLLOW_SECONDS/);
    expect(Date.now() - started).toBeLessThan(10_000);
    await stack.app.inject({ method: 'DELETE', url: `/jobs/${long}` });
    await stack.waitFinished(long);
  });
});

describe('following logs', () => {
  const stack = useStack({ env: { DDPM_LOG_FOLLOW_SECONDS: '4', DDPM_JOB_LOG_LINES: '100' } });

  it('waits for a reader that does not read, and finds its place when the cap drops old lines', async () => {
    const res = await stack.app.inject({ method: 'POST', url: '/jobs/train', payload: tinyTrain() });
    const job = (await stack.queues.train.getJob(res.json().id))!;
    for (let i = 0; i < 100; i++) await job.log(`line ${i} ${'x'.repeat(200)}`);
    const { Writable } = await import('node:stream');
    // A reader that never reads: its buffer fills after a few lines and never drains.
    const stuck = new Writable({ highWaterMark: 1024, write: () => undefined });
    let closed = false;
    const following = stack.app.ddpm.jobs.followLogs(job, stuck, () => closed);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    expect(stuck.writableLength).toBeLessThan(2 * 1024);
    closed = true;
    await following;

    // A reader that reads: 30 more lines arrive while it follows and the cap (100) drops the oldest 30.
    const lines: string[] = [];
    const reader = new Writable({
      write: (chunk: Buffer, _e, done) => {
        lines.push(...chunk.toString().split('\n').filter(Boolean));
        done();
      },
    });
    let stop = false;
    const follow = stack.app.ddpm.jobs.followLogs(job, reader, () => stop);
    await until('the 100 kept lines', async () => (lines.length >= 100 ? true : undefined), 10_000);
    for (let i = 100; i < 130; i++) await job.log(`line ${i} ${'x'.repeat(200)}`);
    await until('the new lines', async () => (lines.length >= 130 ? true : undefined), 10_000);
    stop = true;
    await follow;
    expect(lines.map((l) => l.split(' ')[1])).toEqual(Array.from({ length: 130 }, (_, i) => String(i)));
    await stack.app.inject({ method: 'DELETE', url: `/jobs/${job.id}` });
  });
});

describe('one writer per run', () => {
  const stack = useStack({ workers: 2 });

  it('a worker that loses its lock stops its job process; the other resumes from a whole checkpoint and finishes alone', async () => {
    const res = await stack.app.inject({
      method: 'POST',
      url: '/jobs/train',
      payload: tinyTrain({ steps: 30, checkpointEvery: 5 }),
    });
    const id = res.json().id as string;
    await stack.progressOf(id, (s) => s >= 8);
    const job = (await stack.queues.train.getJob(id))!;
    // The lock vanishes as it does when Redis stalls for longer than the lock: another worker takes the job over.
    await stack.redis.del(`${stack.config.queuePrefix}:train:${id}:lock`);
    const done = await stack.waitFinished(id, 180_000);
    expect([await done.getState(), done.returnvalue?.status]).toEqual(['completed', 'completed']);
    const logs = (await stack.app.inject({ url: `/jobs/${id}/logs` })).body;
    expect(logs).toMatch(/resuming from step \d+/);
    const store = openStore(stack.config.storageUrl);
    const refs = await listCheckpoints(store, job.data.runPrefix);
    expect(refs[0]!.step).toBe(30);
    // Every checkpoint kept verifies (checksums read back), and so does the newest one loaded.
    for (const ref of refs)
      await expect(loadCheckpointAt(store, job.data.runPrefix, ref.step)).resolves.toMatchObject({
        ref: { step: ref.step },
      });
    // Two runs took a writer number; the job's result comes from the second.
    expect(Number(await stack.redis.get(`${stack.config.queuePrefix}:dp:${id}:generation`))).toBeGreaterThanOrEqual(2);
  });
});
