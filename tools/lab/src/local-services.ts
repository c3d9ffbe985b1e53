/** Helpers for starting local services (the service demo, the quality study, and tests that run real servers). */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';

import { ApiClient } from '@ddpm/api-client';
import { type CliIo } from '@ddpm/cli/toolkit';

const ROOT = path.resolve(__dirname, '..', '..', '..');

/** A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as net.AddressInfo).port;
      server.close(() => resolve(port));
    });
    server.on('error', reject);
  });
}

/** The path of an executable on the PATH, or undefined. */
export function findOnPath(name: string): string | undefined {
  try {
    return execFileSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' }).trim() || undefined;
  } catch {
    return undefined;
  }
}

function ping(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    socket.setTimeout(1000);
    socket.on('connect', () => socket.write('PING\r\n'));
    socket.on('data', (d) => {
      resolve(d.toString().startsWith('+PONG'));
      socket.destroy();
    });
    socket.on('error', () => resolve(false));
    socket.on('timeout', () => {
      resolve(false);
      socket.destroy();
    });
  });
}

async function until(what: string, check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

/** The API and its workers on this machine, with a store and a queue prefix of their own. */
export interface LocalService {
  readonly api: string;
  readonly client: ApiClient;
  /** The file store's directory (`<out>/store`). */
  readonly storeDir: string;
  readonly logFile: string;
  /** SIGTERM to everything started (SIGKILL after 15 s), in reverse order. */
  stop(): Promise<void>;
}

/**
 * Starts Redis (when 127.0.0.1:6379 does not answer and redis-server is on the PATH), the API and
 * `workers` worker processes, all writing to `<out>/store` and logging to `<out>/services.log`.
 * Resolves once the API is ready; undefined (with the reason written) when Redis cannot be had.
 */
export async function startLocalService(
  out: string,
  workers: number,
  prefix: string,
  io: CliIo,
): Promise<LocalService | undefined> {
  await fs.mkdir(out, { recursive: true });
  const children: ChildProcess[] = [];
  const stop = (): Promise<void> => stopChildren(children);
  try {
    if (!(await ensureRedis(children, io))) return undefined;
    const port = await freePort();
    const storeDir = path.join(out, 'store');
    const env = {
      ...process.env,
      REDIS_URL: 'redis://127.0.0.1:6379',
      DDPM_QUEUE_PREFIX: prefix.slice(0, 64),
      DDPM_STORAGE_URL: `file://${storeDir}`,
      PORT: String(port),
      HOST: '127.0.0.1',
      METRICS_PORT: '0',
      LOG_LEVEL: process.env['LOG_LEVEL'] ?? 'warn',
    };
    const logFile = path.join(out, 'services.log');
    const log = await fs.open(logFile, 'a');
    const spawnNode = (script: string): void => {
      children.push(spawn(process.execPath, [path.join(ROOT, script)], { env, stdio: ['ignore', log.fd, log.fd] }));
    };
    spawnNode('apps/api/dist/server.js');
    for (let i = 0; i < workers; i++) spawnNode('apps/worker/dist/main.js');
    const api = `http://127.0.0.1:${port}`;
    await until('the API', async () => (await fetch(`${api}/readyz`)).ok, 30_000);
    io.stderr(
      `API at ${api} (OpenAPI: ${api}/docs), ${workers} worker${workers === 1 ? '' : 's'}, storage ${env.DDPM_STORAGE_URL}, logs ${logFile}\n`,
    );
    return {
      api,
      client: new ApiClient({ baseUrl: api }),
      storeDir,
      logFile,
      stop: async () => {
        await stop();
        await log.close();
      },
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** SIGTERM to every child (SIGKILL after 15 s), the last started first. */
async function stopChildren(children: ChildProcess[]): Promise<void> {
  for (const c of children.reverse()) {
    if (c.exitCode === null && c.signalCode === null) {
      const exited = new Promise((resolve) => c.once('exit', resolve));
      c.kill('SIGTERM');
      await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 15_000))]);
      if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    }
  }
}

/**
 * Makes sure Redis answers at 127.0.0.1:6379: when none does, starts redis-server (no
 * persistence) as one of `children`. False, with the reason written, when there is none to start.
 */
async function ensureRedis(children: ChildProcess[], io: CliIo): Promise<boolean> {
  if (await ping('127.0.0.1', 6379)) return true;
  const redisServer = findOnPath('redis-server');
  if (!redisServer) {
    io.stderr(
      'Redis does not answer at 127.0.0.1:6379 and redis-server is not on the PATH. Install it (apt-get install redis-server) or start one, then run again.\n',
    );
    return false;
  }
  io.stderr('starting redis-server on 127.0.0.1:6379 (no persistence)\n');
  children.push(
    spawn(
      redisServer,
      ['--port', '6379', '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--maxmemory-policy', 'noeviction'],
      { stdio: 'ignore' },
    ),
  );
  await until('redis-server', () => ping('127.0.0.1', 6379), 10_000);
  return true;
}
