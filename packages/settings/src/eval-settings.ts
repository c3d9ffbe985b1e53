/**
 * The settings of evaluation jobs: which checkpoint, which metrics, how the samples are drawn,
 * which feature extractor and which reference statistics. The resolved configuration records
 * every setting that affects comparability, and so does the result.
 */
import { parseDatasetSpec } from '@ddpm/data/spec';
import { type Static, Type } from '@sinclair/typebox';

import { configError } from './errors';
import { SamplingGroupConfig, groupSettings, resolveGroup } from './group-settings';
import {
  JOB_ID_PATTERN,
  PRETRAINED_MODELS,
  checkSampleSource,
  pretrainedSetting,
  trainJobIdSetting,
} from './sample-settings';
import { SamplerSpec, resolveSampler, samplerSettingsAt } from './sampler-settings';
import {
  type RequestOf,
  type SettingTable,
  checkRequest,
  literalUnion,
  optional,
  required,
  requestSchema,
  valuesOf,
  withDefault,
} from './setting';

/**
 * - `nll`: the test-set bound in bits/dim (Table 1), over the data's own dimensions;
 * - `fd`: the Fréchet distance of the extractor's features (reported as `fid` only for the FID
 *   Inception with its published weights, otherwise as `fd_<extractor>`);
 * - `kid`: the Kernel Inception Distance of the same features;
 * - `is`: the Inception Score of the extractor's logits;
 * - `rd`: the progressive-coding rate–distortion series of Table 4 (all T terms of the bound on
 *   the NLL's test images: T network passes per batch), as CSV and a PNG plot; eval jobs only.
 */
export const EVAL_METRICS = ['nll', 'fd', 'kid', 'is', 'rd'] as const;
export type EvalMetric = (typeof EVAL_METRICS)[number];
/** What an evaluation during training may measure (the rate–distortion series is an eval job's). */
export const TRAINING_EVAL_METRICS = ['nll', 'fd', 'kid', 'is'] as const;
/** The metrics measured on generated samples (through a feature extractor). */
export const SAMPLE_METRICS = ['fd', 'kid', 'is'] as const;
export type SampleMetric = (typeof SAMPLE_METRICS)[number];

export function isSampleMetric(metric: string): metric is SampleMetric {
  return (SAMPLE_METRICS as readonly string[]).includes(metric);
}

/**
 * Feature extractors. `fmnist_cnn`: the offline one (Fashion-MNIST, trained by our recipe);
 * `inception_fid`: the FID Inception-v3, with weights the user converts and supplies.
 */
export const EXTRACTORS = ['fmnist_cnn', 'inception_fid'] as const;
export type ExtractorName = (typeof EXTRACTORS)[number];

export const EVAL_JOB_SETTINGS = {
  trainJobId: trainJobIdSetting('the train job whose checkpoint to evaluate'),
  pretrained: pretrainedSetting('evaluated'),
  step: optional({
    schema: Type.Integer({ minimum: 0, maximum: 10_000_000 }),
    path: 'step',
    flag: 'step',
    placeholder: 'N',
    help: 'the checkpoint (training step) to evaluate',
    whenAbsent: 'the newest valid checkpoint',
  }),
  metrics: required({
    schema: Type.Array(literalUnion(EVAL_METRICS), { minItems: 1, maxItems: 5, uniqueItems: true }),
    path: 'metrics',
    flag: 'metrics',
    placeholder: 'LIST',
    help: 'nll (the test-set bound in bits/dim), fd (Fréchet distance of the extractor’s features: FID only with the FID Inception), kid, is, rd (Table 4’s rate–distortion series on the nll images: all T terms)',
  }),
  count: withDefault({
    schema: Type.Integer({ minimum: 2, maximum: 100_000 }),
    path: 'samples.count',
    flag: 'count',
    short: 'n',
    placeholder: 'N',
    help: 'samples generated for fd, kid and is (the paper: 50,000; fewer give a biased, larger FD)',
    default: 1000,
  }),
  ...samplerSettingsAt('samples.'),
  ema: withDefault({
    schema: Type.Boolean(),
    path: 'samples.ema',
    flag: 'ema',
    help: 'sample with the EMA weights (--no-ema: the raw weights)',
    default: true,
    paper: { value: true, source: 'Appendix B' },
  }),
  extractor: withDefault({
    schema: literalUnion(EXTRACTORS),
    path: 'extractor',
    flag: 'extractor',
    placeholder: 'NAME',
    help: 'feature extractor for fd, kid and is: fmnist_cnn (offline, Fashion-MNIST only; not comparable with published FIDs) or inception_fid (FID; its weights must be supplied)',
    default: 'fmnist_cnn',
  }),
  dataset: optional({
    schema: Type.String({ minLength: 1, maxLength: 1024 }),
    path: 'reference.dataset',
    flag: 'dataset',
    placeholder: 'SPEC',
    help: 'reference data (its split option is ignored: see referenceSplit)',
    whenAbsent: "the run's dataset",
  }),
  referenceSplit: withDefault({
    schema: literalUnion(['train', 'test'] as const),
    path: 'reference.split',
    flag: 'reference-split',
    placeholder: 'SPLIT',
    help: 'the split whose statistics the samples are compared with (the NLL always uses the test split)',
    default: 'train',
    paper: { value: 'train', source: 'Sec. 4: FID against the training set' },
  }),
  referenceCount: optional({
    schema: Type.Integer({ minimum: 2, maximum: 1_000_000 }),
    path: 'reference.count',
    flag: 'reference-count',
    placeholder: 'N',
    help: 'reference images (the first N of the split)',
    whenAbsent: 'the whole split',
  }),
  referenceStatistics: optional({
    schema: Type.String({ pattern: '^(?!.*\\.\\.)[A-Za-z0-9][A-Za-z0-9_./-]{0,255}\\.npz$' }),
    path: 'reference.statistics',
    flag: 'reference-statistics',
    placeholder: 'KEY',
    help: 'an .npz of mu and sigma in the object store (e.g. the published CIFAR-10 statistics), used instead of computing them from the dataset; kid needs its features too',
    whenAbsent: 'computed from the dataset (and cached)',
  }),
  nllImages: withDefault({
    schema: Type.Integer({ minimum: 1, maximum: 100_000 }),
    path: 'nll.images',
    flag: 'nll-images',
    placeholder: 'N',
    help: 'test images for nll and rd (the first N of the test split)',
    default: 64,
  }),
  ...groupSettings('sampling'),
} satisfies SettingTable;

export const EvalJobRequest = requestSchema(
  EVAL_JOB_SETTINGS,
  'an evaluation job: metrics of a train job’s checkpoint or of a shipped model',
);
export type EvalJobRequest = RequestOf<typeof EVAL_JOB_SETTINGS>;

/** What to measure and how: an eval job's configuration without the checkpoint it names. */
export const evalSpecProperties = {
  metrics: Type.Array(literalUnion(EVAL_METRICS)),
  samples: Type.Object(
    { count: Type.Integer(), sampler: SamplerSpec, seed: Type.Integer(), ema: Type.Boolean() },
    { additionalProperties: false },
  ),
  extractor: literalUnion(EXTRACTORS),
  reference: Type.Object(
    {
      dataset: Type.Optional(Type.String({ description: "absent: the run's dataset" })),
      split: literalUnion(['train', 'test'] as const),
      count: Type.Optional(Type.Integer({ description: 'absent: the whole split' })),
      statistics: Type.Optional(
        Type.String({ description: 'an .npz in the object store used as the reference statistics' }),
      ),
    },
    { additionalProperties: false },
  ),
  nll: Type.Object({ images: Type.Integer() }, { additionalProperties: false }),
};
export const EvalSpec = Type.Object(evalSpecProperties, {
  additionalProperties: false,
  description: 'metrics, samples, extractor and reference of an evaluation',
});
export type EvalSpec = Static<typeof EvalSpec>;

export const EvalJobConfig = Type.Object(
  {
    trainJobId: Type.Optional(Type.String({ pattern: JOB_ID_PATTERN })),
    pretrained: Type.Optional(literalUnion(PRETRAINED_MODELS)),
    step: Type.Optional(Type.Integer({ description: 'the checkpoint; absent: the newest valid one' })),
    ...evalSpecProperties,
    group: Type.Optional(SamplingGroupConfig),
  },
  { additionalProperties: false, description: 'the effective configuration of an eval job, every default filled in' },
);
export type EvalJobConfig = Static<typeof EvalJobConfig>;

/** Resolves an eval job, given the T of the run it evaluates. */
export function resolveEvalJob(request: EvalJobRequest, numTimesteps: number): EvalJobConfig {
  checkRequest(EVAL_JOB_SETTINGS, request, 'eval');
  checkSampleSource(request, 'eval');
  const v = valuesOf(EVAL_JOB_SETTINGS, request);
  if (v.dataset !== undefined) {
    const spec = parseDatasetSpec(v.dataset);
    if (spec.kind === 'procedural' && v.referenceStatistics === undefined && v.metrics.some(isSampleMetric)) {
      throw configError(
        'procedural data has no fixed reference set for fd, kid or is; name a real dataset or referenceStatistics',
      );
    }
  }
  if (v.referenceStatistics !== undefined && v.referenceCount !== undefined)
    throw configError('referenceCount applies to statistics computed from the dataset, not to referenceStatistics');
  const sampler = resolveSampler(v, numTimesteps, { steps: 'steps', eta: 'eta', etaGiven: request.eta !== undefined });
  const group = resolveGroup(v);
  if (group.workers > 1 && !v.metrics.some(isSampleMetric)) {
    throw configError(
      `workers ${group.workers} share the samples of fd, kid and is, and metrics ${v.metrics.join(', ')} draw none: leave workers out`,
    );
  }
  return {
    ...(v.trainJobId !== undefined ? { trainJobId: v.trainJobId } : {}),
    ...(v.pretrained !== undefined ? { pretrained: v.pretrained } : {}),
    ...(v.step !== undefined ? { step: v.step } : {}),
    metrics: v.metrics,
    samples: { count: v.count, sampler, seed: v.seed, ema: v.ema },
    extractor: v.extractor,
    reference: {
      ...(v.dataset !== undefined ? { dataset: v.dataset } : {}),
      split: v.referenceSplit,
      ...(v.referenceCount !== undefined ? { count: v.referenceCount } : {}),
      ...(v.referenceStatistics !== undefined ? { statistics: v.referenceStatistics } : {}),
    },
    nll: { images: v.nllImages },
    group,
  };
}
