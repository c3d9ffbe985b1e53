/**
 * The service a chaos run works on, on its simulated hosts: the API in the control namespace, one
 * supervised worker per host (a pod's restart policy: one that dies is replaced), a connection to
 * the queue Redis to read the workers' slots from, and requests to the API that ride out outages.
 */
import { type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';

import { slotIdOf, slotKeyPrefix } from '@ddpm/service';
import { Redis } from 'ioredis';

import { type SimulatedHosts } from '../sim/hosts';

const ROOT = path.resolve(__dirname, '..', '..', '..', '..');
const API_PORT = 8080;
export const PREFIX = 'chaos';
const CHILD_MARK = path.join('apps', 'worker', 'dist', 'child.js');

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** A progress line of the run. */
export type ChaosLog = (line: string) => void;

export class ChaosServices {
  private readonly token = randomBytes(16).toString('hex');
  readonly url: string;
  private readonly env: NodeJS.ProcessEnv;
  private api: ChildProcess | undefined;
  /** The worker process of each host (replaced when one is killed). */
  private readonly workers = new Map<number, ChildProcess>();
  private supervising = true;
  readonly control: Redis;

  constructor(
    readonly sim: SimulatedHosts,
    private readonly storeDir: string,
    private readonly logFd: number,
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
  }

  /** The API's pid, while it has one. */
  get apiPid(): number | undefined {
    return this.api?.pid;
  }

  /** Starts the API, connects to the queue Redis and starts a worker on every host. */
  async start(): Promise<void> {
    this.startApi();
    await this.control.connect().catch(() => undefined);
    for (const h of this.sim.hosts) this.startWorker(h.index);
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

  /** Starts a worker on every host whose worker is gone (the faults are over: every worker is up again). */
  restartDeadWorkers(): void {
    for (const h of this.sim.hosts) {
      const w = this.workers.get(h.index);
      if (w === undefined || w.exitCode !== null || w.signalCode !== null) this.startWorker(h.index);
    }
  }

  /** No more replacing workers that die (the run is closing). */
  stopSupervising(): void {
    this.supervising = false;
  }

  disconnect(): void {
    this.control.disconnect();
  }

  liveWorkers(): { host: number; pid: number }[] {
    return [...this.workers]
      .filter(([, w]) => w.exitCode === null && w.signalCode === null && w.pid !== undefined)
      .map(([host, w]) => ({ host, pid: w.pid! }))
      .sort((a, b) => a.host - b.host);
  }

  /** The job processes now running: their pid, host, and the job of their worker's slot. */
  async jobProcesses(): Promise<{ pid: number; host: number; job: string | undefined }[]> {
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
  async slotJobs(): Promise<Map<number, string>> {
    return new Map((await this.slots()).filter((s) => s.job !== '').map((s) => [s.pid, s.job]));
  }

  /** A request to the API, tried again while the API or its Redis is away (503, no answer). */
  async request(
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

  /** A job's log lines as the API serves them (one try), or why they could not be read. */
  logsOf(id: string): Promise<string> {
    return fetch(`${this.url}/jobs/${id}/logs?limit=5000`, {
      headers: { authorization: `Bearer ${this.token}` },
      signal: AbortSignal.timeout(20_000),
    })
      .then((r) => r.text())
      .catch((err: Error) => `the log could not be read: ${err.message}`);
  }

  /** Waits until the API answers and every host's worker has an idle slot. */
  async waitReady(): Promise<void> {
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
}
