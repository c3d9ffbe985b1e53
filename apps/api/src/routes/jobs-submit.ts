/** Submitting jobs: a train, sample or eval request in, the queued job (or an earlier one with its key) out. */
import { type TSchema, Type } from '@sinclair/typebox';
import { type FastifyRequest } from 'fastify';

import { described } from '../components';
import { COMMON_ERRORS, ErrorBody } from '../http-errors';
import { JobView, REQUEST_BODIES } from '../job-view';
import { type JobsApp } from './jobs-common';

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

function submitSchema<B extends TSchema>(summary: string, body: B) {
  return {
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
  };
}

/** POST /jobs/train, /jobs/sample and /jobs/eval. */
export function registerSubmitRoutes(app: JobsApp): void {
  const { jobs, guard } = app.ddpm;
  /** 202 with Location for a new job, 200 with Idempotent-Replayed for a repeated key. */
  const submitted = async (
    request: FastifyRequest,
    submission: Awaited<ReturnType<typeof jobs.submit>>,
  ): Promise<{ status: 200 | 202; headers: Record<string, string>; view: JobView }> => {
    const view = await jobs.view(submission.job, guard.baseUrl(request));
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
}
