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
import { Rng } from '@ddpm/core';
import { type DataLoader as Loader, DataLoader, type ImageDataset, openDataset } from '@ddpm/data';
import { GaussianDiffusion, trainingLosses, yieldToEventLoop } from '@ddpm/diffusion';
import { type ObjectStore } from '@ddpm/storage';
import { UNet, type UNetConfig, loadUNetWeights, saveUNetWeights } from '@ddpm/unet';
import * as tf from '@tensorflow/tfjs-core';

import { Adam, learningRateAt, loadAdam, saveAdam } from './adam';
import {
  type CheckpointRef,
  type RunState,
  CHECKPOINT_VERSION,
  loadLatestCheckpoint,
  pruneCheckpoints,
  writeCheckpoint,
} from './checkpoint';
import { emaDecayAt, updateEma } from './ema';
import { engineError } from './errors';

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
}

export interface TrainerOptions {
  readonly store: ObjectStore;
  /** Key prefix of this run's checkpoints and artifacts, e.g. `runs/<id>`. */
  readonly prefix: string;
  /** Resume from the newest valid checkpoint when there is one (default true). */
  readonly resume?: boolean;
  /** Recorded in checkpoints. */
  readonly backendName?: string;
  /** Called when a newer checkpoint was skipped as corrupt. */
  readonly onWarning?: (message: string) => void;
}

export interface RunOptions {
  readonly signal?: AbortSignal;
  readonly onStep?: (stats: StepStats) => void | Promise<void>;
  /** After a checkpoint is whole; `seconds` is how long writing it took. */
  readonly onCheckpoint?: (ref: CheckpointRef, reason: string, seconds: number) => void | Promise<void>;
}

export interface Gradients {
  /** Aligned with the trainer's parameters. */
  readonly grads: tf.Tensor[];
  readonly lossSum: number;
  readonly count: number;
  readonly quartileSums: [number, number, number, number];
  readonly quartileCounts: [number, number, number, number];
  readonly epoch: number;
}

export class Trainer {
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
    const latest = options.resume === false ? undefined : await loadLatestCheckpoint(options.store, options.prefix);
    for (const s of latest?.skipped ?? []) options.onWarning?.(`${s.reason}; using an older checkpoint`);
    const { config, ignored } = latest ? resumedConfig(latest.files.state.config, requested) : { config: requested, ignored: [] };
    if (latest) validateTrainConfig(config);
    const unetConfig = unetConfigOf(config);
    const dataset = await openDataset(config.dataset, { imageSize: unetConfig.imageSize, channels: unetConfig.inChannels === 1 ? 1 : 3 });
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
    return new Trainer(config, unetConfig, unet, ema, diffusion, dataset, loader, adam, rng, options, imagesSeen, trainSeconds, latest?.ref, ignored);
  }

  /** Optimizer updates done so far. */
  get step(): number {
    return this.adam.step;
  }

  get done(): boolean {
    return this.step >= this.config.steps;
  }

  /** Forward and backward over one global batch (all micro-batches); nothing is updated. */
  async computeGradients(): Promise<Gradients> {
    const T = this.diffusion.numTimesteps;
    const params = this.unet.variables;
    let summed: tf.Tensor[] | undefined;
    let lossSum = 0;
    let count = 0;
    let epoch = 0;
    const quartileSums: [number, number, number, number] = [0, 0, 0, 0];
    const quartileCounts: [number, number, number, number] = [0, 0, 0, 0];
    for (let micro = 0; micro < this.config.accumulation; micro++) {
      const batch = await this.loader.next();
      epoch = batch.epoch;
      const [b, s, , c] = batch.shape;
      const t = this.rng.ints(T, b);
      const noiseValues = this.rng.normals(b * s * s * c);
      const dropoutSeed = this.rng.nextUint32();
      const model = this.unet.asDenoiseFn({ training: true, dropoutSeed });
      let lossB: tf.Tensor | undefined;
      const { value, grads } = tf.tidy(() => {
        const x0 = tf.tensor4d(batch.pixels, [...batch.shape]);
        const noise = tf.tensor4d(noiseValues, [...batch.shape]);
        return tf.variableGrads(() => {
          const losses = trainingLosses(this.diffusion, model, x0, t, noise).lossB;
          lossB = tf.keep(losses.clone());
          return tf.mean(losses) as tf.Scalar;
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
      const ordered = params.map((p) => grads[p.name]!);
      if (summed === undefined) {
        summed = ordered;
      } else {
        const previous = summed;
        summed = tf.tidy(() => previous.map((g, i) => tf.add(g, ordered[i]!)));
        tf.dispose([...previous, ...ordered]);
      }
    }
    const accumulation = this.config.accumulation;
    const grads = accumulation === 1 ? summed! : tf.tidy(() => summed!.map((g) => tf.div(g, accumulation)));
    if (accumulation !== 1) tf.dispose(summed!);
    return { grads, lossSum, count, quartileSums, quartileCounts, epoch };
  }

  /**
   * Clips to the global norm, takes the Adam step at the warm-up learning rate and updates the
   * EMA. Disposes `grads`. Returns the norm before clipping and the learning rate used.
   */
  async applyGradients(grads: tf.Tensor[]): Promise<{ gradNorm: number; learningRate: number }> {
    const { gradClipNorm, learningRate, warmupSteps } = this.config.optimizer;
    const normTensor = tf.tidy(() => tf.sqrt(tf.addN(grads.map((g) => tf.sum(tf.square(g))))));
    const gradNorm = (await normTensor.data())[0]!;
    normTensor.dispose();
    if (!Number.isFinite(gradNorm)) {
      tf.dispose(grads);
      throw engineError('DDPM_NUMERIC', `the gradient norm is ${gradNorm} at step ${this.step + 1}: training diverged (lower the learning rate?)`);
    }
    const lr = learningRateAt(this.step, learningRate, warmupSteps);
    const scale = gradClipNorm > 0 && gradNorm > gradClipNorm ? gradClipNorm / gradNorm : 1;
    const clipped = scale === 1 ? grads : tf.tidy(() => grads.map((g) => tf.mul(g, scale)));
    if (clipped !== grads) tf.dispose(grads);
    this.adam.apply(clipped, lr);
    tf.dispose(clipped);
    updateEma(this.ema.variables, this.unet.variables, emaDecayAt(this.config.ema.decay, this.step - 1, this.config.ema.warmup));
    return { gradNorm, learningRate: lr };
  }

  /** One full optimizer step. */
  async trainStep(): Promise<StepStats> {
    const started = process.hrtime.bigint();
    const g = await this.computeGradients();
    const loss = g.lossSum / g.count;
    if (!Number.isFinite(loss)) {
      tf.dispose(g.grads);
      throw engineError('DDPM_NUMERIC', `the loss is ${loss} at step ${this.step + 1}: training diverged (lower the learning rate?)`);
    }
    const { gradNorm, learningRate } = await this.applyGradients(g.grads);
    const stepSeconds = Number(process.hrtime.bigint() - started) / 1e9;
    this.trainSeconds += stepSeconds;
    this.imagesSeen += g.count;
    return {
      step: this.step,
      loss,
      lossQuartiles: g.quartileSums.map((s, i) => (g.quartileCounts[i] === 0 ? Number.NaN : s / g.quartileCounts[i]!)) as [number, number, number, number],
      gradNorm,
      learningRate,
      imagesPerSecond: g.count / stepSeconds,
      stepSeconds,
      epoch: g.epoch,
    };
  }

  /** Writes a whole checkpoint (manifest last) and prunes old ones. */
  async checkpoint(reason: string): Promise<CheckpointRef> {
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
    };
    const ref = await writeCheckpoint(this.options.store, this.options.prefix, {
      state,
      model: await saveUNetWeights(this.unet, { step: String(this.step) }),
      ema: await saveUNetWeights(this.ema, { step: String(this.step), ema: 'true' }),
      optimizer: await saveAdam(this.adam, this.unet),
    });
    await pruneCheckpoints(this.options.store, this.options.prefix, this.config.keepCheckpoints);
    return ref;
  }

  /**
   * Trains until `config.steps`, checkpointing every `checkpointEvery` steps and at the end.
   * When `signal` aborts, finishes the step in progress, checkpoints, and returns `stopped`.
   */
  async run(options: RunOptions = {}): Promise<{ status: 'completed' | 'stopped'; step: number; checkpoint?: CheckpointRef }> {
    let last: CheckpointRef | undefined;
    let lastSavedStep = this.resumedFrom?.step ?? -1;
    const save = async (reason: string): Promise<void> => {
      if (lastSavedStep === this.step) return;
      const started = process.hrtime.bigint();
      last = await this.checkpoint(reason);
      lastSavedStep = this.step;
      await options.onCheckpoint?.(last, reason, Number(process.hrtime.bigint() - started) / 1e9);
    };
    while (!this.done) {
      if (options.signal?.aborted) {
        await save('stopped');
        return { status: 'stopped', step: this.step, ...(last ? { checkpoint: last } : {}) };
      }
      const stats = await this.trainStep();
      await options.onStep?.(stats);
      // On wasm/cpu a whole step resolves in microtasks; let signals, timers and I/O run.
      await yieldToEventLoop();
      if (this.step % this.config.checkpointEvery === 0) await save('periodic');
    }
    await save('final');
    return { status: 'completed', step: this.step, ...(last ? { checkpoint: last } : {}) };
  }

  dispose(): void {
    this.unet.dispose();
    this.ema.dispose();
    this.adam.dispose();
  }
}
