/**
 * The jobs of a chaos run: the train configurations they are drawn from (each with a fault-free
 * reference of one process), the seeded stream that keeps the workers busy (train jobs alone and
 * in groups of 2 and 3, sample and eval jobs of the trained runs, and cancels), and what the API
 * says of each job.
 */
import { randomUUID } from 'node:crypto';

import { type Rng } from '@ddpm/core';

import { type FaultKind, pickOf } from './faults';
import { type ChaosLog, type ChaosServices, sleep } from './services';

/** The train configurations jobs are drawn from: each has a fault-free reference of one process. */
export const TRAIN_CONFIGS = {
  alone: { workers: 1, accumulation: 1, batchSize: 4, steps: 48 },
  pair: { workers: 2, accumulation: 2, batchSize: 4, steps: 40 },
  trio: { workers: 3, accumulation: 3, batchSize: 6, steps: 30 },
} as const;
export type TrainConfigName = keyof typeof TRAIN_CONFIGS;

export function trainRequest(name: TrainConfigName, reference = false): Record<string, unknown> {
  const c = TRAIN_CONFIGS[name];
  return {
    dataset: 'procedural:shapes?size=64&channels=1',
    preset: 'nano8',
    steps: c.steps,
    batchSize: c.batchSize,
    accumulation: c.accumulation,
    checkpointEvery: 6,
    seed: 7,
    sampleCount: 0,
    ...(reference
      ? { workers: 1 }
      : {
          workers: c.workers,
          ...(c.workers > 1 ? { minWorkers: 1, rankTimeoutSeconds: 8, joinTimeoutSeconds: 60, maxRestarts: 50 } : {}),
        }),
  };
}

type JobKind = 'train' | 'sample' | 'eval';

export interface Tracked {
  readonly id: string;
  readonly kind: JobKind;
  readonly config?: TrainConfigName;
  readonly submittedAt: number;
  /** A fault-free reference run (not part of the stream). */
  readonly reference?: boolean;
  /** Whether a cancel was asked for and accepted while the job had not finished. */
  cancelAccepted?: boolean;
  cancelAt?: number;
  /** Faults that landed on this job's processes, by kind. */
  readonly faults: Partial<Record<FaultKind, number>>;
  state?: string;
  result?: JobResultView;
  error?: string;
  attempts?: number;
}

export interface JobResultView {
  status?: string;
  step?: number;
  resumedFrom?: { step: number; redone?: { steps: number; seconds: number } };
  group?: { worldSize: number; generation: number; restarts: number };
}

export function isFinished(job: Tracked): boolean {
  return job.state === 'completed' || job.state === 'failed' || job.state === 'cancelled';
}

export class JobStream {
  /** Every job submitted, the stream's and the references, in order. */
  readonly jobs: Tracked[] = [];

  constructor(
    private readonly services: ChaosServices,
    private readonly rng: Rng,
    private readonly log: ChaosLog,
  ) {}

  /** The jobs not finished yet. */
  open(): Tracked[] {
    return this.jobs.filter((j) => !isFinished(j));
  }

  async submit(
    kind: JobKind,
    body: Record<string, unknown>,
    config?: TrainConfigName,
    reference = false,
  ): Promise<Tracked> {
    // A request that is tried again across an outage must not create the job twice.
    const r = await this.services.request('POST', `/jobs/${kind}`, body, { 'idempotency-key': randomUUID() });
    if (r.status !== 202 && r.status !== 200)
      throw new Error(`POST /jobs/${kind} answered ${r.status}: ${JSON.stringify(r.json)}`);
    const job: Tracked = {
      id: String(r.json['id']),
      kind,
      ...(config !== undefined ? { config } : {}),
      submittedAt: Date.now(),
      ...(reference ? { reference } : {}),
      faults: {},
    };
    this.jobs.push(job);
    return job;
  }

  /** The next job of the stream: mostly training, and sampling and evaluating what was trained. */
  async submitNext(): Promise<void> {
    const trained = this.jobs.filter((j) => j.kind === 'train' && j.state === 'completed' && !j.cancelAccepted);
    const draw = this.rng.uniform();
    if (draw < 0.12 && trained.length > 0) {
      const from = pickOf(trained, this.rng.uniform())!;
      const workers = this.rng.uniform() < 0.5 ? 2 : 1;
      await this.submit('sample', {
        trainJobId: from.id,
        count: 32,
        steps: 8,
        seed: 3,
        ...(workers > 1 ? { workers, minWorkers: 1, rankTimeoutSeconds: 8, maxRestarts: 50 } : {}),
      });
      return;
    }
    if (draw < 0.2 && trained.length > 0) {
      const from = pickOf(trained, this.rng.uniform())!;
      await this.submit('eval', { trainJobId: from.id, metrics: ['nll'], nllImages: 4 });
      return;
    }
    const config: TrainConfigName = draw < 0.55 ? 'alone' : draw < 0.85 ? 'pair' : 'trio';
    const job = await this.submit('train', trainRequest(config), config);
    // Some train jobs are cancelled a while after they are submitted.
    if (this.rng.uniform() < 0.12) job.cancelAt = Date.now() + 10_000 + this.rng.uniform() * 40_000;
  }

  async refresh(job: Tracked): Promise<void> {
    const r = await this.services.request('GET', `/jobs/${job.id}`);
    if (r.status !== 200) return;
    job.state = String(r.json['state']);
    job.attempts = Number(r.json['attempts'] ?? 0);
    if (r.json['result'] !== undefined) job.result = r.json['result'] as JobResultView;
    const error = r.json['error'];
    if (error !== undefined) job.error = typeof error === 'string' ? error : JSON.stringify(error);
  }

  async cancel(job: Tracked): Promise<void> {
    job.cancelAt = undefined;
    await this.refresh(job);
    if (isFinished(job)) return;
    const r = await this.services.request('DELETE', `/jobs/${job.id}`);
    job.cancelAccepted = r.status >= 200 && r.status < 300;
    this.log(`cancel ${job.id}: ${r.status}`);
  }

  /** Waits until every job has finished, or `timeoutMs` has passed (then says which are open). */
  async drain(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const open = this.open();
      for (const job of open) await this.refresh(job);
      const left = this.open();
      if (left.length === 0) return;
      if (Date.now() > deadline) {
        this.log(`${left.length} jobs still open after ${timeoutMs / 60000} min: ${left.map((j) => j.id).join(', ')}`);
        return;
      }
      await sleep(2000);
    }
  }

  /** The stream's train jobs that completed every step (cancelled ones stop early). */
  completedTrain(): Tracked[] {
    return this.jobs.filter(
      (j) => j.kind === 'train' && !j.reference && j.state === 'completed' && j.result?.status === 'completed',
    );
  }
}
