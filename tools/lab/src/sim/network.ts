/**
 * The network of the simulated hosts (hosts.ts): a bridge in the root namespace, a network
 * namespace per host joined to it by a veth pair, each end shaped with `tc` (tbf: a rate and a
 * burst; netem's delay before it where the kernel has netem), and its removal: by the run itself
 * (process exit included), or by a sweep of the runs whose owner was killed outright.
 *
 * Addresses come from the project's own test range, 10.213.0.0/16 (a /24 per run); names carry a
 * per-run id, and every run notes its owner's pid under /run/ddpm-sim so that a sweep leaves live
 * runs alone.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';

/** The project's test range: one /24 of it per run. */
export const NET_PREFIX = '10.213';
export const NS_PREFIX = 'ddpmsim-';

/** Runs a command to completion; throws, with what it wrote, when it fails. */
export function run(args: readonly string[]): void {
  const r = spawnSync(args[0]!, args.slice(1), { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${args.join(' ')} failed: ${(r.stderr || r.stdout || String(r.error)).trim()}`);
}

/** Whether the kernel has netem (a delay on a link); probed once on a dummy link. */
let netemProbe: boolean | undefined;
export function hasNetem(): boolean {
  if (netemProbe !== undefined) return netemProbe;
  const name = `ddpmnetem${randomBytes(2).toString('hex')}`;
  try {
    run(['ip', 'link', 'add', name, 'type', 'dummy']);
    netemProbe = spawnSync('tc', ['qdisc', 'add', 'dev', name, 'root', 'netem', 'delay', '1ms']).status === 0;
  } catch {
    netemProbe = false;
  } finally {
    spawnSync('ip', ['link', 'del', name]);
  }
  return netemProbe;
}

/** Where each run notes its owner's pid, so that a sweep leaves live runs alone. */
const OWNERS_DIR = '/run/ddpm-sim';

/** Notes this process as the owner of run `id`. */
export function registerOwner(id: string): void {
  mkdirSync(OWNERS_DIR, { recursive: true });
  writeFileSync(path.join(OWNERS_DIR, id), String(process.pid));
}

function ownerAlive(id: string): boolean {
  let pid: number;
  try {
    pid = Number(readFileSync(path.join(OWNERS_DIR, id), 'utf8'));
  } catch {
    return false;
  }
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Removes the namespaces, processes and bridges of earlier runs whose owner is gone (killed
 * outright, so their exit handlers never ran); runs whose owner lives are left alone. Returns the
 * number of runs removed.
 */
export function sweepSimulatedHosts(): number {
  const out = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout ?? '';
  const removed = new Set<string>();
  for (const line of out.split('\n')) {
    const ns = line.split(' ')[0];
    if (!ns?.startsWith(NS_PREFIX)) continue;
    const id = ns.slice(NS_PREFIX.length).split('-')[0]!;
    if (ownerAlive(id)) continue;
    killNamespace(ns);
    spawnSync('ip', ['netns', 'del', ns]);
    removed.add(id);
  }
  const links = spawnSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' }).stdout ?? '';
  for (const m of links.matchAll(/^\d+: (ddb([0-9a-f]{4})|ddv([0-9a-f]{4})-\w+)[@:]/gm)) {
    const id = (m[2] ?? m[3])!;
    if (ownerAlive(id)) continue;
    spawnSync('ip', ['link', 'del', m[1]!]);
    removed.add(id);
  }
  for (const id of removed) rmSync(path.join(OWNERS_DIR, id), { force: true });
  return removed.size;
}

/** SIGKILLs every process whose network namespace is `ns`. */
function killNamespace(ns: string): void {
  const pids = (spawnSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' }).stdout ?? '').split('\n').filter(Boolean);
  for (const pid of pids) {
    try {
      process.kill(Number(pid), 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
}

/** One end of the network: a namespace, its address, the bridge side of its veth pair, and whether its link is shaped. */
export interface NetworkEnd {
  readonly namespace: string;
  readonly address: string;
  readonly veth: string;
  readonly shape: boolean;
}

/**
 * The bridge (at `gateway`) and, for every end, its namespace and veth pair, addressed and up;
 * `shape` shapes a device of a shaped end (the command prefix that enters its namespace, if any).
 */
export function buildNetwork(
  bridge: string,
  gateway: string,
  ends: readonly NetworkEnd[],
  shape: (prefix: readonly string[], dev: string) => void,
): void {
  run(['ip', 'link', 'add', bridge, 'type', 'bridge']);
  run(['ip', 'addr', 'add', `${gateway}/24`, 'dev', bridge]);
  run(['ip', 'link', 'set', bridge, 'up']);
  for (const end of ends) {
    const peer = `${end.veth}p`;
    run(['ip', 'netns', 'add', end.namespace]);
    run(['ip', 'link', 'add', end.veth, 'type', 'veth', 'peer', 'name', peer]);
    run(['ip', 'link', 'set', peer, 'netns', end.namespace]);
    run(['ip', 'link', 'set', end.veth, 'master', bridge, 'up']);
    const inNs = ['ip', 'netns', 'exec', end.namespace];
    run([...inNs, 'ip', 'addr', 'add', `${end.address}/24`, 'dev', peer]);
    run([...inNs, 'ip', 'link', 'set', peer, 'up']);
    run([...inNs, 'ip', 'link', 'set', 'lo', 'up']);
    if (end.shape) {
      // Both directions: the host's egress on its own end, its ingress on the bridge's end.
      shape([], end.veth);
      shape(inNs, peer);
    }
  }
}

/** How a link is shaped: its rate, tbf's burst and queue, and netem's delay where the kernel has netem. */
export interface LinkShaping {
  readonly burstKb?: number;
  readonly queueMs?: number;
  readonly delayMs?: number;
  readonly netem: boolean;
}

/** tbf at `linkMbit` (and netem's delay before it, where asked and available) on `dev`. */
export function shapeLink(
  shaping: LinkShaping,
  prefix: readonly string[],
  dev: string,
  linkMbit: number | undefined,
): void {
  const { burstKb, delayMs } = shaping;
  const latency = `${shaping.queueMs ?? 50}ms`;
  if (linkMbit === undefined && delayMs === undefined) return;
  const burst = burstKb ?? Math.max(64, Math.ceil(((linkMbit ?? 1000) * 1000 * 0.004) / 8));
  const tbf = (parent: readonly string[]): void =>
    run([
      ...prefix,
      'tc',
      'qdisc',
      'add',
      'dev',
      dev,
      ...parent,
      'tbf',
      'rate',
      `${linkMbit}mbit`,
      'burst',
      `${burst}kb`,
      'latency',
      latency,
    ]);
  if (delayMs !== undefined && shaping.netem) {
    run([...prefix, 'tc', 'qdisc', 'add', 'dev', dev, 'root', 'handle', '1:', 'netem', 'delay', `${delayMs}ms`]);
    if (linkMbit !== undefined) tbf(['parent', '1:', 'handle', '2:']);
  } else if (linkMbit !== undefined) {
    tbf(['root']);
  }
}

/**
 * Removes run `id`'s network: kills every process in each end's namespace, deletes its link and
 * its namespace, then the bridge and the note of its owner; what is gone already is passed over.
 */
export function removeNetwork(id: string, bridge: string, ends: readonly { namespace: string; veth: string }[]): void {
  for (const end of ends) {
    killNamespace(end.namespace);
    // The link first: a namespace outlives its name while anything still refers to it (a socket
    // the kernel is closing), and its end of the pair with it.
    spawnSync('ip', ['link', 'del', end.veth]);
    spawnSync('ip', ['netns', 'del', end.namespace]);
  }
  spawnSync('ip', ['link', 'del', bridge]);
  rmSync(path.join(OWNERS_DIR, id), { force: true });
}

/** A /24 of the test range no other run on this machine uses now. */
export function freeSubnet(): number {
  const used = execFileSync('ip', ['-o', '-4', 'addr', 'show'], { encoding: 'utf8' });
  for (let tries = 0; tries < 64; tries++) {
    const subnet = 1 + Math.floor(Math.random() * 250);
    if (!used.includes(`${NET_PREFIX}.${subnet}.`)) return subnet;
  }
  throw new Error(`no free /24 left in ${NET_PREFIX}.0.0/16`);
}

/** Whether `/sys/class/net` has the link (for tests that check a run left nothing behind). */
export function linkExists(name: string): boolean {
  return existsSync(path.join('/sys/class/net', name));
}
