/**
 * The settings of evaluation jobs. Queued and validated; no worker consumes them until the
 * evaluation issue lands, so their resolved form is the request with the dataset spec checked.
 */
import { parseDatasetSpec } from '@ddpm/data/spec';
import { type Static, Type } from '@sinclair/typebox';

import { JOB_ID_PATTERN, trainJobIdSetting } from './sample-settings';
import { type RequestOf, type SettingTable, checkRequest, literalUnion, optional, required, requestSchema } from './setting';

export const EVAL_METRICS = ['nll', 'fid', 'is'] as const;
export type EvalMetric = (typeof EVAL_METRICS)[number];

export const EVAL_JOB_SETTINGS = {
  trainJobId: trainJobIdSetting('the train job whose checkpoint to evaluate'),
  step: optional({
    schema: Type.Integer({ minimum: 0, maximum: 10_000_000 }),
    path: 'step',
    flag: 'step',
    placeholder: 'N',
    help: 'the checkpoint (training step) to evaluate',
    whenAbsent: 'the newest valid checkpoint',
  }),
  metrics: required({
    schema: Type.Array(literalUnion(EVAL_METRICS), { minItems: 1, maxItems: 3, uniqueItems: true }),
    path: 'metrics',
    flag: 'metrics',
    placeholder: 'LIST',
    help: 'nll (the bound in bits/dim, Table 1), fid, is',
  }),
  count: optional({
    schema: Type.Integer({ minimum: 1, maximum: 100_000 }),
    path: 'count',
    flag: 'count',
    short: 'n',
    placeholder: 'N',
    help: 'samples (FID, IS) or test images (NLL)',
    whenAbsent: "each metric's own",
  }),
  dataset: optional({
    schema: Type.String({ minLength: 1, maxLength: 1024 }),
    path: 'dataset',
    flag: 'dataset',
    placeholder: 'SPEC',
    help: 'reference data',
    whenAbsent: "the run's dataset, its test split where it has one",
  }),
} satisfies SettingTable;

export const EvalJobRequest = requestSchema(EVAL_JOB_SETTINGS, 'an evaluation job (queued; processed once evaluation lands)');
export type EvalJobRequest = RequestOf<typeof EVAL_JOB_SETTINGS>;

export const EvalJobConfig = Type.Object(
  {
    trainJobId: Type.String({ pattern: JOB_ID_PATTERN }),
    step: Type.Optional(Type.Integer()),
    metrics: Type.Array(literalUnion(EVAL_METRICS)),
    count: Type.Optional(Type.Integer()),
    dataset: Type.Optional(Type.String()),
  },
  { additionalProperties: false, description: 'the effective configuration of an eval job' },
);
export type EvalJobConfig = Static<typeof EvalJobConfig>;

export function resolveEvalJob(request: EvalJobRequest): EvalJobConfig {
  checkRequest(EVAL_JOB_SETTINGS, request, 'eval');
  if (request.dataset !== undefined) parseDatasetSpec(request.dataset);
  return {
    trainJobId: request.trainJobId,
    ...(request.step !== undefined ? { step: request.step } : {}),
    metrics: request.metrics,
    ...(request.count !== undefined ? { count: request.count } : {}),
    ...(request.dataset !== undefined ? { dataset: request.dataset } : {}),
  };
}
