/**
 * Data-parallel ranks are one process's training, bit for bit: 2 and 3 ranks (in this process,
 * each with its own Redis connections and heartbeat thread, talking through the real Redis
 * all-reduce) end 20 steps with parameters, EMA and Adam moments identical to one process with the
 * same global batch and accumulation = N, dropout on; a job of 3 workers run by 2 ranks adds its
 * micro-batches in the same blocks; and a run checkpointed by 2 ranks resumes with 1 (and the
 * reverse) to the same bits as an uninterrupted run. An evaluation during training
 * whose samples the ranks share (each draws half) measures, on every rank, what one process does.
 */
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { Heartbeat, RedisCollective, assertGenerationAlive, openGeneration } from '@ddpm/allreduce';
import { initBackend } from '@ddpm/kernels';
import { type TrainConfig, resolveTrainJob } from '@ddpm/settings';
import { FMNIST_CNN_NAME, FMNIST_CNN_RECIPE } from '@ddpm/eval/extractors';
import { type GroupLink, type SampleGather, Trainer, evaluateDuringTraining } from '@ddpm/engine';
import { FileStore } from '@ddpm/storage';
import { Redis } from 'ioredis';

import { sharedFmnistCnnWeights } from '../support/extractors';

const URL = 'redis://127.0.0.1:6379';

beforeAll(async () => {
  await initBackend({ backend: 'wasm' });
});

/** A run of the test-size network (what is under test is the arithmetic of the group, not learning). */
function run(steps: number, accumulation: number, preset: 'nano8' | 'micro32' = 'nano8'): TrainConfig {
  return resolveTrainJob({
    dataset: 'procedural:shapes?size=64&channels=1&seed=3',
    preset,
    dropout: 0.1,
    batchSize: 6,
    accumulation,
    steps,
    checkpointEvery: 10,
    keepCheckpoints: 5,
    learningRate: 1e-3,
    warmupSteps: 3,
    emaDecay: 0.9,
    seed: 11,
  }).train;
}

/** Parameters, EMA and Adam moments: the whole state that must agree. */
async function state(trainer: Trainer): Promise<Buffer> {
  return Buffer.from(await trainer.stateChecksum(), 'hex');
}

async function tempStore(): Promise<{ store: FileStore; done: () => Promise<void> }> {
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'ddpm-dp-'));
  return { store: new FileStore(root), done: () => fs.rm(root, { recursive: true, force: true }) };
}

/** Trains `config` as a group of `n` ranks in this process; returns each rank's trainer (not disposed). */
async function trainAsGroup(
  n: number,
  config: TrainConfig,
  store: FileStore,
  outcomes: Awaited<ReturnType<Trainer['run']>>[] = [],
  sharedMemoryDir?: string,
  blocks?: number,
): Promise<Trainer[]> {
  const ns = `test-dp-${randomBytes(5).toString('hex')}`;
  const control = new Redis(URL);
  await openGeneration(control, ns, 300_000);
  const connections: Redis[] = [control];
  const heartbeats: Heartbeat[] = [];
  const collectives: RedisCollective[] = [];
  try {
    const trainers = await Promise.all(Array.from({ length: n }, () => Trainer.open(config, { store, prefix: 'run' })));
    const links: GroupLink[] = trainers.map((_, rank) => {
      const redis = new Redis(URL);
      connections.push(redis);
      heartbeats.push(new Heartbeat({ redisUrl: URL, namespace: ns, rank, rankTimeoutMs: 20_000, stallMs: 600_000 }));
      const collective = new RedisCollective({
        redisUrl: URL,
        namespace: ns,
        rank,
        worldSize: n,
        keyTtlSeconds: 120,
        checkAlive: () => assertGenerationAlive(redis, { namespace: ns, worldSize: n }),
        ...(sharedMemoryDir ? { sharedMemoryDir } : {}),
      });
      collectives.push(collective);
      return {
        rank,
        worldSize: n,
        ...(blocks !== undefined ? { blocks } : {}),
        checksumEvery: 5,
        exchange: (step, partial, report) => collective.exchange(step, partial, report),
        assertWriter: async () => undefined,
      };
    });
    if (sharedMemoryDir)
      expect(await Promise.all(collectives.map((c) => c.negotiateSharedMemory(0)))).toEqual(
        collectives.map(() => true),
      );
    outcomes.push(...(await Promise.all(trainers.map((t, r) => t.run({ group: links[r]! })))));
    await Promise.all(collectives.map((c) => c.leaveSharedMemory()));
    return trainers;
  } finally {
    await Promise.all(heartbeats.map((h) => h.stop()));
    for (const c of collectives) c.close();
    for (const c of connections) c.disconnect();
  }
}

describe('a data-parallel group equals one process with accumulation = N', () => {
  it.each([
    [2, 'redis'],
    [3, 'redis'],
    [2, 'shared memory'],
  ])(
    '%i ranks, 20 steps, gradients through %s: parameters, EMA and Adam moments bit-identical',
    async (n, plane) => {
      const single = await tempStore();
      const grouped = await tempStore();
      const shm = plane === 'redis' ? undefined : await fs.mkdtemp(path.join(os.tmpdir(), 'ddpm-dp-shm-'));
      try {
        const alone = await Trainer.open(run(20, n), { store: single.store, prefix: 'run' });
        await alone.run();
        const expected = await state(alone);
        const ranks = await trainAsGroup(n, run(20, n), grouped.store, [], shm);
        for (const [r, t] of ranks.entries())
          expect([r, t.step, (await state(t)).toString('hex')]).toEqual([r, 20, expected.toString('hex')]);
        // The checkpoints too (written by rank 0 only): the same bytes as the single process's.
        for (const file of ['model.safetensors', 'ema.safetensors', 'optimizer.safetensors']) {
          const a = await single.store.get(`run/checkpoints/step-000000020/${file}`);
          const b = await grouped.store.get(`run/checkpoints/step-000000020/${file}`);
          expect([file, Buffer.compare(Buffer.from(a), Buffer.from(b))]).toEqual([file, 0]);
        }
        for (const t of [alone, ...ranks]) t.dispose();
        if (shm) expect(await fs.readdir(shm)).toEqual([]);
      } finally {
        await single.done();
        await grouped.done();
        if (shm) await fs.rm(shm, { recursive: true, force: true });
      }
    },
    300_000,
  );

  it('a job of 3 workers run by 2 ranks (a generation re-formed short of one) adds its micro-batches as 3 ranks do: the bits of one process', async () => {
    const single = await tempStore();
    const grouped = await tempStore();
    try {
      const alone = await Trainer.open(run(12, 3), { store: single.store, prefix: 'run' });
      await alone.run();
      const expected = (await state(alone)).toString('hex');
      alone.dispose();
      // Blocks of the job's 3 workers: rank 0 sums micro-batches 0 and 1, rank 1 micro-batch 2.
      for (const t of await trainAsGroup(2, run(12, 3), grouped.store, [], undefined, 3)) {
        expect([t.step, (await state(t)).toString('hex')]).toEqual([12, expected]);
        t.dispose();
      }
    } finally {
      await single.done();
      await grouped.done();
    }
  }, 300_000);

  it('ends at the time budget together: rank 0’s clock decides, every rank stops after the same step, completed', async () => {
    const grouped = await tempStore();
    try {
      // 6 ms of training: rank 0 has spent it after step 1 and says so in step 2's exchange.
      const outcomes: Awaited<ReturnType<Trainer['run']>>[] = [];
      const ranks = await trainAsGroup(2, { ...run(20, 2), budgetMinutes: 0.0001 }, grouped.store, outcomes);
      expect(outcomes.map((o) => [o.status, o.step, o.budgetSpent])).toEqual([
        ['completed', 2, true],
        ['completed', 2, true],
      ]);
      expect(outcomes[0]!.checkpoint?.step).toBe(2);
      expect((await state(ranks[0]!)).equals(await state(ranks[1]!))).toBe(true);
      for (const t of ranks) t.dispose();
    } finally {
      await grouped.done();
    }
  }, 120_000);

  it('resumes across world sizes: 2 ranks then 1 process, and 1 process then 2 ranks, equal an uninterrupted run', async () => {
    const straight = await tempStore();
    const twoThenOne = await tempStore();
    const oneThenTwo = await tempStore();
    try {
      const alone = await Trainer.open(run(20, 2), { store: straight.store, prefix: 'run' });
      await alone.run();
      const expected = (await state(alone)).toString('hex');
      alone.dispose();

      for (const t of await trainAsGroup(2, run(10, 2), twoThenOne.store)) t.dispose();
      const finish = await Trainer.open(run(20, 2), { store: twoThenOne.store, prefix: 'run' });
      expect(finish.resumedFrom?.step).toBe(10);
      await finish.run();
      expect((await state(finish)).toString('hex')).toBe(expected);
      finish.dispose();

      const start = await Trainer.open(run(10, 2), { store: oneThenTwo.store, prefix: 'run' });
      await start.run();
      start.dispose();
      const ranks = await trainAsGroup(2, run(20, 2), oneThenTwo.store);
      for (const t of ranks) {
        expect(t.resumedFrom?.step).toBe(10);
        expect((await state(t)).toString('hex')).toBe(expected);
        t.dispose();
      }
    } finally {
      await straight.done();
      await twoThenOne.done();
      await oneThenTwo.done();
    }
  }, 300_000);

  it('shares an evaluation’s samples: each of 2 ranks draws half, and both measure exactly what one process does', async () => {
    const { store, done } = await tempStore();
    const ns = `test-dp-eval-${randomBytes(5).toString('hex')}`;
    const control = new Redis(URL);
    const connections: Redis[] = [control];
    const heartbeats: Heartbeat[] = [];
    const collectives: RedisCollective[] = [];
    // The offline extractor takes 32 x 32 images: micro32's.
    const trainer = await Trainer.open(run(1, 1, 'micro32'), { store, prefix: 'run' });
    try {
      await store.put(
        `extractors/${FMNIST_CNN_NAME}-v${FMNIST_CNN_RECIPE.version}.safetensors`,
        await sharedFmnistCnnWeights(),
      );
      // 48 samples: batches 0 and 2 are rank 0's, batch 1 rank 1's.
      const evaluation = resolveTrainJob({
        dataset: 'fashion-mnist:',
        preset: 'micro32',
        steps: 1,
        evalEvery: 1,
        evalMetrics: ['fd'],
        evalCount: 48,
        evalSampler: 'ddim',
        evalSteps: 2,
        evalReferenceCount: 300,
      }).evaluation!;
      const evaluate = (gather?: SampleGather) =>
        evaluateDuringTraining(trainer.ema, trainer.diffusion, 'fashion-mnist:', evaluation, 1, {
          cache: store,
          ...(gather ? { gather } : {}),
        });
      const alone = await evaluate();

      await openGeneration(control, ns, 300_000);
      const drawn: Float32Array[][] = [[], []];
      const gathers = [0, 1].map((rank): SampleGather => {
        const redis = new Redis(URL);
        connections.push(redis);
        heartbeats.push(new Heartbeat({ redisUrl: URL, namespace: ns, rank, rankTimeoutMs: 20_000, stallMs: 600_000 }));
        const collective = new RedisCollective({
          redisUrl: URL,
          namespace: `${ns}:eval1`,
          rank,
          worldSize: 2,
          keyTtlSeconds: 120,
          checkAlive: () => assertGenerationAlive(redis, { namespace: ns, worldSize: 2 }),
        });
        collectives.push(collective);
        return {
          rank,
          worldSize: 2,
          sum: async (chunk, values) => {
            drawn[rank]!.push(values.slice());
            return (await collective.allReduceSum(chunk, values)).sum;
          },
        };
      });
      const shared = await Promise.all(gathers.map((g) => evaluate(g)));
      for (const { entry } of shared) {
        expect(entry.metrics).toEqual(alone.entry.metrics);
        expect(entry.pixels).toEqual(alone.entry.pixels);
      }
      // Each rank drew only its own batches (16 images of 32 x 32 each), the others' left zero.
      const per = 16 * 32 * 32;
      const owned = (values: Float32Array, batch: number): boolean =>
        values.subarray(batch * per, (batch + 1) * per).some((v) => v !== 0);
      expect(drawn.map((chunks) => chunks.length)).toEqual([1, 1]);
      expect([0, 1, 2].map((b) => owned(drawn[0]![0]!, b))).toEqual([true, false, true]);
      expect([0, 1, 2].map((b) => owned(drawn[1]![0]!, b))).toEqual([false, true, false]);
    } finally {
      trainer.dispose();
      await Promise.all(heartbeats.map((h) => h.stop()));
      for (const c of collectives) c.close();
      for (const c of connections) c.disconnect();
      await done();
    }
  }, 300_000);
});
