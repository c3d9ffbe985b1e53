import {
  type LimitNames,
  type ServiceLimits,
  checkBudgets,
  checkpointBytes,
  fitAccumulation,
  trainingStepBytes,
} from './budgets';
import { resolveEvalJob } from './eval-settings';
import { resolveSampleJob } from './sample-settings';
import { resolveTrainJob } from './train-config';

const train = (request: Record<string, unknown>) => ({
  type: 'train' as const,
  config: resolveTrainJob({ steps: 10, preset: 'micro32', dataset: 'procedural:shapes', ...request }),
});

/** The service's defaults (@ddpm/service's DEFAULT_LIMITS; its own test checks they are these). */
const DEFAULT_LIMITS: ServiceLimits = {
  maxStepMemoryMb: 3584,
  maxSteps: 1_000_000,
  maxSampleImages: 4096,
  maxCheckpointStorageMb: 20_480,
  maxDatasetImages: 1_000_000,
  maxEvalImages: 50_000,
  maxJobSeconds: 7 * 24 * 3600,
};

describe('budgets', () => {
  it('accept the defaults and the paper’s CIFAR-10 model with enough accumulation', () => {
    expect(() => checkBudgets(train({}), DEFAULT_LIMITS)).not.toThrow();
    expect(() =>
      checkBudgets(train({ preset: 'cifar10', batchSize: 128, accumulation: 16 }), DEFAULT_LIMITS),
    ).not.toThrow();
  });

  it('refuse a micro-batch over the step memory, naming the limit and what to change', () => {
    expect(() =>
      checkBudgets(train({ preset: 'celebahq256', batchSize: 4096, accumulation: 1 }), DEFAULT_LIMITS),
    ).toThrow(/more than 3584 MiB, over this server's limit maxStepMemoryMb/);
    expect(() => checkBudgets(train({ preset: 'cifar10', batchSize: 128 }), DEFAULT_LIMITS)).toThrow(
      /micro-batch of 128 images .* of cifar10 is \d+ MiB, more than 3584 MiB, over this server's limit maxStepMemoryMb; raise accumulation/,
    );
    // A GPU pool raises the limit.
    expect(() =>
      checkBudgets(train({ preset: 'cifar10', batchSize: 128 }), { ...DEFAULT_LIMITS, maxStepMemoryMb: 80_000 }),
    ).not.toThrow();
  });

  it('split a batch that does not fit into the fewest micro-batches that do, when the request leaves accumulation open, and say so', () => {
    const limit = DEFAULT_LIMITS.maxStepMemoryMb;
    const fit = (request: Record<string, unknown>, mb = limit) => fitAccumulation(train(request).config, request, mb);
    // The paper's CIFAR-10 batch: 16 micro-batches of 8; 8 of 16 would not fit.
    const cifar = fit({ preset: 'cifar10', batchSize: 128 });
    expect(cifar.train.accumulation).toBe(16);
    expect(trainingStepBytes(cifar.train, 8)).toBeLessThanOrEqual(limit * 2 ** 20);
    expect(trainingStepBytes(cifar.train, 16)).toBeGreaterThan(limit * 2 ** 20);
    expect(cifar.adjustments).toEqual([
      {
        setting: 'accumulation',
        requested: 1,
        chosen: 16,
        reason: expect.stringMatching(
          /^a micro-batch of 128 cifar10 images needs an estimated \d+ MiB, over the step-memory budget of 3584 MiB \(maxStepMemoryMb\); 16 micro-batches of 8 \(\d+ MiB\) make the same batch of 128$/,
        ),
      },
    ]);
    expect(() => checkBudgets({ type: 'train', config: cifar }, DEFAULT_LIMITS)).not.toThrow();
    // Nothing changes when the batch fits, or when the request chose accumulation itself.
    const small = train({ preset: 'cifar10', batchSize: 8 }).config;
    expect(fitAccumulation(small, {}, limit)).toBe(small);
    expect(fit({ preset: 'cifar10', batchSize: 128, accumulation: 2 }).train.accumulation).toBe(2);
    expect(fit({ preset: 'cifar10', batchSize: 128, accumulation: 2 }).adjustments).toBeUndefined();
    // A group keeps a multiple of its workers where one fits: 3 workers, 48 images → 6 micro-batches of 8.
    expect(fit({ preset: 'cifar10', batchSize: 48, workers: 3 }).train.accumulation).toBe(6);
    expect(fit({ preset: 'cifar10', batchSize: 128, workers: 2 }).train.accumulation).toBe(16);
    // A model whose single image does not fit is left for checkBudgets to refuse, with what to do.
    const huge = fit({ preset: 'celebahq256', batchSize: 4 });
    expect(huge.train.accumulation).toBe(1);
    expect(() => checkBudgets({ type: 'train', config: huge }, DEFAULT_LIMITS)).toThrow(/raise accumulation/);
    const one = fit({ preset: 'celebahq256', batchSize: 1 });
    expect(() => checkBudgets({ type: 'train', config: one }, DEFAULT_LIMITS)).toThrow(
      /one image a micro-batch is the smallest split: this model needs a larger step-memory budget/,
    );
  });

  it('estimate memory from the architecture, growing with the micro-batch', () => {
    const config = train({ preset: 'tiny32' }).config.train;
    // Measured on wasm: 2870 MiB for a tiny32 step of 64 images; the estimate stays above it.
    expect(trainingStepBytes(config, 64) / 2 ** 20).toBeGreaterThan(2870);
    expect(trainingStepBytes(config, 64) / 2 ** 20).toBeLessThan(2870 * 1.3);
    expect(trainingStepBytes(config, 2)).toBeLessThan(trainingStepBytes(config, 4));
    expect(checkpointBytes(config)).toBe(1_624_323 * 16);
  });

  it('refuse steps, checkpoint storage, procedural size and final grids over their limits', () => {
    expect(() => checkBudgets(train({ steps: 2_000_000 }), DEFAULT_LIMITS)).toThrow(
      /steps 2000000 is more than 1000000, over this server's limit maxSteps/,
    );
    expect(() =>
      checkBudgets(
        train({ preset: 'cifar10', batchSize: 128, accumulation: 16, keepCheckpoints: 100 }),
        DEFAULT_LIMITS,
      ),
    ).toThrow(/keepCheckpoints 100 .* maxCheckpointStorageMb/);
    expect(() => checkBudgets(train({ dataset: 'procedural:shapes?size=2000000000' }), DEFAULT_LIMITS)).toThrow(
      /procedural dataset's size 2000000000 .* maxDatasetImages/,
    );
    expect(() => checkBudgets(train({ sampleCount: 64 }), { ...DEFAULT_LIMITS, maxSampleImages: 16 })).toThrow(
      /sampleCount 64 .* maxSampleImages/,
    );
  });

  it('count the frames of progressive sampling', () => {
    const grid = resolveSampleJob({ trainJobId: 'train-x', count: 64 }, 1000);
    expect(() => checkBudgets({ type: 'sample', config: grid }, DEFAULT_LIMITS)).not.toThrow();
    const strip = resolveSampleJob({ trainJobId: 'train-x', kind: 'progressive', count: 64, every: 1 }, 1000);
    expect(() => checkBudgets({ type: 'sample', config: strip }, DEFAULT_LIMITS)).toThrow(
      /64 samples × 1001 frames = 64064 images .* maxSampleImages/,
    );
  });

  it('bound evaluations', () => {
    const ok = resolveEvalJob({ trainJobId: 'train-x', metrics: ['fd'], count: 1000, dataset: 'fashion-mnist' }, 1000);
    expect(() => checkBudgets({ type: 'eval', config: ok }, DEFAULT_LIMITS)).not.toThrow();
    expect(() => checkBudgets({ type: 'eval', config: ok }, { ...DEFAULT_LIMITS, maxEvalImages: 500 })).toThrow(
      /maxEvalImages/,
    );
  });

  it('name each limit as the caller says (the service: by its environment variable)', () => {
    const names: LimitNames = {
      maxStepMemoryMb: 'STEP_MB',
      maxSteps: 'STEPS',
      maxSampleImages: 'SAMPLES',
      maxCheckpointStorageMb: 'CKPT_MB',
      maxDatasetImages: 'DATASET',
      maxEvalImages: 'EVAL',
      maxJobSeconds: 'SECONDS',
    };
    expect(() => checkBudgets(train({ steps: 2_000_000 }), DEFAULT_LIMITS, names)).toThrow(
      /steps 2000000 is more than 1000000, over this server's limit STEPS$/,
    );
    const fitted = fitAccumulation(train({ preset: 'cifar10', batchSize: 128 }).config, {}, 3584, names);
    expect(fitted.adjustments?.[0]?.reason).toMatch(/\(STEP_MB\)/);
  });
});
