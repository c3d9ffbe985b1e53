/**
 * Cancelling a job, by DELETE /jobs/:id or POST /jobs/:id/cancel: a queued one at once, a running
 * one after it checkpoints.
 */
import { described } from '../components';
import { COMMON_ERRORS, ErrorBody } from '../http-errors';
import { JobView } from '../job-view';
import { IdParams, type JobsApp } from './jobs-common';

export function registerCancelRoutes(app: JobsApp): void {
  const { jobs, guard } = app.ddpm;
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
        const cancelled = await jobs.cancel(request.params.id, guard.baseUrl(request));
        if (!cancelled) return reply.code(404).send({ error: 'not found', message: `no job ${request.params.id}` });
        return reply.code(cancelled.outcome === 'done' ? 200 : 202).send(cancelled.view);
      },
    });
  }
}
