/**
 * The reference models shipped with the service: their manifests (recipe, run, scores) and the
 * grid each is shown with. Sampling or evaluating one is a sample or eval job naming it
 * (`pretrained`). Read from @ddpm/pretrained: no tensors.
 */
import { hasCode } from '@ddpm/core';
import { PRETRAINED_MODELS, type PretrainedManifest, pretrainedManifest, readPretrainedGrid } from '@ddpm/pretrained';
import { type FastifyPluginCallbackTypebox } from '@fastify/type-provider-typebox';
import { type Static, Type } from '@sinclair/typebox';
import { type FastifyRequest } from 'fastify';

import { COMMON_ERRORS, ErrorBody } from '../http-errors';

const Details = Type.Record(Type.String(), Type.Unknown());

const ModelView = Type.Object(
  {
    name: Type.String(),
    recipe: Type.Object(
      { name: Type.String(), request: Details },
      { additionalProperties: false, description: 'the recipe the run followed, and the request it was trained with' },
    ),
    step: Type.Integer({ description: 'the training step of the shipped EMA weights' }),
    imagesSeen: Type.Integer(),
    trainSeconds: Type.Number(),
    train: Type.Record(Type.String(), Type.Unknown(), { description: "the run's effective configuration" }),
    weights: Type.Object(
      { bytes: Type.Integer(), sha256: Type.String() },
      { additionalProperties: false, description: 'the EMA weights, verified against this hash before use' },
    ),
    provenance: Type.Record(Type.String(), Type.Unknown(), {
      description: 'where and how it was trained (machine, workers, backend, train job, date)',
    }),
    scores: Type.Record(Type.String(), Details, {
      description:
        'scores measured on the shipped weights by name (fd_fmnist_cnn, bits_per_dim, pixel statistics), each with its settings and precision',
    }),
    grid: Type.Optional(
      Type.Object(
        {
          url: Type.String(),
          count: Type.Integer(),
          sampler: Details,
          seed: Type.Integer(),
        },
        { additionalProperties: false, description: 'the grid of its samples the model is shown with' },
      ),
    ),
    sample: Type.Object(
      { method: Type.Literal('POST'), url: Type.String(), body: Details },
      { additionalProperties: false, description: 'how to sample it: a sample job naming it' },
    ),
  },
  { additionalProperties: false },
);
type ModelView = Static<typeof ModelView>;

const NameParams = Type.Object(
  { name: Type.String({ pattern: '^[a-z0-9][a-z0-9-]{0,63}$', description: 'a shipped model' }) },
  { additionalProperties: false },
);

function modelView(manifest: PretrainedManifest, base: string): ModelView {
  const name = encodeURIComponent(manifest.name);
  return {
    name: manifest.name,
    recipe: { name: manifest.recipe.name, request: { ...manifest.recipe.request } },
    step: manifest.step,
    imagesSeen: manifest.imagesSeen,
    trainSeconds: manifest.trainSeconds,
    train: { ...manifest.train },
    weights: { bytes: manifest.bytes, sha256: manifest.sha256 },
    provenance: { ...manifest.provenance },
    scores: Object.fromEntries(Object.entries(manifest.scores).map(([k, v]) => [k, { ...v }])),
    ...(manifest.grid !== undefined
      ? {
          grid: {
            url: `${base}/models/${name}/grid.png`,
            count: manifest.grid.count,
            sampler: { ...manifest.grid.sampler },
            seed: manifest.grid.seed,
          },
        }
      : {}),
    // 16 samples drawn as its grid was (not in all T steps: a click should not take many minutes).
    sample: {
      method: 'POST',
      url: `${base}/jobs/sample`,
      body: {
        pretrained: manifest.name,
        count: 16,
        ...(manifest.grid !== undefined
          ? { sampler: manifest.grid.sampler.kind, steps: manifest.grid.sampler.steps }
          : {}),
      },
    },
  };
}

/**
 * Reads what the service ships. A manifest or grid that is missing or fails its check is a broken
 * installation, not the client's fault: a 500 (the details go to the log), never a 4xx.
 */
function shipped<T>(read: () => T): T {
  try {
    return read();
  } catch (err) {
    if (hasCode(err, 'DDPM_PRETRAINED_INVALID') || hasCode(err, 'DDPM_PRETRAINED_NOT_FOUND'))
      throw new Error(`the shipped models are broken: ${(err as Error).message}`, { cause: err });
    throw err;
  }
}

/** Whether the service ships a model of this name. */
function isShipped(name: string): boolean {
  return (PRETRAINED_MODELS as readonly string[]).includes(name);
}

/** The manifest of shipped model `name`, read and checked; undefined when the service ships none of that name. */
function manifestOf(name: string): PretrainedManifest | undefined {
  if (!isShipped(name)) return undefined;
  return shipped(() => pretrainedManifest(name));
}

const notFound = (name: string) => ({
  error: 'not found',
  message: `no shipped model ${JSON.stringify(name)}; shipped: ${PRETRAINED_MODELS.join(', ')}`,
});

export const modelRoutes: FastifyPluginCallbackTypebox = (app, _options, done) => {
  const baseUrl = (request: FastifyRequest): string => app.ddpm.guard.baseUrl(request);
  app.get(
    '/models',
    {
      schema: {
        summary: 'the reference models shipped with the service: recipe, run, scores, grid',
        response: {
          200: Type.Object({ models: Type.Array(ModelView) }, { additionalProperties: false }),
          ...COMMON_ERRORS,
        },
      },
    },
    (request) => ({ models: PRETRAINED_MODELS.map((name) => modelView(manifestOf(name)!, baseUrl(request))) }),
  );

  app.get(
    '/models/:name',
    {
      schema: {
        summary: 'a shipped reference model: its manifest (recipe, run, scores) and grid',
        params: NameParams,
        response: { 200: ModelView, 400: ErrorBody, 404: ErrorBody, ...COMMON_ERRORS },
      },
    },
    async (request, reply) => {
      const manifest = manifestOf(request.params.name);
      if (manifest === undefined) return reply.code(404).send(notFound(request.params.name));
      return modelView(manifest, baseUrl(request));
    },
  );

  app.get(
    '/models/:name/grid.png',
    {
      schema: {
        summary: "a shipped model's grid: samples of its EMA weights (how they were drawn: GET /models/{name})",
        params: NameParams,
        response: {
          200: {
            description: 'the PNG',
            content: { 'image/png': { schema: Type.Unsafe<Buffer>({ type: 'string', format: 'binary' }) } },
          },
          400: ErrorBody,
          404: ErrorBody,
          ...COMMON_ERRORS,
        },
      },
    },
    async (request, reply) => {
      const { name } = request.params;
      // The grid's reader checks the manifest itself: here only whether the model is shipped.
      if (!isShipped(name)) return reply.code(404).send(notFound(name));
      const png = shipped(() => readPretrainedGrid(name));
      if (png === undefined) return reply.code(404).send({ error: 'not found', message: `${name} ships no grid` });
      reply.header('content-type', 'image/png');
      reply.header('cache-control', 'public, max-age=3600');
      return reply.send(Buffer.from(png.buffer, png.byteOffset, png.length));
    },
  );
  done();
};
