/**
 * What a chaos run must not leave behind once every job has ended: no job process, no
 * shared-memory file, no transient Redis key without an expiry, no temporary object in the store;
 * and a self-check that plants one of each and shows that the checks report it.
 */
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';

import { generationKey, slotKeyPrefix, slotsKey } from '@ddpm/service';
import { Redis } from 'ioredis';

import { type ChaosServices, PREFIX, sleep } from './services';

// A type, not an interface: Object.values of it then knows its values are lists of strings.
export type Leftovers = {
  readonly processes: readonly string[];
  readonly sharedMemoryFiles: readonly string[];
  readonly redisKeys: readonly string[];
  readonly tempObjects: readonly string[];
};

export async function findLeftovers(services: ChaosServices, storeDir: string): Promise<Leftovers> {
  const { processes, sharedMemoryFiles } = leftoverProcesses(services);
  const redisKeys = await transientKeys(services);
  const tempObjects: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    for (const e of await fs.readdir(dir, { withFileTypes: true }).catch(() => [])) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.name.includes('.ddpm-tmp-')) tempObjects.push(path.relative(storeDir, p));
    }
  };
  await walk(storeDir);
  return { processes, sharedMemoryFiles, redisKeys, tempObjects };
}

/** Processes on the hosts and in the control namespace besides the workers, the API and the Redis servers; files in the workers' /dev/shm. */
function leftoverProcesses(services: ChaosServices): { processes: string[]; sharedMemoryFiles: string[] } {
  const sim = services.sim;
  const processes: string[] = [];
  const sharedMemoryFiles: string[] = [];
  const workerPids = new Set(services.liveWorkers().map((w) => w.pid));
  for (const h of sim.hosts) {
    for (const p of sim.processesOf(h.index)) {
      if (workerPids.has(p.pid) || p.command.startsWith('redis-server')) continue;
      processes.push(`host ${h.index}: ${p.pid} ${p.command.slice(0, 120)}`);
    }
  }
  for (const p of sim.processesOf('control')) {
    if (p.pid === services.apiPid || p.command.startsWith('redis-server')) continue;
    processes.push(`control: ${p.pid} ${p.command.slice(0, 120)}`);
  }
  for (const w of services.liveWorkers())
    for (const f of sim.sharedMemoryFiles(w.pid)) sharedMemoryFiles.push(`host ${w.host}: /dev/shm/${f}`);
  return { processes, sharedMemoryFiles };
}

/**
 * Keys that outlive what they were for: on the queue Redis, every key outside BullMQ's queues,
 * the live workers' slots and the API's bookkeeping that has no expiry; on every data Redis,
 * every key without one.
 */
async function transientKeys(services: ChaosServices): Promise<string[]> {
  const control = services.control;
  const left: string[] = [];
  const slots = new Set(services.liveWorkers().map((w) => w.pid));
  for (const key of await control.keys('*')) {
    if (/^chaos:(train|sample|eval):/.test(key)) continue;
    if (key === slotsKey(PREFIX)) continue;
    if (key.startsWith(slotKeyPrefix(PREFIX))) {
      const pid = Number(await control.hget(key.replace(/:inbox$/, ''), 'pid'));
      if (slots.has(pid)) continue;
    }
    if ((await control.pttl(key)) >= 0) continue;
    left.push(`queue Redis: ${key}`);
  }
  for (const h of services.sim.hosts) {
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

/**
 * Shows that the leftover checks find what they look for: plants one leftover of each sort (a
 * process on a host, a file in a worker's /dev/shm, a key without expiry in a data Redis and in
 * the queue Redis, a temporary object in the store), checks that each is reported, and removes
 * them. Returns what was not found (nothing, when the checks work).
 */
export async function checkTheChecks(services: ChaosServices, storeDir: string): Promise<string[]> {
  const worker = services.liveWorkers()[0]!;
  const host = services.sim.hosts[worker.host]!;
  const mark = `chaos-self-check-${randomBytes(3).toString('hex')}`;
  const sleeper = services.sim.spawn(worker.host, [process.execPath, '-e', 'setTimeout(() => {}, 120000)', mark], {
    stdio: 'ignore',
    sharedMemory: false,
  });
  const sleeperGone = new Promise((resolve) => sleeper.once('exit', resolve));
  const shmFile = `/proc/${worker.pid}/root/dev/shm/${mark}`;
  const tempObject = path.join(storeDir, `${mark}.ddpm-tmp-1-0`);
  // A generation counter left behind, as a crashed coordinator could leave one.
  const plantedKey = generationKey(PREFIX, mark);
  const data = new Redis(host.dataRedisUrl, { maxRetriesPerRequest: 1 });
  data.on('error', () => undefined);
  try {
    await fs.writeFile(shmFile, 'x');
    await fs.writeFile(tempObject, 'x');
    await data.set(mark, 'x');
    await services.control.set(plantedKey, 'x');
    await sleep(300);
    const found = Object.values(await findLeftovers(services, storeDir)).flat();
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
    await services.control.del(plantedKey).catch(() => undefined);
    data.disconnect();
    await sleeperGone;
  }
}
