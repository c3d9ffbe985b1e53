/**
 * A whole training job as the worker's child and `ddpm train` both run it: open (or resume) the
 * run, train to its length with checkpoints (evaluating the EMA weights on the way when the job
 * asks for it), then draw the EMA sample grid the job asked for.
 */
import { type SamplerSpec, type TrainJobConfig, type TrainingEvalConfig } from '@ddpm/settings';
import { type StopReason, codedErrorOf, isPermanent } from '@ddpm/core';
import { type CheckpointRef, type EvalHistoryEntry, type WriteFence } from '@ddpm/runs';
import { type ObjectStore } from '@ddpm/storage';

import { type GroupLink } from './group-link';
import { savePicture } from './images';
import { sampleGrid } from './sampling';
import { Trainer } from './trainer';
import { type StepStats } from './training-loop';
import { appendEvalHistory, evaluateDuringTraining, evaluatesAt } from './training-evaluation';
import { type RunOptions } from './training-loop';

export interface TrainJobOptions {
  readonly store: ObjectStore;
  /** Key prefix of the run's checkpoints. */
  readonly prefix: string;
  /** Continue the run under `prefix` from its newest valid checkpoint (default true). */
  readonly resume?: boolean;
  /** Continue from exactly this checkpoint (every rank of a group loads the same one). */
  readonly resumeStep?: number;
  readonly backendName?: string;
  /** Abort to stop: alone at once, in a group after the next step, every rank at the same one. Its reason (`cancel`, `shutdown`) comes back as `stopReason`. */
  readonly signal?: AbortSignal;
  /** Run as one rank of a data-parallel group: rank 0 writes checkpoints and the grid, the others only train. */
  readonly group?: GroupLink;
  /** Alone: called before every write to the run (checkpoints, pruning, history); throws when another run of the job owns it now. */
  readonly fence?: WriteFence;
  /**
   * Storage key, without extension, of the grid of `step` (`.png` and `.json` are written): the
   * final one, or one drawn during training (`sampleEvery`).
   */
  readonly gridKey: (step: number, final: boolean) => string;
  /** Added to the grid's JSON metadata (e.g. the job id). */
  readonly gridMetadata?: Readonly<Record<string, unknown>>;
  /** Human-readable events: start or resume, settings a resumed run kept, checkpoints, the grid. */
  readonly onLog?: (line: string) => void;
  readonly onStart?: (trainer: Trainer) => void;
  readonly onStep?: (stats: StepStats) => void | Promise<void>;
  /** Before a checkpoint of `step` is written. */
  readonly onCheckpointStart?: (step: number, reason: string) => void;
  readonly onCheckpoint?: (ref: CheckpointRef, reason: string, seconds: number) => void | Promise<void>;
  /** Progress of the final grid, in sampling steps. */
  readonly onSampling?: (done: number, total: number) => void;
  /** Extractor weights and reference statistics of evaluations during training (default: `store`). */
  readonly cache?: ObjectStore;
  /** An evaluation during training finished (on every rank of a group; only the writer records it). */
  readonly onEvaluation?: (entry: EvalHistoryEntry) => void | Promise<void>;
  /** Progress of an evaluation during training. */
  readonly onEvaluationProgress?: (phase: string, done: number, total: number) => void;
  /** Called often while evaluating (a group rank's sign of life between steps). */
  readonly onAlive?: () => void;
}

export interface TrainJobOutcome {
  readonly status: 'completed' | 'stopped';
  readonly step: number;
  /** Why it stopped (the abort signal's reason, or a group member's). */
  readonly stopReason?: StopReason;
  readonly checkpoint?: CheckpointRef;
  readonly grid?: {
    readonly key: string;
    readonly url: string;
    readonly count: number;
    readonly sampler: SamplerSpec;
    readonly seed: number;
  };
  readonly resumedFrom?: { readonly step: number; readonly ignored: readonly string[] };
  /** The run ended at its time budget (`budgetMinutes`) before its length. */
  readonly budgetSpent?: boolean;
}

export async function runTrainJob(config: TrainJobConfig, options: TrainJobOptions): Promise<TrainJobOutcome> {
  const log = options.onLog ?? (() => undefined);
  const trainer = await Trainer.open(config.train, {
    store: options.store,
    prefix: options.prefix,
    ...(options.resume !== undefined ? { resume: options.resume } : {}),
    ...(options.resumeStep !== undefined ? { resumeStep: options.resumeStep } : {}),
    ...(options.backendName ? { backendName: options.backendName } : {}),
    onWarning: (w) => log(`warning: ${w}`),
  });
  try {
    const group = options.group;
    logStart(trainer, options, log);
    options.onStart?.(trainer);
    const job: TrainJob = { config, options, trainer, log, writer: group === undefined || group.rank === 0 };
    await tidy(job);
    const result = await trainer.run(runOptions(job));
    const outcome: TrainJobOutcome = {
      status: result.status,
      step: result.step,
      ...(result.stopReason !== undefined ? { stopReason: result.stopReason } : {}),
      ...(result.checkpoint ? { checkpoint: result.checkpoint } : {}),
      ...(trainer.resumedFrom
        ? { resumedFrom: { step: trainer.resumedFrom.step, ignored: trainer.ignoredOnResume } }
        : {}),
      ...(result.budgetSpent ? { budgetSpent: true } : {}),
    };
    if (result.budgetSpent)
      log(
        `the time budget (${trainer.config.budgetMinutes} min of training) is spent: the run ends at step ${result.step} of ${trainer.config.steps}`,
      );
    // And those of writers that lost the run while it went on (their writes were refused).
    await tidy(job);
    if (result.status === 'stopped') {
      log(`stopped at step ${result.step}`);
      return outcome;
    }
    // In a group the grid is rank 0's to draw, as the checkpoints are.
    if (config.finalGrid.count === 0 || (group !== undefined && group.rank !== 0)) return outcome;
    return { ...outcome, grid: await drawGrid(job, result.step, true, result.checkpoint) };
  } finally {
    trainer.dispose();
  }
}

/** A training job under way: its configuration and options, its open trainer, and its log. */
interface TrainJob {
  readonly config: TrainJobConfig;
  readonly options: TrainJobOptions;
  readonly trainer: Trainer;
  readonly log: (line: string) => void;
  /** Whether this process writes the run (alone, or rank 0 of a group). */
  readonly writer: boolean;
}

/** What the job starts from (fresh or resumed), on what, and what a resumed run ignored of the request. */
function logStart(trainer: Trainer, options: TrainJobOptions, log: (line: string) => void): void {
  const c = trainer.config;
  const group = options.group;
  log(
    `${trainer.resumedFrom ? `resuming from step ${trainer.resumedFrom.step}` : 'starting'}: ${c.model.preset} ` +
      `(${trainer.unet.numParams.toLocaleString('en-US')} parameters) on ${trainer.dataset.name} (${trainer.dataset.size} images), ` +
      `${c.steps} steps of batch ${c.batchSize}${group ? ` as rank ${group.rank} of ${group.worldSize}` : ''}` +
      `${options.backendName ? `, backend ${options.backendName}` : ''}, checkpoints in ${options.store.urlOf(options.prefix)}`,
  );
  if (trainer.ignoredOnResume.length > 0) {
    log(`the run keeps its stored configuration; ignored from this request: ${trainer.ignoredOnResume.join('; ')}`);
  }
}

/**
 * Removes what writers of this run killed mid-write left (a file store's temporary files): the
 * run is this writer's now.
 */
async function tidy({ options, log, writer }: TrainJob): Promise<void> {
  if (!writer) return;
  const removed = (await options.store.removeTemporaries?.(`${options.prefix}/`)) ?? 0;
  if (removed > 0) log(`removed ${removed} temporary file${removed === 1 ? '' : 's'} of interrupted writes`);
}

/** The trainer's run options: the job's signal, group, fence and callbacks, and its work after each step. */
function runOptions(job: TrainJob): RunOptions {
  const { config, options, log } = job;
  const { group } = options;
  const evaluation = config.evaluation;
  /**
   * The grid during training (`sampleEvery`): the same noise every time, so that the grids show
   * the samples improving. Every rank of a group draws it (only rank 0 writes it), so the ranks
   * reach the next step together.
   */
  const gridEvery = config.finalGrid.count > 0 ? config.finalGrid.every : undefined;
  const afterStep = async (step: number, _stats: StepStats, last: boolean): Promise<void> => {
    if (evaluation) await evaluate(job, evaluation, step, last);
    if (gridEvery !== undefined && step % gridEvery === 0 && !last) await drawGrid(job, step, false);
  };
  return {
    ...(options.signal ? { signal: options.signal } : {}),
    ...(group ? { group } : {}),
    ...(options.fence ? { fence: options.fence } : {}),
    ...(options.onStep ? { onStep: options.onStep } : {}),
    ...(options.onCheckpointStart ? { onCheckpointStart: options.onCheckpointStart } : {}),
    ...(evaluation || gridEvery !== undefined ? { afterStep } : {}),
    onCheckpoint: async (ref, reason, seconds) => {
      log(`checkpoint (${reason}) at step ${ref.step}: ${ref.url}`);
      await options.onCheckpoint?.(ref, reason, seconds);
    },
  };
}

/**
 * The evaluation during training after `step`, when one is due: recorded in the run's history by
 * the writer. A failure costs the evaluation, not the run, unless the group cannot go on without it.
 */
async function evaluate(job: TrainJob, evaluation: TrainingEvalConfig, step: number, last: boolean): Promise<void> {
  const { options, trainer, log, writer } = job;
  const group = options.group;
  if (!evaluatesAt(evaluation, step, last)) return;
  // A group's ranks share the samples (each draws 1/N, all measure), when the link can.
  const gather = group !== undefined && group.worldSize > 1 ? group.evaluationGather?.(step) : undefined;
  try {
    const { entry: measured } = await evaluateDuringTraining(
      trainer.ema,
      trainer.diffusion,
      trainer.config.dataset,
      evaluation,
      step,
      {
        cache: options.cache ?? options.store,
        onLog: log,
        // A group's ranks all finish the evaluation, then stop together at the next step.
        ...(options.signal && !group ? { signal: options.signal } : {}),
        ...(options.onEvaluationProgress ? { onProgress: options.onEvaluationProgress } : {}),
        ...(options.onAlive ? { onAlive: options.onAlive } : {}),
        ...(gather ? { gather } : {}),
      },
    );
    const entry: EvalHistoryEntry = { ...measured, trainSeconds: Math.round(trainer.trainingSeconds * 10) / 10 };
    log(
      `evaluation at step ${step}: ${Object.entries(entry.metrics)
        .map(([k, v]) => `${k} ${v.toPrecision(5)}`)
        .join(', ')} (${entry.seconds.toFixed(1)} s)`,
    );
    if (writer) {
      await (group ? group.assertWriter() : options.fence?.());
      await appendEvalHistory(options.store, options.prefix, entry);
    }
    await options.onEvaluation?.(entry);
  } catch (err) {
    const coded = codedErrorOf(err);
    // A lost write fence ends the generation as it would at a checkpoint.
    if (coded?.code === 'DDPM_GROUP_FENCED') throw err;
    // Ranks sharing the samples wait for each other: one that gave up alone (a lost peer, its
    // memory, storage) would leave the others waiting, so the generation ends and restarts.
    // Wrong settings (a missing extractor, a shape it cannot take) fail every rank alike
    // before any sample is drawn, and cost only the evaluation.
    if (gather && !(coded && isPermanent(coded.kind))) throw err;
    // Stopped: the trainer sees the signal before the next step, checkpoints and stops.
    if (coded?.kind === 'aborted') log(`the evaluation at step ${step} was stopped`);
    // Anything else costs the evaluation, not the run.
    else log(`warning: the evaluation at step ${step} failed, training goes on: ${(err as Error).message}`);
  } finally {
    await gather?.close();
  }
}

/** The EMA sample grid of `step` (the final one, or one during training), saved by the writer. */
async function drawGrid(
  job: TrainJob,
  step: number,
  final: boolean,
  checkpoint?: CheckpointRef,
): Promise<NonNullable<TrainJobOutcome['grid']>> {
  const { config, options, trainer, log, writer } = job;
  const group = options.group;
  const { count, seed } = config.finalGrid;
  // A resumed run keeps its own T, which may be fewer steps than the request's sampler asked for.
  const T = trainer.diffusion.numTimesteps;
  const sampler: SamplerSpec = { ...config.finalGrid.sampler, steps: Math.min(config.finalGrid.sampler.steps, T) };
  log(`sampling ${count} images from the EMA weights (${sampler.kind}, ${sampler.steps} steps, seed ${seed})`);
  const { picture } = await sampleGrid(trainer.ema, trainer.diffusion, count, {
    sampler,
    seed,
    // During training, a group's ranks draw together: one stopped alone would leave the others waiting.
    ...(options.signal && (final || !group) ? { signal: options.signal } : {}),
    ...(options.onSampling ? { onProgress: options.onSampling } : {}),
  });
  const key = options.gridKey(step, final);
  const grid = { key, url: options.store.urlOf(`${key}.png`), count, sampler, seed };
  if (!writer) return grid;
  await (group ? group.assertWriter() : options.fence?.());
  const url = await savePicture(options.store, key, picture, {
    ...options.gridMetadata,
    kind: 'grid',
    step,
    ...(checkpoint ? { checkpoint: checkpoint.url } : {}),
    count,
    sampler,
    seed,
    ema: true,
  });
  log(final ? `sample grid: ${url}` : `sample grid of step ${step}: ${url}`);
  return { ...grid, url };
}
