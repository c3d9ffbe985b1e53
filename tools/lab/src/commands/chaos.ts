/**
 * `ddpm chaos`: the seeded chaos run of chaos/chaos.ts, as a command that prints its JSON report
 * and exits 0 only when nothing was lost, no checkpoint differed, nothing was left over and
 * memory stayed flat.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';

import { type CliIo, CliUsageError, parseCommandArgs, parseInteger, parseNumber } from '@ddpm/cli/toolkit';
import { runChaos } from '../chaos/chaos';
import { FAULT_KINDS } from '../chaos/faults';
import { simulationUnavailable } from '../sim/hosts';

export const CHAOS_USAGE = `Usage: ddpm chaos [--minutes M] [--seed S] [--hosts H] [--link-mbit R] [--fault-every F]
                  [--out DIR] [--report FILE]

Runs the service on H simulated hosts (default 4; network namespaces, links shaped to R Mbit/s,
default 200, a data Redis and a worker on each; the API and the queue Redis, with its append-only
file, in a namespace of their own) and for M minutes (default 5) keeps the workers busy with a
stream of train jobs (alone, and in groups of 2 and 3), sample and eval jobs of the trained runs,
and cancels. Meanwhile a schedule seeded by S (default 1) injects a fault every F seconds on
average (default 20), the kinds in turn:
  ${FAULT_KINDS.join(', ')}.
Then it undoes the faults, waits for every job, trains each train configuration once without
faults and checks that every job ended as asked (completed, or cancelled when a cancel was
accepted), that every completed run's final checkpoint has the fault-free run's bytes, that no
job process, shared-memory file, transient Redis key or temporary object is left, and that the
API's and the workers' memory stayed flat. Prints the report (JSON; also to FILE with --report)
and exits 0 when all of that holds, 1 otherwise.
Everything goes to DIR (default runs/chaos-<time>): the store, the services' log, the queue
Redis's AOF. Needs root, iproute2 (ip, tc), nsenter and redis-server; addresses come from
10.213.0.0/16 and nothing is sent anywhere else.
`;

export async function chaosCommand(
  argv: readonly string[],
  io: CliIo,
  env: { signal?: AbortSignal } = {},
): Promise<number> {
  const { values, positionals } = parseCommandArgs(argv, {
    minutes: { type: 'string' },
    seed: { type: 'string' },
    hosts: { type: 'string' },
    'link-mbit': { type: 'string' },
    'fault-every': { type: 'string' },
    out: { type: 'string' },
    report: { type: 'string' },
  });
  if (positionals.length > 0) throw new CliUsageError(`unexpected argument ${JSON.stringify(positionals[0])}`);
  const minutes = parseNumber('minutes', values['minutes'], 5);
  if (!(minutes > 0 && minutes <= 24 * 60)) throw new CliUsageError(`--minutes must be in (0, 1440], got ${minutes}`);
  const seed = parseInteger('seed', values['seed'], 1, { min: 0, max: 2 ** 32 - 1 });
  const hosts = parseInteger('hosts', values['hosts'], 4, { min: 3, max: 16 });
  const linkMbit = parseNumber('link-mbit', values['link-mbit'], 200);
  if (!(linkMbit > 0)) throw new CliUsageError(`--link-mbit must be positive, got ${linkMbit}`);
  const faultEverySeconds = parseNumber('fault-every', values['fault-every'], 20);
  if (!(faultEverySeconds >= 2))
    throw new CliUsageError(`--fault-every must be at least 2 (seconds), got ${faultEverySeconds}`);
  const unavailable = simulationUnavailable();
  if (unavailable !== undefined) throw new CliUsageError(unavailable);
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const out = path.resolve(String(values['out'] ?? path.join('runs', `chaos-${stamp}`)));
  const report = await runChaos({
    minutes,
    seed,
    hosts,
    linkMbit,
    faultEverySeconds,
    out,
    log: (line) => io.stderr(`${line}\n`),
    ...(env.signal ? { signal: env.signal } : {}),
  });
  const text = JSON.stringify(report, null, 2) + '\n';
  if (typeof values['report'] === 'string') await fs.writeFile(path.resolve(values['report']), text);
  io.stdout(text);
  return report.ok ? 0 : 1;
}
