/** Liveness, readiness (Redis reachable) and Prometheus metrics. */
import { type FastifyInstance } from 'fastify';

export async function healthRoutes(app: FastifyInstance): Promise<void> {
  app.get('/healthz', { schema: { hide: true } }, async () => ({ status: 'ok' }));

  app.get('/readyz', { schema: { hide: true } }, async (_request, reply) => {
    try {
      const pong = await app.ddpm.redis.ping();
      return { status: 'ready', redis: pong };
    } catch (err) {
      return reply.code(503).send({ status: 'not ready', redis: (err as Error).message });
    }
  });

  app.get('/metrics', { schema: { hide: true } }, async (_request, reply) => {
    reply.header('content-type', app.ddpm.registry.contentType);
    return app.ddpm.registry.metrics();
  });
}
