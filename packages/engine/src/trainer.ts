/**
 * The training loop of Algorithm 1 for one process: draw a batch, t ~ U{0..T−1}, ε ~ N(0, I),
 * take the configured diffusion loss through the U-Net, Adam with warm-up and global-norm
 * clipping, then the EMA. Gradient accumulation reaches large batches on small memory. The step is
 * split into {@link Trainer.computeGradients} and {@link Trainer.applyGradients} so a data-parallel
 * group can average gradients in between. The micro-batches' gradients are computed in
 * micro-batches.ts, {@link Trainer.run}'s loop is training-loop.ts, and what the ranks of a group
 * agree on is group-link.ts.
 *
 * Resume is exact: parameters, EMA, Adam moments, the step, the RNG and data-order states are all
 * in the checkpoint, so k steps + resume + (n − k) steps equals n steps bit for bit on one backend.
 */
import { type TrainConfig, resumedConfig, unetConfigOf, validateTrainConfig } from '@ddpm/settings';
import { Rng } from '@ddpm/core';
import { type DataLoader as Loader, DataLoader, type ImageDataset, openDataset } from '@ddpm/data';
import { GaussianDiffusion } from '@ddpm/diffusion';
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
import { UNet, type UNetConfig, loadUNetWeights, saveUNetWeights } from '@ddpm/unet';
import * as tf from '@tensorflow/tfjs-core';

import { Adam, learningRateAt, loadAdam, saveAdam } from './adam';
import { emaDecayAt, updateEma } from './ema';
import { engineError, groupError } from './errors';
import { flatten, globalNorm, unflatten } from './flat-gradients';
import { type GroupLink, type GroupStop, groupTotals, rankShare } from './group-link';
import { type MicroBatchSource, gradientSums } from './micro-batches';
import { type RunOptions, type RunOutcome, type StepStats, runTraining } from './training-loop';
import { createHash } from 'node:crypto';

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
    const partial = await gradientSums(this.microBatches(), 0, this.config.accumulation);
    return { ...partial, grads: this.averaged(partial.sums) };
  }

  /** What the next step's micro-batches are drawn from and computed with. */
  private microBatches(): MicroBatchSource {
    const { config, unetConfig, unet, diffusion, loader, rng } = this;
    return { config, unetConfig, unet, diffusion, loader, rng };
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
    // This rank's micro-batches, and the blocks it sums them in (see GroupLink.blocks).
    const share = rankShare(M, B, rank, worldSize);
    const partial = await gradientSums(this.microBatches(), share.from, share.to, share.blockStarts);
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
    // The one division by the micro-batch count, on the host into the buffer the partial sums
    // left (float32 division rounds the same in JavaScript, which divides in float64 and stores
    // to float32, as in a tensor kernel: one process's tf.div gives the same bits).
    const averaged = this.flatGradients();
    for (let i = 0; i < averaged.length; i++) averaged[i] = sum[i]! / M;
    return {
      grads: averaged,
      ...groupTotals(reports),
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
  run(options: RunOptions = {}): Promise<RunOutcome> {
    return runTraining(this, options);
  }

  dispose(): void {
    this.unet.dispose();
    this.ema.dispose();
    this.adam.dispose();
  }
}
