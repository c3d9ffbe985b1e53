/**
 * A whole service for a test: the API (built in-process, for fastify.inject or a real listener),
 * workers (in-process WorkerService whose jobs run in real child processes, or separate worker
 * processes), the real Redis on 127.0.0.1:6379 with a queue prefix of its own, and a temporary
 * file:// store. Everything is closed and the test's Redis keys removed afterwards.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';

import { buildApp } from '@ddpm/api';
import {
  JOB_TYPES,
  type JobData,
  type JobResult,
  type ServiceConfig,
  jobTypeOf,
  loadServiceConfig,
  redisConnectionOptions,
  slotIdOf,
  slotKeyPrefix,
  slotsKey,
} from '@ddpm/service';
import { createLogger } from '@ddpm/telemetry';
import { WorkerService } from '@ddpm/worker';
import { type Job, Queue, QueueEvents } from 'bullmq';
import { type FastifyInstance } from 'fastify';
import { Redis } from 'ioredis';

export const ROOT = path.resolve(__dirname, '..', '..');
export const WORKER_MAIN = path.join(ROOT, 'apps', 'worker', 'dist', 'main.js');
export const API_SERVER = path.join(ROOT, 'apps', 'api', 'dist', 'server.js');
/** Jobs run the compiled child (npm test builds before jest runs). */
export const WORKER_CHILD = path.join(ROOT, 'apps', 'worker', 'dist', 'child.js');

export interface Stack {
  readonly config: ServiceConfig;
  readonly env: Record<string, string>;
  readonly storeDir: string;
  readonly app: FastifyInstance;
  readonly workers: WorkerService[];
  readonly processes: ChildProcess[];
  readonly queues: Record<'train' | 'sample' | 'eval', Queue<JobData, JobResult>>;
  readonly events: Record<'train' | 'sample' | 'eval', QueueEvents>;
  readonly redis: Redis;
  restartApp(): Promise<FastifyInstance>;
  startWorker(): Promise<WorkerService>;
  startWorkerProcess(extraEnv?: Record<string, string>): ChildProcess;
  waitFinished(id: string, timeoutMs?: number): Promise<Job<JobData, JobResult>>;
  /** Resolves with the first progress step of job `id` that `predicate` accepts. */
  progressOf(id: string, predicate: (step: number) => boolean): Promise<number>;
  /** The workers' slots on the control plane. */
  slots(): Promise<{ id: string; pid: number; state: string; job: string; by: string }[]>;
  /** SIGKILLs every worker process this stack started (and waits for them to exit). */
  killWorkerProcesses(): Promise<void>;
  close(): Promise<void>;
}

export async function startStack(options: { workers?: number; env?: Record<string, string> } = {}): Promise<Stack> {
  const storeDir = await fs.mkdtemp(path.join(os.tmpdir(), 'ddpm-svc-'));
  const prefix = `test-${randomBytes(6).toString('hex')}`;
  const env: Record<string, string> = {
    REDIS_URL: 'redis://127.0.0.1:6379',
    DDPM_QUEUE_PREFIX: prefix,
    DDPM_STORAGE_URL: `file://${storeDir}`,
    DDPM_BACKEND: 'wasm',
    METRICS_PORT: '0',
    LOG_LEVEL: 'warn',
    HOST: '127.0.0.1',
    ...options.env,
  };
  const config = loadServiceConfig(env);
  // The stack's Redis (REDIS_URL of options.env, a test's own redis-server, or the machine's).
  const connection = { ...redisConnectionOptions(config.redisUrl), maxRetriesPerRequest: null };
  const queues = Object.fromEntries(
    JOB_TYPES.map((t) => [t, new Queue<JobData, JobResult>(t, { connection, prefix })]),
  ) as Stack['queues'];
  const events = Object.fromEntries(
    JOB_TYPES.map((t) => [t, new QueueEvents(t, { connection, prefix })]),
  ) as Stack['events'];
  await Promise.all(Object.values(events).map((e) => e.waitUntilReady()));
  const redis = new Redis(config.redisUrl);
  // A test may restart its Redis: the client reconnects; its errors meanwhile are expected.
  redis.on('error', () => undefined);
  const workers: WorkerService[] = [];
  const processes: ChildProcess[] = [];
  let app = await buildApp({ config, logger: false });
  const stack: Stack = {
    config,
    env,
    storeDir,
    get app() {
      return app;
    },
    workers,
    processes,
    queues,
    events,
    redis,
    async restartApp() {
      await app.close();
      app = await buildApp({ config, logger: false });
      return app;
    },
    async startWorker() {
      const worker = new WorkerService({
        config: { ...config, lockDurationMs: 5000, stalledIntervalMs: 2000 },
        logger: createLogger('test-worker', 'warn'),
        childPath: WORKER_CHILD,
      });
      await worker.start();
      workers.push(worker);
      return worker;
    },
    startWorkerProcess(extraEnv = {}) {
      const child = spawn(process.execPath, [WORKER_MAIN], {
        env: { ...process.env, ...env, DDPM_LOCK_DURATION_MS: '4000', DDPM_STALLED_INTERVAL_MS: '2000', ...extraEnv },
        stdio: ['ignore', 'ignore', 'inherit'],
      });
      processes.push(child);
      return child;
    },
    async waitFinished(id, timeoutMs = 120_000) {
      const type = jobTypeOf(id) ?? 'train';
      const job = (await queues[type].getJob(id))!;
      const timer = new Promise<never>((_, reject) =>
        setTimeout(() => reject(new Error(`job ${id} did not finish in ${timeoutMs} ms`)), timeoutMs).unref(),
      );
      await Promise.race([job.waitUntilFinished(events[type]).catch(() => undefined), timer]);
      return (await queues[type].getJob(id))!;
    },
    progressOf(id, predicate) {
      const queueEvents = events[jobTypeOf(id) ?? 'train'];
      return new Promise((resolve) => {
        const onProgress = ({ jobId, data }: { jobId: string; data: unknown }): void => {
          const step = (data as { step?: number }).step ?? -1;
          if (jobId === id && predicate(step)) {
            queueEvents.off('progress', onProgress);
            resolve(step);
          }
        };
        queueEvents.on('progress', onProgress);
      });
    },
    async slots() {
      const keys = (await redis.keys(`${slotKeyPrefix(prefix)}*`)).filter((k) => slotIdOf(prefix, k) !== undefined);
      return Promise.all(
        keys.map(async (key) => {
          const h = await redis.hgetall(key);
          return {
            id: slotIdOf(prefix, key)!,
            pid: Number(h['pid']),
            state: h['state'] ?? '',
            job: h['job'] ?? '',
            by: h['by'] ?? '',
          };
        }),
      );
    },
    async killWorkerProcesses() {
      const killed = processes.filter((p) => p.exitCode === null && p.signalCode === null);
      await Promise.all(
        killed.map(
          (p) =>
            new Promise((resolve) => {
              p.once('exit', resolve);
              p.kill('SIGKILL');
            }),
        ),
      );
      // A killed worker cannot take its slot off the control plane; the next test should not have
      // to wait out its heartbeat (what happens when it does is a test of its own).
      const pids = new Set(killed.map((p) => p.pid));
      for (const slot of await this.slots()) {
        if (pids.has(slot.pid)) await redis.zrem(slotsKey(prefix), slot.id);
      }
    },
    async close() {
      for (const p of processes) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
      await Promise.all(workers.map((w) => w.close()));
      await app.close();
      await Promise.all(Object.values(events).map((e) => e.close()));
      for (const q of Object.values(queues)) {
        await q.obliterate({ force: true }).catch(() => undefined);
        await q.close();
      }
      const keys = await redis.keys(`${prefix}:*`);
      if (keys.length > 0) await redis.del(...keys);
      redis.disconnect();
      await fs.rm(storeDir, { recursive: true, force: true });
    },
  };
  for (let i = 0; i < (options.workers ?? 0); i++) await stack.startWorker();
  return stack;
}

/**
 * A stack for the tests of a describe block (or a file): started before them, closed after them.
 * The value stands for the stack started then (a proxy: the stack does not exist yet when the
 * block is declared).
 */
export function useStack(options: Parameters<typeof startStack>[0] = {}): Stack {
  let current: Stack | undefined;
  beforeAll(async () => {
    current = await startStack(options);
  });
  afterAll(async () => {
    await current?.close();
  });
  return new Proxy({} as Stack, {
    get(_target, property) {
      if (current === undefined) throw new Error('the stack starts in beforeAll; use it inside tests');
      const value: unknown = Reflect.get(current, property);
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(current) : value;
    },
  });
}

/** A train request small enough to finish in seconds on one core. */
export function tinyTrain(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    dataset: 'procedural:shapes?size=16&channels=1',
    preset: 'nano8',
    steps: 3,
    batchSize: 2,
    checkpointEvery: 1,
    ...overrides,
  };
}

/** Polls `fn` until it returns a value (errors count as not yet), at most `timeoutMs`. */
export async function until<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await fn().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

/** A redis-server with AOF on `dir`; resolves once it accepts connections. */
export async function startRedis(port: number, dir: string): Promise<ChildProcess> {
  const child = spawn(
    'redis-server',
    [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--dir',
      dir,
      '--appendonly',
      'yes',
      '--appendfsync',
      'always',
      '--save',
      '',
      '--maxmemory-policy',
      'noeviction',
    ],
    { stdio: 'ignore' },
  );
  await until(
    'redis-server to accept connections',
    () =>
      new Promise<true | undefined>((resolve) => {
        const socket = net.connect(port, '127.0.0.1', () => {
          socket.end();
          resolve(true);
        });
        socket.on('error', () => resolve(undefined));
      }),
    20_000,
  );
  return child;
}
