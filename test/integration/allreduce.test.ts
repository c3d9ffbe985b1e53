/**
 * The Redis all-reduce with real connections, several ranks in this process (each with its own two
 * connections, as separate processes would have): sums bit-identical to adding in rank order,
 * several buckets, half-precision transports within their precision, nothing left in Redis, and
 * a lost peer detected within the rank timeout. The relay of a sampling group: batches reach rank
 * 0 unchanged and in order, senders run at most their window ahead, and nothing is left behind.
 */
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import {
  BatchRelay,
  Heartbeat,
  RedisCollective,
  type Transport,
  assertGenerationAlive,
  openGeneration,
} from '@ddpm/allreduce';
import { Redis } from 'ioredis';

const URL = 'redis://127.0.0.1:6379';

interface Rank {
  readonly collective: RedisCollective;
  readonly connections: Redis[];
  readonly heartbeat: Heartbeat;
}

async function group(
  worldSize: number,
  options: {
    transport?: Transport;
    bucketBytes?: number;
    rankTimeoutMs?: number;
    sharedMemoryDir?: (rank: number) => string;
  } = {},
): Promise<{ ns: string; ranks: Rank[]; close(): Promise<void>; control: Redis }> {
  const ns = `test-ar-${randomBytes(5).toString('hex')}`;
  const control = new Redis(URL);
  const rankTimeoutMs = options.rankTimeoutMs ?? 5000;
  await openGeneration(control, ns, 60_000);
  const ranks = Array.from({ length: worldSize }, (_, rank) => {
    const redis = new Redis(URL);
    return {
      connections: [redis],
      heartbeat: new Heartbeat({ redisUrl: URL, namespace: ns, rank, rankTimeoutMs, stallMs: 60_000 }),
      collective: new RedisCollective({
        redisUrl: URL,
        namespace: ns,
        rank,
        worldSize,
        keyTtlSeconds: 60,
        waitSliceMs: 200,
        checkAlive: () => assertGenerationAlive(redis, { namespace: ns, worldSize }),
        ...(options.transport ? { transport: options.transport } : {}),
        ...(options.bucketBytes ? { bucketBytes: options.bucketBytes } : {}),
        ...(options.sharedMemoryDir ? { sharedMemoryDir: options.sharedMemoryDir(rank) } : {}),
      }),
    };
  });
  // Every heartbeat is up before anyone waits on it.
  for (let i = 0; i < 50 && (await control.exists(...ranks.map((_, r) => `${ns}:hb${r}`))) < worldSize; i++)
    await new Promise((r) => setTimeout(r, 50));
  return {
    ns,
    ranks,
    control,
    async close() {
      await Promise.all(ranks.map((r) => r.heartbeat.stop()));
      for (const r of ranks) {
        r.collective.close();
        for (const c of r.connections) c.disconnect();
      }
      await control.del(`${ns}:alive`);
      control.disconnect();
    },
  };
}

function values(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s / 2 ** 32 - 0.5) * 2 ** ((s >>> 27) - 16);
  });
}

/** Float32 additions in rank order: what one process accumulating the same values computes. */
function sequentialSum(parts: Float32Array[]): Float32Array {
  const acc = Float32Array.from(parts[0]!);
  for (const p of parts.slice(1)) for (let i = 0; i < acc.length; i++) acc[i] = acc[i]! + p[i]!;
  return acc;
}

describe('RedisCollective', () => {
  it.each([2, 3])(
    'sums %i ranks bit-identically to rank-order float32 additions, over several buckets, leaving nothing behind',
    async (n) => {
      const g = await group(n, { bucketBytes: 4096 });
      try {
        const parts = g.ranks.map((_, r) => values(10_007, r + 1));
        for (const step of [1, 2]) {
          const results = await Promise.all(g.ranks.map((rank, r) => rank.collective.allReduceSum(step, parts[r]!)));
          const expected = sequentialSum(parts);
          for (const result of results)
            expect(Buffer.compare(Buffer.from(result.sum.buffer), Buffer.from(expected.buffer))).toBe(0);
          // Through the Redis hub each rank sends S ((N−1)/N of its values, then the sum of its chunk)
          // and receives 2(N−1)/N · S, give or take a chunk's rounding; the hub takes N·S in.
          const S = 10_007 * 4;
          for (const result of results) {
            expect(Math.abs(result.bytesSent - S)).toBeLessThan(4 * 3 * n);
            expect(Math.abs(result.bytesReceived - (2 * (n - 1) * S) / n)).toBeLessThan(4 * 3 * n);
          }
        }
        const gathered = await Promise.all(
          g.ranks.map((rank, r) => rank.collective.allGather(3, 'report', { rank: r, loss: r * 0.5 })),
        );
        for (const list of gathered)
          expect(list).toEqual(Array.from({ length: n }, (_, r) => ({ rank: r, loss: r * 0.5 })));
        const left = (await g.control.keys(`${g.ns}:s*`)).sort();
        expect(left).toEqual([]);
      } finally {
        await g.close();
      }
    },
    30_000,
  );

  it.each([2, 3])(
    '%i ranks on one host move the values through shared-memory files rewritten in place: the same bits, Redis carrying only signals, nothing left in either',
    async (n) => {
      const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ddpm-shm-'));
      // A file of a group whose every rank died a day ago goes at the next negotiation; a fresh one stays.
      const stale = path.join(dir, 'ddpm-dead-group_p1_b0_sum0');
      await fs.writeFile(stale, 'x');
      await fs.utimes(stale, new Date(Date.now() - 2 * 86_400_000), new Date(Date.now() - 2 * 86_400_000));
      await fs.writeFile(path.join(dir, 'ddpm-live-group_p1_b0_sum0'), 'x');
      const mine = async (): Promise<string[]> =>
        (await fs.readdir(dir)).filter((f) => f.includes(g.ns.replace(/[^A-Za-z0-9._-]/g, '_'))).sort();
      const g = await group(n, { bucketBytes: 4096, sharedMemoryDir: () => dir });
      try {
        expect(await Promise.all(g.ranks.map((r) => r.collective.negotiateSharedMemory(1024)))).toEqual(
          Array.from({ length: n }, () => true),
        );
        expect(g.ranks.map((r) => r.collective.sharedMemory)).toEqual(Array.from({ length: n }, () => dir));
        const parts = g.ranks.map((_, r) => values(10_007, r + 11));
        const buckets = Math.ceil((10_007 * 4) / 4096);
        for (const step of [1, 2, 3]) {
          const results = await Promise.all(g.ranks.map((rank, r) => rank.collective.allReduceSum(step, parts[r]!)));
          const expected = sequentialSum(parts);
          for (const result of results)
            expect(Buffer.compare(Buffer.from(result.sum.buffer), Buffer.from(expected.buffer))).toBe(0);
          // Every value went through a file, one per slot and step parity: per bucket, (N − 1)
          // contributions and one sum from each rank; step 3 rewrote step 1's files in place.
          const files = await mine();
          expect(files.length).toBe(Math.min(step, 2) * buckets * n * n);
          const sum = await fs.readFile(
            path.join(
              dir,
              files.find((f) => f.includes(`_p${step % 2}_b0_sum0`))!,
            ),
          );
          expect([sum.readDoubleLE(0), sum.readDoubleLE(8)]).toEqual([step, sum.length - 16]);
          // Reports still travel through Redis beside it.
          const reports = await Promise.all(
            g.ranks.map((rank, r) => rank.collective.exchange(step + 10, parts[r]!, { rank: r })),
          );
          for (const report of reports)
            expect(report.reports).toEqual(Array.from({ length: n }, (_, r) => ({ rank: r })));
        }
        expect(await g.control.keys(`${g.ns}:s*`)).toEqual([]);
        // The files stay until the last rank leaves; then they go.
        for (const rank of g.ranks.slice(1)) await rank.collective.leaveSharedMemory();
        expect((await mine()).length).toBe(2 * buckets * n * n);
        await g.ranks[0]!.collective.leaveSharedMemory();
        expect((await fs.readdir(dir)).sort()).toEqual(['ddpm-live-group_p1_b0_sum0']);
        expect(await g.control.keys(`${g.ns}:shm*`)).toEqual([]);
        // A failed generation's values, nobody left to read them: its ranks delete them.
        await fs.writeFile(path.join(dir, `ddpm-${g.ns}_p0_b0_c1_from0`), 'x');
        await g.ranks[0]!.collective.abandonSharedMemory();
        expect(await fs.readdir(dir)).toEqual(['ddpm-live-group_p1_b0_sum0']);
      } finally {
        await g.close();
        await fs.rm(dir, { recursive: true, force: true });
      }
    },
    30_000,
  );

  it('refuses a shared-memory value of another step than the one announced (a broken data plane), never summing it', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ddpm-shm-'));
    const g = await group(2, { sharedMemoryDir: () => dir });
    try {
      expect(await Promise.all(g.ranks.map((r) => r.collective.negotiateSharedMemory(1024)))).toEqual([true, true]);
      const parts = [values(1000, 1), values(1000, 2)];
      await Promise.all(g.ranks.map((rank, r) => rank.collective.allReduceSum(1, parts[r]!)));
      // Rank 1 announces its step 3 contribution to rank 0 without writing it: its slot still
      // holds step 1's value.
      await g.control.rpush(`${g.ns}:s3:b0:rs0`, '1');
      const lone = g.ranks[0]!.collective.allReduceSum(3, parts[0]!);
      await expect(lone).rejects.toMatchObject({
        code: 'DDPM_GROUP_LOST',
        message: expect.stringMatching(/holds step 1's value where step 3's was announced/),
      });
    } finally {
      await g.close();
      await fs.rm(dir, { recursive: true, force: true });
    }
  }, 30_000);

  it('keeps the values in Redis when a rank cannot see the others’ shared-memory files (another host), or there is too little room', async () => {
    const dirs = [
      await fs.mkdtemp(path.join(os.tmpdir(), 'ddpm-shm-')),
      await fs.mkdtemp(path.join(os.tmpdir(), 'ddpm-shm-')),
    ];
    try {
      const apart = await group(2, { sharedMemoryDir: (rank) => dirs[rank]! });
      try {
        expect(await Promise.all(apart.ranks.map((r) => r.collective.negotiateSharedMemory(1024)))).toEqual([
          false,
          false,
        ]);
        const parts = [values(3000, 1), values(3000, 2)];
        const results = await Promise.all(apart.ranks.map((rank, r) => rank.collective.allReduceSum(1, parts[r]!)));
        for (const result of results)
          expect(Buffer.compare(Buffer.from(result.sum.buffer), Buffer.from(sequentialSum(parts).buffer))).toBe(0);
      } finally {
        await apart.close();
      }
      const cramped = await group(2, { sharedMemoryDir: () => dirs[0]! });
      try {
        expect(
          await Promise.all(cramped.ranks.map((r) => r.collective.negotiateSharedMemory(Number.MAX_SAFE_INTEGER))),
        ).toEqual([false, false]);
      } finally {
        await cramped.close();
      }
      // The probes are gone too.
      for (const dir of dirs) expect(await fs.readdir(dir)).toEqual([]);
    } finally {
      for (const dir of dirs) await fs.rm(dir, { recursive: true, force: true });
    }
  }, 30_000);

  it.each(['bf16', 'fp16'] as const)(
    'carries %s at half the bytes, within its precision, the same on every rank',
    async (transport) => {
      const g = await group(2, { transport });
      try {
        const parts = [
          Float32Array.from({ length: 4000 }, (_, i) => Math.sin(i) * 3),
          Float32Array.from({ length: 4000 }, (_, i) => Math.cos(i) * 2),
        ];
        const results = await Promise.all(g.ranks.map((rank, r) => rank.collective.allReduceSum(1, parts[r]!)));
        expect(Buffer.compare(Buffer.from(results[0]!.sum.buffer), Buffer.from(results[1]!.sum.buffer))).toBe(0);
        const exact = sequentialSum(parts);
        const tolerance = transport === 'bf16' ? 2 ** -7 : 2 ** -10;
        let worst = 0;
        for (let i = 0; i < exact.length; i++)
          worst = Math.max(worst, Math.abs(results[0]!.sum[i]! - exact[i]!) / Math.max(1, Math.abs(exact[i]!)));
        expect(worst).toBeLessThan(2 * tolerance);
        expect(worst).toBeGreaterThan(0);
        expect(results[0]!.bytesSent).toBeLessThan(4000 * 4);
      } finally {
        await g.close();
      }
    },
    30_000,
  );

  it('stops waiting for a peer that beats but never delivers (hung on a promise), after the longest wait', async () => {
    const g = await group(2, { rankTimeoutMs: 5000 });
    try {
      g.ranks[0]!.collective.setMaxWait(1500);
      const started = Date.now();
      await expect(g.ranks[0]!.collective.allReduceSum(1, values(100, 1))).rejects.toMatchObject({
        code: 'DDPM_GROUP_LOST',
        message: expect.stringMatching(/^peers alive but silent: nothing arrived for \d+ s/),
      });
      expect(Date.now() - started).toBeLessThan(1500 + 1500);
    } finally {
      await g.close();
    }
  }, 30_000);

  it('ends a wait within the rank timeout when a peer stops beating, naming it', async () => {
    const g = await group(2, { rankTimeoutMs: 1500 });
    try {
      await g.ranks[1]!.heartbeat.stop();
      const started = Date.now();
      await expect(g.ranks[0]!.collective.allReduceSum(1, values(100, 1))).rejects.toMatchObject({
        code: 'DDPM_GROUP_LOST',
        kind: 'unavailable',
        message: 'rank 1 sent no heartbeat within the rank timeout',
      });
      expect(Date.now() - started).toBeLessThan(1500 + 1000);
    } finally {
      await g.close();
    }
  }, 30_000);
});

describe('BatchRelay', () => {
  function relays(
    ns: string,
    worldSize: number,
    window: number,
    checkAlive = async (): Promise<void> => undefined,
  ): BatchRelay[] {
    return Array.from(
      { length: worldSize },
      (_, rank) =>
        new BatchRelay({
          redisUrl: URL,
          namespace: ns,
          rank,
          worldSize,
          keyTtlSeconds: 60,
          window,
          waitSliceMs: 200,
          checkAlive,
        }),
    );
  }

  it('brings every batch of ranks 1..N-1 to rank 0 bit for bit, senders never more than the window ahead, leaving nothing behind', async () => {
    const ns = `test-relay-${randomBytes(5).toString('hex')}`;
    const control = new Redis(URL);
    const [r0, r1, r2] = relays(ns, 3, 2);
    try {
      const batches = 12;
      const sent: number[] = [];
      const sender = async (relay: BatchRelay, rank: number): Promise<void> => {
        for (let b = rank; b < batches; b += 3) {
          await relay.send(b, values(1001 + b, b + 7));
          sent.push(b);
        }
      };
      await r0!.announce('step 42');
      expect(await Promise.all([r1!.announced(), r2!.announced()])).toEqual(['step 42', 'step 42']);
      const senders = Promise.all([sender(r1!, 1), sender(r2!, 2)]);
      // Nothing received yet: each sender stops after its window of 2.
      for (let i = 0; i < 40 && sent.length < 4; i++) await new Promise((r) => setTimeout(r, 50));
      await new Promise((r) => setTimeout(r, 300));
      expect(sent.sort((a, b) => a - b)).toEqual([1, 2, 4, 5]);
      expect((await control.keys(`${ns}:relay:b*`)).length).toBe(4);
      for (let b = 0; b < batches; b++) {
        if (b % 3 === 0) continue;
        const got = await r0!.receive(b);
        expect(Buffer.compare(Buffer.from(got.buffer), Buffer.from(values(1001 + b, b + 7).buffer))).toBe(0);
      }
      await senders;
      await r0!.close();
      expect(await control.keys(`${ns}:*`)).toEqual([]);
    } finally {
      await Promise.all([r1!.close(), r2!.close()]);
      control.disconnect();
    }
  }, 30_000);

  it('refuses a batch that is not the rank’s, ends a wait when the generation is over, and leaves nothing when abandoned', async () => {
    const ns = `test-relay-${randomBytes(5).toString('hex')}`;
    let over = false;
    const [r0, r1] = relays(ns, 2, 1, async () => {
      if (over)
        throw Object.assign(new Error('rank 1 sent no heartbeat within the rank timeout'), { code: 'DDPM_GROUP_LOST' });
    });
    try {
      await expect(r1!.send(2, values(4, 1))).rejects.toMatchObject({
        code: 'DDPM_GROUP_ABORTED',
        message: expect.stringContaining('rank 1 cannot send batch 2 (rank 0 draws it'),
      });
      await expect(r0!.receive(0)).rejects.toMatchObject({
        message: expect.stringContaining('rank 0 cannot receive batch 0'),
      });
      const waiting = r0!.receive(1);
      setTimeout(() => (over = true), 300);
      await expect(waiting).rejects.toMatchObject({
        code: 'DDPM_GROUP_LOST',
        message: 'rank 1 sent no heartbeat within the rank timeout',
      });
      // A generation abandoned with a batch sent and never taken: closing takes it away.
      await r1!.send(3, values(8, 2));
      const control = new Redis(URL);
      expect(await control.keys(`${ns}:relay:*`)).toEqual([`${ns}:relay:b3`]);
      await r1!.close({ abandon: true });
      expect(await control.keys(`${ns}:*`)).toEqual([]);
      control.disconnect();
    } finally {
      await Promise.all([r0!.close(), r1!.close()]);
    }
  }, 30_000);
});
