/**
 * A rank of a data-parallel training group: how it talks to the others ({@link GroupLink}; the
 * transport is the worker's), what it reports of its share of a step, the stop it may ask for,
 * and the arithmetic every rank agrees on: which micro-batches each computes, and how the
 * reports add up.
 */
import { type StopReason, stopReasonOf } from '@ddpm/core';

import { type SampleGather } from './model-evaluation';

/** The stop reason rank 0 of a group sends when the run's time budget is spent: the run completes. */
export const BUDGET_STOP = 'budget';

/** What a rank may ask of its group after a step: a stop, or (rank 0) the budget's end. */
export type GroupStop = StopReason | typeof BUDGET_STOP;

/** A peer's stop in its report, checked (reports come over the data plane): undefined when it asks none. */
function groupStopOf(value: unknown): GroupStop | undefined {
  if (value === undefined || value === null) return undefined;
  return value === BUDGET_STOP ? BUDGET_STOP : stopReasonOf(value);
}

/** What one rank reports of its share of a step; the group gathers them in rank order. */
export interface RankReport {
  readonly lossSum: number;
  readonly count: number;
  readonly quartileSums: readonly number[];
  readonly quartileCounts: readonly number[];
  readonly epoch: number;
  /** Why this rank wants the group to stop after this step (cancel, shutdown, budget), if it does. */
  readonly stop?: GroupStop;
  /** sha256 of the rank's parameters, EMA and Adam moments before this step, when due. */
  readonly checksum?: string;
}

/**
 * How a rank talks to its group; the engine knows nothing of the transport (the worker uses
 * @ddpm/allreduce over Redis). Rank r computes a contiguous share of the step's micro-batches
 * (one each when accumulation = world size) while every rank draws the randomness of all of them,
 * so ranks stay bit-identical and the result equals one process with the same accumulation.
 */
export interface GroupLink {
  readonly rank: number;
  readonly worldSize: number;
  /**
   * The blocks the step's micro-batches are summed in: the job's `workers` (its full world size),
   * whatever the ranks of this generation. Block b is micro-batches [⌊b·M/B⌋, ⌊(b+1)·M/B⌋), summed
   * in order, and the blocks' sums are added in block order. A generation of fewer ranks than
   * blocks gives rank 0 the first B − N + 1 blocks and every other rank one, so every world size
   * adds the same numbers in the same order, and a run's bits do not depend on how many ranks each
   * of its generations had. Absent: `worldSize`.
   */
  readonly blocks?: number;
  /** Steps between checksums compared across ranks (also at the first step). */
  readonly checksumEvery: number;
  /**
   * Sums the ranks' partial gradient sums (flattened in parameter order) in rank order and gathers
   * their reports; every rank gets the same bytes and the same list.
   */
  exchange(
    step: number,
    partial: Float32Array,
    report: RankReport,
  ): Promise<{ readonly sum: Float32Array; readonly reports: readonly RankReport[] }>;
  /** Throws when this rank may no longer write for the run (a newer generation owns it). */
  assertWriter(): Promise<void>;
  /**
   * The ranks' shared sampling for the evaluation after `step` (`evalEvery`): each draws 1/N of
   * the samples and every rank gets them all (see `SampleGather`); closed when the evaluation
   * ends. Absent: every rank draws every sample.
   */
  evaluationGather?(step: number): SampleGather & { close(): Promise<void> };
}

/**
 * The micro-batches [from, to) of a step's `M` that rank `rank` of `worldSize` computes in `B`
 * blocks, and the starts of its blocks: rank 0 takes the first B − N + 1 blocks, every other rank
 * the next one (see {@link GroupLink.blocks}).
 */
export function rankShare(
  M: number,
  B: number,
  rank: number,
  worldSize: number,
): { readonly from: number; readonly to: number; readonly blockStarts: ReadonlySet<number> } {
  const firstBlock = rank === 0 ? 0 : B - worldSize + rank;
  const lastBlock = rank === 0 ? B - worldSize + 1 : firstBlock + 1;
  const start = (block: number): number => Math.floor((block * M) / B);
  const blockStarts = new Set(Array.from({ length: lastBlock - firstBlock }, (_, k) => start(firstBlock + k)));
  return { from: start(firstBlock), to: start(lastBlock), blockStarts };
}

/** A step's totals over the ranks' reports (added in rank order), and the stop the group decided. */
export function groupTotals(reports: readonly RankReport[]): {
  readonly lossSum: number;
  readonly count: number;
  readonly quartileSums: [number, number, number, number];
  readonly quartileCounts: [number, number, number, number];
  readonly epoch: number;
  readonly stop: GroupStop | undefined;
} {
  const total = (pick: (r: RankReport) => number): number => reports.reduce((a, r) => a + pick(r), 0);
  return {
    lossSum: total((r) => r.lossSum),
    count: total((r) => r.count),
    quartileSums: [0, 1, 2, 3].map((q) => total((r) => r.quartileSums[q] ?? 0)) as [number, number, number, number],
    quartileCounts: [0, 1, 2, 3].map((q) => total((r) => r.quartileCounts[q] ?? 0)) as [number, number, number, number],
    epoch: reports[0]!.epoch,
    // A cancel or shutdown outranks rank 0's spent budget: the job then stops as asked.
    stop: (() => {
      const asked = reports.map((r) => groupStopOf(r.stop));
      return asked.find((r) => r !== undefined && r !== BUDGET_STOP) ?? asked.find((r) => r !== undefined);
    })(),
  };
}
