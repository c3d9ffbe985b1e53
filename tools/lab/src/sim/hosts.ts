/**
 * Simulated hosts on one Linux machine, for tests and benchmarks of what crosses a network: H
 * network namespaces, one per host, each joined to a bridge by a veth pair whose two ends are
 * shaped with `tc` (tbf: a rate and a burst; a delay too where the kernel has netem), a data Redis
 * per host, and a control namespace with the control Redis (the queues, the hub). Every process
 * started on a host gets a /dev/shm of its own (a tmpfs in the mount namespace `ip netns exec`
 * makes), so ranks on different hosts never find each other's shared memory and must use the
 * network.
 *
 * The network itself (namespaces, bridge, veth pairs, shaping, their removal and the sweep) is
 * network.ts's; this file runs the hosts' processes and Redis servers on it.
 *
 * Addresses come from the project's own test range, 10.213.0.0/16 (a /24 per run), and traffic
 * goes only to them and to loopback. Names carry a per-run id; {@link SimulatedHosts.destroy}
 * removes everything (and runs on process exit and on SIGINT/SIGTERM, so a failed test leaves no
 * namespace, link or process behind); `sweepSimulatedHosts` (`ddpm sim clean`) removes the leftovers of runs
 * that were killed outright.
 *
 * Needs root, `ip` and `tc` (iproute2), `redis-server` and `mount`; {@link simulationUnavailable}
 * says what is missing.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import * as path from 'node:path';

import {
  NET_PREFIX,
  NS_PREFIX,
  buildNetwork,
  freeSubnet,
  hasNetem,
  registerOwner,
  removeNetwork,
  run,
  shapeLink,
} from './network';

export { linkExists, sweepSimulatedHosts } from './network';

/** The data Redis of every host listens here; the control Redis on 6379. */
export const DATA_PORT = 6380;
export const CONTROL_PORT = 6379;

export interface SimulatedHostsOptions {
  /** Hosts (1 to 32). */
  readonly hosts: number;
  /** Each host link's rate, Mbit/s (absent: unshaped). */
  readonly linkMbit?: number;
  /** tbf's burst, kB (default: 4 ms of the rate, at least 64 kB). */
  readonly burstKb?: number;
  /** tbf's queue, as the longest a packet may wait, ms (default 50). */
  readonly queueMs?: number;
  /** One-way delay per link, ms (needs netem; refused where the kernel lacks it). */
  readonly delayMs?: number;
  /** Whether the control namespace's link is shaped like the hosts' (default true: the hub is a host like the others). */
  readonly shapeControl?: boolean;
  /** Start a data Redis on every host (default true). */
  readonly dataRedis?: boolean;
  /** Password of every Redis (default: none). */
  readonly password?: string;
  /** Size of every host's /dev/shm (default 512m). */
  readonly shmSize?: string;
  /**
   * A folder for the control Redis's append-only file (fsync on every write): its restarts then
   * keep the queues, as a production Redis with AOF does. Absent: no persistence.
   */
  readonly controlAofDir?: string;
}

export interface SimulatedHost {
  readonly index: number;
  readonly namespace: string;
  readonly address: string;
  /** The bridge side of its veth pair (in the root namespace): its counters are the host's traffic. */
  readonly veth: string;
  /** Its data Redis, as every other host reaches it. */
  readonly dataRedisUrl: string;
}

/** Why this machine cannot simulate hosts, or undefined when it can. */
export function simulationUnavailable(): string | undefined {
  if (process.platform !== 'linux') return `simulated hosts need Linux, not ${process.platform}`;
  if (typeof process.getuid === 'function' && process.getuid() !== 0)
    return 'simulated hosts need root (network namespaces, veth, tc)';
  for (const tool of ['ip', 'tc', 'redis-server', 'mount']) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0)
      return `simulated hosts need ${tool} on the PATH (apt-get install iproute2 redis-server)`;
  }
  return undefined;
}

export class SimulatedHosts {
  readonly id: string;
  readonly hosts: readonly SimulatedHost[];
  readonly control: {
    readonly namespace: string;
    readonly address: string;
    readonly veth: string;
    readonly redisUrl: string;
  };
  /** The bridge's address in the root namespace (what this process reaches the hosts from). */
  readonly gateway: string;
  readonly netem: boolean;
  private readonly bridge: string;
  private readonly processes = new Set<ChildProcess>();
  private readonly redisServers = new Map<number | 'control', ChildProcess>();
  private destroyed = false;
  private readonly onExit = (): void => this.destroySync();
  private readonly onSignal = (signal: NodeJS.Signals): void => {
    this.destroySync();
    process.kill(process.pid, signal);
  };

  private constructor(
    readonly options: SimulatedHostsOptions,
    subnet: number,
  ) {
    this.id = randomBytes(2).toString('hex');
    this.bridge = `ddb${this.id}`;
    const net = `${NET_PREFIX}.${subnet}`;
    this.gateway = `${net}.254`;
    this.netem = options.delayMs !== undefined && hasNetem();
    const auth = options.password !== undefined ? `:${encodeURIComponent(options.password)}@` : '';
    this.control = {
      namespace: `${NS_PREFIX}${this.id}-c`,
      address: `${net}.1`,
      veth: `ddv${this.id}-c`,
      redisUrl: `redis://${auth}${net}.1:${CONTROL_PORT}`,
    };
    this.hosts = Array.from({ length: options.hosts }, (_, i) => ({
      index: i,
      namespace: `${NS_PREFIX}${this.id}-h${i}`,
      address: `${net}.${10 + i}`,
      veth: `ddv${this.id}-${i}`,
      dataRedisUrl: `redis://${auth}${net}.${10 + i}:${DATA_PORT}`,
    }));
  }

  /** Creates the hosts, their links and their Redis servers; refuses, saying why, where it cannot. */
  static async create(options: SimulatedHostsOptions): Promise<SimulatedHosts> {
    const unavailable = simulationUnavailable();
    if (unavailable !== undefined) throw new Error(unavailable);
    if (!Number.isInteger(options.hosts) || options.hosts < 1 || options.hosts > 32)
      throw new Error(`hosts must be 1 to 32, got ${options.hosts}`);
    if (options.linkMbit !== undefined && !(options.linkMbit > 0))
      throw new Error(`the link rate must be positive, got ${options.linkMbit} Mbit/s`);
    if (options.delayMs !== undefined && !hasNetem())
      throw new Error(
        "a link delay needs the kernel's netem qdisc, which this kernel lacks (tbf shapes the rate only)",
      );
    const sim = new SimulatedHosts(options, freeSubnet());
    registerOwner(sim.id);
    process.once('exit', sim.onExit);
    process.once('SIGINT', sim.onSignal);
    process.once('SIGTERM', sim.onSignal);
    try {
      sim.buildNetwork();
      await sim.startRedis('control');
      if (options.dataRedis !== false) for (const h of sim.hosts) await sim.startRedis(h.index);
    } catch (err) {
      sim.destroySync();
      throw err;
    }
    return sim;
  }

  private buildNetwork(): void {
    const ends = [
      {
        namespace: this.control.namespace,
        address: this.control.address,
        veth: this.control.veth,
        shape: this.options.shapeControl !== false,
      },
      ...this.hosts.map((h) => ({ ...h, shape: true })),
    ];
    buildNetwork(this.bridge, this.gateway, ends, (prefix, dev) => this.shape(prefix, dev));
  }

  /** tbf at the link rate (and netem's delay before it, where asked and available) on `dev`. */
  private shape(prefix: readonly string[], dev: string, linkMbit = this.options.linkMbit): void {
    shapeLink({ ...this.options, netem: this.netem }, prefix, dev, linkMbit);
  }

  private namespaceOf(host: number | 'control'): string {
    return host === 'control' ? this.control.namespace : this.hosts[host]!.namespace;
  }

  private addressOf(host: number | 'control'): string {
    return host === 'control' ? this.control.address : this.hosts[host]!.address;
  }

  /** Starts the control Redis (`control`) or host `host`'s data Redis, and waits until it answers. */
  async startRedis(host: number | 'control'): Promise<void> {
    const port = host === 'control' ? CONTROL_PORT : DATA_PORT;
    const password = this.options.password;
    const aof = host === 'control' ? this.options.controlAofDir : undefined;
    const child = this.spawn(
      host,
      [
        'redis-server',
        '--port',
        String(port),
        '--bind',
        this.addressOf(host),
        '127.0.0.1',
        '--save',
        '',
        ...(aof !== undefined
          ? ['--dir', aof, '--appendonly', 'yes', '--appendfsync', 'always']
          : ['--appendonly', 'no']),
        '--protected-mode',
        'no',
        ...(password ? ['--requirepass', password] : []),
      ],
      { stdio: 'ignore', sharedMemory: false },
    );
    this.redisServers.set(host, child);
    const auth = password ? ['-a', password, '--no-auth-warning'] : [];
    for (let i = 0; i < 100; i++) {
      const pong = spawnSync(
        'ip',
        [
          'netns',
          'exec',
          this.namespaceOf(host),
          'redis-cli',
          '-h',
          this.addressOf(host),
          '-p',
          String(port),
          ...auth,
          'PING',
        ],
        { encoding: 'utf8' },
      );
      if (pong.stdout?.trim() === 'PONG') return;
      if (child.exitCode !== null)
        throw new Error(
          `the Redis of ${host === 'control' ? 'the control namespace' : `host ${host}`} exited with ${child.exitCode}`,
        );
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(
      `the Redis of ${host === 'control' ? 'the control namespace' : `host ${host}`} did not answer within 10 s`,
    );
  }

  /** SIGKILLs host `host`'s data Redis (a fault), waiting until it is gone. */
  killDataRedis(host: number): Promise<void> {
    return this.killRedis(host);
  }

  /** SIGKILLs the control Redis (`control`) or host `host`'s data Redis, waiting until it is gone. */
  async killRedis(host: number | 'control'): Promise<void> {
    const child = this.redisServers.get(host);
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      child.once('exit', () => resolve());
      child.kill('SIGKILL');
    });
  }

  /**
   * Starts `command` on a host (or in the control namespace), with a /dev/shm of its own unless
   * `sharedMemory` is false; the process is killed with the hosts. stdio as `spawn`'s (add 'ipc'
   * for a Node child to talk to).
   */
  spawn(
    host: number | 'control',
    command: readonly string[],
    options: {
      env?: NodeJS.ProcessEnv;
      stdio?: Parameters<typeof spawn>[2]['stdio'];
      sharedMemory?: boolean;
      /** Folders bind-mounted onto themselves, so that {@link setWritable} can make them read-only for this process. */
      bindMounts?: readonly string[];
      serialization?: 'json' | 'advanced';
    } = {},
  ): ChildProcess {
    if (this.destroyed) throw new Error('the simulated hosts are gone');
    const shm = options.sharedMemory !== false;
    const size = this.options.shmSize ?? '512m';
    // `ip netns exec` runs the command in a mount namespace of its own: a tmpfs mounted on
    // /dev/shm there is this process tree's alone, and so are bind mounts. exec keeps the pid
    // (and an IPC channel). The folders come after the command's words, as positional arguments.
    const binds = options.bindMounts ?? [];
    const steps = [
      ...(shm ? [`mount -t tmpfs -o size=${size},mode=1777 tmpfs /dev/shm`] : []),
      ...binds.map((_, i) => `mount --bind "$${i + 1}" "$${i + 1}"`),
      ...(binds.length > 0 ? [`shift ${binds.length}`] : []),
      'exec "$@"',
    ];
    const child = spawn(
      'ip',
      ['netns', 'exec', this.namespaceOf(host), 'sh', '-c', steps.join(' && '), 'sh', ...binds, ...command],
      {
        env: options.env ?? process.env,
        stdio: options.stdio ?? 'inherit',
        ...(options.serialization ? { serialization: options.serialization } : {}),
      },
    );
    this.processes.add(child);
    child.once('exit', () => this.processes.delete(child));
    return child;
  }

  /**
   * Shapes host `host`'s link (both directions) to `mbit`, or back to the run's own shaping
   * (`undefined`): a slow link.
   */
  setLinkRate(host: number, mbit: number | undefined): void {
    const h = this.hosts[host]!;
    const inNs = ['ip', 'netns', 'exec', h.namespace];
    const rate = mbit ?? this.options.linkMbit;
    for (const [prefix, dev] of [
      [[], h.veth],
      [inNs, `${h.veth}p`],
    ] as const) {
      const del = [...prefix, 'tc', 'qdisc', 'del', 'dev', dev, 'root'];
      spawnSync(del[0]!, del.slice(1));
      if (rate === undefined && this.options.delayMs === undefined) continue;
      this.shape(prefix, dev, rate);
    }
  }

  /**
   * Makes `dir` read-only (or writable again) for process `pid` and everything in its mount
   * namespace: `dir` must be one of the `bindMounts` it was spawned with. What it writes there
   * then fails with EROFS, as on a volume the kernel remounted read-only.
   */
  setWritable(pid: number, dir: string, writable: boolean): void {
    run(['nsenter', '-t', String(pid), '-m', 'mount', '-o', `remount,bind,${writable ? 'rw' : 'ro'}`, dir]);
  }

  /** The processes of a host (or of the control namespace): pid and command line. */
  processesOf(host: number | 'control'): { pid: number; command: string }[] {
    const out = spawnSync('ip', ['netns', 'pids', this.namespaceOf(host)], { encoding: 'utf8' }).stdout ?? '';
    return out
      .split('\n')
      .filter(Boolean)
      .map((pid) => {
        let command = '';
        try {
          command = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim();
        } catch {
          // Gone meanwhile.
        }
        return { pid: Number(pid), command };
      })
      .filter((p) => p.command !== '');
  }

  /** The files in the /dev/shm that process `pid` sees (its host's, in its mount namespace). */
  sharedMemoryFiles(pid: number): string[] {
    try {
      return readdirSync(`/proc/${pid}/root/dev/shm`);
    } catch {
      return [];
    }
  }

  /** Takes host `host`'s link down or brings it back (the bridge's end: nothing reaches it meanwhile). */
  setLink(host: number, up: boolean): void {
    run(['ip', 'link', 'set', this.hosts[host]!.veth, up ? 'up' : 'down']);
  }

  /** Bytes the host sent and received so far, by the kernel's counters of its link. */
  counters(host: number | 'control'): { sent: number; received: number } {
    const veth = host === 'control' ? this.control.veth : this.hosts[host]!.veth;
    const read = (name: string): number =>
      Number(readFileSync(path.join('/sys/class/net', veth, 'statistics', name), 'utf8'));
    // The bridge's end transmits what the host receives and receives what the host sends.
    return { sent: read('rx_bytes'), received: read('tx_bytes') };
  }

  /** Kills every process, removes the namespaces, the links and the bridge. */
  async destroy(): Promise<void> {
    const exits = [...this.processes].map(
      (p) =>
        new Promise<void>((resolve) =>
          p.exitCode !== null || p.signalCode !== null ? resolve() : p.once('exit', () => resolve()),
        ),
    );
    this.destroySync();
    await Promise.race([Promise.all(exits), new Promise((r) => setTimeout(r, 5000).unref())]);
  }

  private destroySync(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    process.off('exit', this.onExit);
    process.off('SIGINT', this.onSignal);
    process.off('SIGTERM', this.onSignal);
    for (const p of this.processes) p.kill('SIGKILL');
    removeNetwork(this.id, this.bridge, [this.control, ...this.hosts]);
  }
}
