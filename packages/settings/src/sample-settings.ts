/**
 * The settings of sampling from a trained run: `ddpm sample` / `ddpm progressive` locally, and
 * sample jobs (the same settings plus the train job to sample from). The sampler options are the
 * shared spec of sampler-settings.ts.
 */
import { type Static, Type } from '@sinclair/typebox';

import { configError } from './errors';
import { SamplingGroupConfig, groupSettings, resolveGroup } from './group-settings';
import { SAMPLER_SETTINGS, SamplerSpec, resolveSampler } from './sampler-settings';
import {
  type RequestOf,
  type SettingTable,
  checkRequest,
  literalUnion,
  optional,
  requestSchema,
  valuesOf,
  withDefault,
} from './setting';

/** Job ids: what the API issues, and all it accepts where a job is named. */
export const JOB_ID_PATTERN = '^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$';

/** Reference models shipped with the service (@ddpm/pretrained holds their weights and manifests). */
export const PRETRAINED_MODELS = ['fashion-mnist-cpu'] as const;
export type PretrainedName = (typeof PRETRAINED_MODELS)[number];

export const SAMPLE_KINDS = ['grid', 'progressive'] as const;
export type SampleKind = (typeof SAMPLE_KINDS)[number];

export const SAMPLE_SETTINGS = {
  step: optional({
    schema: Type.Integer({ minimum: 0, maximum: 10_000_000 }),
    path: 'step',
    flag: 'step',
    placeholder: 'N',
    help: 'the checkpoint (training step) to sample',
    whenAbsent: 'the newest valid checkpoint',
  }),
  kind: withDefault({
    schema: literalUnion(SAMPLE_KINDS),
    path: 'kind',
    flag: 'kind',
    placeholder: 'KIND',
    help: "grid: samples in a grid; progressive: each chain's x̂₀ every few steps, x_T to x₀ left to right (Eq. 15, Fig. 6)",
    default: 'grid',
  }),
  count: optional({
    schema: Type.Integer({ minimum: 1, maximum: 1024 }),
    path: 'count',
    flag: 'count',
    short: 'n',
    placeholder: 'N',
    help: 'samples (grid), or chains, one per row (progressive)',
    whenAbsent: '16 (grid), 4 (progressive)',
  }),
  ...SAMPLER_SETTINGS,
  ema: withDefault({
    schema: Type.Boolean(),
    path: 'ema',
    flag: 'ema',
    help: 'sample with the EMA weights (--no-ema: the raw weights)',
    default: true,
    paper: { value: true, source: 'Appendix B' },
  }),
  every: optional({
    schema: Type.Integer({ minimum: 1, maximum: 100_000 }),
    path: 'every',
    flag: 'every',
    placeholder: 'K',
    help: 'progressive: a frame every K sampling steps',
    whenAbsent: 'a tenth of the sampling steps',
  }),
} satisfies SettingTable;

/** The train job a sample or eval job works on (jobs only: locally, --checkpoint names the run); or `pretrained` names a shipped model. */
export function trainJobIdSetting(help: string) {
  return optional({
    schema: Type.String({ pattern: JOB_ID_PATTERN }),
    path: 'trainJobId',
    flag: 'train-job',
    placeholder: 'ID',
    help,
    whenAbsent: 'pretrained names the model',
    scope: 'job',
  });
}

export const SAMPLE_JOB_SETTINGS = {
  trainJobId: trainJobIdSetting('the train job whose checkpoints to sample'),
  pretrained: pretrainedSetting('sampled'),
  ...SAMPLE_SETTINGS,
  ...groupSettings('sampling'),
} satisfies SettingTable;

export type SampleRequest = RequestOf<typeof SAMPLE_SETTINGS>;
export const SampleJobRequest = requestSchema(
  SAMPLE_JOB_SETTINGS,
  'a sample job: pictures from a train job’s checkpoint',
);
export type SampleJobRequest = RequestOf<typeof SAMPLE_JOB_SETTINGS>;

const sampleConfigProperties = {
  step: Type.Optional(Type.Integer({ description: 'the checkpoint; absent: the newest valid one' })),
  kind: literalUnion(SAMPLE_KINDS),
  count: Type.Integer(),
  sampler: SamplerSpec,
  seed: Type.Integer(),
  ema: Type.Boolean(),
  every: Type.Optional(Type.Integer({ description: 'progressive only: a frame every `every` steps' })),
};
export const SampleConfig = Type.Object(sampleConfigProperties, {
  additionalProperties: false,
  description: 'what to sample, resolved',
});
export type SampleConfig = Static<typeof SampleConfig>;
export const SampleJobConfig = Type.Object(
  {
    trainJobId: Type.Optional(Type.String({ pattern: JOB_ID_PATTERN })),
    pretrained: Type.Optional(literalUnion(PRETRAINED_MODELS)),
    ...sampleConfigProperties,
    group: Type.Optional(SamplingGroupConfig),
  },
  { additionalProperties: false, description: 'the effective configuration of a sample job, every default filled in' },
);
export type SampleJobConfig = Static<typeof SampleJobConfig>;

/** Resolves sampling settings for a model of `numTimesteps` diffusion steps. */
export function resolveSample(request: SampleRequest, numTimesteps: number): SampleConfig {
  checkRequest(SAMPLE_SETTINGS, request, 'sample');
  const v = valuesOf(SAMPLE_SETTINGS, request);
  const sampler = resolveSampler(v, numTimesteps, { steps: 'steps', eta: 'eta', etaGiven: request.eta !== undefined });
  switch (v.kind) {
    case 'grid':
      if (v.every !== undefined) throw configError('every applies to progressive sampling only (kind "progressive")');
      return {
        ...(v.step !== undefined ? { step: v.step } : {}),
        kind: v.kind,
        count: v.count ?? 16,
        sampler,
        seed: v.seed,
        ema: v.ema,
      };
    case 'progressive': {
      if (sampler.kind !== 'ancestral')
        throw configError('progressive sampling uses the ancestral sampler (Algorithm 2)');
      const every = v.every ?? Math.max(1, Math.floor(sampler.steps / 10));
      if (every > sampler.steps) throw configError(`every ${every} exceeds the ${sampler.steps} sampling steps`);
      return {
        ...(v.step !== undefined ? { step: v.step } : {}),
        kind: v.kind,
        count: v.count ?? 4,
        sampler,
        seed: v.seed,
        ema: v.ema,
        every,
      };
    }
    default: {
      const unreachable: never = v.kind;
      throw configError(`unknown sample kind ${JSON.stringify(unreachable)}`);
    }
  }
}

/** The setting that names a shipped model to a sample or eval job. */
export function pretrainedSetting(use: string) {
  return optional({
    schema: literalUnion(PRETRAINED_MODELS),
    path: 'pretrained',
    flag: 'pretrained',
    placeholder: 'NAME',
    help: `a reference model shipped with the service, ${use} instead of a train job's checkpoint (its EMA weights): ${PRETRAINED_MODELS.join(' | ')}`,
    whenAbsent: 'trainJobId names the run',
    scope: 'job',
  });
}

/** Checks that a sample or eval job names exactly one model: a train job's run or a shipped one (whose one set of weights is its EMA). */
export function checkSampleSource(
  request: {
    readonly trainJobId?: string;
    readonly pretrained?: string;
    readonly step?: number;
    readonly ema?: boolean;
  },
  job: 'sample' | 'eval' = 'sample',
): void {
  if ((request.trainJobId === undefined) === (request.pretrained === undefined)) {
    throw configError(
      `${job === 'sample' ? 'a sample' : 'an eval'} job names either trainJobId (a run of this service) or pretrained (a shipped model), not both and not neither`,
    );
  }
  if (request.pretrained !== undefined && request.step !== undefined)
    throw configError(`step applies to a train job's checkpoints; the pretrained model ${request.pretrained} has one`);
  if (request.pretrained !== undefined && request.ema === false)
    throw configError(`the pretrained model ${request.pretrained} ships its EMA weights only`);
}

/** Resolves a sample job, given the T of the run (or shipped model) it samples. */
export function resolveSampleJob(request: SampleJobRequest, numTimesteps: number): SampleJobConfig {
  checkRequest(SAMPLE_JOB_SETTINGS, request, 'sample');
  checkSampleSource(request);
  // The sampling settings alone, without the source and the group's settings.
  const {
    trainJobId,
    pretrained,
    workers: _w,
    minWorkers: _m,
    joinTimeoutSeconds: _j,
    rankTimeoutSeconds: _r,
    maxRestarts: _x,
    ...rest
  } = request;
  const v = valuesOf(SAMPLE_JOB_SETTINGS, request);
  const group = resolveGroup(v);
  const sample = resolveSample(rest, numTimesteps);
  if (group.workers > 1 && sample.kind !== 'grid')
    throw configError(
      `workers ${group.workers}: only grid sampling is split across workers (a ${sample.kind} strip is one chain per row, drawn by one process)`,
    );
  return {
    ...(trainJobId !== undefined ? { trainJobId } : {}),
    ...(pretrained !== undefined ? { pretrained } : {}),
    ...sample,
    group,
  };
}
