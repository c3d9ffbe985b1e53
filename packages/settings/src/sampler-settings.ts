/**
 * The sampler options, one spec shared by `ddpm sample` / `ddpm progressive`, sample jobs and the
 * grid a train job draws at its end (there under `sample*` names: `sampleSteps`, `--sample-steps`).
 */
import { type Static, Type } from '@sinclair/typebox';

import { configError } from './errors';
import { literalUnion, optional, withDefault } from './setting';

export const SAMPLER_KINDS = ['ancestral', 'ddim'] as const;
export type SamplerKind = (typeof SAMPLER_KINDS)[number];

/** A resolved sampler: the number of steps is always explicit (T is known by then). */
export const SamplerSpec = Type.Union(
  [
    Type.Object(
      {
        kind: Type.Literal('ancestral'),
        steps: Type.Integer({ description: 'T: Algorithm 2 in full; fewer: evenly strided steps' }),
      },
      { additionalProperties: false },
    ),
    Type.Object(
      {
        kind: Type.Literal('ddim'),
        steps: Type.Integer(),
        eta: Type.Number({ description: "DDIM's η; 0 is deterministic" }),
      },
      { additionalProperties: false },
    ),
  ],
  { description: 'ancestral sampling (Algorithm 2) over all T or strided steps, or DDIM' },
);
export type SamplerSpec = Static<typeof SamplerSpec>;

export const SEED_SCHEMA = Type.Integer({ minimum: 0, maximum: 2 ** 31 - 1 });

const capitalize = (s: string): string => s.charAt(0).toUpperCase() + s.slice(1);

/** The sampler rows under request names `<prefix>Sampler`..., flags `--<prefix>-sampler`..., paths under `pathPrefix`. */
function samplerRows(prefix: string, pathPrefix: string) {
  const name = (n: string): string => (prefix === '' ? n : `${prefix}${capitalize(n)}`);
  const flag = (n: string): string => (prefix === '' ? n : `${prefix}-${n}`);
  return {
    sampler: withDefault({
      schema: literalUnion(SAMPLER_KINDS),
      path: `${pathPrefix}sampler.kind`,
      flag: flag('sampler'),
      placeholder: 'KIND',
      help: `ancestral (Algorithm 2) or ddim; with ${name('steps')} below T, ancestral sampling takes evenly strided steps`,
      default: 'ancestral',
      paper: { value: 'ancestral', source: 'Algorithm 2' },
    }),
    steps: optional({
      schema: Type.Integer({ minimum: 1, maximum: 100_000 }),
      path: `${pathPrefix}sampler.steps`,
      flag: flag('steps'),
      placeholder: 'S',
      help: 'sampling steps',
      whenAbsent: 'all T (ancestral), 50 (ddim)',
    }),
    eta: withDefault({
      schema: Type.Number({ minimum: 0, maximum: 10 }),
      path: `${pathPrefix}sampler.eta`,
      flag: flag('eta'),
      placeholder: 'E',
      help: "DDIM's η (0: deterministic); ddim only",
      default: 0,
    }),
    seed: withDefault({
      schema: SEED_SCHEMA,
      path: `${pathPrefix}seed`,
      flag: flag('seed'),
      placeholder: 'S',
      help: 'seed of x_T and all sampling noise: the same seed gives comparable pictures across checkpoints',
      default: 0,
    }),
  };
}

/** The sampler settings of sample jobs and `ddpm sample` (paths relative to the sample config). */
export const SAMPLER_SETTINGS = samplerRows('', '');

/** The same request names and flags, placed under `pathPrefix` of a resolved config (eval: `samples.`). */
export function samplerSettingsAt(pathPrefix: string) {
  return samplerRows('', pathPrefix);
}

/** The same settings for evaluations during training: evalSampler, evalSteps, evalEta, evalSeed. */
export function trainingEvalSamplerSettings() {
  const rows = samplerRows('eval', 'evaluation.samples.');
  return { evalSampler: rows.sampler, evalSteps: rows.steps, evalEta: rows.eta, evalSeed: rows.seed };
}

/** The same settings for a train job's final grid: sampleSampler, sampleSteps, sampleEta, sampleSeed. */
export function finalGridSamplerSettings() {
  const rows = samplerRows('sample', 'finalGrid.');
  return { sampleSampler: rows.sampler, sampleSteps: rows.steps, sampleEta: rows.eta, sampleSeed: rows.seed };
}

export interface SamplerValues {
  readonly sampler: SamplerKind;
  readonly steps: number | undefined;
  readonly eta: number;
}

/**
 * The sampler for a diffusion of `numTimesteps` steps. `etaGiven`: whether the request set η (it
 * only means something for DDIM, and a value silently ignored would mislead).
 */
export function resolveSampler(
  values: SamplerValues,
  numTimesteps: number,
  names: { steps: string; eta: string; etaGiven: boolean },
): SamplerSpec {
  if (values.steps !== undefined && values.steps > numTimesteps) {
    throw configError(`${names.steps} ${values.steps} exceeds the model's T = ${numTimesteps} diffusion steps`);
  }
  switch (values.sampler) {
    case 'ancestral':
      if (names.etaGiven) throw configError(`${names.eta} applies to the ddim sampler only`);
      return { kind: 'ancestral', steps: values.steps ?? numTimesteps };
    case 'ddim':
      return { kind: 'ddim', steps: values.steps ?? Math.min(50, numTimesteps), eta: values.eta };
    default: {
      const unreachable: never = values.sampler;
      throw configError(`unknown sampler ${JSON.stringify(unreachable)}`);
    }
  }
}

/** The rows of the sampler spec, for checks that a table really shares them. */
export type SamplerRows = ReturnType<typeof samplerRows>;
