/** A job's log: a page at a time, or followed as it grows until the job ends. */
import { PassThrough, type Readable } from 'node:stream';

import { type JobData, type JobResult } from '@ddpm/service';
import { Type } from '@sinclair/typebox';
import { type Job } from 'bullmq';
import { type FastifyRequest } from 'fastify';

import { COMMON_ERRORS, ErrorBody } from '../http-errors';
import { MAX_LOG_PAGE } from '../job-logs';
import { type JobsService } from '../jobs-service';
import { IdParams, type JobsApp } from './jobs-common';

/** GET /jobs/:id/logs. */
export function registerLogRoutes(app: JobsApp): void {
  const { jobs } = app.ddpm;
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
      return reply.send(followed(jobs, job, request, release));
    },
  );
}

/**
 * A stream of the job's log lines as they come, ended when the job ends, the client goes or the
 * follow time runs out; the follower's place is released then.
 */
function followed(
  jobs: JobsService,
  job: Job<JobData, JobResult>,
  request: FastifyRequest,
  release: () => void,
): PassThrough {
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
  return stream;
}
