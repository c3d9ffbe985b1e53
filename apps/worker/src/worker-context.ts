/**
 * What a worker's parts share (worker-service.ts holds it): its configuration, its connections
 * once started, the job processes it runs, and the one-thing-at-a-time state of its slot. The group
 * coordinator and the rank runner (group-coordinator.ts) work through it.
 */
import { type JobData, type JobProgress, type JobResult, type ServiceConfig } from '@ddpm/service';
import { type ObjectStore } from '@ddpm/storage';
import { type Logger, type TrainMetrics } from '@ddpm/telemetry';
import { DelayedError, type Job } from 'bullmq';
import { type Redis } from 'ioredis';

import { type ChildFence } from './child-protocol';
import { type JobRunnerOptions, type RunningJob } from './job-runner';
import { type Slot } from './slot';

/** A worker's connections, all opened by its start. */
export interface WorkerConnections {
  /** Commands on the queues' Redis (the control plane). */
  readonly commands: Redis;
  /** Its subscription to cancellations. */
  readonly subscriber: Redis;
  /** The blocking reads of the slot's inbox. */
  readonly inbox: Redis;
  /** The data plane's Redis (group generations). */
  readonly data: Redis;
  readonly store: ObjectStore;
  readonly slot: Slot;
}

export interface WorkerContext {
  readonly config: ServiceConfig;
  readonly logger: Logger;
  readonly metrics: TrainMetrics;
  readonly connections: WorkerConnections;
  /** The job processes running here, by job id. */
  readonly running: Map<string, RunningJob>;
  /** Shutting down: no new work, what runs is asked to stop. */
  readonly closing: boolean;
  /** Whether the job's cancel was asked for. */
  cancelRequested(jobId: string): Promise<boolean>;
  /** The next number of a run's writer counter (a run alone, or a group generation). */
  nextWriter(jobId: string): Promise<number>;
  /** How a job process is run here. */
  childOptions(fence?: ChildFence): JobRunnerOptions;
  /** Whether the slot runs something (one thing at a time). */
  readonly busy: boolean;
  /** The slot runs `what` now: the queues are not fetched from meanwhile. */
  occupy(what: 'job' | 'rank'): Promise<void>;
  /** The slot is free again: it leaves its state and the queues are fetched from. */
  release(): Promise<void>;
}

/** A BullMQ job's id (a job taken from a queue always has one). */
export function jobIdOf(job: Job<JobData, JobResult>): string {
  if (job.id === undefined) throw new Error('internal error: a job taken from a queue has no id');
  return job.id;
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Handed back to the queue: due again after `ms`, without using up an attempt. */
export async function handBack(
  job: Job<JobData, JobResult>,
  token: string | undefined,
  ms: number,
  line: string,
): Promise<never> {
  await job.log(`${new Date().toISOString()} ${line}`);
  await job.moveToDelayed(Date.now() + ms, token);
  throw new DelayedError();
}

/** The training step a train job's progress reports, when it was training (or checkpointing). */
export function trainingStepOf(data: JobData, progress: unknown): number | undefined {
  if (data.type !== 'train' || typeof progress !== 'object' || progress === null) return undefined;
  const p = progress as Partial<JobProgress>;
  return p.phase === 'training' || p.phase === 'checkpointing' ? (p.step ?? 0) : undefined;
}
