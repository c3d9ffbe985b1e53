/**
 * The settings of a group of workers running one job together: a train job's data-parallel group
 * (gradients averaged through Redis), and a sample or eval job's sampling group (its images drawn
 * by several processes). Formation, liveness and restarts are the same for both; what a restart
 * means differs, and the help says so.
 */
import { type Static, Type } from '@sinclair/typebox';

import { configError } from './errors';
import { type SettingTable, optional, valuesOf, withDefault } from './setting';

const HELP = {
  train: {
    workers: 'data-parallel world size: workers training this job together, averaging gradients through Redis',
    minWorkers: 'fewest ranks a group may start or re-form with when workers are missing (the global batch is kept)',
    rankTimeoutSeconds:
      'a rank without a heartbeat for this long (dead, stopped, wedged) ends the generation; the group restarts from the last checkpoint',
    maxRestarts: 'group restarts (a rank lost, diverged or failed) before the job fails',
  },
  sampling: {
    workers:
      'workers drawing the samples together, each whole batches of them (batch k by rank k mod N), collected by rank 0 through Redis; the images are bit-identical to one process',
    minWorkers:
      'fewest ranks a sampling group may start or re-form with when workers are missing (the images do not change)',
    rankTimeoutSeconds:
      'a rank without a heartbeat for this long (dead, stopped, wedged) ends the generation; the group starts the sampling again',
    maxRestarts: 'group restarts (a rank lost or failed) before the job fails',
  },
} as const;

/** The group rows of a job's settings table (paths under `group.`). */
export function groupSettings(kind: keyof typeof HELP) {
  const help = HELP[kind];
  return {
    workers: withDefault({
      schema: Type.Integer({ minimum: 1, maximum: 256 }),
      path: 'group.workers',
      flag: 'workers',
      placeholder: 'N',
      help: help.workers,
      default: 1,
      scope: 'job',
    }),
    minWorkers: optional({
      schema: Type.Integer({ minimum: 1, maximum: 256 }),
      path: 'group.minWorkers',
      flag: 'min-workers',
      placeholder: 'N',
      help: help.minWorkers,
      whenAbsent: 'workers',
      scope: 'job',
    }),
    joinTimeoutSeconds: withDefault({
      schema: Type.Integer({ minimum: 1, maximum: 86_400 }),
      path: 'group.joinTimeoutSeconds',
      flag: 'join-timeout',
      placeholder: 'S',
      help: 'how long a group may wait for free workers before the job goes back to the queue (nobody holds a worker meanwhile)',
      default: 600,
      scope: 'job',
    }),
    rankTimeoutSeconds: withDefault({
      schema: Type.Integer({ minimum: 2, maximum: 3600 }),
      path: 'group.rankTimeoutSeconds',
      flag: 'rank-timeout',
      placeholder: 'S',
      help: help.rankTimeoutSeconds,
      default: 30,
      scope: 'job',
    }),
    maxRestarts: withDefault({
      schema: Type.Integer({ minimum: 0, maximum: 100 }),
      path: 'group.maxRestarts',
      flag: 'max-restarts',
      placeholder: 'N',
      help: help.maxRestarts,
      default: 3,
      scope: 'job',
    }),
  } satisfies SettingTable;
}

export const groupProperties = {
  workers: Type.Integer(),
  minWorkers: Type.Integer(),
  joinTimeoutSeconds: Type.Integer(),
  rankTimeoutSeconds: Type.Integer(),
  maxRestarts: Type.Integer(),
};

/** A sample or eval job's sampling group (workers 1: one process). */
export const SamplingGroupConfig = Type.Object(groupProperties, {
  additionalProperties: false,
  description:
    'the workers that draw the samples together (workers 1: one process; absent in jobs queued before groups could sample: one process)',
});
export type SamplingGroupConfig = Static<typeof SamplingGroupConfig>;

interface GroupValues {
  readonly workers: number;
  readonly minWorkers?: number | undefined;
  readonly joinTimeoutSeconds: number;
  readonly rankTimeoutSeconds: number;
  readonly maxRestarts: number;
}

/** The resolved group of a request's values, minWorkers checked against workers. */
export function resolveGroup(v: GroupValues): SamplingGroupConfig {
  const minWorkers = v.minWorkers ?? v.workers;
  if (minWorkers > v.workers) throw configError(`minWorkers ${minWorkers} exceeds workers ${v.workers}`);
  return {
    workers: v.workers,
    minWorkers,
    joinTimeoutSeconds: v.joinTimeoutSeconds,
    rankTimeoutSeconds: v.rankTimeoutSeconds,
    maxRestarts: v.maxRestarts,
  };
}

/** The group of a job run by one process (a sample or eval job queued before sampling groups existed). */
export function oneProcessGroup(): SamplingGroupConfig {
  return resolveGroup(valuesOf(groupSettings('sampling'), {}));
}
