/** Liveness, readiness (Redis reachable) and Prometheus metrics; reachable without the token. */
import { type FastifyPluginCallbackTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';

const PUBLIC = { security: [] };

export const healthRoutes: FastifyPluginCallbackTypebox = (app, _options, done) => {
  app.get(
    '/healthz',
    {
      schema: {
        summary: 'liveness',
        ...PUBLIC,
        response: { 200: Type.Object({ status: Type.Literal('ok') }, { additionalProperties: false }) },
      },
    },
    () => ({ status: 'ok' as const }),
  );

  const Ready = Type.Object(
    { status: Type.Union([Type.Literal('ready'), Type.Literal('not ready')]), redis: Type.String() },
    { additionalProperties: false },
  );
  app.get(
    '/readyz',
    { schema: { summary: 'readiness: Redis answers', ...PUBLIC, response: { 200: Ready, 503: Ready } } },
    async (request, reply) => {
      try {
        return { status: 'ready' as const, redis: await app.ddpm.redis.ping() };
      } catch (err) {
        // The details are for the operator's log, not for whoever asks (the route is public).
        request.log.warn({ err: (err as Error).message }, 'not ready: Redis does not answer');
        return reply.code(503).send({ status: 'not ready', redis: 'unreachable' });
      }
    },
  );

  app.get(
    '/metrics',
    {
      schema: {
        summary: 'Prometheus metrics',
        ...PUBLIC,
        response: {
          200: { description: 'text exposition format', content: { 'text/plain': { schema: Type.String() } } },
        },
      },
    },
    async (_request, reply) => {
      reply.header('content-type', app.ddpm.registry.contentType);
      return reply.send(await app.ddpm.registry.metrics());
    },
  );
  done();
};
