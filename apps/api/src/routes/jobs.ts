/** Submitting, listing, watching and cancelling jobs. */
import { PassThrough } from 'node:stream';

import { codedErrorOf } from '@ddpm/core';
import { parseDatasetSpec } from '@ddpm/data';
import { listCheckpoints, resolveTrainConfig } from '@ddpm/engine';
import {
  EvalJobRequest,
  JOB_ID_PATTERN,
  JOB_TYPES,
  type JobData,
  type JobResult,
  type JobType,
  SampleJobRequest,
  TrainJobRequest,
  cancelChannel,
  cancelKey,
  jobIdFor,
  jobTypeOf,
  requestHash,
  runPrefixOf,
  trainConfigOf,
} from '@ddpm/jobs';
import { type TSchema, Type } from '@sinclair/typebox';
import { type Job, type JobType as BullState } from 'bullmq';
import { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';

import { type JobView, viewOf } from '../job-view';

const IdParams = Type.Object({ id: Type.String({ pattern: JOB_ID_PATTERN, description: 'job id' }) }, { additionalProperties: false });
const IdempotencyHeaders = Type.Object({
  'idempotency-key': Type.Optional(Type.String({ minLength: 1, maxLength: 255, pattern: '^[\\x21-\\x7e]+$', description: 'repeat-safe submission key' })),
});
const ErrorBody = Type.Object({ error: Type.String(), message: Type.Optional(Type.String()) });

class RequestError extends Error {
  constructor(
    readonly statusCode: number,
    message: string,
  ) {
    super(message);
  }
}

const TOMBSTONE_TTL_SECONDS = 30 * 24 * 3600;
const CANCEL_TTL_SECONDS = 30 * 24 * 3600;

function tombstoneKey(prefix: string, id: string): string {
  return `${prefix}:tombstone:${id}`;
}

function baseUrl(request: FastifyRequest): string {
  return `${request.protocol}://${request.host}`;
}

const LIST_STATES: Record<string, BullState[]> = {
  queued: ['waiting', 'prioritized', 'waiting-children'],
  delayed: ['delayed'],
  active: ['active'],
  completed: ['completed'],
  cancelled: ['completed'],
  failed: ['failed'],
};

export async function jobRoutes(app: FastifyInstance): Promise<void> {
  const { queues, redis, store, config } = app.ddpm;

  async function findJob(id: string): Promise<Job<JobData, JobResult> | undefined> {
    const type = jobTypeOf(id);
    if (type === undefined) return undefined;
    return (await queues[type].getJob(id)) ?? undefined;
  }

  async function view(job: Job<JobData, JobResult>, request: FastifyRequest): Promise<JobView> {
    const [state, cancelled] = await Promise.all([job.getState(), redis.exists(cancelKey(config.queuePrefix, job.id!))]);
    return viewOf(job, state, cancelled === 1, baseUrl(request));
  }

  async function tombstone(id: string): Promise<JobView | undefined> {
    const raw = await redis.get(tombstoneKey(config.queuePrefix, id));
    return raw ? (JSON.parse(raw) as JobView) : undefined;
  }

  /** Checks beyond the schema: the dataset spec, the engine's own validation, referenced jobs. */
  async function validate(type: JobType, body: Record<string, unknown>): Promise<void> {
    try {
      if (type === 'train') {
        const request = body as TrainJobRequest;
        if ((request.workers ?? 1) > 1) {
          throw new RequestError(400, 'workers > 1 (data-parallel training) is not available in this version; submit with workers: 1');
        }
        parseDatasetSpec(request.dataset);
        resolveTrainConfig(trainConfigOf(request) as never);
      } else {
        const trainJobId = String(body['trainJobId']);
        if (jobTypeOf(trainJobId) !== 'train' || (await queues.train.getJob(trainJobId)) === undefined) {
          throw new RequestError(400, `trainJobId ${JSON.stringify(trainJobId)} names no train job`);
        }
        if (type === 'eval' && body['dataset'] !== undefined) parseDatasetSpec(String(body['dataset']));
      }
    } catch (err) {
      if (err instanceof RequestError) throw err;
      if (codedErrorOf(err)?.permanent) throw new RequestError(400, (err as Error).message);
      throw err;
    }
  }

  function submitRoute(type: JobType, schema: TSchema): void {
    app.post(
      `/jobs/${type}`,
      {
        schema: {
          summary: `submit a ${type} job`,
          body: schema,
          headers: IdempotencyHeaders,
          response: { 400: ErrorBody, 409: ErrorBody },
        },
      },
      async (request: FastifyRequest<{ Body: Record<string, unknown>; Headers: { 'idempotency-key'?: string } }>, reply: FastifyReply) => {
        try {
          const body = request.body;
          await validate(type, body);
          const key = request.headers['idempotency-key'];
          const id = jobIdFor(type, key);
          const hash = requestHash(body);
          if (key !== undefined) {
            const existing = await findJob(id);
            if (existing) {
              if (existing.data.requestHash !== hash) {
                throw new RequestError(409, `Idempotency-Key ${JSON.stringify(key)} was already used for a different ${type} request (job ${id})`);
              }
              reply.header('idempotent-replayed', 'true');
              return reply.code(200).send(await view(existing, request));
            }
          }
          const data: JobData = { type, request: body as never, submittedAt: new Date().toISOString(), runPrefix: runPrefixOf(id), requestHash: hash };
          const job = await queues[type].add(type, data, {
            jobId: id,
            attempts: 3,
            backoff: { type: 'exponential', delay: 5000 },
            removeOnComplete: false,
            removeOnFail: false,
          });
          reply.header('location', `/jobs/${id}`);
          return reply.code(202).send(await view(job, request));
        } catch (err) {
          if (err instanceof RequestError) return reply.code(err.statusCode).send({ error: err.statusCode === 409 ? 'conflict' : 'invalid request', message: err.message });
          throw err;
        }
      },
    );
  }
  submitRoute('train', TrainJobRequest);
  submitRoute('sample', SampleJobRequest);
  submitRoute('eval', EvalJobRequest);

  app.get(
    '/jobs',
    {
      schema: {
        summary: 'list jobs, newest first',
        querystring: Type.Object(
          {
            type: Type.Optional(Type.Union(JOB_TYPES.map((t) => Type.Literal(t)))),
            state: Type.Optional(Type.Union(Object.keys(LIST_STATES).map((s) => Type.Literal(s)))),
            limit: Type.Optional(Type.String({ pattern: '^([1-9][0-9]?|100)$', description: '1-100, default 20' })),
            offset: Type.Optional(Type.String({ pattern: '^[0-9]{1,6}$', description: 'default 0' })),
          },
          { additionalProperties: false },
        ),
      },
    },
    async (request: FastifyRequest<{ Querystring: { type?: JobType; state?: string; limit?: string; offset?: string } }>) => {
      const limit = Number(request.query.limit ?? 20);
      const offset = Number(request.query.offset ?? 0);
      const types = request.query.type ? [request.query.type] : [...JOB_TYPES];
      const states: BullState[] = request.query.state ? LIST_STATES[request.query.state]! : ['waiting', 'prioritized', 'delayed', 'active', 'completed', 'failed'];
      const jobs = (await Promise.all(types.map((t) => queues[t].getJobs(states, 0, offset + limit - 1, false)))).flat();
      jobs.sort((a, b) => b.timestamp - a.timestamp);
      let views = await Promise.all(jobs.slice(0, offset + limit).map((j) => view(j, request)));
      if (request.query.state) views = views.filter((v) => v.state === request.query.state || (request.query.state === 'active' && v.state === 'cancelling'));
      return { jobs: views.slice(offset, offset + limit), limit, offset };
    },
  );

  app.get('/jobs/:id', { schema: { summary: 'a job: state, progress, config, result or error, links', params: IdParams } }, async (request: FastifyRequest<{ Params: { id: string } }>, reply) => {
    const job = await findJob(request.params.id);
    if (job) return view(job, request);
    const dead = await tombstone(request.params.id);
    if (dead) return dead;
    return reply.code(404).send({ error: 'not found', message: `no job ${request.params.id}` });
  });

  const cancel = async (request: FastifyRequest<{ Params: { id: string } }>, reply: FastifyReply): Promise<unknown> => {
    const id = request.params.id;
    const job = await findJob(id);
    if (!job) {
      const dead = await tombstone(id);
      if (dead) return reply.code(200).send(dead);
      return reply.code(404).send({ error: 'not found', message: `no job ${id}` });
    }
    const state = await job.getState();
    if (state === 'completed' || state === 'failed') return reply.code(200).send(await view(job, request));
    await redis.set(cancelKey(config.queuePrefix, id), '1', 'EX', CANCEL_TTL_SECONDS);
    if (state === 'waiting' || state === 'delayed' || state === 'prioritized' || state === 'waiting-children') {
      try {
        const current = await view(job, request);
        await job.remove();
        const cancelled: JobView = { ...current, state: 'cancelled', finishedAt: new Date().toISOString(), result: { status: 'cancelled' } };
        await redis.set(tombstoneKey(config.queuePrefix, id), JSON.stringify(cancelled), 'EX', TOMBSTONE_TTL_SECONDS);
        return reply.code(200).send(cancelled);
      } catch {
        // It became active meanwhile: the worker gets the message below.
      }
    }
    await redis.publish(cancelChannel(config.queuePrefix), id);
    return reply.code(202).send(await view(job, request));
  };
  app.delete('/jobs/:id', { schema: { summary: 'cancel a job (idempotent): a running train job checkpoints, then stops', params: IdParams } }, cancel);
  app.post('/jobs/:id/cancel', { schema: { summary: 'cancel a job (same as DELETE)', params: IdParams } }, cancel);

  app.get('/jobs/:id/checkpoints', { schema: { summary: "a train job's checkpoints, newest first", params: IdParams } }, async (request: FastifyRequest<{ Params: { id: string } }>, reply) => {
    const job = await findJob(request.params.id);
    if (!job || job.data.type !== 'train') return reply.code(404).send({ error: 'not found', message: `no train job ${request.params.id}` });
    const refs = await listCheckpoints(store, job.data.runPrefix);
    return { checkpoints: refs.map((r) => ({ step: r.step, url: r.url })) };
  });

  app.get(
    '/jobs/:id/logs',
    {
      schema: {
        summary: "a job's log lines (text); follow=true streams them until the job ends",
        params: IdParams,
        querystring: Type.Object({ follow: Type.Optional(Type.Union([Type.Literal('true'), Type.Literal('false')])) }, { additionalProperties: false }),
      },
    },
    async (request: FastifyRequest<{ Params: { id: string }; Querystring: { follow?: string } }>, reply) => {
      const job = await findJob(request.params.id);
      if (!job) return reply.code(404).send({ error: 'not found', message: `no job ${request.params.id}` });
      const queue = queues[job.data.type];
      reply.header('content-type', 'text/plain; charset=utf-8');
      if (request.query.follow !== 'true') {
        const { logs } = await queue.getJobLogs(job.id!, 0, -1);
        return logs.map((l) => `${l}\n`).join('');
      }
      const stream = new PassThrough();
      let sent = 0;
      let closed = false;
      request.raw.on('close', () => {
        closed = true;
      });
      const pump = async (): Promise<void> => {
        while (!closed) {
          const { logs } = await queue.getJobLogs(job.id!, sent, -1);
          for (const line of logs) stream.write(`${line}\n`);
          sent += logs.length;
          const state = await job.getState();
          if ((state === 'completed' || state === 'failed' || state === 'unknown') && logs.length === 0) break;
          await new Promise((resolve) => setTimeout(resolve, 500));
        }
        stream.end();
      };
      pump().catch(() => stream.end());
      return reply.send(stream);
    },
  );
}
