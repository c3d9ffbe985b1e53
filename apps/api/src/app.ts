/**
 * The API as a Fastify app: `buildApp` wires queues, Redis, storage, metrics and the jobs service
 * and closes them in onClose; server.ts only listens. Bodies are TypeBox schemas derived from the
 * settings tables (unknown fields rejected, no coercion, defaults left to the resolver so the
 * stored request is what the client sent); every 4xx says what is wrong; 5xx details never leave.
 * The OpenAPI 3.1 document at /docs/json describes every route, response and error.
 *
 * This process loads no tensor code: configuration, dataset specs and checkpoint listing come from
 * tensor-free packages (a test checks that no @tensorflow/* module and no sharp is loaded).
 */
import { codedErrorOf } from '@ddpm/core';
import {
  JOB_TYPES,
  type JobData,
  type JobResult,
  type JobType,
  type ServiceConfig,
  bearerMatches,
  queueName,
  redisConnectionOptions,
} from '@ddpm/service';
import { type ObjectStore, openStore } from '@ddpm/storage';
import { Counter, Histogram, type Logger, Registry, collectDefaultMetrics, registerQueueCounts } from '@ddpm/telemetry';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import { type TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Queue } from 'bullmq';
import Fastify, { type FastifyInstance, type FastifyReply } from 'fastify';
import { Redis } from 'ioredis';

import { registerComponents } from './components';
import { HostGuard } from './host-guard';
import { consoleRoutes, defaultConsoleDir } from './routes/console';
import { statusOf } from './http-errors';
import { JobsService } from './jobs-service';
import { datasetRoutes } from './routes/datasets';
import { healthRoutes } from './routes/health';
import { jobRoutes } from './routes/jobs';
import { modelRoutes } from './routes/models';
import { sampleRoutes } from './routes/samples';

export interface AppOptions {
  readonly config: ServiceConfig;
  readonly logger?: Logger | boolean;
  /** Overrides the store opened from config.storageUrl (tests). */
  readonly store?: ObjectStore;
  /** Where the web console's build is (default: apps/console/dist; DDPM_CONSOLE_DIR). */
  readonly consoleDir?: string;
}

export interface AppContext {
  readonly config: ServiceConfig;
  readonly queues: Record<JobType, Queue<JobData, JobResult>>;
  readonly redis: Redis;
  readonly store: ObjectStore;
  readonly registry: Registry;
  readonly jobs: JobsService;
  /** The Host and Origin checks, and the base of the links in responses. */
  readonly guard: HostGuard;
}

declare module 'fastify' {
  interface FastifyInstance {
    ddpm: AppContext;
  }
}

/** What a 503 for a Redis outage tells the client to wait before retrying. */
const REDIS_RETRY_AFTER_SECONDS = 2;

/** Whether a failure is Redis being away rather than a fault of ours. */
function redisUnavailable(error: { message: string; name?: string }, redis: Redis): boolean {
  if (redis.status !== 'ready') return true;
  return (
    error.name === 'MaxRetriesPerRequestError' ||
    /Connection is closed|Stream isn't writeable|ECONNREFUSED|ECONNRESET|EPIPE|ETIMEDOUT|LOADING |READONLY |MASTERDOWN/.test(
      error.message,
    )
  );
}

/** Fastify's own client errors: a label per status, and never the whole request path echoed back. */
function clientErrorBody(
  status: number,
  error: { message: string; code?: string },
): { error: string; message: string } {
  switch (error.code) {
    case 'FST_ERR_MAX_PARAM_LENGTH':
      return { error: 'uri too long', message: `a path segment is longer than ${MAX_PARAM_LENGTH} characters` };
    case 'FST_ERR_BAD_URL':
      return { error: 'bad request', message: 'the path is not a valid URL (a malformed % escape?)' };
    default:
      break;
  }
  const labels: Record<number, string> = {
    404: 'not found',
    405: 'method not allowed',
    413: 'body too large',
    414: 'uri too long',
    415: 'unsupported media type',
  };
  const message = error.message.length > 200 ? `${error.message.slice(0, 200)}…` : error.message;
  return { error: labels[status] ?? 'bad request', message };
}

/** Longest path parameter (a job id, a sample name) the router accepts. */
const MAX_PARAM_LENGTH = 100;

/** Routes reachable without the bearer token. */
const PUBLIC = [/^\/healthz$/, /^\/readyz$/, /^\/metrics$/];
/**
 * The web console's shell and assets: no data, no token (the console asks for it and sends it with
 * every API request). Unlike PUBLIC, they answer only the names the API serves (host-guard.ts).
 */
const CONSOLE = [/^\/$/, /^\/ui(\/.*)?$/];

export const API_VERSION = '0.2.0';

export async function buildApp(options: AppOptions): Promise<FastifyInstance> {
  const { config } = options;
  const app = createFastify(options);
  const redis = await connectRedis(config);
  const queues = openQueues(config);
  const store = options.store ?? openStore(config.storageUrl);
  const metrics = apiMetrics(queues);
  const jobs = new JobsService({
    queues,
    redis,
    store,
    prefix: config.queuePrefix,
    limits: config.limits,
    dataRoots: config.dataRoots,
    keepCompleted: config.keepCompleted,
    keepFailed: config.keepFailed,
    jobLogLines: config.jobLogLines,
    logFollowers: config.logFollowers,
    logFollowSeconds: config.logFollowSeconds,
  });
  const guard = new HostGuard(config);
  app.decorate('ddpm', { config, queues, redis, store, registry: metrics.registry, jobs, guard });

  app.addHook('onClose', async () => {
    // A queue closed while its connection still initialises (BullMQ asks Redis for its version)
    // would emit that failure after its listeners are gone and take the process down.
    await Promise.all(Object.values(queues).map((q) => q.waitUntilReady().catch(() => undefined)));
    await Promise.all(Object.values(queues).map((q) => q.close()));
    redis.disconnect();
    if (options.store === undefined) await store.close();
  });
  countRequests(app, metrics);
  guardRequests(app, config, guard);
  setErrorHandlers(app, redis);

  registerComponents(app);
  await registerDocs(app);
  await app.register(healthRoutes);
  await app.register(jobRoutes);
  await app.register(sampleRoutes);
  await app.register(modelRoutes);
  await app.register(datasetRoutes);
  await app.register(consoleRoutes, { dir: options.consoleDir ?? config.consoleDir ?? defaultConsoleDir() });
  return app;
}

/** The Fastify app, with the options, serializer and body parsers every route relies on. */
function createFastify(options: AppOptions) {
  const { config } = options;
  const app = Fastify({
    logger: options.logger ?? { level: config.logLevel },
    bodyLimit: 64 * 1024,
    // No defaults filled in by the validator: the stored request is what was sent, and the
    // resolver (one table) fills the defaults into the job's config.
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, allErrors: false, useDefaults: false } },
    requestIdHeader: 'x-request-id',
    routerOptions: { maxParamLength: MAX_PARAM_LENGTH },
    // A path the router cannot take (malformed, a segment too long) is answered before any
    // route or hook runs: say what is wrong, never echo the path.
    frameworkErrors: (error, _request, reply) => {
      const status = error.statusCode ?? 400;
      void (reply as FastifyReply).code(status).send(clientErrorBody(status, error));
    },
  }).withTypeProvider<TypeBoxTypeProvider>();

  // Response schemas document the API (and type-check the handlers); bodies are serialized as
  // they are rather than filtered through fast-json-stringify's per-schema serializers.
  app.setSerializerCompiler(() => (data) => JSON.stringify(data));

  // Bodies are JSON only; anything else is 415 Unsupported Media Type.
  app.removeContentTypeParser('text/plain');
  return app;
}

type ApiApp = ReturnType<typeof createFastify>;

/** The Redis connection of the routes, connected if Redis is there (an outage shows in /readyz). */
async function connectRedis(config: ServiceConfig): Promise<Redis> {
  const redis = new Redis(config.redisUrl, { maxRetriesPerRequest: 1, enableOfflineQueue: false, lazyConnect: true });
  redis.on('error', () => undefined); // reported through /readyz
  await redis.connect().catch(() => undefined);
  return redis;
}

function openQueues(config: ServiceConfig): Record<JobType, Queue<JobData, JobResult>> {
  const queueConnection = {
    ...redisConnectionOptions(config.redisUrl),
    maxRetriesPerRequest: 1,
    enableOfflineQueue: false,
  };
  const queues = Object.fromEntries(
    JOB_TYPES.map((type) => [
      type,
      new Queue<JobData, JobResult>(queueName(type), { connection: queueConnection, prefix: config.queuePrefix }),
    ]),
  ) as Record<JobType, Queue<JobData, JobResult>>;
  for (const q of Object.values(queues)) q.on('error', () => undefined);
  return queues;
}

interface ApiMetrics {
  readonly registry: Registry;
  readonly requests: Counter<'route' | 'status'>;
  readonly latency: Histogram<'route' | 'method' | 'status'>;
}

/** The registry /metrics serves: the process's metrics, the queues' counts, and the requests'. */
function apiMetrics(queues: Record<JobType, Queue<JobData, JobResult>>): ApiMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  registerQueueCounts(registry, Object.values(queues));
  const requests = new Counter({
    name: 'ddpm_api_requests_total',
    help: 'HTTP requests by route and status class',
    labelNames: ['route', 'status'],
    registers: [registry],
  });
  // Routes are the templates (bounded); a followed log stream counts its whole duration, so it has buckets up to an hour.
  const latency = new Histogram({
    name: 'ddpm_api_request_duration_seconds',
    help: 'HTTP request duration by route, method and status class',
    labelNames: ['route', 'method', 'status'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60, 600, 3600],
    registers: [registry],
  });
  return { registry, requests, latency };
}

function countRequests(app: ApiApp, { requests, latency }: ApiMetrics): void {
  app.addHook('onResponse', async (request, reply) => {
    const route = request.routeOptions.url ?? 'unmatched';
    const status = `${Math.floor(reply.statusCode / 100)}xx`;
    requests.inc({ route, status });
    latency.observe({ route, method: request.method, status }, reply.elapsedTime / 1000);
  });
}

/** The Host and Origin checks, then the bearer token when the server has one. */
function guardRequests(app: ApiApp, config: ServiceConfig, guard: HostGuard): void {
  // Before the token: a tokenless API answers only its own names, and pages of foreign origins
  // change nothing (host-guard.ts).
  app.addHook('onRequest', async (request, reply) => {
    const path = request.url.split('?', 1)[0]!;
    const refusal = guard.refusal(
      request,
      PUBLIC.some((p) => p.test(path)),
    );
    if (refusal !== undefined) return HostGuard.refuse(reply, refusal);
  });

  if (config.apiToken) {
    const token = config.apiToken;
    app.addHook('onRequest', async (request, reply) => {
      const path = request.url.split('?', 1)[0]!;
      if (PUBLIC.some((p) => p.test(path)) || CONSOLE.some((p) => p.test(path))) return;
      if (!bearerMatches(request.headers.authorization, token)) {
        reply.header('www-authenticate', 'Bearer');
        return reply
          .code(401)
          .send({ error: 'unauthorized', message: 'a valid "Authorization: Bearer <token>" header is required' });
      }
    });
  }
}

/** How failures are answered: ours by their kind, Redis outages as 503, the rest without details. */
function setErrorHandlers(app: ApiApp, redis: Redis): void {
  app.setErrorHandler(
    (error: { statusCode?: number; validation?: unknown; message: string; code?: string }, request, reply) => {
      // Our own errors say what they are; permanent ones are the client's to fix.
      const coded = codedErrorOf(error);
      if (coded) {
        const { status, error: label } = statusOf(coded.kind);
        if (status >= 500) {
          request.log.error({ err: error }, 'request failed');
          return reply.code(status).send({ error: label, requestId: request.id });
        }
        return reply.code(status).send({ error: label, message: coded.message });
      }
      const status = error.statusCode ?? 500;
      if (status >= 500) {
        // Redis away (restarting, failing over, unreachable): the client may retry, and the
        // routes recover by themselves once it is back.
        if (redisUnavailable(error, redis)) {
          request.log.warn({ err: error.message }, 'Redis unavailable');
          return reply
            .code(503)
            .header('retry-after', String(REDIS_RETRY_AFTER_SECONDS))
            .send({ error: 'unavailable', message: 'the queue store (Redis) is unavailable; retry shortly' });
        }
        request.log.error({ err: error }, 'request failed');
        return reply.code(status).send({ error: 'internal error', requestId: request.id });
      }
      if (error.validation) return reply.code(400).send({ error: 'invalid request', message: error.message });
      return reply.code(status).send(clientErrorBody(status, error));
    },
  );
  app.setNotFoundHandler((request, reply) =>
    reply.code(404).send({ error: 'not found', message: `no route ${request.method} ${request.url.split('?', 1)[0]}` }),
  );
}

/** The OpenAPI document (/docs/json) and its UI (/docs). */
async function registerDocs(app: ApiApp): Promise<void> {
  await app.register(swagger, {
    // Components keep their $id as their name in the document.
    refResolver: {
      buildLocalReference: (json, _baseUri, _fragment, i) =>
        typeof json['$id'] === 'string' ? json['$id'] : `def-${i}`,
    },
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'ddpm-service',
        description:
          'Train, sample and evaluate DDPMs (Ho, Jain & Abbeel 2020). Request bodies are derived from the settings tables of @ddpm/settings; ' +
          'a job shows what was asked (request) and what it runs with (config, every default filled in).',
        version: API_VERSION,
      },
      components: {
        securitySchemes: {
          bearer: { type: 'http', scheme: 'bearer', description: 'required when the server has DDPM_API_TOKEN set' },
        },
      },
      security: [{ bearer: [] }],
    },
  });
  await app.register(swaggerUi, { routePrefix: '/docs' });
}
