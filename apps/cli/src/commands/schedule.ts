/**
 * `ddpm schedule`: the forward-process coefficients at chosen timesteps, for checking a schedule
 * against the official code or a paper.
 */
import {
  BETA_SCHEDULE_KINDS,
  type BetaScheduleKind,
  PAPER_SCHEDULE,
  betaSchedule,
  computeTables,
} from '@ddpm/diffusion';

import { parseChoice, parseCommandArgs, parseInteger, parseIntegerList, parseNumber } from '../args';
import { type CliIo, CliUsageError } from '../cli-io';
import { renderTable } from '../table';

export const SCHEDULE_USAGE = `Usage: ddpm schedule [--kind KIND] [--steps T] [--at t1,t2,...] [--beta-start B] [--beta-end B] [--json]

Prints, for each requested 0-based timestep t (t = 0 is the paper's t = 1):
beta, alpha-bar, sqrt(alpha-bar), sqrt(1 - alpha-bar), the posterior variance (beta-tilde),
its clipped log, both posterior-mean coefficients and the fixedlarge log-variance.

  --kind        ${BETA_SCHEDULE_KINDS.join(' | ')}   (default linear)
  --steps       number of diffusion steps T               (default 1000)
  --at          comma-separated timesteps in [0, T-1]      (default 0, T/10-1, T/2-1, T-1)
  --beta-start  first beta of linear/quadratic/warm-up    (default 1e-4)
  --beta-end    last beta (and the constant one)          (default 0.02)
  --json        machine-readable output
`;

export interface ScheduleRow {
  readonly t: number;
  readonly beta: number;
  readonly alphaBar: number;
  readonly sqrtAlphaBar: number;
  readonly sqrtOneMinusAlphaBar: number;
  readonly posteriorVariance: number;
  readonly posteriorLogVarianceClipped: number;
  readonly posteriorMeanCoef1: number;
  readonly posteriorMeanCoef2: number;
  readonly fixedLargeLogVariance: number;
}

export function scheduleCommand(argv: readonly string[], io: CliIo): number {
  const { values, positionals } = parseCommandArgs(argv, {
    kind: { type: 'string' },
    steps: { type: 'string' },
    at: { type: 'string' },
    'beta-start': { type: 'string' },
    'beta-end': { type: 'string' },
    json: { type: 'boolean' },
  });
  if (positionals.length > 0) throw new CliUsageError(`unexpected argument ${JSON.stringify(positionals[0])}`);
  const kind = parseChoice<BetaScheduleKind>('kind', values['kind'], BETA_SCHEDULE_KINDS, 'linear');
  const steps = parseInteger('steps', values['steps'], PAPER_SCHEDULE.numTimesteps, { min: 1, max: 1_000_000 });
  const betaStart = parseNumber('beta-start', values['beta-start'], PAPER_SCHEDULE.betaStart);
  const betaEnd = parseNumber('beta-end', values['beta-end'], PAPER_SCHEDULE.betaEnd);
  const at = parseIntegerList('at', values['at']) ?? [
    ...new Set([0, Math.floor(steps / 10) - 1, Math.floor(steps / 2) - 1, steps - 1].filter((t) => t >= 0)),
  ];
  for (const t of at) {
    if (t < 0 || t >= steps) throw new CliUsageError(`--at: timestep ${t} is outside [0, ${steps - 1}]`);
  }
  const tables = computeTables(betaSchedule({ kind, numTimesteps: steps, betaStart, betaEnd }));
  const rows: ScheduleRow[] = at.map((t) => ({
    t,
    beta: tables.betas[t]!,
    alphaBar: tables.alphasCumprod[t]!,
    sqrtAlphaBar: tables.sqrtAlphasCumprod[t]!,
    sqrtOneMinusAlphaBar: tables.sqrtOneMinusAlphasCumprod[t]!,
    posteriorVariance: tables.posteriorVariance[t]!,
    posteriorLogVarianceClipped: tables.posteriorLogVarianceClipped[t]!,
    posteriorMeanCoef1: tables.posteriorMeanCoef1[t]!,
    posteriorMeanCoef2: tables.posteriorMeanCoef2[t]!,
    fixedLargeLogVariance: tables.fixedLargeLogVariance[t]!,
  }));
  if (values['json'] === true) {
    io.stdout(JSON.stringify({ schedule: { kind, numTimesteps: steps, betaStart, betaEnd }, rows }, null, 2) + '\n');
    return 0;
  }
  io.stdout(
    `${kind} schedule, T = ${steps}, beta ${betaStart} -> ${betaEnd} (t is 0-based: t = 0 is the paper's t = 1)\n`,
  );
  const headers = [
    't',
    'beta',
    'alpha_bar',
    'sqrt(ab)',
    'sqrt(1-ab)',
    'post_var',
    'post_logvar_clip',
    'post_coef1',
    'post_coef2',
    'fixedlarge_logvar',
  ];
  const fmt = (v: number): string => (v === 0 ? '0' : v.toPrecision(6));
  io.stdout(
    renderTable(
      headers,
      rows.map((r) => [
        String(r.t),
        fmt(r.beta),
        fmt(r.alphaBar),
        fmt(r.sqrtAlphaBar),
        fmt(r.sqrtOneMinusAlphaBar),
        fmt(r.posteriorVariance),
        fmt(r.posteriorLogVarianceClipped),
        fmt(r.posteriorMeanCoef1),
        fmt(r.posteriorMeanCoef2),
        fmt(r.fixedLargeLogVariance),
      ]),
    ),
  );
  return 0;
}
