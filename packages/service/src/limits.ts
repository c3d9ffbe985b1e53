/**
 * The server's budgets (docs/security.md, "Safe by default"): each limit's environment variable,
 * default and meaning, read and checked once. `@ddpm/settings` checks a job against the values
 * (`checkBudgets`, `fitAccumulation`) and names each limit as LIMIT_NAMES says.
 */
import { type LimitNames, type ServiceLimits } from '@ddpm/settings';

import { type EnvError, configError, envInteger } from './env-values';

/**
 * Each limit's environment variable, default and meaning: the budget checks name the variable in
 * their messages (LIMIT_NAMES), and docs/configuration.md's table is written from this.
 */
export const LIMIT_VARIABLES: Readonly<
  Record<keyof ServiceLimits, { readonly env: string; readonly default: number; readonly help: string }>
> = {
  maxStepMemoryMb: {
    env: 'DDPM_MAX_STEP_MEMORY_MB',
    default: 3584,
    help: 'estimated memory of one training micro-batch (batchSize / accumulation images of the preset) in one process; the default fits the wasm backend’s 4 GiB heap',
  },
  maxSteps: {
    env: 'DDPM_MAX_STEPS',
    default: 1_000_000,
    help: 'steps of one train job (the paper trains CIFAR-10 for 800k)',
  },
  maxSampleImages: {
    env: 'DDPM_MAX_SAMPLE_IMAGES',
    default: 4096,
    help: 'images of one sample job: count, times the frames of progressive sampling',
  },
  maxCheckpointStorageMb: {
    env: 'DDPM_MAX_CHECKPOINT_STORAGE_MB',
    default: 20_480,
    help: 'keepCheckpoints × the size of one checkpoint (model, EMA, Adam moments)',
  },
  maxDatasetImages: { env: 'DDPM_MAX_DATASET_IMAGES', default: 1_000_000, help: 'images of a procedural dataset' },
  maxEvalImages: {
    env: 'DDPM_MAX_EVAL_IMAGES',
    default: 50_000,
    help: 'samples, reference images or NLL test images of one evaluation',
  },
  maxJobSeconds: {
    env: 'DDPM_MAX_JOB_SECONDS',
    default: 7 * 24 * 3600,
    help: 'wall time of one run of a job; the worker checkpoints and fails it permanently at the limit',
  },
};

export const DEFAULT_LIMITS: ServiceLimits = Object.fromEntries(
  Object.entries(LIMIT_VARIABLES).map(([k, v]) => [k, v.default]),
) as unknown as ServiceLimits;

/** Each limit by its environment variable, for the budget checks' messages. */
export const LIMIT_NAMES: LimitNames = Object.fromEntries(
  Object.entries(LIMIT_VARIABLES).map(([k, v]) => [k, v.env]),
) as unknown as LimitNames;

/** The limits from the environment: each variable a positive integer, its default when unset. */
export function loadLimits(env: NodeJS.ProcessEnv = process.env, fail: EnvError = configError): ServiceLimits {
  return Object.fromEntries(
    Object.entries(LIMIT_VARIABLES).map(([key, v]) => [
      key,
      envInteger(env, v.env, v.default, 1, Number.MAX_SAFE_INTEGER, fail),
    ]),
  ) as unknown as ServiceLimits;
}
