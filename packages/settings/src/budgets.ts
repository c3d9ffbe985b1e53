/**
 * Server-side budgets: the sizes a user controls, bounded by the operator (docs/security.md, "Safe by
 * default"). The API checks a job's resolved configuration against them before it is queued, so a
 * request that would exhaust a worker's memory, disk or time is refused with a 4xx naming the
 * limit (the service names its environment variable), instead of being found out by an out-of-memory kill.
 *
 * Memory per training step is an estimate from the architecture (no tensors): per image, the
 * floats of every op output of one forward pass (describeArchitecture's activationFloats), times
 * 4 bytes, times TRAINING_MEMORY_FACTOR for what backpropagation keeps and allocates besides;
 * plus PARAMETER_COPIES float32 copies of the parameters (weights, gradients, EMA, Adam's two
 * moments, the update's temporaries and the gradient's flat copy) and the heap's own base. The
 * constants are calibrated against `ddpm bench memory` (the wasm heap after 2 engine steps in a
 * fresh process; the figures are in docs/performance.md, "Memory"): the per-image factor from
 * large micro-batches, the copies and the base from small ones, so that the estimate lies above
 * every measured peak. The Winograd convolutions lowered the peaks since; the estimate now errs
 * further on the safe side, and is left as calibrated.
 */
import { parseDatasetSpec } from '@ddpm/data/spec';
import { describeArchitecture, preset } from '@ddpm/unet-config';

import { configError } from './errors';
import { type EvalJobConfig } from './eval-settings';
import { type SampleJobConfig } from './sample-settings';
import { type TrainJobConfig, unetConfigOf } from './train-config';

/** Bytes a training step allocates per byte of forward activations (measured, see above). */
export const TRAINING_MEMORY_FACTOR = 2.6;
/** Weights, gradients, EMA, Adam's two moments, the update's temporaries, the flat gradient: float32 copies of the parameters. */
const PARAMETER_COPIES = 10;
/** The heap a process has before any model (tfjs's own, and allocator slack). */
const BASE_BYTES = 64 * 2 ** 20;
const MIB = 2 ** 20;

/** The server's limits a job is checked against (the service reads them from its environment). */
export interface ServiceLimits {
  /** Estimated memory of one training micro-batch in one process, MiB. */
  readonly maxStepMemoryMb: number;
  /** Optimizer steps of one train job. */
  readonly maxSteps: number;
  /** Images a sample job draws, frames of progressive sampling included. */
  readonly maxSampleImages: number;
  /** Checkpoints kept × their size, MiB. */
  readonly maxCheckpointStorageMb: number;
  /** Images of a procedural dataset. */
  readonly maxDatasetImages: number;
  /** Samples and reference images of one evaluation. */
  readonly maxEvalImages: number;
  /** Wall time of one run of a job, seconds; the worker stops the job at it. */
  readonly maxJobSeconds: number;
}

/**
 * What the messages call each limit: by default its key; the service passes its environment
 * variables (`@ddpm/service`'s LIMIT_NAMES), so that an operator reads what to raise.
 */
export type LimitNames = Readonly<Record<keyof ServiceLimits, string>>;

const KEY_NAMES: LimitNames = {
  maxStepMemoryMb: 'maxStepMemoryMb',
  maxSteps: 'maxSteps',
  maxSampleImages: 'maxSampleImages',
  maxCheckpointStorageMb: 'maxCheckpointStorageMb',
  maxDatasetImages: 'maxDatasetImages',
  maxEvalImages: 'maxEvalImages',
  maxJobSeconds: 'maxJobSeconds',
};

/** wasm32's linear memory: no more, whatever the machine has. */
export const WASM_HEAP_BYTES = 4 * 2 ** 30;

/** Estimated bytes of one training step of `images` images of the run's model in one process. */
export function trainingStepBytes(config: TrainJobConfig['train'], images: number): number {
  const summary = describeArchitecture(unetConfigOf(config));
  return (
    images * summary.activationFloats * 4 * TRAINING_MEMORY_FACTOR +
    summary.totalParams * 4 * PARAMETER_COPIES +
    BASE_BYTES
  );
}

/** The run's model's parameter count (the values a group all-reduces every step). */
export function parameterCount(config: TrainJobConfig['train']): number {
  return describeArchitecture(unetConfigOf(config)).totalParams;
}

/** Bytes of one checkpoint of the run: model, EMA and Adam's two moments in float32. */
export function checkpointBytes(config: TrainJobConfig['train']): number {
  return parameterCount(config) * 4 * 4;
}

/**
 * The smallest accumulation whose micro-batches fit `maxStepMemoryMb`, when the request left
 * accumulation to us and its default does not fit; the configuration unchanged otherwise. In a
 * group the count stays a multiple of the workers where one fits (every rank gets the same share)
 * and at least the workers. The choice is recorded in `adjustments`, so the job's effective
 * configuration says what was changed and why. A micro-batch of one image that still does not fit
 * is left for {@link checkBudgets} to refuse.
 */
export function fitAccumulation(
  config: TrainJobConfig,
  request: { readonly accumulation?: number | undefined },
  maxStepMemoryMb: number,
  names: LimitNames = KEY_NAMES,
): TrainJobConfig {
  const train = config.train;
  const fits = (accumulation: number): boolean =>
    trainingStepBytes(train, train.batchSize / accumulation) <= maxStepMemoryMb * MIB;
  if (request.accumulation !== undefined || fits(train.accumulation)) return config;
  const workers = config.group.workers;
  const divisors = Array.from({ length: train.batchSize }, (_, i) => i + 1).filter(
    (a) => train.batchSize % a === 0 && a > train.accumulation && a >= workers,
  );
  const chosen = divisors.find((a) => a % workers === 0 && fits(a)) ?? divisors.find(fits);
  if (chosen === undefined) return config;
  const from = train.batchSize / train.accumulation;
  const to = train.batchSize / chosen;
  const reason =
    `a micro-batch of ${from} ${train.model.preset} images needs an estimated ${mib(trainingStepBytes(train, from))}, over the step-memory budget of ${maxStepMemoryMb} MiB ` +
    `(${names.maxStepMemoryMb}); ${chosen} micro-batches of ${to} (${mib(trainingStepBytes(train, to))}) make the same batch of ${train.batchSize}`;
  return {
    ...config,
    train: { ...train, accumulation: chosen },
    adjustments: [
      ...(config.adjustments ?? []),
      { setting: 'accumulation', requested: train.accumulation, chosen, reason },
    ],
  };
}

function over(names: LimitNames, limit: keyof ServiceLimits, what: string, value: string, hint = ''): never {
  throw configError(`${what} is ${value}, over this server's limit ${names[limit]}${hint ? `; ${hint}` : ''}`);
}

const mib = (bytes: number): string => `${Math.ceil(bytes / MIB)} MiB`;

/** The size of the procedural dataset a spec names, if it names one. */
function proceduralSize(spec: string | undefined): number | undefined {
  if (spec === undefined) return undefined;
  const parsed = parseDatasetSpec(spec);
  return parsed.kind === 'procedural' ? parsed.size : undefined;
}

function checkEvalImages(
  limits: ServiceLimits,
  names: LimitNames,
  spec: Pick<EvalJobConfig, 'samples' | 'reference' | 'nll' | 'metrics'>,
  what: string,
): void {
  if (spec.samples.count > limits.maxEvalImages)
    over(
      names,
      'maxEvalImages',
      `${what} samples ${spec.samples.count} images; that`,
      `more than ${limits.maxEvalImages}`,
    );
  if ((spec.reference.count ?? 0) > limits.maxEvalImages)
    over(
      names,
      'maxEvalImages',
      `${what} reference count ${spec.reference.count}`,
      `more than ${limits.maxEvalImages}`,
    );
  if (spec.metrics.includes('nll') && spec.nll.images > limits.maxEvalImages)
    over(names, 'maxEvalImages', `${what} NLL on ${spec.nll.images} images`, `more than ${limits.maxEvalImages}`);
  const size = proceduralSize(spec.reference.dataset);
  if (size !== undefined && size > limits.maxDatasetImages)
    over(
      names,
      'maxDatasetImages',
      `the reference procedural dataset's size ${size}`,
      `more than ${limits.maxDatasetImages}`,
    );
}

/**
 * Checks a resolved job against the server's limits; throws an `invalid` error naming the first
 * limit exceeded (by `names`), its value and what the job asked for.
 */
export function checkBudgets(
  job:
    | { type: 'train'; config: TrainJobConfig }
    | { type: 'sample'; config: SampleJobConfig }
    | { type: 'eval'; config: EvalJobConfig },
  limits: ServiceLimits,
  names: LimitNames = KEY_NAMES,
): void {
  switch (job.type) {
    case 'train': {
      const train = job.config.train;
      if (train.steps > limits.maxSteps)
        over(names, 'maxSteps', `steps ${train.steps}`, `more than ${limits.maxSteps}`);
      const micro = train.batchSize / train.accumulation;
      const stepBytes = trainingStepBytes(train, micro);
      if (stepBytes > limits.maxStepMemoryMb * MIB) {
        over(
          names,
          'maxStepMemoryMb',
          `the estimated memory of a training micro-batch of ${micro} images (batchSize ${train.batchSize} / accumulation ${train.accumulation}) of ${train.model.preset}`,
          `${mib(stepBytes)}, more than ${limits.maxStepMemoryMb} MiB`,
          micro === 1
            ? 'one image a micro-batch is the smallest split: this model needs a larger step-memory budget (a GPU pool) or a smaller preset'
            : 'raise accumulation to split the batch into smaller micro-batches (or leave it out: the server then chooses the smallest that fits)',
        );
      }
      const storage = checkpointBytes(train) * train.keepCheckpoints;
      if (storage > limits.maxCheckpointStorageMb * MIB) {
        over(
          names,
          'maxCheckpointStorageMb',
          `keepCheckpoints ${train.keepCheckpoints} × ${mib(checkpointBytes(train))} per ${train.model.preset} checkpoint`,
          `${mib(storage)}, more than ${limits.maxCheckpointStorageMb} MiB`,
        );
      }
      const size = proceduralSize(train.dataset);
      if (size !== undefined && size > limits.maxDatasetImages)
        over(
          names,
          'maxDatasetImages',
          `the procedural dataset's size ${size}`,
          `more than ${limits.maxDatasetImages}`,
        );
      if (job.config.finalGrid.count > limits.maxSampleImages)
        over(
          names,
          'maxSampleImages',
          `sampleCount ${job.config.finalGrid.count}`,
          `more than ${limits.maxSampleImages}`,
        );
      if (job.config.evaluation)
        checkEvalImages(limits, names, job.config.evaluation, 'the evaluation during training');
      return;
    }
    case 'sample': {
      const c = job.config;
      const frames = c.kind === 'progressive' ? Math.ceil(c.sampler.steps / (c.every ?? 1)) + 1 : 1;
      const images = c.count * frames;
      if (images > limits.maxSampleImages)
        over(
          names,
          'maxSampleImages',
          `${c.count} samples × ${frames} frames = ${images} images`,
          `more than ${limits.maxSampleImages}`,
        );
      return;
    }
    case 'eval':
      checkEvalImages(limits, names, job.config, 'the evaluation');
      return;
    default: {
      const unreachable: never = job;
      throw configError(`unknown job type ${JSON.stringify(unreachable)}`);
    }
  }
}

/** The preset's estimated training memory per image, MiB (for documentation and `ddpm info`). */
export function trainingMemoryPerImageMb(presetName: string): number {
  const summary = describeArchitecture(preset(presetName));
  return (summary.activationFloats * 4 * TRAINING_MEMORY_FACTOR) / MIB;
}
