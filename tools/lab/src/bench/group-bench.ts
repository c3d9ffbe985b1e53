/**
 * Benchmarks of data-parallel groups, each rank in a process of its own (as a worker's child):
 *
 * - `allreduce`: the Redis all-reduce of S MB across N ranks, interleaved with one client's plain
 *   SET and GET of the same S MB on the same Redis (the raw throughput the hub offers one client),
 *   twice: with ioredis, the project's Redis client, and with the lean connection the all-reduce
 *   moves its values on (no copies in JavaScript), so that neither client flatters the ratio.
 *   Reports the bus bandwidth 2(N − 1)/N · S / time (NCCL's measure: what each rank moves per
 *   second in each direction) and its ratio to each raw figure, and the hub's own rate (N·S in and
 *   2(N − 1)·S out per all-reduce) against them.
 * - `dp`: training images/s of one process (the whole batch) and of N ranks (its share each,
 *   accumulation N), interleaved in rounds, and the speed-up. Beside them, the ceiling: the same N
 *   processes each training its share alone at the same time, no exchange and no waiting for each
 *   other, which is what the machine's cores give (their contention for memory and caches, and a
 *   small batch's lower efficiency, included); a group can only approach it.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import {
  BulkConnection,
  type PlaneName,
  type Transport,
  bulkTarget,
  generationKeys,
  openGeneration,
  rawTransferKey,
} from '@ddpm/allreduce';
import { type TrainConfig, resolveTrainJob } from '@ddpm/settings';
import { kernelExecArgv } from '@ddpm/kernels/v8-flags';
import { type UNetConfig, describeArchitecture, preset } from '@ddpm/unet';
import { Redis } from 'ioredis';

import { type BenchRankCommand, type BenchRankReply } from './rank-protocol';
import { median, round } from './timing';

/** How the ranks of a benchmark move their values, and what they compute with. */
export interface RankOptions {
  readonly transport: Transport;
  /** A shared-memory folder the ranks may use when they all reach it (as the worker does: DDPM_SHM_DIR); absent: Redis. */
  readonly sharedMemoryDir?: string;
  readonly backend?: string;
  readonly env?: NodeJS.ProcessEnv;
  /** Rank r's own data server, for the ranks plane (absent: none advertised). */
  readonly ownDataUrl?: (rank: number) => string | undefined;
  /**
   * Starts rank r's process from the rank script (default: a fork on this machine). It must have
   * an IPC channel with advanced serialization (simulated hosts start it in their namespace).
   */
  readonly launch?: (rank: number, script: string) => ChildProcess;
}

/** What a worker uses for a group whose ranks share this host: DDPM_SHM_DIR, else /dev/shm where it exists (`off`: none). */
export function defaultSharedMemoryDir(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const dir = env['DDPM_SHM_DIR'];
  if (dir === 'off') return undefined;
  if (dir !== undefined && dir !== '') return dir;
  return existsSync('/dev/shm') ? '/dev/shm' : undefined;
}

/** N rank processes and a way to ask them all and await their answers; `sharedMemory`: whether the ranks' values travel through it. */
export async function ranks(
  n: number,
  redisUrl: string,
  namespace: string,
  options: RankOptions,
): Promise<{
  all(make: (rank: number) => BenchRankCommand): Promise<BenchRankReply[]>;
  one(rank: number, c: BenchRankCommand): Promise<BenchRankReply>;
  close(): Promise<void>;
  sharedMemory: boolean;
  plane: PlaneName;
}> {
  const { transport, backend, env, sharedMemoryDir } = options;
  // The compiled rank script next to this one (from a test, the build's copy of it).
  const script = path.join(__dirname.replace(/([\\/])src([\\/]bench)$/, '$1dist$2'), 'rank-process.js');
  const children: ChildProcess[] = Array.from({ length: n }, (_, rank) =>
    options.launch
      ? options.launch(rank, script)
      : fork(script, [], {
          stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
          serialization: 'advanced',
          execArgv: kernelExecArgv(),
          ...(env ? { env: { ...process.env, ...env } } : {}),
        }),
  );
  const ask = (child: ChildProcess, command: BenchRankCommand): Promise<BenchRankReply> =>
    new Promise((resolve, reject) => {
      child.once('message', (m: BenchRankReply) => (m.cmd === 'error' ? reject(new Error(m.message)) : resolve(m)));
      child.send(command);
    });
  const group = {
    all: (make: (rank: number) => BenchRankCommand) => Promise.all(children.map((c, r) => ask(c, make(r)))),
    one: (rank: number, c: BenchRankCommand) => ask(children[rank]!, c),
    close: async () => {
      await Promise.all(
        children.map(
          (c) =>
            new Promise<void>((resolve) => {
              c.once('exit', () => resolve());
              c.send({ cmd: 'exit' } satisfies BenchRankCommand);
            }),
        ),
      );
    },
  };
  const joined = await group.all((rank) => ({
    cmd: 'join',
    redisUrl,
    namespace,
    rank,
    worldSize: n,
    transport,
    ...(backend ? { backend } : {}),
    ...(sharedMemoryDir ? { sharedMemoryDir } : {}),
    ...(options.ownDataUrl?.(rank) !== undefined ? { ownDataUrl: options.ownDataUrl(rank) } : {}),
  }));
  const planes = joined.map((m) => (m.cmd === 'joined' ? m.plane : undefined));
  return { ...group, sharedMemory: planes.every((p) => p === 'shared-memory'), plane: planes[0] ?? 'hub' };
}

export interface AllReduceBenchOptions {
  readonly redisUrl: string;
  readonly workers: number;
  readonly megabytes: number;
  readonly rounds: number;
  readonly transport: Transport;
  /** Where the values may travel instead of Redis when the ranks share this host (default: Redis, the figure the issue compares with raw Redis). */
  readonly sharedMemoryDir?: string;
}

export async function benchAllReduce(options: AllReduceBenchOptions): Promise<Record<string, unknown>> {
  const { workers: n, megabytes, rounds, transport, redisUrl } = options;
  const bytes = Math.floor(megabytes * 1024 * 1024);
  const values = Math.floor(bytes / 4);
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: 1 });
  const namespace = `bench-ar-${randomBytes(4).toString('hex')}`;
  const raw: number[] = [];
  const rawLean: number[] = [];
  const allreduce: number[] = [];
  const payload = Buffer.alloc(bytes, 7);
  const target = bulkTarget(redisUrl);
  const lean = target ? new BulkConnection(target) : undefined;
  const landing = Buffer.allocUnsafeSlow(bytes);
  let group: Awaited<ReturnType<typeof ranks>> | undefined;
  let sharedMemory: boolean;
  try {
    await openGeneration(redis, namespace, 3_600_000);
    group = await ranks(n, redisUrl, namespace, {
      transport,
      ...(options.sharedMemoryDir ? { sharedMemoryDir: options.sharedMemoryDir } : {}),
    });
    const g = group;
    sharedMemory = g.sharedMemory;
    // Rank r adds r + 1 everywhere: the sum is n(n + 1)/2, which each rank checks.
    const run = async (step: number): Promise<number> =>
      Math.max(
        ...(await g.all((r) => ({ cmd: 'allreduce', step, values, fill: r + 1, expect: (n * (n + 1)) / 2 }))).map(
          (m) => (m.cmd === 'done' ? m.ms : 0),
        ),
      );
    await run(0);
    // Alternating blocks of rounds: both see the same machine, yet neither runs on the heap
    // (Redis's allocator) the other just churned.
    for (let block = 0; block < 2; block++) {
      const key = rawTransferKey(namespace);
      for (let r = 0; r < Math.ceil(rounds / 2); r++) {
        const started = process.hrtime.bigint();
        await redis.set(key, payload);
        await redis.getBuffer(key);
        raw.push(Number(process.hrtime.bigint() - started) / 1e6);
        if (lean === undefined) continue;
        const leanStarted = process.hrtime.bigint();
        await lean.command(['SET', key, payload]);
        const back = await lean.command(['GET', key], () => landing);
        rawLean.push(Number(process.hrtime.bigint() - leanStarted) / 1e6);
        if (!Buffer.isBuffer(back) || back.length !== bytes)
          throw new Error(
            `the lean client read ${Buffer.isBuffer(back) ? back.length : String(back)} bytes back, not ${bytes}`,
          );
      }
      await redis.del(key);
      for (let r = 0; r < Math.ceil(rounds / 2); r++) allreduce.push(await run(1 + block * rounds + r));
    }
  } finally {
    await group?.close();
    await redis.del(generationKeys(namespace).alive).catch(() => undefined);
    redis.disconnect();
    lean?.close();
  }
  return allReduceReport(options, sharedMemory, bytes, { raw, rawLean, allreduce });
}

/** The all-reduce benchmark's JSON from its times (ms): bus bandwidth and the hub's rate against the raw clients'. */
function allReduceReport(
  options: AllReduceBenchOptions,
  sharedMemory: boolean,
  bytes: number,
  times: { raw: readonly number[]; rawLean: readonly number[]; allreduce: readonly number[] },
): Record<string, unknown> {
  const { workers: n, rounds, transport } = options;
  const { raw, rawLean, allreduce } = times;
  const seconds = median(allreduce) / 1000;
  const mb = bytes / 1024 / 1024;
  const rawMBps = (2 * mb) / (median(raw) / 1000);
  const rawLeanMBps = rawLean.length > 0 ? (2 * mb) / (median(rawLean) / 1000) : undefined;
  const busMBps = ((2 * (n - 1)) / n) * (mb / seconds) * (transport === 'fp32' ? 1 : 0.5);
  const hubMBps = ((n + 2 * (n - 1)) * mb * (transport === 'fp32' ? 1 : 0.5)) / seconds;
  return {
    benchmark: 'allreduce',
    workers: n,
    megabytes: mb,
    transport,
    dataPlane: sharedMemory ? `shared memory (${options.sharedMemoryDir})` : 'redis',
    rounds,
    allreduceMs: round(median(allreduce), 1),
    busBandwidthMBps: round(busMBps, 1),
    rawRedisMBps: round(rawMBps, 1),
    rawMeasured: `one client (ioredis): SET then GET of ${mb} MB, (2 x ${mb} MB) / time`,
    busOverRaw: round(busMBps / rawMBps, 3),
    ...(rawLeanMBps !== undefined
      ? {
          rawLeanRedisMBps: round(rawLeanMBps, 1),
          rawLeanMeasured: 'the same with the lean connection the all-reduce uses (redis:// only)',
          busOverRawLean: round(busMBps / rawLeanMBps, 3),
        }
      : {}),
    hubMBps: round(hubMBps, 1),
    hubOverRaw: round(hubMBps / rawMBps, 3),
  };
}

/** The run a training benchmark times: the preset on procedural shapes, no warm-up, never a checkpoint. */
export function benchTrainConfig(presetName: string, batch: number, accumulation: number): TrainConfig {
  const { inChannels } = preset(presetName);
  return resolveTrainJob({
    dataset: `procedural:shapes?size=512&channels=${inChannels}`,
    preset: presetName as 'tiny32',
    batchSize: batch,
    accumulation,
    steps: 1_000_000,
    checkpointEvery: 1_000_000,
    warmupSteps: 0,
  }).train;
}

/**
 * The command that opens a trainer named `name` in a rank process: `batch` images of the preset
 * in `accumulation` shares, as rank `rank` of `worldSize` (a run of its own by default).
 */
export function openTrainer(
  name: string,
  options: { presetName: string; batch: number; accumulation: number; storeDir: string },
  rank = 0,
  worldSize = 1,
): BenchRankCommand {
  const { presetName, batch, accumulation, storeDir } = options;
  return {
    cmd: 'open',
    name,
    config: benchTrainConfig(presetName, batch, accumulation),
    storeDir,
    rank,
    worldSize,
    stepOffset: 0,
  };
}

/** Steps each configuration of `ddpm bench dp` takes before it is timed. */
const WARMUP_STEPS = 3;

export interface DataParallelBenchOptions {
  readonly redisUrl: string;
  readonly presetName: string;
  readonly batch: number;
  readonly workers: number;
  readonly steps: number;
  readonly rounds: number;
  /** How the group's gradients travel (fp32: bit-identical to one process with accumulation = N). */
  readonly transport?: Transport;
  /** Where the gradients may travel instead of Redis when the ranks share this host (as a worker's: see defaultSharedMemoryDir). */
  readonly sharedMemoryDir?: string;
  readonly backend: string;
}

export async function benchDataParallel(options: DataParallelBenchOptions): Promise<Record<string, unknown>> {
  const { workers: n, steps, rounds, presetName } = options;
  const config = preset(presetName);
  const storeDir = await fs.mkdtemp(path.join(os.tmpdir(), 'ddpm-bench-dp-'));
  const redis = new Redis(options.redisUrl, { maxRetriesPerRequest: 1 });
  const namespace = `bench-dp-${randomBytes(4).toString('hex')}`;
  const single: number[] = [];
  const grouped: number[] = [];
  const independent: number[] = [];
  /** Per rank and round: its own computation and its exchange (waiting for peers included), per step. */
  const shares: { compute: number; exchange: number }[][] = [];
  const sets: { namespace: string; processes: Awaited<ReturnType<typeof ranks>> | undefined }[] = [];
  let sharedMemory: boolean;
  try {
    // Processes of their own for each configuration, each running one kind of step as a worker's
    // child does (a process that also ran the others' steps computed its share measurably faster
    // or slower, as V8 optimized the step's JavaScript for one kind of step or for several).
    const spawnSet = async (size: number, kind: string): Promise<Awaited<ReturnType<typeof ranks>>> => {
      const set: (typeof sets)[number] = { namespace: `${namespace}-${kind}`, processes: undefined };
      sets.push(set);
      await openGeneration(redis, set.namespace, 3_600_000);
      set.processes = await ranks(size, options.redisUrl, set.namespace, {
        transport: options.transport ?? 'fp32',
        backend: options.backend,
        ...(options.sharedMemoryDir ? { sharedMemoryDir: options.sharedMemoryDir } : {}),
      });
      return set.processes;
    };
    const group = await spawnSet(n, 'group');
    sharedMemory = group.sharedMemory;
    const solo = await spawnSet(1, 'single');
    const apart = await spawnSet(n, 'share');
    await openDataParallelRuns({ solo, group, apart }, options, storeDir);
    const time = async (which: 'single' | 'group' | 'share', k: number): Promise<number> => {
      const replies =
        which === 'single'
          ? [await solo.one(0, { cmd: 'train', name: 'single', steps: k })]
          : await (which === 'group' ? group : apart).all(() => ({ cmd: 'train', name: which, steps: k }));
      if (which === 'group') {
        for (const [r, m] of replies.entries())
          if (m.cmd === 'done')
            (shares[r] ??= []).push({ compute: (m.computeMs ?? 0) / k, exchange: (m.exchangeMs ?? 0) / k });
      }
      return Math.max(...replies.map((m) => (m.cmd === 'done' ? m.ms : 0)));
    };
    // Warm-up steps for each (kernel compilation, heap growth, V8 optimizing the step's
    // JavaScript), then interleaved rounds.
    for (const which of ['single', 'group', 'share'] as const) await time(which, WARMUP_STEPS);
    for (let r = 0; r < rounds; r++) {
      single.push(await time('single', steps));
      grouped.push(await time('group', steps));
      // The slowest process's time: the N shares are the whole batch only when all are done.
      independent.push(await time('share', steps));
    }
  } finally {
    for (const set of sets) {
      await set.processes?.close();
      await redis.del(generationKeys(set.namespace).alive).catch(() => undefined);
    }
    redis.disconnect();
    await fs.rm(storeDir, { recursive: true, force: true });
  }
  return dataParallelReport(options, config, sharedMemory, { single, grouped, independent, shares });
}

/** Opens each configuration's trainers: the whole batch alone, the group's (accumulation N), and the shares apart. */
async function openDataParallelRuns(
  sets: Record<'solo' | 'group' | 'apart', Awaited<ReturnType<typeof ranks>>>,
  options: DataParallelBenchOptions,
  storeDir: string,
): Promise<void> {
  const { workers: n, batch, presetName } = options;
  const { solo, group, apart } = sets;
  await solo.one(0, openTrainer('single', { presetName, batch, accumulation: 1, storeDir }));
  await group.all((rank) => openTrainer('group', { presetName, batch, accumulation: n, storeDir }, rank, n));
  // Each process's share as a run of its own (batch / N, no group), for the ceiling.
  await apart.all(() => openTrainer('share', { presetName, batch: batch / n, accumulation: 1, storeDir }));
}

/** The data-parallel benchmark's JSON from its times (ms per round): images/s, speed-ups and the ceiling. */
function dataParallelReport(
  options: DataParallelBenchOptions,
  config: UNetConfig,
  sharedMemory: boolean,
  times: {
    single: readonly number[];
    grouped: readonly number[];
    independent: readonly number[];
    shares: readonly (readonly { compute: number; exchange: number }[])[];
  },
): Record<string, unknown> {
  const { workers: n, batch, steps, rounds, presetName } = options;
  const { single, grouped, independent, shares } = times;
  const imagesPerSecond = (ms: number): number => (steps * batch) / (ms / 1000);
  const one = imagesPerSecond(median(single));
  const many = imagesPerSecond(median(grouped));
  const apart = imagesPerSecond(median(independent));
  return {
    benchmark: 'dp',
    preset: presetName,
    params: describeArchitecture(config).totalParams,
    batch,
    workers: n,
    stepsPerRound: steps,
    rounds,
    backend: options.backend,
    transport: options.transport ?? 'fp32',
    dataPlane: sharedMemory ? `shared memory (${options.sharedMemoryDir})` : 'redis',
    singleProcess: { imagesPerSecond: round(one, 2), stepMs: round(median(single) / steps, 1) },
    group: {
      imagesPerSecond: round(many, 2),
      stepMs: round(median(grouped) / steps, 1),
      gradientMegabytes: round((describeArchitecture(config).totalParams * 4) / 1024 / 1024, 2),
      perRank: shares.map((rounds_, rank) => ({
        rank,
        computeMs: round(median(rounds_.slice(1).map((x) => x.compute)), 1),
        exchangeMs: round(median(rounds_.slice(1).map((x) => x.exchange)), 1),
      })),
    },
    speedup: round(many / one, 3),
    ceiling: {
      measured: `${n} processes each training batch ${batch / n} alone at the same time (no exchange, no waiting for each other), images/s of all of them`,
      imagesPerSecond: round(apart, 2),
      speedup: round(apart / one, 3),
    },
    /** The group's images/s over the ceiling's: what the exchange and the per-step waiting cost. */
    groupOverCeiling: round(many / apart, 3),
  };
}
