import { Value } from '@sinclair/typebox/value';

import { EVAL_JOB_SETTINGS, resolveEvalJob } from './eval-settings';
import { oneProcessGroup } from './group-settings';
import { SAMPLE_JOB_SETTINGS, SAMPLE_SETTINGS, resolveSample, resolveSampleJob } from './sample-settings';
import { type SettingTable, checkRequest, problemWith, valueAt } from './setting';
import {
  TrainJobConfig,
  TrainRequest,
  resolveTrainJob,
  resumedConfig,
  validateTrainConfig,
  validateTrainJobConfig,
} from './train-config';
import { RECIPES } from './recipes';
import { TRAIN_SETTINGS } from './train-settings';

const tiny = { dataset: 'procedural:shapes?size=16&channels=1', preset: 'micro32', steps: 3 } as const;

/** A valid value for each setting that differs from its default, to see where it lands. */
const DISTINCT: Record<keyof typeof TRAIN_SETTINGS, unknown> = {
  recipe: 'fashion-mnist-cpu',
  dataset: 'cifar10:/srv/cifar10?split=test',
  preset: 'tiny32',
  steps: 77,
  budgetMinutes: 42.5,
  batchSize: 12,
  accumulation: 3,
  learningRate: 3e-4,
  warmupSteps: 17,
  gradClipNorm: 2.5,
  adamBeta1: 0.8,
  adamBeta2: 0.99,
  adamEpsilon: 1e-6,
  emaDecay: 0.995,
  emaWarmup: true,
  dropout: 0.2,
  schedule: 'quadratic',
  timesteps: 400,
  betaStart: 2e-4,
  betaEnd: 0.03,
  meanType: 'xstart',
  varianceType: 'fixedsmall',
  lossType: 'weighted-mse',
  randomFlip: false,
  seed: 9,
  checkpointEvery: 5,
  checkpointEverySeconds: 90.5,
  keepCheckpoints: 7,
  sampleCount: 4,
  sampleSampler: 'ddim',
  sampleSteps: 40,
  sampleEta: 0.5,
  sampleSeed: 11,
  sampleEvery: 20,
  evalEvery: 25,
  evalMetrics: ['kid', 'nll'],
  evalCount: 300,
  evalSampler: 'ddim',
  evalSteps: 30,
  evalEta: 1,
  evalSeed: 5,
  evalExtractor: 'fmnist_cnn',
  evalReferenceCount: 5000,
  evalNllImages: 8,
  workers: 2,
  minWorkers: 1,
  joinTimeoutSeconds: 60,
  rankTimeoutSeconds: 12,
  maxRestarts: 5,
  gradientTransport: 'bf16',
  checksumEvery: 7,
};

describe('the train settings table', () => {
  it('resolves a minimal request with every default filled in, from the table', () => {
    const config = resolveTrainJob(tiny);
    expect(Value.Check(TrainJobConfig, config)).toBe(true);
    expect(config.evaluation).toBeUndefined();
    const withEval = resolveTrainJob({ ...tiny, dataset: 'fashion-mnist:', evalEvery: 10 });
    for (const [name, setting] of Object.entries<(typeof TRAIN_SETTINGS)[keyof typeof TRAIN_SETTINGS]>(
      TRAIN_SETTINGS,
    )) {
      // η exists only in a DDIM sampler's resolved spec; evaluation rows only with evalEvery.
      if (setting.presence !== 'default' || name.endsWith('Eta')) continue;
      expect([name, valueAt(setting.path.startsWith('evaluation.') ? withEval : config, setting.path)]).toEqual([
        name,
        setting.default,
      ]);
    }
    expect(withEval.evaluation).toEqual({
      every: 10,
      metrics: ['fd'],
      samples: { count: 256, sampler: { kind: 'ancestral', steps: 1000 }, seed: 0, ema: true },
      extractor: 'fmnist_cnn',
      reference: { split: 'train' },
      nll: { images: 16 },
    });
    expect(config.train.model).toEqual({ preset: 'micro32' });
    expect(config.finalGrid.sampler).toEqual({ kind: 'ancestral', steps: 1000 });
  });

  it('puts every setting exactly where its row says', () => {
    const request = Object.fromEntries(Object.entries(DISTINCT)) as TrainRequest;
    const config = resolveTrainJob(request);
    for (const [name, setting] of Object.entries(TRAIN_SETTINGS)) {
      expect([name, valueAt(config, setting.path)]).toEqual([name, DISTINCT[name as keyof typeof DISTINCT]]);
    }
    expect(Object.keys(DISTINCT).sort()).toEqual(Object.keys(TRAIN_SETTINGS).sort());
  });

  it.each([
    ['train', TRAIN_SETTINGS],
    ['sample job', SAMPLE_JOB_SETTINGS],
    ['eval job', EVAL_JOB_SETTINGS],
  ] as [string, SettingTable][])(
    '%s: flags are unique, defaults are valid, and a default that is not the paper says why',
    (_name, table) => {
      const flags = Object.values(table).map((s) => s.flag);
      expect(new Set(flags).size).toBe(flags.length);
      for (const [name, s] of Object.entries(table)) {
        if (s.presence === 'default') expect([name, problemWith(name, s, s.default)]).toEqual([name, undefined]);
        if (s.paper) expect([name, problemWith(name, s, s.paper.value)]).toEqual([name, undefined]);
        const differs = s.presence === 'default' && s.paper !== undefined && !Value.Equal(s.paper.value, s.default);
        expect([name, differs]).toEqual([name, s.differsFromPaper !== undefined]);
        if (s.presence === 'optional') expect(s.whenAbsent).toBeTruthy();
        if (s.presence !== 'default') expect(s.default).toBeUndefined();
      }
    },
  );

  it('differs from the paper only where it says so: the batch size', () => {
    expect(
      Object.entries(TRAIN_SETTINGS)
        .filter(([, s]) => 'differsFromPaper' in s && s.differsFromPaper)
        .map(([n]) => n),
    ).toEqual(['batchSize']);
  });

  it.each([
    [{ batchSize: 0 }, 'batchSize must be an integer in [1, 4096], got 0'],
    [{ learningRate: 1 }, 'learningRate must be a number in (0, 1), got 1'],
    [
      { schedule: 'sigmoid' },
      'schedule must be one of linear, quadratic, constant, warmup10, warmup50, jsd, cosine, got "sigmoid"',
    ],
    [{ emaWarmup: 'yes' }, 'emaWarmup must be true or false, got "yes"'],
    [{ colour: 'red' }, /train request has no setting "colour"; it takes recipe, dataset, preset/],
    [{ batchSize: 6, accumulation: 4 }, 'batchSize 6 must be divisible by accumulation 4'],
    [{ varianceType: 'learned' }, /no training signal/],
    [
      { dataset: 'procedural:shapes?colour=red' },
      'dataset procedural has no option "colour"; it takes size, imageSize, channels, seed',
    ],
    [{ sampleEta: 0.3 }, 'sampleEta applies to the ddim sampler only'],
    [{ timesteps: 100, sampleSteps: 101 }, "sampleSteps 101 exceeds the model's T = 100 diffusion steps"],
    [{ dataset: 'procedural:shapes?size=16&channels=3', preset: 'tiny32', dropout: 0.99999 }, null],
    [{ evalMetrics: ['nll'] }, 'evalMetrics applies to evaluation during training, which evalEvery turns on'],
    [
      { evalEvery: 5 },
      'procedural data has no fixed reference set for fd, kid or is during training; use evalMetrics nll',
    ],
    [{ evalEvery: 5, evalMetrics: ['nll'] }, null],
    [
      { dataset: 'procedural:shapes?imageSize=1024', preset: 'micro32' },
      /dataset procedural:shapes\?imageSize=1024 has 1024x1024 images but the model takes 32x32/,
    ],
    [
      { dataset: 'procedural:shapes?imageSize=16&channels=3', preset: 'micro32' },
      /has 3 channel\(s\) but the model takes 1/,
    ],
    [{ dataset: 'cifar10:/usr/share/datasets/cifar10', preset: 'nano8' }, /has 32x32 images but the model takes 8x8/],
    [{ dataset: 'fashion-mnist', preset: 'tiny32' }, /has 1 channel\(s\) but the model takes 3/],
    [{ dataset: 'fashion-mnist', preset: 'micro32' }, null],
    [{ dataset: 'procedural:shapes?imageSize=16', preset: 'micro32' }, null],
    [
      { evalEvery: 5, evalMetrics: ['nll'], timesteps: 100, evalSteps: 200 },
      "evalSteps 200 exceeds the model's T = 100 diffusion steps",
    ],
  ])('refuses %j with a message naming the setting', (extra, message) => {
    const attempt = (): unknown => resolveTrainJob({ ...tiny, ...extra } as TrainRequest);
    if (message === null) {
      expect(attempt).not.toThrow();
      return;
    }
    expect(attempt).toThrow(message);
    try {
      attempt();
    } catch (err) {
      expect(err).toMatchObject({ kind: 'invalid', permanent: true });
    }
  });

  it('splits a group’s step among its ranks: one micro-batch each unless asked otherwise', () => {
    expect(resolveTrainJob({ ...tiny, workers: 2 }).train.accumulation).toBe(2);
    expect(resolveTrainJob({ ...tiny, workers: 2 }).group).toEqual({
      workers: 2,
      minWorkers: 2,
      joinTimeoutSeconds: 600,
      rankTimeoutSeconds: 30,
      maxRestarts: 3,
      transport: 'fp32',
      checksumEvery: 100,
    });
    expect(resolveTrainJob({ ...tiny, workers: 2, accumulation: 4, batchSize: 16 }).train.accumulation).toBe(4);
    expect(() => resolveTrainJob({ ...tiny, workers: 3, accumulation: 2, batchSize: 16 })).toThrow(
      'accumulation 2 gives 3 workers nothing to split: it must be at least workers',
    );
    expect(() => resolveTrainJob({ ...tiny, workers: 2, minWorkers: 3 })).toThrow('minWorkers 3 exceeds workers 2');
    expect(() => resolveTrainJob({ ...tiny, workers: 3, batchSize: 16 })).toThrow(
      'batchSize 16 must be divisible by accumulation 3',
    );
  });

  it('refuses a request without a required setting, naming it', () => {
    expect(() => resolveTrainJob({ dataset: 'fashion-mnist', preset: 'micro32' })).toThrow(
      'train request needs steps (--steps): optimizer steps of the run (or a recipe that gives it)',
    );
    expect(() => resolveTrainJob({ preset: 'micro32', steps: 3 })).toThrow(
      /train request needs dataset \(--dataset\): dataset spec/,
    );
    expect(() => checkRequest(SAMPLE_JOB_SETTINGS, {}, 'sample')).not.toThrow();
    expect(() => checkRequest(EVAL_JOB_SETTINGS, { trainJobId: 'train-a' }, 'eval')).toThrow(
      /eval request needs metrics/,
    );
    // Which model (a run or a shipped one) is checked beside the table: either names it.
    expect(() => checkRequest(EVAL_JOB_SETTINGS, { metrics: ['nll'] }, 'eval')).not.toThrow();
  });

  it('takes a recipe’s settings as the request’s defaults, the request’s own first, and records the recipe', () => {
    const recipe = RECIPES['fashion-mnist-cpu'].request;
    const config = resolveTrainJob({ recipe: 'fashion-mnist-cpu' });
    expect(config.recipe).toBe('fashion-mnist-cpu');
    expect(config.train).toMatchObject({
      dataset: recipe.dataset,
      model: { preset: recipe.preset },
      steps: recipe.steps,
      budgetMinutes: recipe.budgetMinutes,
      batchSize: recipe.batchSize,
    });
    expect(config.train.optimizer).toMatchObject({
      learningRate: recipe.learningRate,
      warmupSteps: recipe.warmupSteps,
    });
    expect(config.train.ema).toEqual({ decay: recipe.emaDecay, warmup: recipe.emaWarmup });
    const mine = resolveTrainJob({ recipe: 'fashion-mnist-cpu', learningRate: 5e-4, budgetMinutes: 5, workers: 2 });
    expect([
      mine.train.optimizer.learningRate,
      mine.train.budgetMinutes,
      mine.train.batchSize,
      mine.group.workers,
    ]).toEqual([5e-4, 5, recipe.batchSize, 2]);
    expect(resolveTrainJob(tiny).recipe).toBeUndefined();
    expect(() => resolveTrainJob({ recipe: 'cifar-gpu' } as never)).toThrow(
      'recipe must be "fashion-mnist-cpu", got "cifar-gpu"',
    );
  });

  it('checks bounds of configurations that did not come through a request (a queue, a checkpoint)', () => {
    const config = resolveTrainJob(tiny);
    expect(() => validateTrainConfig({ ...config.train, batchSize: 100_000 })).toThrow(
      'batchSize (train.batchSize) must be an integer in [1, 4096], got 100000',
    );
    expect(() =>
      validateTrainConfig({ ...config.train, optimizer: { ...config.train.optimizer, learningRate: -1 } }),
    ).toThrow(/learningRate \(train.optimizer.learningRate\) must be a number in \(0, 1\)/);
    expect(() => validateTrainConfig({ ...config.train, surprise: 1 } as never)).toThrow(
      /training configuration is malformed/,
    );
    expect(() => validateTrainJobConfig({ ...config, group: { ...config.group, workers: 0 } })).toThrow(
      /workers \(group.workers\) must be an integer in \[1, 256\]/,
    );
    expect(() => validateTrainJobConfig(config)).not.toThrow();
  });

  it('resumes with the stored configuration, the new length and cadence, and names what it kept', () => {
    const stored = resolveTrainJob({ ...tiny, learningRate: 1e-3 }).train;
    const requested = resolveTrainJob({ ...tiny, steps: 50, checkpointEvery: 5, batchSize: 8 }).train;
    const { config, ignored } = resumedConfig(stored, requested);
    expect(config).toEqual({ ...stored, steps: 50, checkpointEvery: 5 });
    expect(ignored).toEqual([
      'optimizer.learningRate: 0.0002 requested, 0.001 kept',
      'batchSize: 8 requested, 16 kept',
    ]);
    expect(resumedConfig(stored, { ...stored, steps: 9 }).ignored).toEqual([]);
  });

  it('resumes with the request’s time budget, whether it adds, changes or drops one', () => {
    const stored = resolveTrainJob({ ...tiny, budgetMinutes: 30 }).train;
    expect(stored.budgetMinutes).toBe(30);
    expect(resumedConfig(stored, resolveTrainJob({ ...tiny, budgetMinutes: 90 }).train)).toEqual({
      config: { ...stored, budgetMinutes: 90 },
      ignored: [],
    });
    const { budgetMinutes: _b, ...unbudgeted } = stored;
    expect(resumedConfig(stored, resolveTrainJob(tiny).train)).toEqual({ config: unbudgeted, ignored: [] });
    expect(() => resolveTrainJob({ ...tiny, budgetMinutes: 0 })).toThrow(/budgetMinutes/);
  });
});

describe('the sample settings', () => {
  it('shares the sampler rows with the train job’s final grid', () => {
    for (const name of ['sampler', 'steps', 'eta', 'seed'] as const) {
      const own = SAMPLE_SETTINGS[name];
      const grid = TRAIN_SETTINGS[`sample${name[0]!.toUpperCase()}${name.slice(1)}` as 'sampleSteps'];
      expect([name, own.schema, own.presence, own.default]).toEqual([name, grid.schema, grid.presence, grid.default]);
      expect(grid.flag).toBe(`sample-${own.flag}`);
      expect(grid.path).toBe(`finalGrid.${own.path}`);
    }
  });

  it('resolves defaults that depend on the kind and on T', () => {
    expect(resolveSample({}, 1000)).toEqual({
      kind: 'grid',
      count: 16,
      sampler: { kind: 'ancestral', steps: 1000 },
      seed: 0,
      ema: true,
    });
    expect(resolveSample({ kind: 'progressive', steps: 50 }, 1000)).toEqual({
      kind: 'progressive',
      count: 4,
      sampler: { kind: 'ancestral', steps: 50 },
      seed: 0,
      ema: true,
      every: 5,
    });
    expect(resolveSample({ sampler: 'ddim', step: 3, ema: false }, 20)).toEqual({
      step: 3,
      kind: 'grid',
      count: 16,
      sampler: { kind: 'ddim', steps: 20, eta: 0 },
      seed: 0,
      ema: false,
    });
    expect(resolveSampleJob({ trainJobId: 'train-x', count: 2 }, 10)).toMatchObject({
      trainJobId: 'train-x',
      count: 2,
    });
  });

  it.each([
    [{ every: 5 }, 'every applies to progressive sampling only (kind "progressive")'],
    [{ kind: 'progressive', sampler: 'ddim' }, 'progressive sampling uses the ancestral sampler (Algorithm 2)'],
    [{ kind: 'progressive', steps: 10, every: 11 }, 'every 11 exceeds the 10 sampling steps'],
    [{ steps: 1001 }, "steps 1001 exceeds the model's T = 1000 diffusion steps"],
    [{ eta: 1 }, 'eta applies to the ddim sampler only'],
    [{ count: 0 }, 'count must be an integer in [1, 1024], got 0'],
  ])('refuses %j', (request, message) => {
    expect(() => resolveSample(request as never, 1000)).toThrow(message);
  });

  it('resolves eval jobs, checking the dataset spec', () => {
    expect(resolveEvalJob({ trainJobId: 'train-a', metrics: ['nll'] }, 1000)).toEqual({
      trainJobId: 'train-a',
      metrics: ['nll'],
      samples: { count: 1000, sampler: { kind: 'ancestral', steps: 1000 }, seed: 0, ema: true },
      extractor: 'fmnist_cnn',
      reference: { split: 'train' },
      nll: { images: 64 },
      group: { workers: 1, minWorkers: 1, joinTimeoutSeconds: 600, rankTimeoutSeconds: 30, maxRestarts: 3 },
    });
    expect(
      resolveEvalJob(
        {
          trainJobId: 'train-a',
          metrics: ['fd', 'kid'],
          sampler: 'ddim',
          steps: 20,
          count: 500,
          referenceSplit: 'test',
          referenceCount: 2000,
          ema: false,
        },
        1000,
      ),
    ).toMatchObject({
      samples: { count: 500, sampler: { kind: 'ddim', steps: 20, eta: 0 }, seed: 0, ema: false },
      reference: { split: 'test', count: 2000 },
    });
    expect(() => resolveEvalJob({ trainJobId: 'train-a', metrics: ['nll'], dataset: 'imagenet' }, 1000)).toThrow(
      /unknown dataset kind "imagenet"/,
    );
    expect(() => resolveEvalJob({ trainJobId: 'train-a', metrics: ['fd', 'fd'] } as never, 1000)).toThrow(
      /metrics must be a list of 1 to 5 distinct values/,
    );
    expect(() => resolveEvalJob({ trainJobId: 'train-a', metrics: ['fd'], steps: 2000 }, 1000)).toThrow(
      /steps 2000 exceeds the model's T = 1000/,
    );
    expect(() =>
      resolveEvalJob({ trainJobId: 'train-a', metrics: ['fd'], dataset: 'procedural:shapes' }, 1000),
    ).toThrow(/procedural data has no fixed reference set/);
    expect(
      resolveEvalJob({ trainJobId: 'train-a', metrics: ['fd'], referenceStatistics: 'stats/cifar10-train.npz' }, 1000)
        .reference,
    ).toEqual({ split: 'train', statistics: 'stats/cifar10-train.npz' });
    expect(() =>
      resolveEvalJob(
        { trainJobId: 'train-a', metrics: ['fd'], referenceStatistics: 'a.npz', referenceCount: 10 },
        1000,
      ),
    ).toThrow(/referenceCount applies to statistics computed from the dataset/);
    expect(() =>
      resolveEvalJob({ trainJobId: 'train-a', metrics: ['fd'], referenceStatistics: '../../etc/x.npz' }, 1000),
    ).toThrow(/referenceStatistics/);
  });

  it('resolves an eval job of a shipped model, and refuses one naming both models, neither, or what a shipped model lacks', () => {
    const config = resolveEvalJob({ pretrained: 'fashion-mnist-cpu', metrics: ['fd'], steps: 50 }, 1000);
    expect(config).toMatchObject({
      pretrained: 'fashion-mnist-cpu',
      metrics: ['fd'],
      samples: { sampler: { kind: 'ancestral', steps: 50 }, ema: true },
    });
    expect(config).not.toHaveProperty('trainJobId');
    expect(() => resolveEvalJob({ metrics: ['fd'] }, 1000)).toThrow(
      'an eval job names either trainJobId (a run of this service) or pretrained (a shipped model), not both and not neither',
    );
    expect(() =>
      resolveEvalJob({ trainJobId: 'train-a', pretrained: 'fashion-mnist-cpu', metrics: ['fd'] }, 1000),
    ).toThrow(/not both and not neither/);
    expect(() => resolveEvalJob({ pretrained: 'fashion-mnist-cpu', metrics: ['fd'], step: 3 }, 1000)).toThrow(
      "step applies to a train job's checkpoints; the pretrained model fashion-mnist-cpu has one",
    );
    expect(() => resolveEvalJob({ pretrained: 'fashion-mnist-cpu', metrics: ['fd'], ema: false }, 1000)).toThrow(
      'the pretrained model fashion-mnist-cpu ships its EMA weights only',
    );
    expect(() => resolveEvalJob({ pretrained: 'cifar10-hours' as never, metrics: ['fd'] }, 1000)).toThrow(/pretrained/);
  });

  it('resolves sampling groups for sample and eval jobs, refusing what a group cannot split', () => {
    expect(
      resolveSampleJob({ trainJobId: 'train-x', workers: 3, minWorkers: 2, rankTimeoutSeconds: 5 }, 10).group,
    ).toEqual({ workers: 3, minWorkers: 2, joinTimeoutSeconds: 600, rankTimeoutSeconds: 5, maxRestarts: 3 });
    expect(resolveSampleJob({ trainJobId: 'train-x' }, 10).group).toEqual({
      workers: 1,
      minWorkers: 1,
      joinTimeoutSeconds: 600,
      rankTimeoutSeconds: 30,
      maxRestarts: 3,
    });
    expect(oneProcessGroup()).toEqual(resolveSampleJob({ trainJobId: 'train-x' }, 10).group);
    expect(() => resolveSampleJob({ trainJobId: 'train-x', kind: 'progressive', workers: 2 }, 10)).toThrow(
      'workers 2: only grid sampling is split across workers',
    );
    expect(() => resolveSampleJob({ trainJobId: 'train-x', workers: 2, minWorkers: 3 }, 10)).toThrow(
      'minWorkers 3 exceeds workers 2',
    );
    expect(() => resolveSampleJob({ trainJobId: 'train-x', workers: 0 }, 10)).toThrow(
      /workers must be an integer in \[1, 256\], got 0/,
    );
    expect(resolveEvalJob({ trainJobId: 'train-a', metrics: ['fd', 'nll'], workers: 2 }, 1000).group).toMatchObject({
      workers: 2,
      minWorkers: 2,
    });
    expect(() => resolveEvalJob({ trainJobId: 'train-a', metrics: ['nll', 'rd'], workers: 2 }, 1000)).toThrow(
      'workers 2 share the samples of fd, kid and is, and metrics nll, rd draw none',
    );
    // Local sampling runs in one process: the group rows are the jobs' only.
    expect(() => resolveSample({ workers: 2 } as never, 10)).toThrow(/workers/);
  });
});
