/**
 * The all-reduce over the ranks' own data servers (one redis-server per rank, on ports of the
 * test's own; the machine's Redis is the hub): the ranks agree on the plane, the sums are the hub's
 * bits, every server carries about 2(N − 1)/N · S per all-reduce whatever N (its own counters say
 * so), nothing is left on any server; a rank without a server, or a server a peer cannot reach,
 * keeps the group on the hub and says why; a server killed mid-run ends the all-reduce with the
 * generation's error.
 */
import { type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';

import { Heartbeat, RedisCollective, assertGenerationAlive, openGeneration } from '@ddpm/allreduce';
import { freePort } from '@ddpm/lab';
import { Redis } from 'ioredis';

import { killRedis, startRedis } from '../support/redis';

const HUB = 'redis://127.0.0.1:6379';

interface Server {
  readonly url: string;
  readonly process: ChildProcess;
  readonly client: Redis;
}

async function servers(n: number): Promise<Server[]> {
  return Promise.all(
    Array.from({ length: n }, async () => {
      const port = await freePort();
      const process = await startRedis(port);
      return {
        url: `redis://127.0.0.1:${port}`,
        process,
        client: new Redis(port, '127.0.0.1', { maxRetriesPerRequest: 0 }),
      };
    }),
  );
}

/** N ranks in this process, each with its collective and heartbeat; `own(r)`: rank r's advertised server. */
async function group(
  n: number,
  own: (rank: number) => string | undefined,
  options: { bucketBytes?: number; transport?: 'fp32' | 'bf16' | 'fp16' } = {},
) {
  const ns = `test-rs-${randomBytes(5).toString('hex')}`;
  const control = new Redis(HUB);
  await openGeneration(control, ns, 60_000);
  const heartbeats = Array.from(
    { length: n },
    (_, rank) => new Heartbeat({ redisUrl: HUB, namespace: ns, rank, rankTimeoutMs: 5000, stallMs: 60_000 }),
  );
  const collectives = Array.from({ length: n }, (_, rank) => {
    const url = own(rank);
    return new RedisCollective({
      redisUrl: HUB,
      namespace: ns,
      rank,
      worldSize: n,
      keyTtlSeconds: 60,
      waitSliceMs: 200,
      checkAlive: () => assertGenerationAlive(control, { namespace: ns, worldSize: n }),
      ...(url !== undefined ? { ownDataUrl: url } : {}),
      ...(options.bucketBytes ? { bucketBytes: options.bucketBytes } : {}),
      ...(options.transport ? { transport: options.transport } : {}),
    });
  });
  for (let i = 0; i < 50 && (await control.exists(...heartbeats.map((_, r) => `${ns}:hb${r}`))) < n; i++)
    await new Promise((r) => setTimeout(r, 50));
  return {
    collectives,
    async close() {
      await Promise.all(heartbeats.map((h) => h.stop()));
      for (const c of collectives) c.close();
      const left = await control.keys(`${ns}*`);
      if (left.length > 0) await control.del(...left);
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

function sequentialSum(parts: Float32Array[]): Float32Array {
  const acc = Float32Array.from(parts[0]!);
  for (const p of parts.slice(1)) for (let i = 0; i < acc.length; i++) acc[i] = acc[i]! + p[i]!;
  return acc;
}

/** A server's bytes in and out so far, by its own counters. */
async function traffic(server: Server): Promise<{ in: number; out: number }> {
  const info = await server.client.info('stats');
  const field = (name: string): number => Number(new RegExp(`^${name}:(\\d+)`, 'm').exec(info)?.[1]);
  return { in: field('total_net_input_bytes'), out: field('total_net_output_bytes') };
}

describe('the ranks’ own data servers', () => {
  let pool: Server[] = [];
  beforeAll(async () => {
    pool = await servers(3);
  });
  afterAll(async () => {
    for (const s of pool) s.client.disconnect();
    await Promise.all(pool.map((s) => killRedis(s.process)));
  });

  it.each([2, 3])(
    '%i ranks agree on them, sum to the hub’s bits, each server carrying ~2(N − 1)/N · S, nothing left',
    async (n) => {
      const g = await group(n, (r) => pool[r]!.url, { bucketBytes: 64 * 1024 });
      try {
        const choices = await Promise.all(g.collectives.map((c) => c.negotiatePlane(0)));
        for (const choice of choices)
          expect(choice).toMatchObject({ plane: 'ranks', where: pool.slice(0, n).map((s) => s.url) });
        const length = 100_003;
        const parts = Array.from({ length: n }, (_, r) => values(length, 17 + r));
        const before = await Promise.all(pool.slice(0, n).map(traffic));
        const results = await Promise.all(g.collectives.map((c, r) => c.allReduceSum(4, parts[r]!)));
        const after = await Promise.all(pool.slice(0, n).map(traffic));
        const expected = sequentialSum(parts);
        for (const r of results) expect(Buffer.from(r.sum.buffer).equals(Buffer.from(expected.buffer))).toBe(true);
        // Each rank sends (N − 1)/N · S of contributions to the owners' servers and reads as much
        // of their sums: its own chunk stays on its host.
        const S = length * 4;
        const share = ((n - 1) / n) * S;
        // (Chunks differ by a value at most, in each of the 7 buckets.)
        for (const r of results) {
          expect(Math.abs(r.bytesSent - share)).toBeLessThanOrEqual(4 * 7 * n);
          expect(Math.abs(r.bytesReceived - share)).toBeLessThanOrEqual(4 * 7 * n);
        }
        // Each server: in, the N − 1 contributions to its chunk and its owner's sum (S); out, its
        // owner's takes and the N − 1 reads of the sum (2(N − 1)/N · S); commands and signals besides.
        for (let s = 0; s < n; s++) {
          const [into, outOf] = [after[s]!.in - before[s]!.in, after[s]!.out - before[s]!.out];
          expect(into).toBeGreaterThan(S);
          expect(into).toBeLessThan(1.1 * S);
          expect(outOf).toBeGreaterThan(2 * share);
          expect(outOf).toBeLessThan(1.1 * 2 * share);
        }
        // Every key read by its last reader, every signal popped.
        for (const s of pool.slice(0, n)) expect(await s.client.dbsize()).toBe(0);
      } finally {
        await g.close();
      }
    },
  );

  it.each(['bf16', 'fp16'] as const)('carries %s values: the sums are the hub’s bits', async (transport) => {
    const length = 50_001;
    const parts = Array.from({ length: 3 }, (_, r) => values(length, 5 + r));
    const sums: Buffer[] = [];
    for (const own of [(r: number) => pool[r]!.url, () => undefined]) {
      const g = await group(3, own, { bucketBytes: 32 * 1024, transport });
      try {
        const choices = await Promise.all(g.collectives.map((c) => c.negotiatePlane(0)));
        expect(choices[0]!.plane).toBe(own(0) === undefined ? 'hub' : 'ranks');
        const results = await Promise.all(g.collectives.map((c, r) => c.allReduceSum(1, parts[r]!)));
        for (const r of results.slice(1))
          expect(Buffer.from(r.sum.buffer).equals(Buffer.from(results[0]!.sum.buffer))).toBe(true);
        sums.push(Buffer.from(results[0]!.sum.buffer));
      } finally {
        await g.close();
      }
    }
    expect(sums[0]!.equals(sums[1]!)).toBe(true);
    // The codec was applied (the sums are not fp32's).
    expect(sums[0]!.equals(Buffer.from(sequentialSum(parts).buffer))).toBe(false);
  });

  it('stays on the hub, saying why, when a rank advertises no server or a server is out of reach', async () => {
    const none = await group(2, (r) => (r === 0 ? pool[0]!.url : undefined));
    try {
      const choices = await Promise.all(none.collectives.map((c) => c.negotiatePlane(0)));
      for (const c of choices)
        expect(c).toMatchObject({
          plane: 'hub',
          reasons: expect.arrayContaining(['rank 1 advertised no data server']),
        });
      const sums = await Promise.all(none.collectives.map((c, r) => c.allReduceSum(1, values(1000, r))));
      expect(Buffer.from(sums[0]!.sum.buffer).equals(Buffer.from(sums[1]!.sum.buffer))).toBe(true);
    } finally {
      await none.close();
    }
    const nowhere = `redis://127.0.0.1:${await freePort()}`;
    const blind = await group(2, (r) => (r === 0 ? pool[0]!.url : nowhere));
    try {
      const choices = await Promise.all(blind.collectives.map((c) => c.negotiatePlane(0)));
      for (const c of choices)
        expect(c).toMatchObject({
          plane: 'hub',
          reasons: expect.arrayContaining([
            expect.stringMatching(/not every data server is reachable: rank 0 cannot reach rank 1/),
          ]),
        });
    } finally {
      await blind.close();
    }
  });

  it('ends the all-reduce with the generation’s error when a rank’s server dies', async () => {
    const [doomed] = await servers(1);
    const g = await group(2, (r) => (r === 0 ? pool[0]!.url : doomed!.url));
    try {
      await Promise.all(g.collectives.map((c) => c.negotiatePlane(0)));
      await Promise.all(g.collectives.map((c, r) => c.allReduceSum(0, values(5000, r))));
      doomed!.client.disconnect();
      await killRedis(doomed!.process);
      const started = Date.now();
      const outcomes = await Promise.allSettled(g.collectives.map((c, r) => c.allReduceSum(1, values(5000, r))));
      for (const o of outcomes) expect(o).toMatchObject({ status: 'rejected', reason: { code: 'DDPM_GROUP_LOST' } });
      expect(Date.now() - started).toBeLessThan(15_000);
    } finally {
      await g.close();
    }
  });
});
