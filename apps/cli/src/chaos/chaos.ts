/**
 * A seeded chaos run on simulated hosts (sim/hosts.ts): the API and the queue Redis (with AOF) in
 * the control namespace, one worker per host with a data Redis of its own, every process on a
 * 200 Mbit/s link. For a number of minutes a stream of jobs keeps the workers busy (train jobs
 * alone and in groups of 2 and 3, sample and eval jobs of the trained runs, and cancels) while a
 * seeded schedule injects faults (faults.ts). Then the faults stop, every job is waited for, the
 * fault-free reference of every train configuration is trained, and the run is checked:
 *
 * - every job ended as asked: completed, or cancelled when a cancel was accepted;
 * - every completed train job's final checkpoint (weights, EMA, Adam) has the reference's bytes;
 * - nothing is left over: no job process, no shared-memory file, no transient Redis key without
 *   an expiry, no temporary object in the store;
 * - the API's and the workers' memory stayed flat.
 *
 * The report (JSON) says what was injected, what the jobs did, what the faults cost (steps and
 * seconds redone, group restarts) and anything lost.
 */
import { type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';

import { Rng } from '@ddpm/core';
import { generationKey, slotIdOf, slotKeyPrefix, slotsKey } from '@ddpm/jobs';
import { Redis } from 'ioredis';

import { SimulatedHosts } from '../sim/hosts';
import { FAULT_KINDS, type FaultDraw, type FaultKind, drawFaults, pickOf } from './faults';

const ROOT = path.resolve(__dirname, '..', '..', '..', '..');
const API_PORT = 8080;
const PREFIX = 'chaos';
const CHILD_MARK = path.join('apps', 'worker', 'dist', 'child.js');

export interface ChaosOptions {
  readonly minutes: number;
  readonly seed: number;
  /** Simulated hosts, one worker on each (default 4). */
  readonly hosts?: number;
  /** Each link's rate, Mbit/s (default 200). */
  readonly linkMbit?: number;
  /** Mean seconds between faults (default 20). */
  readonly faultEverySeconds?: number;
  /** Where the store, the logs and the queue Redis's AOF go (kept afterwards). */
  readonly out: string;
  /** Progress lines (stderr for the CLI). */
  readonly log: (line: string) => void;
  readonly signal?: AbortSignal;
}

/** The train configurations jobs are drawn from: each has a fault-free reference of one process. */
const TRAIN_CONFIGS = {
  alone: { workers: 1, accumulation: 1, batchSize: 4, steps: 48 },
  pair: { workers: 2, accumulation: 2, batchSize: 4, steps: 40 },
  trio: { workers: 3, accumulation: 3, batchSize: 6, steps: 30 },
} as const;
type TrainConfigName = keyof typeof TRAIN_CONFIGS;

function trainRequest(name: TrainConfigName, reference = false): Record<string, unknown> {
  const c = TRAIN_CONFIGS[name];
  return {
    dataset: 'procedural:shapes?size=64&channels=1',
    preset: 'nano8',
    steps: c.steps,
    batchSize: c.batchSize,
    accumulation: c.accumulation,
    checkpointEvery: 6,
    seed: 7,
    sampleCount: 0,
    ...(reference
      ? { workers: 1 }
      : {
          workers: c.workers,
          ...(c.workers > 1 ? { minWorkers: 1, rankTimeoutSeconds: 8, joinTimeoutSeconds: 60, maxRestarts: 50 } : {}),
        }),
  };
}

type JobKind = 'train' | 'sample' | 'eval';

interface Tracked {
  readonly id: string;
  readonly kind: JobKind;
  readonly config?: TrainConfigName;
  readonly submittedAt: number;
  /** A fault-free reference run (not part of the stream). */
  readonly reference?: boolean;
  /** Whether a cancel was asked for and accepted while the job had not finished. */
  cancelAccepted?: boolean;
  cancelAt?: number;
  /** Faults that landed on this job's processes, by kind. */
  readonly faults: Partial<Record<FaultKind, number>>;
  state?: string;
  result?: JobResultView;
  error?: string;
  attempts?: number;
}

interface JobResultView {
  status?: string;
  step?: number;
  resumedFrom?: { step: number; redone?: { steps: number; seconds: number } };
  group?: { worldSize: number; generation: number; restarts: number };
}

interface Injected {
  readonly at: number;
  readonly kind: FaultKind;
  readonly target: string;
  readonly seconds: number;
  readonly jobs: readonly string[];
}

export interface ChaosReport {
  readonly seed: number;
  readonly minutes: number;
  readonly hosts: number;
  readonly linkMbit: number;
  readonly faults: {
    readonly total: number;
    readonly kinds: number;
    readonly byKind: Record<string, number>;
    /** Draws that found no target (no job process running at that moment, say). */
    readonly noTarget: number;
  };
  readonly jobs: {
    readonly total: number;
    readonly byKind: Record<string, number>;
    readonly byOutcome: Record<string, number>;
    readonly cancelsAccepted: number;
  };
  readonly cost: {
    readonly redoneSteps: number;
    readonly redoneSeconds: number;
    readonly groupRestarts: number;
    readonly retriedAttempts: number;
  };
  readonly lost: readonly { id: string; why: string }[];
  readonly checkpoints: { readonly compared: number; readonly differing: readonly string[] };
  readonly leftovers: {
    readonly processes: readonly string[];
    readonly sharedMemoryFiles: readonly string[];
    readonly redisKeys: readonly string[];
    readonly tempObjects: readonly string[];
  };
  /** Leftovers planted on purpose that the checks did not report (empty: the checks work). */
  readonly leftoverChecksMissed: readonly string[];
  readonly memory: Record<string, { firstMB: number; lastMB: number; flat: boolean }>;
  readonly wallSeconds: number;
  readonly ok: boolean;
  readonly injected: readonly Injected[];
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Runs the chaos and returns its report; everything it started is gone when it returns. */
export async function runChaos(options: ChaosOptions): Promise<ChaosReport> {
  const hosts = options.hosts ?? 4;
  const linkMbit = options.linkMbit ?? 200;
  const out = path.resolve(options.out);
  const storeDir = path.join(out, 'store');
  const aofDir = path.join(out, 'queue-redis');
  await fs.mkdir(storeDir, { recursive: true });
  await fs.mkdir(aofDir, { recursive: true });
  const started = Date.now();
  const sim = await SimulatedHosts.create({ hosts, linkMbit, controlAofDir: aofDir, shmSize: '256m' });
  const logFile = await fs.open(path.join(out, 'services.log'), 'a');
  const chaos = new ChaosRun(sim, options, storeDir, logFile.fd, linkMbit);
  try {
    return await chaos.run(started);
  } finally {
    await chaos.close();
    await sim.destroy();
    await logFile.close();
  }
}

class ChaosRun {
  private readonly token = randomBytes(16).toString('hex');
  private readonly url: string;
  private readonly env: NodeJS.ProcessEnv;
  private api: ChildProcess | undefined;
  /** The worker process of each host (replaced when one is killed). */
  private readonly workers = new Map<number, ChildProcess>();
  private supervising = true;
  private readonly control: Redis;
  private readonly jobs: Tracked[] = [];
  private readonly injected: Injected[] = [];
  private noTarget = 0;
  /** Targets under a fault now (a stopped process, a host's link, the queue Redis). */
  private readonly busy = new Set<string>();
  /** Undo actions of the faults still in force, by target. */
  private readonly undo = new Map<string, () => Promise<void>>();
  private readonly memory = new Map<string, number[]>();
  private readonly rng: Rng;
  /** When the jobs and faults began (the faults' times count from here). */
  private startedAt = Date.now();

  constructor(
    private readonly sim: SimulatedHosts,
    private readonly options: ChaosOptions,
    private readonly storeDir: string,
    private readonly logFd: number,
    private readonly linkMbit: number,
  ) {
    this.url = `http://${sim.control.address}:${API_PORT}`;
    this.env = {
      ...process.env,
      REDIS_URL: sim.control.redisUrl,
      DDPM_QUEUE_PREFIX: PREFIX,
      DDPM_STORAGE_URL: `file://${storeDir}`,
      DDPM_BACKEND: 'wasm',
      METRICS_PORT: '0',
      LOG_LEVEL: 'warn',
      // A killed worker's job is taken by another within 10 s (the default is 30 s).
      DDPM_LOCK_DURATION_MS: '10000',
      DDPM_STALLED_INTERVAL_MS: '5000',
    };
    this.control = new Redis(sim.control.redisUrl, { maxRetriesPerRequest: 1, lazyConnect: true });
    this.control.on('error', () => undefined);
    this.rng = Rng.fromSeed(options.seed).fork(1);
  }

  private log(line: string): void {
    this.options.log(`[chaos ${new Date().toISOString().slice(11, 19)}] ${line}`);
  }

  private startApi(): void {
    this.api = this.sim.spawn('control', [process.execPath, path.join(ROOT, 'apps/api/dist/server.js')], {
      env: { ...this.env, HOST: this.sim.control.address, PORT: String(API_PORT), DDPM_API_TOKEN: this.token },
      stdio: ['ignore', this.logFd, this.logFd],
    });
  }

  private startWorker(host: number): void {
    const child = this.sim.spawn(host, [process.execPath, path.join(ROOT, 'apps/worker/dist/main.js')], {
      env: { ...this.env, DDPM_RANK_DATA_URL: this.sim.hosts[host]!.dataRedisUrl },
      stdio: ['ignore', this.logFd, this.logFd],
      bindMounts: [this.storeDir],
    });
    this.workers.set(host, child);
    // The supervisor (a pod's restart policy): a worker that dies is replaced 2 s later.
    child.once('exit', () => {
      if (this.supervising && this.workers.get(host) === child) setTimeout(() => this.respawn(host, child), 2000);
    });
  }

  private respawn(host: number, dead: ChildProcess): void {
    if (this.supervising && this.workers.get(host) === dead) this.startWorker(host);
  }

  private liveWorkers(): { host: number; pid: number }[] {
    return [...this.workers]
      .filter(([, w]) => w.exitCode === null && w.signalCode === null && w.pid !== undefined)
      .map(([host, w]) => ({ host, pid: w.pid! }))
      .sort((a, b) => a.host - b.host);
  }

  /** The job processes now running: their pid, host, and the job of their worker's slot. */
  private async jobProcesses(): Promise<{ pid: number; host: number; job: string | undefined }[]> {
    const slots = await this.slotJobs();
    const found: { pid: number; host: number; job: string | undefined }[] = [];
    for (const w of this.liveWorkers()) {
      const children = await fs
        .readFile(`/proc/${w.pid}/task/${w.pid}/children`, 'utf8')
        .then((t) => t.split(' ').filter(Boolean).map(Number))
        .catch(() => [] as number[]);
      for (const pid of children) {
        const cmd = await fs.readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
        if (cmd.includes(CHILD_MARK)) found.push({ pid, host: w.host, job: slots.get(w.pid) });
      }
    }
    return found;
  }

  /** The workers' slots on the control plane (their pid, state and job); none while its Redis is down (a fault). */
  private async slots(): Promise<{ pid: number; state: string; job: string }[]> {
    try {
      const keys = (await this.control.keys(`${slotKeyPrefix(PREFIX)}*`)).filter(
        (k) => slotIdOf(PREFIX, k) !== undefined,
      );
      const slots: { pid: number; state: string; job: string }[] = [];
      for (const key of keys) {
        const h = await this.control.hgetall(key);
        slots.push({ pid: Number(h['pid']), state: h['state'] ?? '', job: h['job'] ?? '' });
      }
      return slots;
    } catch {
      return [];
    }
  }

  /** Each worker's current job, by its slot on the control plane (pid → job id). */
  private async slotJobs(): Promise<Map<number, string>> {
    return new Map((await this.slots()).filter((s) => s.job !== '').map((s) => [s.pid, s.job]));
  }

  /** A request to the API, tried again while the API or its Redis is away (503, no answer). */
  private async request(
    method: string,
    route: string,
    body?: unknown,
    headers: Record<string, string> = {},
  ): Promise<{ status: number; json: Record<string, unknown> }> {
    for (let tries = 0; ; tries++) {
      try {
        const r = await fetch(`${this.url}${route}`, {
          method,
          headers: {
            authorization: `Bearer ${this.token}`,
            ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
            ...headers,
          },
          ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
          signal: AbortSignal.timeout(20_000),
        });
        const json = (await r.json().catch(() => ({}))) as Record<string, unknown>;
        if (r.status !== 503 && r.status !== 502) return { status: r.status, json };
      } catch {
        // Not reachable (the API's Redis is restarting, a timeout): try again.
      }
      if (tries > 120) throw new Error(`${method} ${route}: no answer for 2 minutes`);
      await sleep(1000);
    }
  }

  private async waitReady(): Promise<void> {
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline) {
      const ok = await fetch(`${this.url}/readyz`, { signal: AbortSignal.timeout(5000) }).then(
        (r) => r.ok,
        () => false,
      );
      if (ok && (await this.idleSlots()) === this.sim.hosts.length) return;
      await sleep(500);
    }
    throw new Error(`the API (${this.url}) and ${this.sim.hosts.length} idle workers were not ready within 60 s`);
  }

  private async idleSlots(): Promise<number> {
    const pids = new Set(this.liveWorkers().map((w) => w.pid));
    return (await this.slots()).filter((s) => pids.has(s.pid) && s.state === 'idle').length;
  }

  private async submit(
    kind: JobKind,
    body: Record<string, unknown>,
    config?: TrainConfigName,
    reference = false,
  ): Promise<Tracked> {
    // A request that is tried again across an outage must not create the job twice.
    const r = await this.request('POST', `/jobs/${kind}`, body, { 'idempotency-key': randomUUID() });
    if (r.status !== 202 && r.status !== 200)
      throw new Error(`POST /jobs/${kind} answered ${r.status}: ${JSON.stringify(r.json)}`);
    const job: Tracked = {
      id: String(r.json['id']),
      kind,
      ...(config !== undefined ? { config } : {}),
      submittedAt: Date.now(),
      ...(reference ? { reference } : {}),
      faults: {},
    };
    this.jobs.push(job);
    return job;
  }

  /** The next job of the stream: mostly training, and sampling and evaluating what was trained. */
  private async submitNext(): Promise<void> {
    const trained = this.jobs.filter((j) => j.kind === 'train' && j.state === 'completed' && !j.cancelAccepted);
    const draw = this.rng.uniform();
    if (draw < 0.12 && trained.length > 0) {
      const from = pickOf(trained, this.rng.uniform())!;
      const workers = this.rng.uniform() < 0.5 ? 2 : 1;
      await this.submit('sample', {
        trainJobId: from.id,
        count: 32,
        steps: 8,
        seed: 3,
        ...(workers > 1 ? { workers, minWorkers: 1, rankTimeoutSeconds: 8, maxRestarts: 50 } : {}),
      });
      return;
    }
    if (draw < 0.2 && trained.length > 0) {
      const from = pickOf(trained, this.rng.uniform())!;
      await this.submit('eval', { trainJobId: from.id, metrics: ['nll'], nllImages: 4 });
      return;
    }
    const config: TrainConfigName = draw < 0.55 ? 'alone' : draw < 0.85 ? 'pair' : 'trio';
    const job = await this.submit('train', trainRequest(config), config);
    // Some train jobs are cancelled a while after they are submitted.
    if (this.rng.uniform() < 0.12) job.cancelAt = Date.now() + 10_000 + this.rng.uniform() * 40_000;
  }

  private async refresh(job: Tracked): Promise<void> {
    const r = await this.request('GET', `/jobs/${job.id}`);
    if (r.status !== 200) return;
    job.state = String(r.json['state']);
    job.attempts = Number(r.json['attempts'] ?? 0);
    if (r.json['result'] !== undefined) job.result = r.json['result'] as JobResultView;
    const error = r.json['error'];
    if (error !== undefined) job.error = typeof error === 'string' ? error : JSON.stringify(error);
  }

  private finished(job: Tracked): boolean {
    return job.state === 'completed' || job.state === 'failed' || job.state === 'cancelled';
  }

  private async cancel(job: Tracked): Promise<void> {
    job.cancelAt = undefined;
    await this.refresh(job);
    if (this.finished(job)) return;
    const r = await this.request('DELETE', `/jobs/${job.id}`);
    job.cancelAccepted = r.status >= 200 && r.status < 300;
    this.log(`cancel ${job.id}: ${r.status}`);
  }

  // ---- faults -------------------------------------------------------------------------------

  private async inject(draw: FaultDraw): Promise<void> {
    const at = (Date.now() - this.startedAt) / 1000;
    const done = (target: string, jobs: readonly string[]): void => {
      this.injected.push({ at: Math.round(at * 10) / 10, kind: draw.kind, target, seconds: draw.seconds, jobs });
      for (const id of jobs) {
        const job = this.jobs.find((j) => j.id === id);
        if (job) job.faults[draw.kind] = (job.faults[draw.kind] ?? 0) + 1;
      }
      this.log(
        `${draw.kind} ${target}${draw.seconds > 0 ? ` for ${draw.seconds.toFixed(1)} s` : ''}${jobs.length ? ` (jobs ${jobs.join(', ')})` : ''}`,
      );
    };
    const later = (target: string, fix: () => Promise<void> | void): void => {
      this.busy.add(target);
      const undo = async (): Promise<void> => {
        if (!this.undo.delete(target)) return;
        this.busy.delete(target);
        await Promise.resolve(fix()).catch((err: Error) =>
          this.log(`undoing ${draw.kind} on ${target}: ${err.message}`),
        );
      };
      this.undo.set(target, undo);
      setTimeout(() => void undo(), draw.seconds * 1000);
    };
    const slots = await this.slotJobs();
    const free = <T extends { pid: number }>(list: T[]): T[] => list.filter((p) => !this.busy.has(`pid ${p.pid}`));
    switch (draw.kind) {
      case 'worker-sigkill':
      case 'worker-sigstop': {
        const w = pickOf(free(this.liveWorkers()), draw.pick);
        if (w === undefined) break;
        const job = slots.get(w.pid);
        const target = `pid ${w.pid}`;
        if (draw.kind === 'worker-sigkill') {
          process.kill(w.pid, 'SIGKILL');
        } else {
          process.kill(w.pid, 'SIGSTOP');
          later(target, () => signal(w.pid, 'SIGCONT'));
        }
        return done(`worker of host ${w.host} (${target})`, job ? [job] : []);
      }
      case 'child-sigkill':
      case 'child-sigstop': {
        // A single job's process may be killed once (a kill is a crash, and costs an attempt of
        // three); a rank's as often as it comes up (the group re-forms, maxRestarts is 50).
        const candidates = free(await this.jobProcesses()).filter((p) => {
          if (draw.kind !== 'child-sigkill' || p.job === undefined) return true;
          const job = this.jobs.find((j) => j.id === p.job);
          const group = job?.config !== undefined && TRAIN_CONFIGS[job.config].workers > 1;
          return group || (job?.faults['child-sigkill'] ?? 0) === 0;
        });
        const c = pickOf(candidates, draw.pick);
        if (c === undefined) break;
        const target = `pid ${c.pid}`;
        if (draw.kind === 'child-sigkill') {
          signal(c.pid, 'SIGKILL');
        } else {
          signal(c.pid, 'SIGSTOP');
          later(target, () => signal(c.pid, 'SIGCONT'));
        }
        return done(`job process on host ${c.host} (${target})`, c.job ? [c.job] : []);
      }
      case 'queue-redis-restart': {
        if (this.busy.has('queue-redis')) break;
        await this.sim.killRedis('control');
        later('queue-redis', () => this.sim.startRedis('control'));
        return done('queue Redis', [...new Set(slots.values())]);
      }
      case 'data-redis-restart':
      case 'link-down':
      case 'slow-link':
      case 'store-readonly': {
        const hostsFree = this.sim.hosts.map((h) => h.index).filter((h) => !this.busy.has(`${draw.kind} ${h}`));
        const host = pickOf(hostsFree, draw.pick);
        if (host === undefined) break;
        const target = `${draw.kind} ${host}`;
        const onHost = this.liveWorkers().filter((w) => w.host === host);
        const jobs = onHost.map((w) => slots.get(w.pid)).filter((j): j is string => j !== undefined);
        if (draw.kind === 'data-redis-restart') {
          await this.sim.killRedis(host);
          later(target, () => this.sim.startRedis(host));
        } else if (draw.kind === 'link-down') {
          this.sim.setLink(host, false);
          later(target, () => this.sim.setLink(host, true));
        } else if (draw.kind === 'slow-link') {
          this.sim.setLinkRate(host, 2);
          later(target, () => this.sim.setLinkRate(host, undefined));
        } else {
          if (onHost.length === 0) break;
          for (const w of onHost) this.sim.setWritable(w.pid, this.storeDir, false);
          later(target, () => {
            // A worker that died meanwhile took its mount namespace with it; its successor writes.
            for (const w of onHost) if (isAlive(w.pid)) this.sim.setWritable(w.pid, this.storeDir, true);
          });
        }
        return done(`host ${host}`, jobs);
      }
    }
    this.noTarget += 1;
    this.log(`${draw.kind}: no target now`);
  }

  // ---- the run --------------------------------------------------------------------------------

  async run(started: number): Promise<ChaosReport> {
    const { minutes, seed } = this.options;
    const faultEvery = this.options.faultEverySeconds ?? 20;
    this.startApi();
    await this.control.connect().catch(() => undefined);
    for (const h of this.sim.hosts) this.startWorker(h.index);
    await this.waitReady();
    this.log(`${this.sim.hosts.length} hosts up, API at ${this.url}; ${minutes} min of jobs and faults (seed ${seed})`);
    this.startedAt = Date.now();
    const seconds = minutes * 60;
    const draws = drawFaults(seed, seconds, faultEvery);
    const memoryTimer = setInterval(() => void this.sampleMemory(), 10_000);
    let next = 0;
    try {
      while (!this.options.signal?.aborted) {
        const elapsed = (Date.now() - this.startedAt) / 1000;
        if (elapsed >= seconds) break;
        while (next < draws.length && draws[next]!.at <= elapsed) await this.inject(draws[next++]!);
        const open = this.jobs.filter((j) => !this.finished(j));
        for (const job of open) {
          await this.refresh(job);
          if (job.cancelAt !== undefined && Date.now() >= job.cancelAt) await this.cancel(job);
        }
        if (this.jobs.filter((j) => !this.finished(j)).length < this.sim.hosts.length) await this.submitNext();
        await sleep(1000);
      }
      // The faults end: every one still in force is undone, every worker is up again.
      this.log('faults over: undoing those in force, waiting for every job');
      for (const undo of [...this.undo.values()]) await undo();
      for (const h of this.sim.hosts) {
        const w = this.workers.get(h.index);
        if (w === undefined || w.exitCode !== null || w.signalCode !== null) this.startWorker(h.index);
      }
      await this.drain(15 * 60_000);
      const differing = await this.compareWithReferences();
      const compared = this.completedTrain().length;
      // A quiet moment for the workers to tidy (slots back to idle, generation keys expired).
      await this.waitReady();
      await sleep(5000);
      await this.sampleMemory();
      const selfCheck = await this.checkTheChecks();
      const leftovers = await this.leftovers();
      return this.report(started, differing, compared, leftovers, selfCheck);
    } finally {
      clearInterval(memoryTimer);
    }
  }

  private async drain(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const open = this.jobs.filter((j) => !this.finished(j));
      for (const job of open) await this.refresh(job);
      const left = this.jobs.filter((j) => !this.finished(j));
      if (left.length === 0) return;
      if (Date.now() > deadline) {
        this.log(`${left.length} jobs still open after ${timeoutMs / 60000} min: ${left.map((j) => j.id).join(', ')}`);
        return;
      }
      await sleep(2000);
    }
  }

  /** The stream's train jobs that completed every step (cancelled ones stop early). */
  private completedTrain(): Tracked[] {
    return this.jobs.filter(
      (j) => j.kind === 'train' && !j.reference && j.state === 'completed' && j.result?.status === 'completed',
    );
  }

  /**
   * Trains each configuration once without faults (one process, the same accumulation) and
   * compares every completed run's final checkpoint with it, byte for byte.
   */
  private async compareWithReferences(): Promise<string[]> {
    const differing: string[] = [];
    const references = new Map<TrainConfigName, Tracked>();
    for (const config of new Set(this.completedTrain().map((j) => j.config!))) {
      references.set(config, await this.submit('train', trainRequest(config, true), config, true));
      this.log(`fault-free reference of ${config}: ${references.get(config)!.id}`);
    }
    await this.drain(10 * 60_000);
    const files = ['model.safetensors', 'ema.safetensors', 'optimizer.safetensors'];
    for (const [config, reference] of references) {
      if (reference.result?.status !== 'completed') {
        differing.push(
          `the reference of ${config} (${reference.id}) did not complete: ${reference.error ?? reference.state}`,
        );
        continue;
      }
      const step = TRAIN_CONFIGS[config].steps;
      const read = (id: string, name: string): Promise<Buffer | undefined> =>
        fs
          .readFile(path.join(this.storeDir, 'runs', id, 'checkpoints', `step-${String(step).padStart(9, '0')}`, name))
          .catch(() => undefined);
      const expected = await Promise.all(files.map((f) => read(reference.id, f)));
      for (const job of this.completedTrain().filter((j) => j.config === config)) {
        const names: string[] = [];
        for (const [i, name] of files.entries()) {
          const got = await read(job.id, name);
          const want = expected[i];
          if (got === undefined || want === undefined || !got.equals(want)) names.push(name);
        }
        if (names.length > 0)
          differing.push(
            `${job.id}: ${names.join(', ')} of step ${step} differ from the fault-free ${reference.id}${await this.whereItDiverged(job, reference)}`,
          );
      }
    }
    return differing;
  }

  /**
   * For a run that differs: the first checkpoint both runs still hold whose weights differ (the
   * fault before it is the suspect), and the job's log and fault list saved next to the store.
   */
  private async whereItDiverged(job: Tracked, reference: Tracked): Promise<string> {
    const steps = async (id: string): Promise<string[]> =>
      (await fs.readdir(path.join(this.storeDir, 'runs', id, 'checkpoints')).catch(() => [] as string[])).sort();
    const ours = new Set(await steps(job.id));
    let first: string | undefined;
    for (const dir of await steps(reference.id)) {
      if (!ours.has(dir)) continue;
      const file = (id: string): Promise<Buffer | undefined> =>
        fs
          .readFile(path.join(this.storeDir, 'runs', id, 'checkpoints', dir, 'model.safetensors'))
          .catch(() => undefined);
      const [a, b] = await Promise.all([file(job.id), file(reference.id)]);
      if (a === undefined || b === undefined || !a.equals(b)) {
        first = dir;
        break;
      }
    }
    const logs = await fetch(`${this.url}/jobs/${job.id}/logs?limit=5000`, {
      headers: { authorization: `Bearer ${this.token}` },
      signal: AbortSignal.timeout(20_000),
    })
      .then((r) => r.text())
      .catch((err: Error) => `the log could not be read: ${err.message}`);
    const saved = path.join(path.dirname(this.storeDir), `differing-${job.id}.log`);
    const touched = this.injected.filter((f) => f.jobs.includes(job.id));
    await fs.writeFile(saved, `${logs}\nfaults:\n${touched.map((f) => JSON.stringify(f)).join('\n')}\n`);
    return `; ${first !== undefined ? `the first differing checkpoint both keep is ${first}` : 'the checkpoints both keep are equal'}; log and faults in ${saved}`;
  }

  private async sampleMemory(): Promise<void> {
    const note = async (name: string, pid: number | undefined): Promise<void> => {
      if (pid === undefined) return;
      const status = await fs.readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
      const kb = /^VmRSS:\s+(\d+) kB/m.exec(status);
      if (kb) this.memory.set(name, [...(this.memory.get(name) ?? []), Number(kb[1]) / 1024]);
    };
    await note('api', this.api?.pid);
    for (const w of this.liveWorkers()) await note(`worker ${w.host} (pid ${w.pid})`, w.pid);
  }

  /**
   * Shows that the leftover checks find what they look for: plants one leftover of each sort (a
   * process on a host, a file in a worker's /dev/shm, a key without expiry in a data Redis and in
   * the queue Redis, a temporary object in the store), checks that each is reported, and removes
   * them. Returns what was not found (nothing, when the checks work).
   */
  private async checkTheChecks(): Promise<string[]> {
    const worker = this.liveWorkers()[0]!;
    const host = this.sim.hosts[worker.host]!;
    const mark = `chaos-self-check-${randomBytes(3).toString('hex')}`;
    const sleeper = this.sim.spawn(worker.host, [process.execPath, '-e', 'setTimeout(() => {}, 120000)', mark], {
      stdio: 'ignore',
      sharedMemory: false,
    });
    const sleeperGone = new Promise((resolve) => sleeper.once('exit', resolve));
    const shmFile = `/proc/${worker.pid}/root/dev/shm/${mark}`;
    const tempObject = path.join(this.storeDir, `${mark}.ddpm-tmp-1-0`);
    // A generation counter left behind, as a crashed coordinator could leave one.
    const plantedKey = generationKey(PREFIX, mark);
    const data = new Redis(host.dataRedisUrl, { maxRetriesPerRequest: 1 });
    data.on('error', () => undefined);
    try {
      await fs.writeFile(shmFile, 'x');
      await fs.writeFile(tempObject, 'x');
      await data.set(mark, 'x');
      await this.control.set(plantedKey, 'x');
      await sleep(300);
      const found = Object.values(await this.leftovers()).flat();
      const missed = [
        ['a process', mark],
        ['a shared-memory file', `/dev/shm/${mark}`],
        ['a data Redis key', `host ${worker.host}: ${mark}`],
        ['a queue Redis key', plantedKey],
        ['a temporary object', `${mark}.ddpm-tmp-`],
      ]
        .filter(([, needle]) => !found.some((f) => f.includes(needle!)))
        .map(([what]) => `${what} planted was not reported`);
      return missed;
    } finally {
      sleeper.kill('SIGKILL');
      await fs.rm(shmFile, { force: true });
      await fs.rm(tempObject, { force: true });
      await data.del(mark).catch(() => undefined);
      await this.control.del(plantedKey).catch(() => undefined);
      data.disconnect();
      await sleeperGone;
    }
  }

  private async leftovers(): Promise<ChaosReport['leftovers']> {
    const processes: string[] = [];
    const sharedMemoryFiles: string[] = [];
    const workerPids = new Set(this.liveWorkers().map((w) => w.pid));
    for (const h of this.sim.hosts) {
      for (const p of this.sim.processesOf(h.index)) {
        if (workerPids.has(p.pid) || p.command.startsWith('redis-server')) continue;
        processes.push(`host ${h.index}: ${p.pid} ${p.command.slice(0, 120)}`);
      }
    }
    for (const p of this.sim.processesOf('control')) {
      if (p.pid === this.api?.pid || p.command.startsWith('redis-server')) continue;
      processes.push(`control: ${p.pid} ${p.command.slice(0, 120)}`);
    }
    for (const w of this.liveWorkers())
      for (const f of this.sim.sharedMemoryFiles(w.pid)) sharedMemoryFiles.push(`host ${w.host}: /dev/shm/${f}`);
    const redisKeys = await this.transientKeys();
    const tempObjects: string[] = [];
    const walk = async (dir: string): Promise<void> => {
      for (const e of await fs.readdir(dir, { withFileTypes: true }).catch(() => [])) {
        const p = path.join(dir, e.name);
        if (e.isDirectory()) await walk(p);
        else if (e.name.includes('.ddpm-tmp-')) tempObjects.push(path.relative(this.storeDir, p));
      }
    };
    await walk(this.storeDir);
    return { processes, sharedMemoryFiles, redisKeys, tempObjects };
  }

  /**
   * Keys that outlive what they were for: on the queue Redis, every key outside BullMQ's queues,
   * the live workers' slots and the API's bookkeeping that has no expiry; on every data Redis,
   * every key without one.
   */
  private async transientKeys(): Promise<string[]> {
    const left: string[] = [];
    const slots = new Set(this.liveWorkers().map((w) => w.pid));
    for (const key of await this.control.keys('*')) {
      if (/^chaos:(train|sample|eval):/.test(key)) continue;
      if (key === slotsKey(PREFIX)) continue;
      if (key.startsWith(slotKeyPrefix(PREFIX))) {
        const pid = Number(await this.control.hget(key.replace(/:inbox$/, ''), 'pid'));
        if (slots.has(pid)) continue;
      }
      if ((await this.control.pttl(key)) >= 0) continue;
      left.push(`queue Redis: ${key}`);
    }
    for (const h of this.sim.hosts) {
      const data = new Redis(h.dataRedisUrl, { maxRetriesPerRequest: 1 });
      data.on('error', () => undefined);
      try {
        for (const key of await data.keys('*'))
          if ((await data.pttl(key)) < 0) left.push(`data Redis of host ${h.index}: ${key}`);
      } catch (err) {
        left.push(`data Redis of host ${h.index}: unreadable (${(err as Error).message})`);
      } finally {
        data.disconnect();
      }
    }
    return left;
  }

  private report(
    started: number,
    differing: string[],
    compared: number,
    leftovers: ChaosReport['leftovers'],
    selfCheck: string[],
  ): ChaosReport {
    const count = <T>(items: readonly T[], key: (t: T) => string): Record<string, number> => {
      const out: Record<string, number> = {};
      for (const i of items) out[key(i)] = (out[key(i)] ?? 0) + 1;
      return out;
    };
    const stream = this.jobs.filter((j) => !j.reference);
    const lost: { id: string; why: string }[] = [];
    for (const j of stream) {
      const status = j.result?.status;
      if (!this.finished(j)) lost.push({ id: j.id, why: `still ${j.state ?? 'unknown'} at the end` });
      else if (j.state === 'failed') lost.push({ id: j.id, why: `failed: ${j.error ?? '?'}` });
      else if (status === 'cancelled' && !j.cancelAccepted)
        lost.push({ id: j.id, why: 'cancelled, though no cancel was asked for' });
      else if (status !== 'cancelled' && status !== 'completed') lost.push({ id: j.id, why: `ended as ${status}` });
    }
    const memory: ChaosReport['memory'] = {};
    for (const [name, samples] of this.memory) {
      if (samples.length < 4) continue;
      // After the first quarter (loading, the first jobs), against the last.
      const quarter = Math.max(1, Math.floor(samples.length / 4));
      const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
      const first = median(samples.slice(quarter, 2 * quarter));
      const last = median(samples.slice(-quarter));
      memory[name] = { firstMB: Math.round(first), lastMB: Math.round(last), flat: last <= first * 1.25 + 16 };
    }
    for (const j of this.jobs.filter((r) => r.reference && r.state !== 'completed'))
      lost.push({ id: j.id, why: `the fault-free reference ended ${j.state ?? 'unknown'}: ${j.error ?? ''}` });
    const results = stream.map((j) => j.result).filter((r): r is JobResultView => r !== undefined);
    const byKind = count(this.injected, (f) => f.kind);
    const leftoverCount = Object.values(leftovers).reduce((n, l) => n + l.length, 0);
    const report: ChaosReport = {
      seed: this.options.seed,
      minutes: this.options.minutes,
      hosts: this.sim.hosts.length,
      linkMbit: this.linkMbit,
      faults: {
        total: this.injected.length,
        kinds: FAULT_KINDS.filter((k) => (byKind[k] ?? 0) > 0).length,
        byKind,
        noTarget: this.noTarget,
      },
      jobs: {
        total: stream.length,
        byKind: count(stream, (j) => (j.config !== undefined ? `train ${j.config}` : j.kind)),
        byOutcome: count(stream, (j) => (j.state === 'failed' ? 'failed' : (j.result?.status ?? j.state ?? 'unknown'))),
        cancelsAccepted: stream.filter((j) => j.cancelAccepted).length,
      },
      cost: {
        redoneSteps: results.reduce((n, r) => n + (r.resumedFrom?.redone?.steps ?? 0), 0),
        redoneSeconds: Math.round(results.reduce((n, r) => n + (r.resumedFrom?.redone?.seconds ?? 0), 0) * 10) / 10,
        groupRestarts: results.reduce((n, r) => n + (r.group?.restarts ?? 0), 0),
        retriedAttempts: stream.reduce((n, j) => n + Math.max(0, (j.attempts ?? 1) - 1), 0),
      },
      lost,
      checkpoints: { compared, differing },
      leftovers,
      leftoverChecksMissed: selfCheck,
      memory,
      wallSeconds: Math.round((Date.now() - started) / 1000),
      ok:
        selfCheck.length === 0 &&
        lost.length === 0 &&
        differing.length === 0 &&
        leftoverCount === 0 &&
        Object.values(memory).every((m) => m.flat),
      injected: this.injected,
    };
    return report;
  }

  async close(): Promise<void> {
    this.supervising = false;
    for (const undo of [...this.undo.values()]) await undo();
    this.control.disconnect();
  }
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // Gone already (a rank its worker killed meanwhile).
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
