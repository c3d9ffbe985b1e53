/**
 * One rank of a benchmark (`ddpm bench allreduce`, `ddpm bench dp`), in a process of its own as a
 * worker's child would be. The parent sends commands over IPC and gets timings back.
 */
import { BulkConnection, Heartbeat, RedisCollective, assertGenerationAlive, bulkTarget } from '@ddpm/allreduce';
import { loadTensorSettings } from '@ddpm/service';
import { type TrainConfig } from '@ddpm/settings';
import { type GroupLink, type Trainer } from '@ddpm/engine';
import { Redis } from 'ioredis';

import { type BenchRankCommand, type BenchRankReply } from './rank-protocol';

let collective: RedisCollective | undefined;
let heartbeat: Heartbeat | undefined;
let control: Redis | undefined;
let payload: Float32Array | undefined;
let out: Float32Array | undefined;
const trainers = new Map<string, { trainer: Trainer; group?: GroupLink }>();
/** The sampling benchmark's models and inputs by preset and batch, kept between rounds (built on the first call). */
const sampling = new Map<string, { step: () => Promise<void>; dispose: () => void }>();

function reply(message: BenchRankReply): void {
  process.send?.(message);
}

/** The command of one kind. */
type Command<C extends BenchRankCommand['cmd']> = Extract<BenchRankCommand, { readonly cmd: C }>;

/** Runs one command of the parent's, each kind in a function of its own that replies when done. */
function handle(command: BenchRankCommand): Promise<void> {
  switch (command.cmd) {
    case 'join':
      return joinGroup(command);
    case 'raw':
      return rawTransfer(command);
    case 'allreduce':
      return allReduce(command);
    case 'open':
      return openTrainer(command);
    case 'train':
      return trainSteps(command);
    case 'sample':
      return sampleSteps(command);
    case 'memory':
      return reportMemory();
    case 'exit':
      return exitRank();
  }
}

async function joinGroup(command: Command<'join'>): Promise<void> {
  control = new Redis(command.redisUrl, { maxRetriesPerRequest: 2 });
  heartbeat = new Heartbeat({
    redisUrl: command.redisUrl,
    namespace: command.namespace,
    rank: command.rank,
    rankTimeoutMs: 60_000,
    stallMs: 3_600_000,
  });
  collective = new RedisCollective({
    redisUrl: command.redisUrl,
    namespace: command.namespace,
    rank: command.rank,
    worldSize: command.worldSize,
    transport: command.transport,
    keyTtlSeconds: 300,
    checkAlive: () => assertGenerationAlive(control!, { namespace: command.namespace, worldSize: command.worldSize }),
    ...(command.sharedMemoryDir ? { sharedMemoryDir: command.sharedMemoryDir } : {}),
    ...(command.ownDataUrl ? { ownDataUrl: command.ownDataUrl } : {}),
  });
  const { plane } = await collective.negotiatePlane(0);
  // Tensor code only for the training benchmark: the all-reduce's ranks stay as lean as the
  // collective itself (a larger heap makes the collections its large buffers bring slower).
  // The kernels' switches (DDPM_KERNEL_THREADS among them) as a worker reads them from its environment.
  if (command.backend)
    await (await import('@ddpm/kernels')).initBackend({ ...loadTensorSettings(process.env), backend: command.backend });
  reply({ cmd: 'joined', sharedMemory: plane === 'shared-memory', plane });
}

async function rawTransfer(command: Command<'raw'>): Promise<void> {
  const target = bulkTarget(command.url);
  if (target === undefined) throw new Error(`${command.url} is not a plain redis:// URL`);
  const lean = new BulkConnection(target);
  try {
    const value = Buffer.alloc(command.bytes, 7);
    const landing = Buffer.allocUnsafeSlow(command.bytes);
    const key = `bench-raw-${process.pid}`;
    await lean.command(['PING']);
    let started = process.hrtime.bigint();
    await lean.command(['SET', key, value]);
    const setMs = Number(process.hrtime.bigint() - started) / 1e6;
    started = process.hrtime.bigint();
    await lean.command(['GETDEL', key], () => landing);
    const getMs = Number(process.hrtime.bigint() - started) / 1e6;
    reply({ cmd: 'raw', setMs, getMs });
  } finally {
    lean.close();
  }
}

async function allReduce(command: Command<'allreduce'>): Promise<void> {
  // One buffer for every round: a fresh 64 MB array each time would time the allocator too.
  if (payload?.length !== command.values) {
    payload = new Float32Array(command.values);
    out = new Float32Array(command.values);
  }
  const values = payload.fill(command.fill);
  // Start together: the time is the all-reduce's, not one rank waiting for another to get ready.
  await collective!.allGather(command.step, 'start', 0);
  const started = process.hrtime.bigint();
  const { sum } = await collective!.allReduceSum(command.step, values, out);
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  if (sum[0] !== command.expect) throw new Error(`all-reduce sum ${sum[0]} is not ${command.expect}`);
  reply({ cmd: 'done', ms });
}

async function openTrainer(command: Command<'open'>): Promise<void> {
  const { Trainer } = await import('@ddpm/engine');
  const { FileStore } = await import('@ddpm/storage');
  const store = new FileStore(command.storeDir);
  const trainer = await Trainer.open(command.config as TrainConfig, { store, prefix: command.name, resume: false });
  const group: GroupLink | undefined =
    command.worldSize > 1
      ? {
          rank: command.rank,
          worldSize: command.worldSize,
          checksumEvery: 1_000_000,
          exchange: (step, partial, report) => {
            out = out?.length === partial.length ? out : new Float32Array(partial.length);
            return collective!.exchange(step + command.stepOffset, partial, report, out);
          },
          assertWriter: () => Promise.resolve(),
        }
      : undefined;
  trainers.set(command.name, { trainer, ...(group ? { group } : {}) });
  reply({ cmd: 'opened' });
}

async function trainSteps(command: Command<'train'>): Promise<void> {
  const { trainer, group } = trainers.get(command.name)!;
  const started = process.hrtime.bigint();
  let computeMs = 0;
  let exchangeMs = 0;
  for (let i = 0; i < command.steps; i++) {
    const stats = await trainer.trainStep(group);
    computeMs += (stats.group?.computeSeconds ?? stats.stepSeconds) * 1000;
    exchangeMs += (stats.group?.exchangeSeconds ?? 0) * 1000;
  }
  reply({ cmd: 'done', ms: Number(process.hrtime.bigint() - started) / 1e6, computeMs, exchangeMs });
}

async function sampleSteps(command: Command<'sample'>): Promise<void> {
  const key = `${command.preset}/${command.batch}`;
  const bench = sampling.get(key) ?? (await samplingStep(command.preset, command.batch));
  sampling.set(key, bench);
  const started = process.hrtime.bigint();
  for (let i = 0; i < command.steps; i++) await bench.step();
  reply({ cmd: 'done', ms: Number(process.hrtime.bigint() - started) / 1e6 });
}

async function reportMemory(): Promise<void> {
  const { wasmHeap } = await import('@ddpm/kernels');
  const memory = wasmHeap()?.memory() as { buffer: ArrayBufferLike } | undefined;
  reply({
    cmd: 'memory',
    heapBytes: memory ? memory.buffer.byteLength : null,
    rssBytes: process.memoryUsage().rss,
  });
}

async function exitRank(): Promise<void> {
  for (const bench of sampling.values()) bench.dispose();
  for (const { trainer } of trainers.values()) trainer.dispose();
  await heartbeat?.stop();
  // Every rank's collectives are over (the parent asks all of them to exit after the last).
  await collective?.leaveSharedMemory();
  collective?.close();
  control?.disconnect();
  process.exit(0);
}

/** One reverse-process step of `batch` images of a fresh model of the preset, as a sample job takes. */
async function samplingStep(
  presetName: string,
  batch: number,
): Promise<{ step: () => Promise<void>; dispose: () => void }> {
  const tf = await import('@tensorflow/tfjs-core');
  const { GaussianDiffusion, Rng } = await import('@ddpm/diffusion');
  const { UNet, preset } = await import('@ddpm/unet');
  const config = preset(presetName);
  const rng = Rng.fromSeed(0);
  const net = new UNet(config, { uniform: () => rng.uniform() });
  const diffusion = new GaussianDiffusion({ schedule: { kind: 'linear' } });
  const shape: [number, number, number, number] = [batch, config.imageSize, config.imageSize, config.inChannels];
  const x = tf.tensor4d(rng.normals(shape.reduce((a, b) => a * b)), shape);
  const z = tf.tensor4d(rng.normals(shape.reduce((a, b) => a * b)), shape);
  const t = rng.ints(1000, batch);
  const model = net.asDenoiseFn();
  return {
    step: async () => {
      const out = diffusion.pSample(model, x, t, z, { clipDenoised: true });
      await out.sample.data();
      tf.dispose([out.sample, out.predXStart]);
    },
    dispose: () => {
      tf.dispose([x, z]);
      net.dispose();
    },
  };
}

process.on('message', (command: BenchRankCommand) => {
  handle(command).catch((err: unknown) => {
    reply({ cmd: 'error', message: err instanceof Error ? (err.stack ?? err.message) : String(err) });
  });
});
