/**
 * What a chaos run's faults do (faults.ts draws them): each drawn fault lands on a target that is
 * not under a fault already (a worker, a job process, the queue Redis, a host's data Redis, link
 * or store mount), is undone after its duration, and is noted with the jobs it hit.
 */
import { type FaultDraw, type FaultKind, pickOf } from './faults';
import { TRAIN_CONFIGS, type Tracked } from './job-stream';
import { type ChaosLog, type ChaosServices } from './services';

export interface Injected {
  readonly at: number;
  readonly kind: FaultKind;
  readonly target: string;
  readonly seconds: number;
  readonly jobs: readonly string[];
}

/** What a fault landed on, and the jobs whose processes it hit; undefined when nothing could take it. */
type Landed = { readonly target: string; readonly jobs: readonly string[] } | undefined;

export class FaultInjector {
  readonly injected: Injected[] = [];
  /** Draws that found no target. */
  noTarget = 0;
  /** Targets under a fault now (a stopped process, a host's link, the queue Redis). */
  private readonly busy = new Set<string>();
  /** Undo actions of the faults still in force, by target. */
  private readonly undo = new Map<string, () => Promise<void>>();

  constructor(
    private readonly services: ChaosServices,
    private readonly jobs: readonly Tracked[],
    private readonly storeDir: string,
    private readonly log: ChaosLog,
  ) {}

  /** Injects `draw`, `at` seconds into the run, on one of the targets free now (or notes that there was none). */
  async inject(draw: FaultDraw, at: number): Promise<void> {
    const slots = await this.services.slotJobs();
    const landed = await this.land(draw, slots);
    if (landed === undefined) {
      this.noTarget += 1;
      this.log(`${draw.kind}: no target now`);
      return;
    }
    this.record(draw, at, landed.target, landed.jobs);
  }

  /** Undoes every fault still in force. */
  async undoAll(): Promise<void> {
    for (const undo of [...this.undo.values()]) await undo();
  }

  private async land(draw: FaultDraw, slots: Map<number, string>): Promise<Landed> {
    switch (draw.kind) {
      case 'worker-sigkill':
      case 'worker-sigstop':
        return this.onWorker(draw, slots);
      case 'child-sigkill':
      case 'child-sigstop':
        return this.onJobProcess(draw);
      case 'queue-redis-restart':
        return this.onQueueRedis(draw, slots);
      case 'data-redis-restart':
      case 'link-down':
      case 'slow-link':
      case 'store-readonly':
        return this.onHost(draw, slots);
    }
  }

  private record(draw: FaultDraw, at: number, target: string, jobs: readonly string[]): void {
    this.injected.push({ at: Math.round(at * 10) / 10, kind: draw.kind, target, seconds: draw.seconds, jobs });
    for (const id of jobs) {
      const job = this.jobs.find((j) => j.id === id);
      if (job) job.faults[draw.kind] = (job.faults[draw.kind] ?? 0) + 1;
    }
    this.log(
      `${draw.kind} ${target}${draw.seconds > 0 ? ` for ${draw.seconds.toFixed(1)} s` : ''}${jobs.length ? ` (jobs ${jobs.join(', ')})` : ''}`,
    );
  }

  /** Marks `target` busy for the draw's duration, then runs `fix` (at once when the run ends first). */
  private later(draw: FaultDraw, target: string, fix: () => Promise<void> | void): void {
    this.busy.add(target);
    const undo = async (): Promise<void> => {
      if (!this.undo.delete(target)) return;
      this.busy.delete(target);
      await Promise.resolve(fix()).catch((err: Error) => this.log(`undoing ${draw.kind} on ${target}: ${err.message}`));
    };
    this.undo.set(target, undo);
    setTimeout(() => void undo(), draw.seconds * 1000);
  }

  private free<T extends { pid: number }>(list: T[]): T[] {
    return list.filter((p) => !this.busy.has(`pid ${p.pid}`));
  }

  private onWorker(draw: FaultDraw, slots: Map<number, string>): Landed {
    const w = pickOf(this.free(this.services.liveWorkers()), draw.pick);
    if (w === undefined) return undefined;
    const job = slots.get(w.pid);
    const target = `pid ${w.pid}`;
    if (draw.kind === 'worker-sigkill') {
      process.kill(w.pid, 'SIGKILL');
    } else {
      process.kill(w.pid, 'SIGSTOP');
      this.later(draw, target, () => signal(w.pid, 'SIGCONT'));
    }
    return { target: `worker of host ${w.host} (${target})`, jobs: job ? [job] : [] };
  }

  private async onJobProcess(draw: FaultDraw): Promise<Landed> {
    // A single job's process may be killed once (a kill is a crash, and costs an attempt of
    // three); a rank's as often as it comes up (the group re-forms, maxRestarts is 50).
    const candidates = this.free(await this.services.jobProcesses()).filter((p) => {
      if (draw.kind !== 'child-sigkill' || p.job === undefined) return true;
      const job = this.jobs.find((j) => j.id === p.job);
      const group = job?.config !== undefined && TRAIN_CONFIGS[job.config].workers > 1;
      return group || (job?.faults['child-sigkill'] ?? 0) === 0;
    });
    const c = pickOf(candidates, draw.pick);
    if (c === undefined) return undefined;
    const target = `pid ${c.pid}`;
    if (draw.kind === 'child-sigkill') {
      signal(c.pid, 'SIGKILL');
    } else {
      signal(c.pid, 'SIGSTOP');
      this.later(draw, target, () => signal(c.pid, 'SIGCONT'));
    }
    return { target: `job process on host ${c.host} (${target})`, jobs: c.job ? [c.job] : [] };
  }

  private async onQueueRedis(draw: FaultDraw, slots: Map<number, string>): Promise<Landed> {
    if (this.busy.has('queue-redis')) return undefined;
    await this.services.sim.killRedis('control');
    this.later(draw, 'queue-redis', () => this.services.sim.startRedis('control'));
    return { target: 'queue Redis', jobs: [...new Set(slots.values())] };
  }

  /** A host's data Redis restarted, its link down or slow, or the store read-only for its workers. */
  private async onHost(draw: FaultDraw, slots: Map<number, string>): Promise<Landed> {
    const sim = this.services.sim;
    const hostsFree = sim.hosts.map((h) => h.index).filter((h) => !this.busy.has(`${draw.kind} ${h}`));
    const host = pickOf(hostsFree, draw.pick);
    if (host === undefined) return undefined;
    const target = `${draw.kind} ${host}`;
    const onHost = this.services.liveWorkers().filter((w) => w.host === host);
    const jobs = onHost.map((w) => slots.get(w.pid)).filter((j): j is string => j !== undefined);
    if (draw.kind === 'data-redis-restart') {
      await sim.killRedis(host);
      this.later(draw, target, () => sim.startRedis(host));
    } else if (draw.kind === 'link-down') {
      sim.setLink(host, false);
      this.later(draw, target, () => sim.setLink(host, true));
    } else if (draw.kind === 'slow-link') {
      sim.setLinkRate(host, 2);
      this.later(draw, target, () => sim.setLinkRate(host, undefined));
    } else {
      if (onHost.length === 0) return undefined;
      for (const w of onHost) sim.setWritable(w.pid, this.storeDir, false);
      this.later(draw, target, () => {
        // A worker that died meanwhile took its mount namespace with it; its successor writes.
        for (const w of onHost) if (isAlive(w.pid)) sim.setWritable(w.pid, this.storeDir, true);
      });
    }
    return { target: `host ${host}`, jobs };
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
