/** Submitting, listing, watching and cancelling jobs: HTTP in, the jobs service, HTTP out. */
import { PassThrough, type Readable } from 'node:stream';

import { JOB_ID_PATTERN, JOB_TYPES } from '@ddpm/jobs';
import { type FastifyPluginCallbackTypebox } from '@fastify/type-provider-typebox';
import { type TSchema, Type } from '@sinclair/typebox';
import { type FastifyRequest } from 'fastify';

import { described } from '../components';
import { COMMON_ERRORS, ErrorBody } from '../http-errors';
import { JobView, REQUEST_BODIES } from '../job-view';
import { LIST_STATE_NAMES, MAX_LIST_DEPTH, MAX_LOG_PAGE } from '../jobs-service';

const IdParams = Type.Object(
  { id: Type.String({ pattern: JOB_ID_PATTERN, description: 'a job id' }) },
  { additionalProperties: false },
);
const IdempotencyHeaders = Type.Object({
  'idempotency-key': Type.Optional(
    Type.String({
      minLength: 1,
      maxLength: 255,
      pattern: '^[\\x21-\\x7e]+$',
      description: 'repeat-safe submission: the same key and body return the same job',
    }),
  ),
});
const SUBMIT_ERRORS = { ...COMMON_ERRORS, 400: ErrorBody, 409: ErrorBody, 413: ErrorBody, 415: ErrorBody } as const;

export const jobRoutes: FastifyPluginCallbackTypebox = (app, _options, done) => {
  const { jobs, guard } = app.ddpm;
  const baseUrl = (request: FastifyRequest): string => guard.baseUrl(request);
  const submitSchema = <B extends TSchema>(summary: string, body: B) => ({
    summary,
    body,
    headers: IdempotencyHeaders,
    response: {
      200: described(
        JobView,
        'the job an earlier request with this Idempotency-Key created (Idempotent-Replayed: true)',
      ),
      202: described(JobView, 'queued; poll links.self'),
      ...SUBMIT_ERRORS,
    },
  });
  /** 202 with Location for a new job, 200 with Idempotent-Replayed for a repeated key. */
  const submitted = async (
    request: FastifyRequest,
    submission: Awaited<ReturnType<typeof jobs.submit>>,
  ): Promise<{ status: 200 | 202; headers: Record<string, string>; view: JobView }> => {
    const view = await jobs.view(submission.job, baseUrl(request));
    return submission.replayed
      ? { status: 200, headers: { 'idempotent-replayed': 'true' }, view }
      : { status: 202, headers: { location: `/jobs/${submission.job.id}` }, view };
  };

  app.post(
    '/jobs/train',
    { schema: submitSchema('submit a train job', REQUEST_BODIES.train) },
    async (request, reply) => {
      const { status, headers, view } = await submitted(
        request,
        await jobs.submit({ type: 'train', request: request.body }, request.headers['idempotency-key']),
      );
      return reply.headers(headers).code(status).send(view);
    },
  );
  app.post(
    '/jobs/sample',
    {
      schema: submitSchema(
        "submit a sample job: a picture from a train job's checkpoint or a shipped model",
        REQUEST_BODIES.sample,
      ),
    },
    async (request, reply) => {
      const { status, headers, view } = await submitted(
        request,
        await jobs.submit({ type: 'sample', request: request.body }, request.headers['idempotency-key']),
      );
      return reply.headers(headers).code(status).send(view);
    },
  );
  app.post(
    '/jobs/eval',
    {
      schema: submitSchema(
        "submit an eval job: FD, KID, IS, NLL or rate–distortion of a train job's checkpoint or a shipped model",
        REQUEST_BODIES.eval,
      ),
    },
    async (request, reply) => {
      const { status, headers, view } = await submitted(
        request,
        await jobs.submit({ type: 'eval', request: request.body }, request.headers['idempotency-key']),
      );
      return reply.headers(headers).code(status).send(view);
    },
  );

  app.get(
    '/jobs',
    {
      schema: {
        summary: 'list jobs, newest first',
        querystring: Type.Object(
          {
            type: Type.Optional(Type.Union(JOB_TYPES.map((t) => Type.Literal(t)))),
            state: Type.Optional(Type.Union(LIST_STATE_NAMES.map((s) => Type.Literal(s)))),
            run: Type.Optional(
              Type.String({
                pattern: JOB_ID_PATTERN,
                description: 'only the sample and eval jobs of this train job (its trainJobId)',
              }),
            ),
            limit: Type.Optional(Type.String({ pattern: '^([1-9][0-9]?|100)$', description: '1-100, default 20' })),
            offset: Type.Optional(
              Type.String({
                pattern: '^[0-9]{1,4}$',
                description: `default 0; offset + limit at most ${MAX_LIST_DEPTH}`,
              }),
            ),
          },
          { additionalProperties: false },
        ),
        response: {
          200: Type.Object(
            { jobs: Type.Array(JobView.ref), limit: Type.Integer(), offset: Type.Integer() },
            { additionalProperties: false },
          ),
          400: ErrorBody,
          ...COMMON_ERRORS,
        },
      },
    },
    async (request) => {
      const limit = Number(request.query.limit ?? 20);
      const offset = Number(request.query.offset ?? 0);
      const views = await jobs.list(
        {
          ...(request.query.type ? { type: request.query.type } : {}),
          ...(request.query.state ? { state: request.query.state } : {}),
          ...(request.query.run ? { run: request.query.run } : {}),
          limit,
          offset,
        },
        baseUrl(request),
      );
      return { jobs: views, limit, offset };
    },
  );

  app.get(
    '/jobs/:id',
    {
      schema: {
        summary: 'a job: state, progress, request, effective config, result or error, links',
        params: IdParams,
        response: { 200: JobView.ref, 400: ErrorBody, 404: ErrorBody, ...COMMON_ERRORS },
      },
    },
    async (request, reply) => {
      const view = await jobs.viewById(request.params.id, baseUrl(request));
      if (view) return view;
      return reply.code(404).send({ error: 'not found', message: `no job ${request.params.id}` });
    },
  );

  const cancelRoutes = [
    ['DELETE', '/jobs/:id', 'cancel a job (idempotent): a running train job checkpoints, then stops'],
    ['POST', '/jobs/:id/cancel', 'cancel a job (the same as DELETE /jobs/{id})'],
  ] as const;
  for (const [method, url, summary] of cancelRoutes) {
    app.route({
      method,
      url,
      schema: {
        summary,
        params: IdParams,
        response: {
          200: described(JobView, 'cancelled at once (it had not started), or already finished'),
          202: described(JobView, 'cancelling: the running job checkpoints, then stops'),
          400: ErrorBody,
          404: ErrorBody,
          ...COMMON_ERRORS,
        },
      },
      handler: async (request, reply) => {
        const cancelled = await jobs.cancel(request.params.id, baseUrl(request));
        if (!cancelled) return reply.code(404).send({ error: 'not found', message: `no job ${request.params.id}` });
        return reply.code(cancelled.outcome === 'done' ? 200 : 202).send(cancelled.view);
      },
    });
  }

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
        names.map((n) => [n, `${baseUrl(request)}/jobs/${request.params.id}/metrics/${n}.png`]),
      );
      return { entries: [...history.entries], curves };
    },
  );

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
      return { grids: grids.map((g) => ({ step: g.step, url: `${baseUrl(request)}/samples/${g.file}` })) };
    },
  );

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

  app.get(
    '/jobs/:id/logs',
    {
      schema: {
        summary: `a job's log lines, a page at a time (Log-Total and Log-Next say where the next page starts); follow=true streams them until the job ends`,
        params: IdParams,
        querystring: Type.Object(
          {
            follow: Type.Optional(Type.Union([Type.Literal('true'), Type.Literal('false')])),
            start: Type.Optional(
              Type.String({
                pattern: '^[0-9]{1,9}$',
                description: 'the first line, counted from the oldest line kept (default 0)',
              }),
            ),
            limit: Type.Optional(
              Type.String({
                pattern: '^[1-9][0-9]{0,3}$',
                description: `lines per page, at most ${MAX_LOG_PAGE} (default 1000)`,
              }),
            ),
          },
          { additionalProperties: false },
        ),
        response: {
          200: {
            description: 'one line per event',
            content: { 'text/plain': { schema: Type.Unsafe<string | Readable>({ type: 'string' }) } },
          },
          400: ErrorBody,
          404: ErrorBody,
          ...COMMON_ERRORS,
        },
      },
    },
    async (request, reply) => {
      const job = await jobs.find(request.params.id);
      if (!job) return reply.code(404).send({ error: 'not found', message: `no job ${request.params.id}` });
      if (request.query.follow !== 'true') {
        const start = Number(request.query.start ?? 0);
        const limit = Number(request.query.limit ?? 1000);
        if (limit > MAX_LOG_PAGE)
          return reply
            .code(400)
            .send({ error: 'invalid request', message: `limit must be at most ${MAX_LOG_PAGE}, got ${limit}` });
        const { lines, total } = await jobs.logs(job, start, limit);
        reply
          .header('content-type', 'text/plain; charset=utf-8')
          .header('log-total', String(total))
          .header('log-next', String(Math.min(start + lines.length, total)));
        return reply.send(lines.map((l) => `${l}\n`).join(''));
      }
      let release: () => void;
      try {
        release = jobs.acquireFollower();
      } catch (err) {
        // The client's to act on (retry later, or read without following): say why.
        return reply
          .code(503)
          .header('retry-after', '30')
          .send({ error: 'unavailable', message: (err as Error).message });
      }
      reply.header('content-type', 'text/plain; charset=utf-8');
      const stream = new PassThrough();
      let closed = false;
      request.raw.on('close', () => {
        closed = true;
      });
      jobs
        .followLogs(job, stream, () => closed || stream.destroyed)
        .then(
          () => {
            release();
            stream.end();
          },
          (err: unknown) => {
            release();
            request.log.warn({ err }, 'following logs failed');
            stream.end();
          },
        );
      return reply.send(stream);
    },
  );
  done();
};
