/**
 * Forward-process variance schedules β_1..β_T (Sec. 4 and Appendix B), computed in float64 once.
 *
 * Index convention used throughout this package (the official code's): arrays are 0-based, so
 * `betas[t]` for t = 0..T-1 is the paper's β_{t+1}; timestep t = 0 is the paper's t = 1.
 */
import { diffusionError, describeValue } from './errors';

/**
 * - `linear`: the paper's default, β rising linearly from `betaStart` to `betaEnd` (Sec. 4).
 * - `quadratic`: linear in √β (the official code's `quad`).
 * - `constant`: β = `betaEnd` throughout (the official `const`).
 * - `warmup10` / `warmup50`: linear over the first 10% / 50% of steps, then constant `betaEnd`.
 * - `jsd`: β_t = 1/T, 1/(T-1), ..., 1 (Sohl-Dickstein et al.'s schedule; ᾱ reaches exactly 0).
 * - `cosine`: Nichol & Dhariwal (2021), ᾱ(t) = cos²((t/T + s)/(1 + s) · π/2), β clipped at 0.999.
 *   Not in the paper; documented as an extra.
 */
export type BetaScheduleKind = 'linear' | 'quadratic' | 'constant' | 'warmup10' | 'warmup50' | 'jsd' | 'cosine';

export const BETA_SCHEDULE_KINDS: readonly BetaScheduleKind[] = [
  'linear',
  'quadratic',
  'constant',
  'warmup10',
  'warmup50',
  'jsd',
  'cosine',
];

export interface BetaScheduleSpec {
  readonly kind: BetaScheduleKind;
  /** T, the number of diffusion steps. Paper: 1000. */
  readonly numTimesteps?: number;
  /** β_1 for linear / quadratic / warm-up schedules. Paper: 1e-4. */
  readonly betaStart?: number;
  /** β_T for linear / quadratic / warm-up / constant schedules. Paper: 0.02. */
  readonly betaEnd?: number;
  /** Offset s of the cosine schedule. Nichol & Dhariwal: 0.008. */
  readonly cosineOffset?: number;
}

export const PAPER_SCHEDULE: Required<Omit<BetaScheduleSpec, 'cosineOffset'>> = {
  kind: 'linear',
  numTimesteps: 1000,
  betaStart: 1e-4,
  betaEnd: 0.02,
};

export function isBetaScheduleKind(value: unknown): value is BetaScheduleKind {
  return typeof value === 'string' && (BETA_SCHEDULE_KINDS as readonly string[]).includes(value);
}

/** numpy.linspace(start, stop, num) in float64, bit-for-bit (step multiplied, last point exact). */
export function linspace(start: number, stop: number, num: number): Float64Array {
  const out = new Float64Array(num);
  if (num === 1) {
    out[0] = start;
    return out;
  }
  const step = (stop - start) / (num - 1);
  for (let i = 0; i < num; i++) out[i] = i * step + start;
  out[num - 1] = stop;
  return out;
}

function warmupBetas(betaStart: number, betaEnd: number, T: number, warmupFraction: number): Float64Array {
  const betas = new Float64Array(T).fill(betaEnd);
  const warmupTime = Math.floor(T * warmupFraction);
  betas.set(linspace(betaStart, betaEnd, warmupTime), 0);
  return betas;
}

function cosineBetas(T: number, s: number): Float64Array {
  const alphaBar = (u: number): number => Math.cos(((u + s) / (1 + s)) * (Math.PI / 2)) ** 2;
  const betas = new Float64Array(T);
  for (let i = 0; i < T; i++) {
    betas[i] = Math.min(1 - alphaBar((i + 1) / T) / alphaBar(i / T), 0.999);
  }
  return betas;
}

function requirePositiveInteger(name: string, value: number): void {
  if (!Number.isInteger(value) || value < 1) {
    throw diffusionError('DDPM_SCHEDULE_INVALID', `${name} must be a positive integer, got ${describeValue(value)}`);
  }
}

function requireBeta(name: string, value: number): void {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0 || value > 1) {
    throw diffusionError('DDPM_SCHEDULE_INVALID', `${name} must be a number in (0, 1], got ${describeValue(value)}`);
  }
}

/** The β schedule for `spec`, validated (see {@link validateBetas}). */
export function betaSchedule(spec: BetaScheduleSpec): Float64Array {
  if (!isBetaScheduleKind(spec.kind)) {
    throw diffusionError(
      'DDPM_SCHEDULE_INVALID',
      `unknown beta schedule ${describeValue(spec.kind)}; expected one of ${BETA_SCHEDULE_KINDS.join(', ')}`,
    );
  }
  const T = spec.numTimesteps ?? PAPER_SCHEDULE.numTimesteps;
  const betaStart = spec.betaStart ?? PAPER_SCHEDULE.betaStart;
  const betaEnd = spec.betaEnd ?? PAPER_SCHEDULE.betaEnd;
  requirePositiveInteger('numTimesteps', T);
  requireBeta('betaStart', betaStart);
  requireBeta('betaEnd', betaEnd);
  let betas: Float64Array;
  switch (spec.kind) {
    case 'linear':
      betas = linspace(betaStart, betaEnd, T);
      break;
    case 'quadratic':
      betas = linspace(Math.sqrt(betaStart), Math.sqrt(betaEnd), T).map((b) => b * b);
      break;
    case 'constant':
      betas = new Float64Array(T).fill(betaEnd);
      break;
    case 'warmup10':
      betas = warmupBetas(betaStart, betaEnd, T, 0.1);
      break;
    case 'warmup50':
      betas = warmupBetas(betaStart, betaEnd, T, 0.5);
      break;
    case 'jsd':
      betas = linspace(T, 1, T).map((v) => 1 / v);
      break;
    case 'cosine': {
      const s = spec.cosineOffset ?? 0.008;
      if (!Number.isFinite(s) || s < 0) {
        throw diffusionError('DDPM_SCHEDULE_INVALID', `cosineOffset must be a finite number >= 0, got ${s}`);
      }
      betas = cosineBetas(T, s);
      break;
    }
    default: {
      const unreachable: never = spec.kind;
      throw diffusionError('DDPM_SCHEDULE_INVALID', `unknown beta schedule ${describeValue(unreachable)}`);
    }
  }
  return validateBetas(betas);
}

/**
 * Checks a β schedule: at least one step, every β finite and in (0, 1], so that ᾱ_t = Π(1 − β_s)
 * is strictly decreasing and 1 − ᾱ_t > 0 for every t (the posterior and the bound need it).
 * Returns a float64 copy.
 */
export function validateBetas(betas: ArrayLike<number>): Float64Array {
  if (betas.length < 1) {
    throw diffusionError('DDPM_SCHEDULE_INVALID', 'a beta schedule needs at least one step, got an empty one');
  }
  const out = Float64Array.from(betas);
  let alphaBar = 1;
  for (const [t, beta] of out.entries()) {
    if (!Number.isFinite(beta) || beta <= 0 || beta > 1) {
      throw diffusionError('DDPM_SCHEDULE_INVALID', `beta at t=${t} must be in (0, 1], got ${describeValue(beta)}`);
    }
    const next = alphaBar * (1 - beta);
    if (!(next < alphaBar)) {
      throw diffusionError(
        'DDPM_SCHEDULE_INVALID',
        `alpha-bar must decrease strictly; it does not at t=${t} (beta=${beta} underflows in float64)`,
      );
    }
    alphaBar = next;
  }
  return out;
}
