/**
 * The all-reduce's lean Redis connection against real servers: large values out of and into the
 * caller's own buffers, replies in order through a pipeline, Redis's errors, logging in and
 * choosing a database, and a lost server failing what is in flight (the generation's error) with
 * the next command connecting again.
 */
import { randomBytes } from 'node:crypto';

import { BulkConnection, bulkTarget } from '@ddpm/allreduce';
import { freePort } from '@ddpm/lab';
import { Redis } from 'ioredis';

import { startRedis } from '../support/redis';

const LOCAL = bulkTarget('redis://127.0.0.1:6379')!;

describe('bulkTarget', () => {
  it('reads host, port, credentials and database from a redis:// URL or ioredis options, and leaves what it does not speak to ioredis', () => {
    expect(bulkTarget('redis://127.0.0.1:6379')).toEqual({ host: '127.0.0.1', port: 6379 });
    expect(bulkTarget('redis://data.example:6390/4')).toEqual({ host: 'data.example', port: 6390, db: 4 });
    expect(bulkTarget('redis://:s%40cret@h')).toEqual({ host: 'h', port: 6379, password: 's@cret' });
    expect(bulkTarget('redis://ops:pw@[::1]:7000/0')).toEqual({
      host: '::1',
      port: 7000,
      username: 'ops',
      password: 'pw',
    });
    expect(bulkTarget('redis://h:1/2', { password: 'from-options', db: 5 })).toEqual({
      host: 'h',
      port: 1,
      password: 'from-options',
      db: 5,
    });
    for (const other of ['rediss://h:6379', 'unix:///run/redis.sock', 'redis://h/x', 'not a url'])
      expect([other, bulkTarget(other)]).toEqual([other, undefined]);
    expect(bulkTarget('redis://h', { tls: {} })).toBeUndefined();
  });
});

describe('BulkConnection', () => {
  const redis = new Redis('redis://127.0.0.1:6379');
  const prefix = `test-bulk-${randomBytes(4).toString('hex')}`;
  afterAll(async () => {
    const keys = await redis.keys(`${prefix}*`);
    if (keys.length > 0) await redis.del(...keys);
    redis.disconnect();
  });

  it('sets a large value from the caller’s bytes and reads it into the caller’s buffer, pipelined with small replies in order', async () => {
    const c = new BulkConnection(LOCAL);
    try {
      const value = randomBytes(5 * 1024 * 1024 + 3); // many socket reads, an odd length
      const landing = Buffer.alloc(value.length + 100);
      const [set, pushed, ttl, got, incr, gone] = await Promise.all([
        c.command(['SET', `${prefix}:big`, value, 'EX', 60]),
        c.command(['RPUSH', `${prefix}:list`, 'a']),
        c.command(['EXPIRE', `${prefix}:list`, 60]),
        c.command(['GETDEL', `${prefix}:big`], () => landing),
        c.command(['INCR', `${prefix}:n`]),
        c.command(['GETDEL', `${prefix}:big`], () => landing),
      ]);
      expect([set, pushed, ttl, incr, gone]).toEqual(['OK', 1, 1, 1, null]);
      expect(Buffer.isBuffer(got) && got.buffer === landing.buffer && got.length === value.length).toBe(true);
      expect(Buffer.compare(got as Buffer, value)).toBe(0);
      // ioredis sees what the lean connection wrote, and the other way round.
      await redis.set(`${prefix}:from-ioredis`, Buffer.from('hello'));
      expect((await c.command(['GET', `${prefix}:from-ioredis`])) as Buffer).toEqual(Buffer.from('hello'));
      expect(await c.command(['GET', `${prefix}:empty-or-not`])).toBeNull();
      await c.command(['SET', `${prefix}:empty`, Buffer.alloc(0)]);
      expect(await c.command(['GET', `${prefix}:empty`])).toEqual(Buffer.alloc(0));
    } finally {
      c.close();
    }
  });

  it('rejects a command Redis refuses with Redis’s message (the generation’s error) and goes on with the next', async () => {
    const c = new BulkConnection(LOCAL);
    try {
      await c.command(['SET', `${prefix}:text`, 'not a number']);
      const [refused, after] = await Promise.allSettled([
        c.command(['INCR', `${prefix}:text`]),
        c.command(['GET', `${prefix}:text`]),
      ]);
      expect(refused).toMatchObject({
        status: 'rejected',
        reason: {
          code: 'DDPM_GROUP_LOST',
          message: expect.stringMatching(/the data plane failed a command: ERR value is not an integer/),
        },
      });
      expect(after).toEqual({ status: 'fulfilled', value: Buffer.from('not a number') });
    } finally {
      c.close();
    }
  });

  it('logs in and selects the database of the URL; a wrong password fails its commands, naming the refusal', async () => {
    const port = await freePort();
    const server = await startRedis(port, { password: 'hunter2' });
    try {
      const c = new BulkConnection(bulkTarget(`redis://:hunter2@127.0.0.1:${port}/3`)!);
      try {
        expect(await c.command(['SET', 'k', Buffer.from('v')])).toBe('OK');
      } finally {
        c.close();
      }
      const check = new Redis({ port, host: '127.0.0.1', password: 'hunter2', db: 3 });
      expect(await check.get('k')).toBe('v');
      await check.select(0);
      expect(await check.get('k')).toBeNull();
      check.disconnect();
      const wrong = new BulkConnection(bulkTarget(`redis://:wrong@127.0.0.1:${port}`)!);
      try {
        await expect(wrong.command(['GET', 'k'])).rejects.toMatchObject({
          code: 'DDPM_GROUP_LOST',
          message: expect.stringMatching(/WRONGPASS|invalid password|refused the login/),
        });
      } finally {
        wrong.close();
      }
    } finally {
      server.kill('SIGKILL');
    }
  });

  it('fails the commands in flight when the server goes away, and connects again for the next', async () => {
    const port = await freePort();
    let server = await startRedis(port);
    const c = new BulkConnection(bulkTarget(`redis://127.0.0.1:${port}`)!, 2000);
    try {
      expect(await c.command(['SET', 'k', Buffer.from('v')])).toBe('OK');
      // A blocking command holds the pipeline while the server dies.
      const inFlight = c.command(['BLPOP', 'never', 30]);
      await new Promise((r) => setTimeout(r, 100));
      server.kill('SIGKILL');
      await expect(inFlight).rejects.toMatchObject({
        code: 'DDPM_GROUP_LOST',
        message: expect.stringMatching(/the data plane failed/),
      });
      await expect(c.command(['GET', 'k'])).rejects.toMatchObject({ code: 'DDPM_GROUP_LOST' });
      server = await startRedis(port);
      expect(await c.command(['SET', 'k', Buffer.from('again')])).toBe('OK');
      expect(await c.command(['GET', 'k'])).toEqual(Buffer.from('again'));
    } finally {
      c.close();
      server.kill('SIGKILL');
    }
  });
});
