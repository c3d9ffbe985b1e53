/**
 * A job process as one rank of a group: joining a generation (its heartbeat, the rendezvous, the
 * data plane), the link a training rank exchanges gradients through, and the relay a sampling
 * group brings its batches to rank 0 on.
 */
import {
  BatchRelay,
  type PlaneChoice,
  Heartbeat,
  RedisCollective,
  assertGenerationAlive,
  collectiveError,
  evaluationNamespace,
  generationEnded,
  sharedMemoryBytes,
} from '@ddpm/allreduce';
import { type SamplingGroupConfig, type TrainJobConfig, parameterCount } from '@ddpm/settings';
import { type GroupLink, type SamplingGroupLink } from '@ddpm/engine';
import { Redis } from 'ioredis';

import { controller, log, send } from './child-channel';
import { type ChildGroup, type ExchangeStats } from './child-protocol';
import { generationFence } from './group';

/** This process as one rank of a group generation: its heartbeat thread, its data-plane connections, its link. */
export interface RankSession {
  readonly link: GroupLink;
  readonly heartbeat: Heartbeat;
  readonly rankTimeoutMs: number;
  readonly resumeStep?: number;
  /** The traffic of the latest exchange, for the step's metrics. */
  lastExchange?: ExchangeStats;
  /** How long a wait for peers may last (see RedisCollective.setMaxWait). */
  setMaxWait(ms: number): void;
  close(left: boolean): Promise<void>;
}

/** What every rank of a generation has joined with (joinGeneration). */
interface Generation {
  readonly heartbeat: Heartbeat;
  readonly redis: Redis;
  readonly control: Redis;
  readonly keys: { readonly namespace: string; readonly worldSize: number };
  readonly dataOptions: { maxRetriesPerRequest: number; connectTimeout: number };
  readonly closeBase: (left?: boolean) => Promise<void>;
}

/**
 * What every rank of a generation has: its heartbeat (beating at once), a data-plane and a
 * control-plane connection, and the rendezvous behind it: every rank beats.
 */
async function joinGeneration(g: ChildGroup, rankTimeoutMs: number): Promise<Generation> {
  // Until the first step ends, allow the slow start of a large model (loading, compiling kernels).
  const heartbeat = new Heartbeat({
    redisUrl: g.dataRedisUrl,
    namespace: g.namespace,
    rank: g.rank,
    rankTimeoutMs,
    stallMs: Math.max(rankTimeoutMs, 600_000),
  });
  const dataOptions = { maxRetriesPerRequest: 2, connectTimeout: rankTimeoutMs };
  const redis = new Redis(g.dataRedisUrl, dataOptions);
  const control = new Redis(g.controlRedisUrl, { maxRetriesPerRequest: 2 });
  for (const c of [redis, control]) c.on('error', () => undefined);
  const keys = { namespace: g.namespace, worldSize: g.worldSize };
  const closeBase = async (left = false): Promise<void> => {
    await heartbeat.stop({ left });
    for (const c of [redis, control]) c.disconnect();
  };
  try {
    // A claimed worker that died in the last seconds (its slot still looked alive) never beats: give up soon.
    const deadline = Date.now() + Math.max(2 * rankTimeoutMs, 15_000);
    for (;;) {
      const ended = await generationEnded(redis, keys);
      if (ended === undefined) break;
      if (ended.cause !== 'heartbeat' || Date.now() > deadline)
        throw collectiveError(
          'DDPM_GROUP_LOST',
          `rank ${g.rank} could not join generation ${g.generation}: ${ended.message}`,
        );
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  } catch (err) {
    await closeBase();
    throw err;
  }
  return { heartbeat, redis, control, keys, dataOptions, closeBase };
}

/** Where a generation's values travel, for its log. */
function describePlane(choice: PlaneChoice): string {
  const why = choice.reasons.length > 0 ? ` (${choice.reasons.join('; ')})` : '';
  switch (choice.plane) {
    case 'shared-memory':
      return `through ${String(choice.where)}: every rank is on this host, Redis carries the signals`;
    case 'ranks':
      return `between the ranks' own data servers${why}`;
    case 'hub':
      return `through the group's data Redis${why}`;
    default: {
      const unreachable: never = choice.plane;
      return String(unreachable);
    }
  }
}

/**
 * Joins a generation: beats at once, connects to the data plane, waits until every rank beats
 * (the rendezvous), and builds the link the trainer exchanges through. Only rank 0 writes, and only
 * while the control plane still names this generation as the run's (the write fence).
 */
export async function joinGroup(g: ChildGroup, config: TrainJobConfig): Promise<RankSession> {
  const rankTimeoutMs = config.group.rankTimeoutSeconds * 1000;
  const generation = await joinGeneration(g, rankTimeoutMs);
  const { heartbeat, redis, keys, dataOptions, closeBase } = generation;
  const collective = new RedisCollective({
    redisUrl: g.dataRedisUrl,
    redisOptions: dataOptions,
    namespace: g.namespace,
    rank: g.rank,
    worldSize: g.worldSize,
    transport: config.group.transport,
    keyTtlSeconds: Math.ceil((2 * rankTimeoutMs) / 1000) + 60,
    checkAlive: () => assertGenerationAlive(redis, keys),
    onWait: () => heartbeat.progress(),
    // Until a step's time is known: the slow start of a large model (loading, compiling kernels).
    maxWaitMs: Math.max(rankTimeoutMs, 600_000),
    ...(g.sharedMemoryDir !== undefined ? { sharedMemoryDir: g.sharedMemoryDir } : {}),
    ...(g.ownDataUrl !== undefined ? { ownDataUrl: g.ownDataUrl } : {}),
  });
  const close = async (left = false): Promise<void> => {
    // A failed generation's gradients in shared memory have no reader left (Redis keys expire); a
    // rank done with its work leaves, and the last to leave deletes them (if that fails, the
    // files go with the day-old sweep of the next group on this host).
    if (!left) await collective.abandonSharedMemory();
    else await collective.leaveSharedMemory().catch(() => undefined);
    collective.close();
    await closeBase(left);
  };
  let choice: PlaneChoice;
  try {
    // Ranks on one host keep the gradients out of Redis (room for every rank's values of two
    // steps, and some); ranks on several hosts use their own data servers when they all have one.
    choice = await collective.negotiatePlane(
      sharedMemoryBytes(parameterCount(config.train), g.worldSize, config.group.transport) + 64 * 2 ** 20,
    );
    send({ type: 'plane', plane: choice.plane, reasons: choice.reasons });
    log(`rank ${g.rank}: generation ${g.generation}'s gradients travel ${describePlane(choice)}`);
  } catch (err) {
    await close();
    throw err;
  }
  const session = rankSession(g, config, generation, collective, choice, close);
  log(
    `rank ${g.rank} of ${g.worldSize} joined generation ${g.generation}${g.resumeStep !== undefined ? `, from the checkpoint of step ${g.resumeStep}` : ''}`,
  );
  return session;
}

/** The rank's session: its heartbeat, its wait limit, and the link the trainer exchanges through. */
function rankSession(
  g: ChildGroup,
  config: TrainJobConfig,
  generation: Generation,
  collective: RedisCollective,
  choice: PlaneChoice,
  close: (left?: boolean) => Promise<void>,
): RankSession {
  const { heartbeat, redis, control, keys } = generation;
  const rankTimeoutMs = config.group.rankTimeoutSeconds * 1000;
  let sumBuffer: Float32Array | undefined;
  const session: RankSession = {
    heartbeat,
    setMaxWait: (ms) => collective.setMaxWait(ms),
    rankTimeoutMs,
    ...(g.resumeStep !== undefined ? { resumeStep: g.resumeStep } : {}),
    link: {
      rank: g.rank,
      worldSize: g.worldSize,
      // The job's own world size blocks the sums, whatever this generation's (@ddpm/engine's group-link.ts).
      blocks: config.group.workers,
      checksumEvery: config.group.checksumEvery,
      exchange: async (step, partial, report) => {
        const started = process.hrtime.bigint();
        // The sum lands in one buffer for every step; the trainer copies it into tensors at once.
        sumBuffer ??= new Float32Array(partial.length);
        const exchanged = await collective.exchange(step, partial, report, sumBuffer);
        session.lastExchange = {
          seconds: Number(process.hrtime.bigint() - started) / 1e9,
          bytesSent: exchanged.bytesSent,
          bytesReceived: exchanged.bytesReceived,
        };
        heartbeat.progress();
        // Waits only look at liveness when nothing arrives; an aborted generation must stop even
        // while its data keeps flowing: one look a step.
        await assertGenerationAlive(redis, keys);
        return exchanged;
      },
      assertWriter: generationFence(control, g.generationKey, g.generation),
      evaluationGather: (step) => evaluationGather(g, generation, choice, step),
    },
    close,
  };
  return session;
}

/**
 * How long a rank's share of an evaluation's samples may wait on the data plane for a slower
 * peer (every rank draws the same share, so seconds, not hours; a failed generation leaves them there
 * this long at most).
 */
const EVAL_GATHER_TTL_SECONDS = 3600;

/** The collective an evaluation after `step` gathers its samples through. */
function evaluationGather(
  g: ChildGroup,
  generation: Generation,
  choice: PlaneChoice,
  step: number,
): ReturnType<NonNullable<GroupLink['evaluationGather']>> {
  const { heartbeat, redis, keys, dataOptions } = generation;
  // Its own keys (the evaluation after `step`), full precision whatever the gradients' transport:
  // the samples must arrive as drawn. A peer is waited for as long as it beats.
  const samples = new RedisCollective({
    redisUrl: g.dataRedisUrl,
    redisOptions: dataOptions,
    namespace: evaluationNamespace(g.namespace, step),
    rank: g.rank,
    worldSize: g.worldSize,
    transport: 'fp32',
    keyTtlSeconds: EVAL_GATHER_TTL_SECONDS,
    checkAlive: () => assertGenerationAlive(redis, keys),
    onWait: () => heartbeat.progress(),
  });
  // Between the ranks' own servers when the generation agreed on them (never shared memory:
  // an evaluation's chunks are read once, and files would outlive it).
  if (choice.plane === 'ranks') samples.useRankServers(choice.where as readonly string[]);
  return {
    rank: g.rank,
    worldSize: g.worldSize,
    sum: async (chunk, values) => {
      const { sum, bytesSent, bytesReceived } = await samples.allReduceSum(chunk, values);
      send({ type: 'relayed', bytes: bytesSent, direction: 'sent' });
      send({ type: 'relayed', bytes: bytesReceived, direction: 'received' });
      heartbeat.progress();
      return sum;
    },
    close: () => Promise.resolve(samples.close()),
  };
}

/** This process as one rank of a sampling group (a sample or eval job with workers > 1). */
export interface SamplingSession {
  readonly link: SamplingGroupLink;
  readonly heartbeat: Heartbeat;
  close(left: boolean): Promise<void>;
}

/**
 * How long a drawn batch may wait on the data plane for rank 0, which may be busy for a long while
 * before it reads the first (reference statistics, an extractor to train). At most a window of
 * batches per rank waits there; the keys go with the generation's namespace.
 */
const RELAY_TTL_SECONDS = 6 * 3600;

/** Joins a sampling group's generation: the rendezvous, then the relay that brings batches to rank 0. */
export async function joinSamplingGroup(g: ChildGroup, group: SamplingGroupConfig): Promise<SamplingSession> {
  const { heartbeat, redis, keys, dataOptions, closeBase } = await joinGeneration(g, group.rankTimeoutSeconds * 1000);
  // The batches go to rank 0's own data server when every rank has one and reaches the others'
  // (each batch then crosses the sender's link and rank 0's once), else through the hub.
  let relayUrl = g.dataRedisUrl;
  const common = {
    redisOptions: dataOptions,
    namespace: g.namespace,
    rank: g.rank,
    worldSize: g.worldSize,
    keyTtlSeconds: RELAY_TTL_SECONDS,
    checkAlive: () => assertGenerationAlive(redis, keys),
    onWait: () => heartbeat.progress(),
  };
  try {
    const negotiator = new RedisCollective({
      ...common,
      redisUrl: g.dataRedisUrl,
      ...(g.ownDataUrl !== undefined ? { ownDataUrl: g.ownDataUrl } : {}),
    });
    try {
      const servers = await negotiator.agreeOnRankServers();
      if (servers.endpoints !== undefined) relayUrl = servers.endpoints[0] ?? relayUrl;
      send({
        type: 'plane',
        plane: servers.endpoints !== undefined ? 'ranks' : 'hub',
        reasons: servers.endpoints !== undefined ? [] : [servers.why],
      });
      log(
        `rank ${g.rank}: the samples travel to rank 0 ${servers.endpoints !== undefined ? 'through its own data server' : `through the group's data Redis (${servers.why})`}`,
      );
    } finally {
      negotiator.close();
    }
  } catch (err) {
    await closeBase();
    throw err;
  }
  const relay = new BatchRelay({ ...common, redisUrl: relayUrl, signal: controller.signal });
  log(`rank ${g.rank} of ${g.worldSize} joined generation ${g.generation} of a sampling group`);
  return {
    heartbeat,
    link: {
      rank: g.rank,
      worldSize: g.worldSize,
      send: async (index, values) => {
        send({ type: 'relayed', bytes: await relay.send(index, values), direction: 'sent' });
        heartbeat.progress();
      },
      receive: async (index) => {
        const values = await relay.receive(index);
        send({ type: 'relayed', bytes: values.byteLength, direction: 'received' });
        heartbeat.progress();
        return values;
      },
      announce: (step) => relay.announce(String(step)),
      announced: async () => Number(await relay.announced()),
    },
    close: async (left) => {
      // A rank leaving a failed or cancelled generation takes what it left on the data plane with it.
      await relay.close({ abandon: !left });
      await closeBase(left);
    },
  };
}
