/** Reading jobs: the list, newest first, and one job by its id. */
import { JOB_ID_PATTERN, JOB_TYPES } from '@ddpm/service';
import { Type } from '@sinclair/typebox';

import { COMMON_ERRORS, ErrorBody } from '../http-errors';
import { LIST_STATE_NAMES, MAX_LIST_DEPTH } from '../job-listing';
import { JobView } from '../job-view';
import { IdParams, type JobsApp } from './jobs-common';

/** GET /jobs and GET /jobs/:id. */
export function registerReadRoutes(app: JobsApp): void {
  listRoute(app);
  jobRoute(app);
}

function listRoute(app: JobsApp): void {
  const { jobs, guard } = app.ddpm;
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
        guard.baseUrl(request),
      );
      return { jobs: views, limit, offset };
    },
  );
}

function jobRoute(app: JobsApp): void {
  const { jobs, guard } = app.ddpm;
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
      const view = await jobs.viewById(request.params.id, guard.baseUrl(request));
      if (view) return view;
      return reply.code(404).send({ error: 'not found', message: `no job ${request.params.id}` });
    },
  );
}
