/**
 * `ddpm sim up|clean`: the simulated hosts of sim/hosts.ts as a service to try groups across hosts
 * by hand: H hosts with shaped links, a data Redis and K workers on each, the control Redis and
 * the API in a namespace of their own; Ctrl-C removes it all. `clean` removes what runs killed
 * outright left behind.
 */
import { type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';

import { type CliIo, CliUsageError, parseCommandArgs, parseInteger, parseNumber } from '@ddpm/cli/toolkit';
import { SimulatedHosts, simulationUnavailable, sweepSimulatedHosts } from '../sim/hosts';

const ROOT = path.resolve(__dirname, '..', '..', '..', '..');
const API_PORT = 8080;

export const SIM_USAGE = `Usage: ddpm sim up [--hosts H] [--link-mbit R] [--workers K] [--out DIR]
       ddpm sim clean

up: H simulated hosts on this machine (default 4): network namespaces joined by a bridge, each
link shaped to R Mbit/s with tc (default 200; 0: unshaped), every host with a /dev/shm and a data
Redis of its own and K worker processes (default 1) that advertise it (DDPM_RANK_DATA_URL); the
control Redis and the API in a namespace of their own; everything writes to <out>/store (default
runs/sim-<time>) and logs to <out>/services.log. Prints the API's address and the hosts', then runs
until Ctrl-C, which removes every namespace, link and process. A job with "workers": N > 1 forms
a group across the hosts:
  DDPM_API_TOKEN=<token> ddpm jobs submit train --api http://<api address>:${API_PORT} --workers 4 ...
The API wants the token it prints ($DDPM_API_TOKEN, or a random one).
Needs root, iproute2 (ip, tc) and redis-server. Addresses come from 10.213.0.0/16, and nothing
is sent anywhere else.

clean: removes the namespaces, links and processes of runs that were killed outright (a run whose
process is alive is left alone).
`;

export async function simCommand(
  argv: readonly string[],
  io: CliIo,
  env: { signal?: AbortSignal } = {},
): Promise<number> {
  const { values, positionals } = parseCommandArgs(argv, {
    hosts: { type: 'string' },
    'link-mbit': { type: 'string' },
    workers: { type: 'string' },
    out: { type: 'string' },
  });
  const which = positionals[0];
  if (positionals.length !== 1 || (which !== 'up' && which !== 'clean'))
    throw new CliUsageError(`expected "ddpm sim up" or "ddpm sim clean", got "ddpm sim ${positionals.join(' ')}"`);
  const unavailable = simulationUnavailable();
  if (unavailable !== undefined) throw new CliUsageError(unavailable);
  if (which === 'clean') {
    const removed = sweepSimulatedHosts();
    io.stdout(`removed ${removed} run${removed === 1 ? '' : 's'} left behind\n`);
    return 0;
  }
  const hosts = parseInteger('hosts', values['hosts'], 4, { min: 1, max: 32 });
  const linkMbit = parseNumber('link-mbit', values['link-mbit'], 200);
  if (linkMbit < 0) throw new CliUsageError(`--link-mbit must be 0 (unshaped) or more, got ${linkMbit}`);
  const perHost = parseInteger('workers', values['workers'], 1, { min: 1, max: 8 });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const out = path.resolve(String(values['out'] ?? path.join('runs', `sim-${stamp}`)));
  await fs.mkdir(path.join(out, 'store'), { recursive: true });
  const sim = await SimulatedHosts.create({ hosts, ...(linkMbit > 0 ? { linkMbit } : {}) });
  const log = await fs.open(path.join(out, 'services.log'), 'a');
  try {
    const { api, token } = startServices(sim, out, perHost, log.fd);
    const url = `http://${sim.control.address}:${API_PORT}`;
    await waitForApi(url, api, out);
    io.stdout(
      JSON.stringify(
        {
          api: url,
          token,
          controlRedis: sim.control.redisUrl,
          linkMbit: linkMbit > 0 ? linkMbit : 'unshaped',
          hosts: sim.hosts.map((h) => ({
            host: h.index,
            namespace: h.namespace,
            address: h.address,
            dataRedis: h.dataRedisUrl,
            workers: perHost,
          })),
          store: path.join(out, 'store'),
          log: path.join(out, 'services.log'),
        },
        null,
        2,
      ) + '\n',
    );
    io.stderr(`${hosts} hosts × ${perHost} worker${perHost === 1 ? '' : 's'} up; Ctrl-C removes everything\n`);
    await new Promise<void>((resolve) => {
      if (env.signal?.aborted) resolve();
      env.signal?.addEventListener('abort', () => resolve());
    });
    return 0;
  } finally {
    await sim.destroy();
    await log.close();
  }
}

/**
 * The API in the control namespace and `perHost` workers on every host, all writing to
 * `<out>/store` and logging to `logFd`; they go with the hosts. Returns the API's process and the
 * token it wants.
 */
function startServices(
  sim: SimulatedHosts,
  out: string,
  perHost: number,
  logFd: number,
): { api: ChildProcess; token: string } {
  const base = {
    ...process.env,
    REDIS_URL: sim.control.redisUrl,
    DDPM_QUEUE_PREFIX: 'ddpm',
    DDPM_STORAGE_URL: `file://${path.join(out, 'store')}`,
    METRICS_PORT: '0',
    LOG_LEVEL: process.env['LOG_LEVEL'] ?? 'info',
  };
  // The API listens on an address other hosts reach: it wants a token (the command prints it).
  const token = process.env['DDPM_API_TOKEN'] ?? randomBytes(16).toString('hex');
  const api = sim.spawn('control', [process.execPath, path.join(ROOT, 'apps/api/dist/server.js')], {
    env: { ...base, HOST: sim.control.address, PORT: String(API_PORT), DDPM_API_TOKEN: token },
    stdio: ['ignore', logFd, logFd],
  });
  for (const h of sim.hosts) {
    for (let k = 0; k < perHost; k++) {
      sim.spawn(h.index, [process.execPath, path.join(ROOT, 'apps/worker/dist/main.js')], {
        env: { ...base, DDPM_RANK_DATA_URL: h.dataRedisUrl },
        stdio: ['ignore', logFd, logFd],
      });
    }
  }
  return { api, token };
}

/** Waits until the API at `url` is ready (60 s at most); throws when it exits first. */
async function waitForApi(url: string, api: ChildProcess, out: string): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (
      await fetch(`${url}/readyz`).then(
        (r) => r.ok,
        () => false,
      )
    )
      break;
    if (api.exitCode !== null)
      throw new Error(`the API exited with ${api.exitCode}; see ${path.join(out, 'services.log')}`);
    if (Date.now() > deadline) throw new Error(`the API did not answer at ${url} within 60 s`);
    await new Promise((r) => setTimeout(r, 250));
  }
}
