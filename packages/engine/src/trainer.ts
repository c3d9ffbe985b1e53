/**
 * The training loop of Algorithm 1 for one process: draw a batch, t ~ U{0..T−1}, ε ~ N(0, I),
 * take the configured diffusion loss through the U-Net, Adam with warm-up and global-norm
 * clipping, then the EMA. Gradient accumulation reaches large batches on small memory. The step is
 * split into {@link Trainer.computeGradients} and {@link Trainer.applyGradients} so a data-parallel
 * group can average gradients in between.
 *
 * Resume is exact: parameters, EMA, Adam moments, the step, the RNG and data-order states are all
 * in the checkpoint, so k steps + resume + (n − k) steps equals n steps bit for bit on one backend.
 */
import { type TrainConfig, resumedConfig, unetConfigOf, validateTrainConfig } from '@ddpm/config';
import { Rng, type StopReason, stopReasonOf } from '@ddpm/core';
import { type DataLoader as Loader, DataLoader, type ImageDataset, openDataset } from '@ddpm/data';
import { GaussianDiffusion, trainingLosses, yieldToEventLoop } from '@ddpm/diffusion';
import {
  CHECKPOINT_VERSION,
  type CheckpointRef,
  LossCurve,
  type RunState,
  type WriteFence,
  loadCheckpointAt,
  loadLatestCheckpoint,
  pruneCheckpoints,
  writeCheckpoint,
} from '@ddpm/runs';
import { type ObjectStore } from '@ddpm/storage';
import { copyTensorsInto } from '@ddpm/kernels';
import { UNet, type UNetConfig, loadUNetWeights, saveUNetWeights } from '@ddpm/unet';
import * as tf from '@tensorflow/tfjs-core';

import { Adam, learningRateAt, loadAdam, saveAdam } from './adam';
import { emaDecayAt, updateEma } from './ema';
import { engineError, groupError } from './errors';
import { type SampleGather } from './eval-job';
import { createHash } from 'node:crypto';

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

export interface TrainerOptions {
  readonly store: ObjectStore;
  /** Key prefix of this run's checkpoints and artifacts, e.g. `runs/<id>`. */
  readonly prefix: string;
  /** Resume from the newest valid checkpoint when there is one (default true). */
  readonly resume?: boolean;
  /**
   * Resume from exactly this step's checkpoint (a data-parallel group: every rank must load the
   * same one); a missing or corrupt one is an error rather than a fallback.
   */
  readonly resumeStep?: number;
  /** Recorded in checkpoints. */
  readonly backendName?: string;
  /** Called when a newer checkpoint was skipped as corrupt. */
  readonly onWarning?: (message: string) => void;
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

export interface Gradients {
  /**
   * The averaged gradients: one tensor per parameter (aligned with the trainer's parameters), or
   * all of them one after the other in the parameters' order (a group's sum, in a buffer the
   * trainer owns).
   */
  readonly grads: tf.Tensor[] | Float32Array;
  readonly lossSum: number;
  readonly count: number;
  readonly quartileSums: [number, number, number, number];
  readonly quartileCounts: [number, number, number, number];
  readonly epoch: number;
}

export class Trainer {
  /** Whether the group has compared state checksums since this trainer opened. */
  private groupVerified = false;
  /** The flattened gradients (a rank's sums, then the group's average; or one process's for the norm), one buffer for every step. */
  private flatBuffer: Float32Array | undefined;

  private constructor(
    readonly config: TrainConfig,
    readonly unetConfig: UNetConfig,
    readonly unet: UNet,
    /** The EMA weights as a model of the same config: what sampling and evaluation use. */
    readonly ema: UNet,
    readonly diffusion: GaussianDiffusion,
    readonly dataset: ImageDataset,
    private readonly loader: Loader,
    private readonly adam: Adam,
    private readonly rng: Rng,
    private readonly options: TrainerOptions,
    private imagesSeen: number,
    private trainSeconds: number,
    private readonly lossCurve: LossCurve,
    readonly resumedFrom: CheckpointRef | undefined,
    /** Where the requested configuration differed from the resumed run's, which it kept. */
    readonly ignoredOnResume: readonly string[],
  ) {}

  /**
   * Opens a run: resumes from its newest valid checkpoint, or starts fresh with `requested`.
   * A resumed run keeps its model, data and hyper-parameters (its checkpoint's configuration);
   * only the length and the checkpoint cadence follow `requested`, and `ignoredOnResume` lists
   * what else the request asked for in vain.
   */
  static async open(requested: TrainConfig, options: TrainerOptions): Promise<Trainer> {
    validateTrainConfig(requested);
    const latest =
      options.resumeStep !== undefined
        ? await loadCheckpointAt(options.store, options.prefix, options.resumeStep)
        : options.resume === false
          ? undefined
          : await loadLatestCheckpoint(options.store, options.prefix);
    for (const s of latest?.skipped ?? []) options.onWarning?.(`${s.reason}; using an older checkpoint`);
    const { config, ignored } = latest
      ? resumedConfig(latest.files.state.config, requested)
      : { config: requested, ignored: [] };
    if (latest) validateTrainConfig(config);
    const unetConfig = unetConfigOf(config);
    const dataset = await openDataset(config.dataset, {
      imageSize: unetConfig.imageSize,
      channels: unetConfig.inChannels === 1 ? 1 : 3,
    });
    const microBatch = config.batchSize / config.accumulation;
    const seedRng = Rng.fromSeed(config.seed);
    const initRng = seedRng.fork(0);
    const unet = new UNet(unetConfig, { uniform: () => initRng.uniform() });
    const ema = new UNet(unetConfig, { uniform: () => 0.5 });
    tf.tidy(() => ema.variables.forEach((v, i) => v.assign(unet.variables[i]!)));
    const adam = new Adam(unet.variables, config.optimizer);
    const diffusion = new GaussianDiffusion(config.diffusion);
    let rng = seedRng.fork(2);
    let loaderState;
    let imagesSeen = 0;
    let trainSeconds = 0;
    if (latest) {
      const { state, model, ema: emaBytes, optimizer } = latest.files;
      loadUNetWeights(unet, model);
      loadUNetWeights(ema, emaBytes);
      loadAdam(adam, unet, optimizer);
      adam.step = state.step;
      rng = Rng.fromState(state.rng);
      loaderState = state.loader;
      imagesSeen = state.imagesSeen;
      trainSeconds = state.trainSeconds;
    }
    const loader = new DataLoader(dataset, {
      batchSize: microBatch,
      seed: config.seed,
      imageSize: unetConfig.imageSize,
      channels: unetConfig.inChannels,
      randomFlip: config.randomFlip,
      ...(loaderState ? { state: loaderState } : {}),
    });
    return new Trainer(
      config,
      unetConfig,
      unet,
      ema,
      diffusion,
      dataset,
      loader,
      adam,
      rng,
      options,
      imagesSeen,
      trainSeconds,
      LossCurve.restore(latest?.files.state.loss),
      latest?.ref,
      ignored,
    );
  }

  /** Optimizer updates done so far. */
  get step(): number {
    return this.adam.step;
  }

  get done(): boolean {
    return this.step >= this.config.steps;
  }

  /** Whether the run's training time has reached its budget (`budgetMinutes`), if it has one. */
  get budgetSpent(): boolean {
    const budget = this.config.budgetMinutes;
    return budget !== undefined && this.trainSeconds >= budget * 60;
  }

  /** Seconds spent in training steps so far (over every session of the run). */
  get trainingSeconds(): number {
    return this.trainSeconds;
  }

  /** Forward and backward over one global batch (all micro-batches); nothing is updated. */
  async computeGradients(): Promise<Gradients> {
    const partial = await this.gradientSums(0, this.config.accumulation);
    return { ...partial, grads: this.averaged(partial.sums) };
  }

  /**
   * The gradient sums of micro-batches [from, to) of the next step. The randomness of every
   * micro-batch of the step is drawn (data order, flips, t, ε, dropout seeds), computed or not,
   * so the run's state does not depend on which share of the step a process computes.
   */
  /**
   * The sums of micro-batches [from, to) of the next step (drawing the randomness of all of them),
   * summed in order within each block that starts at one of `blockStarts` (default: one block),
   * the blocks' sums then added in order.
   */
  private async gradientSums(
    from: number,
    to: number,
    blockStarts: ReadonlySet<number> = new Set([from]),
  ): Promise<Omit<Gradients, 'grads'> & { sums: tf.Tensor[] }> {
    const T = this.diffusion.numTimesteps;
    const params = this.unet.variables;
    const { imageSize: s, inChannels: c } = this.unetConfig;
    const b = this.config.batchSize / this.config.accumulation;
    /** The finished blocks' sum, and the running sum of the block under way. */
    let summed: tf.Tensor[] | undefined;
    let block: tf.Tensor[] | undefined;
    const add = (into: tf.Tensor[] | undefined, more: tf.Tensor[]): tf.Tensor[] => {
      if (into === undefined) return more;
      const sum = tf.tidy(() => into.map((g, i) => tf.add(g, more[i]!)));
      tf.dispose([...into, ...more]);
      return sum;
    };
    let lossSum = 0;
    let count = 0;
    let epoch = 0;
    const quartileSums: [number, number, number, number] = [0, 0, 0, 0];
    const quartileCounts: [number, number, number, number] = [0, 0, 0, 0];
    for (let micro = 0; micro < this.config.accumulation; micro++) {
      const mine = micro >= from && micro < to;
      const batch = mine ? await this.loader.next() : undefined;
      if (!mine) this.loader.skip();
      const t = this.rng.ints(T, b);
      const noiseValues = this.rng.normals(b * s * s * c);
      const dropoutSeed = this.rng.nextUint32();
      if (batch === undefined) continue;
      epoch = batch.epoch;
      const model = this.unet.asDenoiseFn({ training: true, dropoutSeed });
      let lossB: tf.Tensor | undefined;
      const { value, grads } = tf.tidy(() => {
        const x0 = tf.tensor4d(batch.pixels, [...batch.shape]);
        const noise = tf.tensor4d(noiseValues, [...batch.shape]);
        return tf.variableGrads(() => {
          const losses = trainingLosses(this.diffusion, model, x0, t, noise).lossB;
          lossB = tf.keep(losses.clone());
          return tf.mean<tf.Scalar>(losses);
        }, params);
      });
      const lossHost = await lossB!.data();
      tf.dispose([value, lossB!]);
      for (let i = 0; i < b; i++) {
        const q = Math.min(3, Math.floor((4 * t[i]!) / T));
        quartileSums[q] = quartileSums[q]! + lossHost[i]!;
        quartileCounts[q] = quartileCounts[q]! + 1;
        lossSum += lossHost[i]!;
      }
      count += b;
      block = add(
        block,
        params.map((p) => grads[p.name]!),
      );
      if (micro + 1 === to || blockStarts.has(micro + 1)) {
        summed = add(summed, block);
        block = undefined;
      }
    }
    if (summed === undefined)
      throw engineError(
        'DDPM_CONFIG_INVALID',
        `micro-batches [${from}, ${to}) of ${this.config.accumulation} are empty`,
      );
    return { sums: summed, lossSum, count, quartileSums, quartileCounts, epoch };
  }

  /** Sums of all micro-batches → their mean: the one division both paths share, bit for bit. Disposes `sums`. */
  private averaged(sums: tf.Tensor[]): tf.Tensor[] {
    const accumulation = this.config.accumulation;
    if (accumulation === 1) return sums;
    const grads = tf.tidy(() => sums.map((g) => tf.div(g, accumulation)));
    tf.dispose(sums);
    return grads;
  }

  /** The buffer gradients are flattened into (one for the run: a large model's are hundreds of MB). */
  private flatGradients(): Float32Array {
    this.flatBuffer ??= new Float32Array(this.unet.variables.reduce((n, v) => n + v.size, 0));
    return this.flatBuffer;
  }

  /** sha256 over the parameters, the EMA and Adam's moments: equal on every rank of a healthy group. */
  async stateChecksum(): Promise<string> {
    const hash = createHash('sha256');
    for (const v of [...this.unet.variables, ...this.ema.variables, ...this.adam.m, ...this.adam.v]) {
      const data = await v.data();
      hash.update(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    }
    return hash.digest('hex');
  }

  /**
   * The averaged gradients of the next step as rank `group.rank` of its group: this rank's share
   * of the micro-batches, the group's sum of all shares (summed in rank order, as one process adds
   * its micro-batches), then the one division by the micro-batch count.
   */
  private async groupGradients(
    group: GroupLink,
    stop: GroupStop | undefined,
  ): Promise<Gradients & { stop: GroupStop | undefined; computeSeconds: number; exchangeSeconds: number }> {
    const M = this.config.accumulation;
    const { rank, worldSize } = group;
    const B = group.blocks ?? worldSize;
    if (B > M || worldSize > B)
      throw engineError(
        'DDPM_CONFIG_INVALID',
        `this run takes ${M} micro-batches a step in ${B} blocks; a group of ${worldSize} ranks cannot split them`,
      );
    const started = process.hrtime.bigint();
    const checksum =
      this.step % group.checksumEvery === 0 || !this.groupVerified ? await this.stateChecksum() : undefined;
    // Rank 0 takes the first B − N + 1 blocks, every other rank the next one (see GroupLink.blocks).
    const firstBlock = rank === 0 ? 0 : B - worldSize + rank;
    const lastBlock = rank === 0 ? B - worldSize + 1 : firstBlock + 1;
    const start = (block: number): number => Math.floor((block * M) / B);
    const blockStarts = new Set(Array.from({ length: lastBlock - firstBlock }, (_, k) => start(firstBlock + k)));
    const partial = await this.gradientSums(start(firstBlock), start(lastBlock), blockStarts);
    const flat = await flatten(partial.sums, this.flatGradients());
    tf.dispose(partial.sums);
    const computed = process.hrtime.bigint();
    const { sum, reports } = await group.exchange(this.step + 1, flat, {
      lossSum: partial.lossSum,
      count: partial.count,
      quartileSums: partial.quartileSums,
      quartileCounts: partial.quartileCounts,
      epoch: partial.epoch,
      ...(stop !== undefined ? { stop } : {}),
      ...(checksum !== undefined ? { checksum } : {}),
    });
    const exchanged = process.hrtime.bigint();
    if (checksum !== undefined && reports.some((r) => r.checksum !== checksum)) {
      throw groupError(
        'DDPM_GROUP_DIVERGED',
        `ranks diverged before step ${this.step + 1}: state checksums ${reports.map((r, k) => `rank ${k} ${r.checksum?.slice(0, 12) ?? 'none'}`).join(', ')}`,
      );
    }
    this.groupVerified = true;
    const total = (pick: (r: RankReport) => number): number => reports.reduce((a, r) => a + pick(r), 0);
    // The one division by the micro-batch count, on the host into the buffer the partial sums
    // left (float32 division rounds the same in JavaScript, which divides in float64 and stores
    // to float32, as in a tensor kernel: one process's tf.div gives the same bits).
    const averaged = this.flatGradients();
    for (let i = 0; i < averaged.length; i++) averaged[i] = sum[i]! / M;
    return {
      grads: averaged,
      lossSum: total((r) => r.lossSum),
      count: total((r) => r.count),
      quartileSums: [0, 1, 2, 3].map((q) => total((r) => r.quartileSums[q] ?? 0)) as [number, number, number, number],
      quartileCounts: [0, 1, 2, 3].map((q) => total((r) => r.quartileCounts[q] ?? 0)) as [
        number,
        number,
        number,
        number,
      ],
      epoch: reports[0]!.epoch,
      // A cancel or shutdown outranks rank 0's spent budget: the job then stops as asked.
      stop: (() => {
        const asked = reports.map((r) => groupStopOf(r.stop));
        return asked.find((r) => r !== undefined && r !== BUDGET_STOP) ?? asked.find((r) => r !== undefined);
      })(),
      computeSeconds: Number(computed - started) / 1e9,
      exchangeSeconds: Number(exchanged - computed) / 1e9,
    };
  }

  /**
   * Clips to the global norm, takes the Adam step at the warm-up learning rate and updates the
   * EMA. Disposes `grads`. Returns the norm before clipping and the learning rate used.
   */
  async applyGradients(grads: tf.Tensor[] | Float32Array): Promise<{ gradNorm: number; learningRate: number }> {
    const { gradClipNorm, learningRate, warmupSteps } = this.config.optimizer;
    const release = (): void => {
      if (!(grads instanceof Float32Array)) tf.dispose(grads);
    };
    const flat = grads instanceof Float32Array ? grads : await flatten(grads, this.flatGradients());
    const gradNorm = globalNorm(flat, this.unet.variables);
    if (!Number.isFinite(gradNorm)) {
      release();
      throw engineError(
        'DDPM_NUMERIC',
        `the gradient norm is ${gradNorm} at step ${this.step + 1}: training diverged (lower the learning rate?)`,
      );
    }
    const lr = learningRateAt(this.step, learningRate, warmupSteps);
    const scale = gradClipNorm > 0 && gradNorm > gradClipNorm ? gradClipNorm / gradNorm : 1;
    // The EMA's update number n counts from 0: the optimizer updates done before this one.
    const decay = emaDecayAt(this.config.ema.decay, this.step, this.config.ema.warmup);
    // A flat sum goes to the fused step as one tensor (one copy), not one tensor per parameter.
    const all = grads instanceof Float32Array ? tf.tensor1d(grads, 'float32') : undefined;
    let fused: boolean;
    try {
      fused = this.adam.applyFusedWithEma(all ?? (grads as tf.Tensor[]), lr, scale, this.ema.variables, decay);
    } catch (err) {
      release();
      throw err;
    } finally {
      all?.dispose();
    }
    if (fused) {
      release();
      return { gradNorm, learningRate: lr };
    }
    const tensors = grads instanceof Float32Array ? unflatten(grads, this.unet.variables) : grads;
    const clipped = scale === 1 ? tensors : tf.tidy(() => tensors.map((g) => tf.mul(g, scale)));
    if (clipped !== tensors) tf.dispose(tensors);
    this.adam.apply(clipped, lr);
    tf.dispose(clipped);
    updateEma(this.ema.variables, this.unet.variables, decay);
    return { gradNorm, learningRate: lr };
  }

  /**
   * One full optimizer step, alone or as a rank of `group`; `stop` tells the group this rank wants
   * to stop after the step (the returned `stop` is the group's decision: every rank sees the same).
   */
  async trainStep(group?: GroupLink, stop?: GroupStop): Promise<StepStats> {
    const started = process.hrtime.bigint();
    const g: Gradients & { stop?: GroupStop | undefined; computeSeconds?: number; exchangeSeconds?: number } = group
      ? await this.groupGradients(group, stop)
      : await this.computeGradients();
    const loss = g.lossSum / g.count;
    if (!Number.isFinite(loss)) {
      if (!(g.grads instanceof Float32Array)) tf.dispose(g.grads);
      throw engineError(
        'DDPM_NUMERIC',
        `the loss is ${loss} at step ${this.step + 1}: training diverged (lower the learning rate?)`,
      );
    }
    const { gradNorm, learningRate } = await this.applyGradients(g.grads);
    this.lossCurve.add(this.step, loss);
    const stepSeconds = Number(process.hrtime.bigint() - started) / 1e9;
    this.trainSeconds += stepSeconds;
    this.imagesSeen += g.count;
    return {
      step: this.step,
      loss,
      lossQuartiles: g.quartileSums.map((s, i) =>
        g.quartileCounts[i] === 0 ? Number.NaN : s / g.quartileCounts[i]!,
      ) as [number, number, number, number],
      gradNorm,
      learningRate,
      imagesPerSecond: g.count / stepSeconds,
      stepSeconds,
      epoch: g.epoch,
      ...(g.stop !== undefined ? { stop: g.stop } : {}),
      ...(g.computeSeconds !== undefined && g.exchangeSeconds !== undefined
        ? { group: { computeSeconds: g.computeSeconds, exchangeSeconds: g.exchangeSeconds } }
        : {}),
    };
  }

  /** Checkpoints of this run known whole (written here, or verified once when pruning). */
  private readonly verifiedCheckpoints = new Set<string>();

  /** Writes a whole checkpoint (manifest last) and prunes old ones; `fence` guards every write. */
  async checkpoint(reason: string, fence?: WriteFence): Promise<CheckpointRef> {
    const state: RunState = {
      version: CHECKPOINT_VERSION,
      step: this.step,
      config: this.config,
      rng: this.rng.state(),
      loader: this.loader.state(),
      imagesSeen: this.imagesSeen,
      trainSeconds: this.trainSeconds,
      createdAt: new Date().toISOString(),
      reason,
      ...(this.options.backendName ? { backend: this.options.backendName } : {}),
      loss: this.lossCurve.state(),
    };
    const ref = await writeCheckpoint(
      this.options.store,
      this.options.prefix,
      {
        state,
        model: await saveUNetWeights(this.unet, { step: String(this.step) }),
        ema: await saveUNetWeights(this.ema, { step: String(this.step), ema: 'true' }),
        optimizer: await saveAdam(this.adam, this.unet),
      },
      fence,
    );
    this.verifiedCheckpoints.add(ref.key);
    await pruneCheckpoints(
      this.options.store,
      this.options.prefix,
      this.config.keepCheckpoints,
      fence,
      this.verifiedCheckpoints,
    );
    return ref;
  }

  /**
   * Trains until `config.steps` or the time budget (`budgetMinutes`), checkpointing every
   * `checkpointEvery` steps and at the end. When `signal` aborts, finishes the step in progress,
   * checkpoints, and returns `stopped`.
   */
  async run(options: RunOptions = {}): Promise<{
    status: 'completed' | 'stopped';
    step: number;
    checkpoint?: CheckpointRef;
    stopReason?: StopReason;
    budgetSpent?: boolean;
  }> {
    const group = options.group;
    // In a group only rank 0 writes, fenced against a newer generation of the group.
    const writer = group === undefined || group.rank === 0;
    const fence = group ? () => group.assertWriter() : options.fence;
    let last: CheckpointRef | undefined;
    let lastSavedStep = this.resumedFrom?.step ?? -1;
    const now = options.clock ?? (() => performance.now());
    // Periodic checkpoints come every checkpointEvery steps or checkpointEverySeconds of wall
    // time, whichever is first: a process killed at any moment loses at most that much training.
    const everyMs = (this.config.checkpointEverySeconds ?? Infinity) * 1000;
    let lastSavedAt = now();
    const save = async (reason: string): Promise<void> => {
      if (!writer || lastSavedStep === this.step) return;
      options.onCheckpointStart?.(this.step, reason);
      const started = process.hrtime.bigint();
      last = await this.checkpoint(reason, fence);
      lastSavedStep = this.step;
      lastSavedAt = now();
      await options.onCheckpoint?.(last, reason, Number(process.hrtime.bigint() - started) / 1e9);
    };
    const stopped = async (
      reason: StopReason,
    ): Promise<{ status: 'stopped'; step: number; checkpoint?: CheckpointRef; stopReason: StopReason }> => {
      await save('stopped');
      return { status: 'stopped', step: this.step, ...(last ? { checkpoint: last } : {}), stopReason: reason };
    };
    // A run resumed with its budget already spent (alone: at once; a group agrees in its first exchange).
    let budgetEnded = group === undefined && this.budgetSpent && !this.done;
    while (!this.done && !budgetEnded) {
      const request = options.signal?.aborted ? stopReasonOf(options.signal.reason) : undefined;
      // Alone, stop at once; in a group, say so in the next exchange so every rank stops after the same step.
      if (request !== undefined && group === undefined) return stopped(request);
      // The budget is rank 0's clock: it alone asks, so every rank ends after the same step.
      const ask = request ?? (group !== undefined && group.rank === 0 && this.budgetSpent ? BUDGET_STOP : undefined);
      const stats = await this.trainStep(group, ask);
      await options.onStep?.(stats);
      // On wasm/cpu a whole step resolves in microtasks; let signals, timers and I/O run.
      await yieldToEventLoop();
      if (stats.stop !== undefined && stats.stop !== BUDGET_STOP) return stopped(stats.stop);
      budgetEnded = group === undefined ? this.budgetSpent : stats.stop === BUDGET_STOP;
      const ending = this.done || budgetEnded;
      if (ending) await save('final');
      else if (this.step % this.config.checkpointEvery === 0 || now() - lastSavedAt >= everyMs) await save('periodic');
      await options.afterStep?.(this.step, stats, ending);
    }
    await save('final');
    return {
      status: 'completed',
      step: this.step,
      ...(last ? { checkpoint: last } : {}),
      ...(budgetEnded && !this.done ? { budgetSpent: true } : {}),
    };
  }

  dispose(): void {
    this.unet.dispose();
    this.ema.dispose();
    this.adam.dispose();
  }
}

/**
 * Tensors → one Float32Array in their order (what a group exchanges), written into `flat`
 * (straight from the wasm heap there: no fresh copy of the gradients every step).
 */
async function flatten(tensors: readonly tf.Tensor[], flat: Float32Array): Promise<Float32Array> {
  return copyTensorsInto(tensors, flat);
}

/**
 * The global L2 norm of gradients laid out one parameter after the other (`flat`, in the order of
 * `like`): per parameter a float32 sum of float32 squares from the first value to the last, those
 * sums added in order, then the square root, each step rounded to float32. These are the
 * operations and the order of tf.sqrt(tf.addN(grads.map((g) => tf.sum(tf.square(g))))) on the
 * wasm backend (tested), computed on the host so that every rank of a group and one process get
 * the same bits on any backend, without ~800 small kernels.
 */
export function globalNorm(flat: Float32Array, like: readonly { readonly size: number }[]): number {
  let total = 0;
  let offset = 0;
  for (const { size } of like) {
    let sum = 0;
    const end = offset + size;
    for (let i = offset; i < end; i++) {
      const x = flat[i]!;
      sum = Math.fround(sum + Math.fround(x * x));
    }
    total = Math.fround(total + sum);
    offset = end;
  }
  if (offset !== flat.length)
    throw new Error(`internal error: ${flat.length} gradient values for ${offset} parameters`);
  return Math.fround(Math.sqrt(total));
}

/** The inverse of {@link flatten}, shaped like `like`. */
function unflatten(flat: Float32Array, like: readonly tf.Tensor[]): tf.Tensor[] {
  let offset = 0;
  return like.map((t) => {
    const part = tf.tensor(flat.subarray(offset, offset + t.size), t.shape, 'float32');
    offset += t.size;
    return part;
  });
}
