/**
 * A seeded chaos run on simulated hosts (sim/hosts.ts): the API and the queue Redis (with AOF) in
 * the control namespace, one worker per host with a data Redis of its own, every process on a
 * 200 Mbit/s link (services.ts). For a number of minutes a stream of jobs keeps the workers busy
 * (job-stream.ts: train jobs alone and in groups of 2 and 3, sample and eval jobs of the trained
 * runs, and cancels) while a seeded schedule injects faults (faults.ts, injectors.ts). Then the
 * faults stop, every job is waited for, the fault-free reference of every train configuration is
 * trained, and the run is checked:
 *
 * - every job ended as asked: completed, or cancelled when a cancel was accepted;
 * - every completed train job's final checkpoint (weights, EMA, Adam) has the reference's bytes
 *   (references.ts);
 * - nothing is left over: no job process, no shared-memory file, no transient Redis key without
 *   an expiry, no temporary object in the store (leftovers.ts);
 * - the API's and the workers' memory stayed flat (memory.ts).
 *
 * The report (JSON, report.ts) says what was injected, what the jobs did, what the faults cost
 * (steps and seconds redone, group restarts) and anything lost.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';

import { Rng } from '@ddpm/core';

import { SimulatedHosts } from '../sim/hosts';
import { drawFaults } from './faults';
import { FaultInjector } from './injectors';
import { JobStream } from './job-stream';
import { checkTheChecks, findLeftovers } from './leftovers';
import { MemorySamples } from './memory';
import { compareWithReferences } from './references';
import { type ChaosReport, buildReport } from './report';
import { ChaosServices, sleep } from './services';

export { type ChaosReport } from './report';

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
  private readonly services: ChaosServices;
  private readonly stream: JobStream;
  private readonly faults: FaultInjector;
  private readonly memory = new MemorySamples();
  /** When the jobs and faults began (the faults' times count from here). */
  private startedAt = Date.now();

  constructor(
    private readonly sim: SimulatedHosts,
    private readonly options: ChaosOptions,
    private readonly storeDir: string,
    logFd: number,
    private readonly linkMbit: number,
  ) {
    this.services = new ChaosServices(sim, storeDir, logFd);
    this.stream = new JobStream(this.services, Rng.fromSeed(options.seed).fork(1), this.log);
    this.faults = new FaultInjector(this.services, this.stream.jobs, storeDir, this.log);
  }

  private readonly log = (line: string): void => {
    this.options.log(`[chaos ${new Date().toISOString().slice(11, 19)}] ${line}`);
  };

  async run(started: number): Promise<ChaosReport> {
    const { minutes, seed } = this.options;
    await this.services.start();
    await this.services.waitReady();
    this.log(
      `${this.sim.hosts.length} hosts up, API at ${this.services.url}; ${minutes} min of jobs and faults (seed ${seed})`,
    );
    this.startedAt = Date.now();
    const memoryTimer = setInterval(() => void this.memory.sample(this.services), 10_000);
    try {
      await this.jobsAndFaults();
      // The faults end: every one still in force is undone, every worker is up again.
      this.log('faults over: undoing those in force, waiting for every job');
      await this.faults.undoAll();
      this.services.restartDeadWorkers();
      await this.stream.drain(15 * 60_000);
      return await this.check(started);
    } finally {
      clearInterval(memoryTimer);
    }
  }

  /** For the run's minutes (or until aborted): the faults as drawn, the jobs refreshed, cancelled and topped up. */
  private async jobsAndFaults(): Promise<void> {
    const seconds = this.options.minutes * 60;
    const draws = drawFaults(this.options.seed, seconds, this.options.faultEverySeconds ?? 20);
    let next = 0;
    while (!this.options.signal?.aborted) {
      const elapsed = (Date.now() - this.startedAt) / 1000;
      if (elapsed >= seconds) break;
      while (next < draws.length && draws[next]!.at <= elapsed)
        await this.faults.inject(draws[next++]!, (Date.now() - this.startedAt) / 1000);
      for (const job of this.stream.open()) {
        await this.stream.refresh(job);
        if (job.cancelAt !== undefined && Date.now() >= job.cancelAt) await this.stream.cancel(job);
      }
      if (this.stream.open().length < this.sim.hosts.length) await this.stream.submitNext();
      await sleep(1000);
    }
  }

  /** The checks once every job has ended, and the report. */
  private async check(started: number): Promise<ChaosReport> {
    const differing = await compareWithReferences({
      stream: this.stream,
      services: this.services,
      storeDir: this.storeDir,
      injected: this.faults.injected,
      log: this.log,
    });
    const compared = this.stream.completedTrain().length;
    // A quiet moment for the workers to tidy (slots back to idle, generation keys expired).
    await this.services.waitReady();
    await sleep(5000);
    await this.memory.sample(this.services);
    const selfCheck = await checkTheChecks(this.services, this.storeDir);
    const leftovers = await findLeftovers(this.services, this.storeDir);
    return buildReport({
      seed: this.options.seed,
      minutes: this.options.minutes,
      hosts: this.sim.hosts.length,
      linkMbit: this.linkMbit,
      started,
      jobs: this.stream.jobs,
      injected: this.faults.injected,
      noTarget: this.faults.noTarget,
      differing,
      compared,
      leftovers,
      selfCheck,
      memory: this.memory.summary(),
    });
  }

  async close(): Promise<void> {
    this.services.stopSupervising();
    await this.faults.undoAll();
    this.services.disconnect();
  }
}
