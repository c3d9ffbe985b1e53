/**
 * The training loop of a Trainer's run (trainer.ts): steps until the run's length or its time budget,
 * with checkpoints at the run's cadence (steps or seconds, whichever comes first) and at the end,
 * and the stops asked for by the signal or, in a group, by any rank, every rank after the same step.
 */
import { type StopReason, stopReasonOf } from '@ddpm/core';
import { yieldToEventLoop } from '@ddpm/diffusion';
import { type CheckpointRef, type WriteFence } from '@ddpm/runs';

import { BUDGET_STOP, type GroupLink, type GroupStop } from './group-link';

export interface StepStats {
  /** Optimizer updates done, this one included. */
  readonly step: number;
  readonly loss: number;
  /** Mean loss for t in each quarter of [0, T) (improved-diffusion's loss_q0..q3); NaN if none. */
  readonly lossQuartiles: readonly [number, number, number, number];
  /** Global gradient norm before clipping. */
  readonly gradNorm: number;
  readonly learningRate: number;
  readonly imagesPerSecond: number;
  readonly stepSeconds: number;
  readonly epoch: number;
  /** In a group: a rank asked the group to stop after this step, and why (every rank sees the same). */
  readonly stop?: GroupStop;
  /** In a group: this rank's share of the step: computing its micro-batches, and waiting for and summing the others'. */
  readonly group?: { readonly computeSeconds: number; readonly exchangeSeconds: number };
}

/** What the loop drives (a Trainer, trainer.ts), seen through the members it uses. */
export interface SteppedRun {
  readonly step: number;
  readonly done: boolean;
  readonly budgetSpent: boolean;
  readonly config: { readonly checkpointEvery: number; readonly checkpointEverySeconds?: number };
  readonly resumedFrom: { readonly step: number } | undefined;
  trainStep(group?: GroupLink, stop?: GroupStop): Promise<StepStats>;
  checkpoint(reason: string, fence?: WriteFence): Promise<CheckpointRef>;
}

export interface RunOptions {
  readonly signal?: AbortSignal;
  /** Milliseconds on a monotonic clock, for the time between checkpoints (tests); default performance.now. */
  readonly clock?: () => number;
  readonly onStep?: (stats: StepStats) => void | Promise<void>;
  /** Before a checkpoint of `step` is written (only where this process writes one). */
  readonly onCheckpointStart?: (step: number, reason: string) => void;
  /** After a checkpoint is whole; `seconds` is how long writing it took. */
  readonly onCheckpoint?: (ref: CheckpointRef, reason: string, seconds: number) => void | Promise<void>;
  /** Train as one rank of a data-parallel group (see {@link GroupLink}); absent: alone. */
  readonly group?: GroupLink;
  /**
   * Called before every change to the run's checkpoints (alone; a group's rank 0 uses its link's
   * assertWriter): throws when another run of the job owns the run now.
   */
  readonly fence?: WriteFence;
  /**
   * After a step and its periodic checkpoint (evaluations during training run here, so a failed
   * or slow one never holds back the step's checkpoint).
   */
  readonly afterStep?: (step: number, stats: StepStats, last: boolean) => Promise<void>;
}

/** How a run of the trainer ended. */
export interface RunOutcome {
  status: 'completed' | 'stopped';
  step: number;
  checkpoint?: CheckpointRef;
  stopReason?: StopReason;
  budgetSpent?: boolean;
}

/** Trains `trainer` as Trainer.run describes. */
export async function runTraining(trainer: SteppedRun, options: RunOptions): Promise<RunOutcome> {
  const group = options.group;
  // In a group only rank 0 writes, fenced against a newer generation of the group.
  const writer = group === undefined || group.rank === 0;
  const fence = group ? () => group.assertWriter() : options.fence;
  let last: CheckpointRef | undefined;
  let lastSavedStep = trainer.resumedFrom?.step ?? -1;
  const now = options.clock ?? (() => performance.now());
  // Periodic checkpoints come every checkpointEvery steps or checkpointEverySeconds of wall
  // time, whichever is first: a process killed at any moment loses at most that much training.
  const everyMs = (trainer.config.checkpointEverySeconds ?? Infinity) * 1000;
  let lastSavedAt = now();
  const save = async (reason: string): Promise<void> => {
    if (!writer || lastSavedStep === trainer.step) return;
    options.onCheckpointStart?.(trainer.step, reason);
    const started = process.hrtime.bigint();
    last = await trainer.checkpoint(reason, fence);
    lastSavedStep = trainer.step;
    lastSavedAt = now();
    await options.onCheckpoint?.(last, reason, Number(process.hrtime.bigint() - started) / 1e9);
  };
  const stopped = async (
    reason: StopReason,
  ): Promise<{ status: 'stopped'; step: number; checkpoint?: CheckpointRef; stopReason: StopReason }> => {
    await save('stopped');
    return { status: 'stopped', step: trainer.step, ...(last ? { checkpoint: last } : {}), stopReason: reason };
  };
  // A run resumed with its budget already spent (alone: at once; a group agrees in its first exchange).
  let budgetEnded = group === undefined && trainer.budgetSpent && !trainer.done;
  while (!trainer.done && !budgetEnded) {
    const request = options.signal?.aborted ? stopReasonOf(options.signal.reason) : undefined;
    // Alone, stop at once; in a group, say so in the next exchange so every rank stops after the same step.
    if (request !== undefined && group === undefined) return stopped(request);
    // The budget is rank 0's clock: it alone asks, so every rank ends after the same step.
    const ask = request ?? (group !== undefined && group.rank === 0 && trainer.budgetSpent ? BUDGET_STOP : undefined);
    const stats = await trainer.trainStep(group, ask);
    await options.onStep?.(stats);
    // On wasm/cpu a whole step resolves in microtasks; let signals, timers and I/O run.
    await yieldToEventLoop();
    if (stats.stop !== undefined && stats.stop !== BUDGET_STOP) return stopped(stats.stop);
    budgetEnded = group === undefined ? trainer.budgetSpent : stats.stop === BUDGET_STOP;
    const ending = trainer.done || budgetEnded;
    if (ending) await save('final');
    else if (trainer.step % trainer.config.checkpointEvery === 0 || now() - lastSavedAt >= everyMs)
      await save('periodic');
    await options.afterStep?.(trainer.step, stats, ending);
  }
  await save('final');
  return {
    status: 'completed',
    step: trainer.step,
    ...(last ? { checkpoint: last } : {}),
    ...(budgetEnded && !trainer.done ? { budgetSpent: true } : {}),
  };
}
