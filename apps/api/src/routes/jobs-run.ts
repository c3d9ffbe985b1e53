/**
 * What a train job's run holds, read from the store: its checkpoints, its metrics over training
 * and their curves, its loss curve and its sample grids.
 */
import { Type } from '@sinclair/typebox';

import { COMMON_ERRORS, ErrorBody } from '../http-errors';
import { IdParams, type JobsApp } from './jobs-common';

/** GET /jobs/:id/checkpoints, /metrics, /loss, /grids and /metrics/:file. */
export function registerRunRoutes(app: JobsApp): void {
  checkpointsRoute(app);
  metricsRoute(app);
  lossRoute(app);
  gridsRoute(app);
  metricCurveRoute(app);
}

function checkpointsRoute(app: JobsApp): void {
  const { jobs } = app.ddpm;
  app.get(
    '/jobs/:id/checkpoints',
    {
      schema: {
        summary: "a train job's checkpoints, newest first",
        params: IdParams,
        response: {
          200: Type.Object(
            {
              checkpoints: Type.Array(
                Type.Object(
                  {
                    step: Type.Integer(),
                    key: Type.String({
                      description: "the checkpoint's manifest, as a key in the service's store (DDPM_STORAGE_URL)",
                    }),
                    bytes: Type.Integer({
                      description: "the checkpoint's files together (weights, EMA, optimizer, state)",
                    }),
                  },
                  { additionalProperties: false },
                ),
              ),
            },
            { additionalProperties: false },
          ),
          400: ErrorBody,
          404: ErrorBody,
          ...COMMON_ERRORS,
        },
      },
    },
    async (request, reply) => {
      const refs = await jobs.checkpoints(request.params.id);
      if (!refs) return reply.code(404).send({ error: 'not found', message: `no train job ${request.params.id}` });
      return { checkpoints: refs };
    },
  );
}

function metricsRoute(app: JobsApp): void {
  const { jobs, guard } = app.ddpm;
  app.get(
    '/jobs/:id/metrics',
    {
      schema: {
        summary:
          "a train job's metrics over training (evalEvery): one entry per evaluation of its EMA weights, oldest first",
        params: IdParams,
        response: {
          200: Type.Object(
            {
              entries: Type.Array(
                Type.Object(
                  {
                    step: Type.Integer(),
                    time: Type.String({ description: 'ISO time of the evaluation' }),
                    seconds: Type.Number(),
                    trainSeconds: Type.Optional(
                      Type.Number({
                        description:
                          "the run's training time (seconds in steps) when the evaluated weights were reached",
                      }),
                    ),
                    metrics: Type.Record(Type.String(), Type.Number(), {
                      description:
                        'fd_<extractor>, kid_<extractor>, is_<extractor>, bits_per_dim (fid only with the FID Inception); with samples, pixel_mean, pixel_background (< 0.1) and pixel_saturated (> 0.9) on [0, 1]',
                    }),
                    extractor: Type.Optional(
                      Type.Object(
                        { name: Type.String(), weightsSha256: Type.String() },
                        { additionalProperties: false },
                      ),
                    ),
                    samples: Type.Optional(Type.Unknown()),
                    reference: Type.Optional(Type.Unknown()),
                    pixels: Type.Optional(
                      Type.Unknown({
                        description:
                          'pixel statistics (mean, background, aboveHalf, saturated) of the samples and of the reference images',
                      }),
                    ),
                  },
                  { additionalProperties: false },
                ),
              ),
              curves: Type.Record(Type.String(), Type.String(), { description: 'metric name → URL of its PNG curve' }),
            },
            { additionalProperties: false },
          ),
          400: ErrorBody,
          404: ErrorBody,
          ...COMMON_ERRORS,
        },
      },
    },
    async (request, reply) => {
      const history = await jobs.evalHistory(request.params.id);
      if (!history) return reply.code(404).send({ error: 'not found', message: `no train job ${request.params.id}` });
      const names = [...new Set(history.entries.flatMap((e) => Object.keys(e.metrics)))];
      const curves = Object.fromEntries(
        names.map((n) => [n, `${guard.baseUrl(request)}/jobs/${request.params.id}/metrics/${n}.png`]),
      );
      return { entries: [...history.entries], curves };
    },
  );
}

function lossRoute(app: JobsApp): void {
  const { jobs } = app.ddpm;
  app.get(
    '/jobs/:id/loss',
    {
      schema: {
        summary:
          "a train job's training loss over its steps, as its newest checkpoint keeps it: a point per `every` steps (at most 1000 points, exact across resumes)",
        params: IdParams,
        response: {
          200: Type.Object(
            {
              step: Type.Integer({ description: 'the step of the checkpoint the curve comes from (0: none yet)' }),
              every: Type.Integer({ description: 'steps per point (doubles as the run grows)' }),
              points: Type.Array(
                Type.Object(
                  {
                    step: Type.Integer({ description: 'the last step of the point' }),
                    loss: Type.Number({ description: 'the mean training loss of its steps' }),
                    steps: Type.Integer({ description: 'steps averaged (the last point may have fewer)' }),
                  },
                  { additionalProperties: false },
                ),
              ),
            },
            { additionalProperties: false },
          ),
          400: ErrorBody,
          404: ErrorBody,
          ...COMMON_ERRORS,
        },
      },
    },
    async (request, reply) => {
      const curve = await jobs.lossCurve(request.params.id);
      if (!curve) return reply.code(404).send({ error: 'not found', message: `no train job ${request.params.id}` });
      return curve;
    },
  );
}

function gridsRoute(app: JobsApp): void {
  const { jobs, guard } = app.ddpm;
  app.get(
    '/jobs/:id/grids',
    {
      schema: {
        summary:
          "a train job's sample grids over training (sampleEvery: the same noise at every step, so that they compare), oldest first; the final grid is in the job's samples",
        params: IdParams,
        response: {
          200: Type.Object(
            {
              grids: Type.Array(
                Type.Object(
                  {
                    step: Type.Integer(),
                    url: Type.String({ description: 'the PNG (its metadata: the same URL with .json)' }),
                  },
                  { additionalProperties: false },
                ),
              ),
            },
            { additionalProperties: false },
          ),
          400: ErrorBody,
          404: ErrorBody,
          ...COMMON_ERRORS,
        },
      },
    },
    async (request, reply) => {
      const grids = await jobs.progressGrids(request.params.id);
      if (!grids) return reply.code(404).send({ error: 'not found', message: `no train job ${request.params.id}` });
      return { grids: grids.map((g) => ({ step: g.step, url: `${guard.baseUrl(request)}/samples/${g.file}` })) };
    },
  );
}

function metricCurveRoute(app: JobsApp): void {
  const { jobs } = app.ddpm;
  app.get(
    '/jobs/:id/metrics/:file',
    {
      schema: {
        summary: "the PNG curve of one metric over a train job's training",
        params: Type.Object(
          { id: IdParams.properties.id, file: Type.String({ pattern: '^[a-z][a-z0-9_]{0,63}\\.png$' }) },
          { additionalProperties: false },
        ),
        response: {
          200: {
            description: 'the curve',
            content: { 'image/png': { schema: Type.Unsafe<Buffer>({ type: 'string', format: 'binary' }) } },
          },
          400: ErrorBody,
          404: ErrorBody,
          ...COMMON_ERRORS,
        },
      },
    },
    async (request, reply) => {
      const metric = request.params.file.slice(0, -'.png'.length);
      const png = await jobs.evalCurve(request.params.id, metric);
      if (!png)
        return reply
          .code(404)
          .send({ error: 'not found', message: `no curve of ${metric} for train job ${request.params.id}` });
      reply.header('content-type', 'image/png');
      return reply.send(Buffer.from(png.buffer, png.byteOffset, png.length));
    },
  );
}
