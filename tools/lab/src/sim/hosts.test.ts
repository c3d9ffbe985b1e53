/**
 * The simulated hosts themselves: each host's processes have a /dev/shm of their own, hosts reach
 * each other's data Redis over their links (and the kernel's counters see it), a link taken down
 * carries nothing, and destroy leaves no namespace, link or process behind; leftovers of a run
 * killed outright are swept. Needs root, iproute2 and redis-server: skipped, saying so, without.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';

import { SimulatedHosts, linkExists, simulationUnavailable, sweepSimulatedHosts } from './hosts';

jest.setTimeout(120_000);

const unavailable = simulationUnavailable();
if (unavailable !== undefined) console.warn(`SKIPPED: the simulated hosts' tests: ${unavailable}`);
const describeOnHosts = unavailable === undefined ? describe : describe.skip;

/** Runs `command` on a host to completion; its stdout. */
async function on(sim: SimulatedHosts, host: number, command: string): Promise<{ status: number; out: string }> {
  const child = sim.spawn(host, ['sh', '-c', command], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  const status = await new Promise<number>((resolve) => child.once('close', (code) => resolve(code ?? -1)));
  return { status, out: out.trim() };
}

function namespaces(): string[] {
  return (spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout ?? '')
    .split('\n')
    .map((l) => l.split(' ')[0]!);
}

describeOnHosts('simulated hosts', () => {
  it('refuses a bad host count or link rate, saying which', async () => {
    await expect(SimulatedHosts.create({ hosts: 0 })).rejects.toThrow('hosts must be 1 to 32, got 0');
    await expect(SimulatedHosts.create({ hosts: 2, linkMbit: -5 })).rejects.toThrow(
      'the link rate must be positive, got -5 Mbit/s',
    );
  });

  it('gives every host its own /dev/shm, links the hosts through the bridge, and removes it all', async () => {
    const sim = await SimulatedHosts.create({ hosts: 2, linkMbit: 100 });
    const names = [sim.control.namespace, ...sim.hosts.map((h) => h.namespace)];
    try {
      expect(namespaces()).toEqual(expect.arrayContaining(names));
      const file = `ddpm-sim-probe-${randomBytes(4).toString('hex')}`;
      // Written on host 0 (in the same process that lists it): neither host 1 nor this machine sees it.
      expect(await on(sim, 0, `echo x > /dev/shm/${file} && ls /dev/shm`)).toEqual({ status: 0, out: file });
      expect((await on(sim, 1, 'ls /dev/shm')).out).not.toContain(file);
      expect(existsSync(`/dev/shm/${file}`)).toBe(false);

      // Host 0 reaches host 1's data Redis over the links; both links' counters see the bytes.
      const before = [sim.counters(0), sim.counters(1)];
      const host1 = sim.hosts[1]!.address;
      const set = await on(
        sim,
        0,
        `head -c 2000000 /dev/zero | redis-cli -h ${host1} -p 6380 -x SET probe >/dev/null && redis-cli -h ${host1} -p 6380 STRLEN probe`,
      );
      expect(set).toEqual({ status: 0, out: '2000000' });
      expect(sim.counters(0).sent - before[0]!.sent).toBeGreaterThan(2_000_000);
      expect(sim.counters(1).received - before[1]!.received).toBeGreaterThan(2_000_000);

      // Host 1's link down: host 0 no longer reaches it; up again: it does.
      sim.setLink(1, false);
      expect((await on(sim, 0, `timeout 3 redis-cli -h ${host1} -p 6380 PING`)).out).not.toBe('PONG');
      sim.setLink(1, true);
      expect((await on(sim, 0, `timeout 10 redis-cli -h ${host1} -p 6380 PING`)).out).toBe('PONG');
    } finally {
      await sim.destroy();
    }
    expect(namespaces().filter((n) => names.includes(n))).toEqual([]);
    expect(linkExists(sim.hosts[0]!.veth)).toBe(false);
    expect(() => sim.spawn(0, ['true'])).toThrow('the simulated hosts are gone');
  });

  it('sweeps what a run killed outright left behind', () => {
    const id = randomBytes(2).toString('hex');
    const ns = `ddpmsim-${id}-h0`;
    const bridge = `ddb${id}`;
    expect(spawnSync('ip', ['netns', 'add', ns]).status).toBe(0);
    expect(spawnSync('ip', ['link', 'add', bridge, 'type', 'bridge']).status).toBe(0);
    expect(sweepSimulatedHosts()).toBeGreaterThanOrEqual(1);
    expect(namespaces()).not.toContain(ns);
    expect(linkExists(bridge)).toBe(false);
  });
});
