/**
 * The API's door, against the real app and Redis: a tokenless API answers only its own names (a
 * page on an attacker's name that resolves to 127.0.0.1 gets 403, DNS rebinding), no foreign
 * origin changes state (token or not), links never carry a name a client made up, and the
 * details: the bearer scheme in any case, 414 and 415 that say what they are without echoing the
 * path, a readiness probe that does not show Redis's error text, and 503 with Retry-After, never
 * 500, while Redis is away (then recovery by itself).
 */
import { type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { buildApp } from '@ddpm/api';
import { freePort } from '@ddpm/lab';
import { loadServiceConfig } from '@ddpm/service';
import { type FastifyInstance } from 'fastify';

import { startRedis, tinyTrain, until } from './service-support';

jest.setTimeout(60_000);

const TOKEN = 'host-guard-test-token-0123456789';

async function app(env: Record<string, string>): Promise<FastifyInstance> {
  return buildApp({
    config: loadServiceConfig({
      REDIS_URL: 'redis://127.0.0.1:6379',
      DDPM_QUEUE_PREFIX: `test-guard-${randomBytes(5).toString('hex')}`,
      DDPM_STORAGE_URL: `file://${os.tmpdir()}/ddpm-guard-${process.pid}`,
      HOST: '127.0.0.1',
      LOG_LEVEL: 'silent',
      ...env,
    }),
    logger: false,
  });
}

/** A submission the guard lets through is refused by the body's check instead: 400, nothing queued. */
const BAD_BODY = { dataset: 'procedural:shapes', preset: 'no-such-preset' };

describe('without a token', () => {
  let api: FastifyInstance;
  beforeAll(async () => {
    api = await app({ DDPM_ALLOWED_HOSTS: 'ddpm.internal' });
  });
  afterAll(async () => {
    await api.close();
  });

  it('answers its loopback names, the listener’s address and DDPM_ALLOWED_HOSTS', async () => {
    for (const host of [
      'localhost:8080',
      '127.0.0.1:8080',
      '[::1]:8080',
      '127.0.0.1',
      'LOCALHOST:8080',
      'ddpm.internal',
    ]) {
      const r = await api.inject({ url: '/jobs', headers: { host } });
      expect([host, r.statusCode]).toEqual([host, 200]);
    }
  });

  it('refuses any other Host with 403, reads and submissions alike, and queues nothing', async () => {
    for (const host of ['attacker.example', 'attacker.example:8080', '127.0.0.1.attacker.example', 'localhost@evil']) {
      const read = await api.inject({ url: '/jobs', headers: { host } });
      expect([host, read.statusCode]).toEqual([host, 403]);
      expect(read.json()).toMatchObject({ error: 'forbidden', message: expect.stringContaining('DDPM_ALLOWED_HOSTS') });
    }
    const submit = await api.inject({
      method: 'POST',
      url: '/jobs/train',
      headers: { host: 'attacker.example', origin: 'http://attacker.example' },
      payload: tinyTrain(),
    });
    expect(submit.statusCode).toBe(403);
    expect((await api.inject({ url: '/jobs' })).json().jobs).toEqual([]);
  });

  it('lets the probes and /metrics answer any name (they change nothing)', async () => {
    for (const url of ['/healthz', '/readyz', '/metrics'])
      expect((await api.inject({ url, headers: { host: 'prometheus-scrape-name:8080' } })).statusCode).toBe(200);
  });

  it('refuses a state change from a foreign or opaque Origin, and takes its own origin’s', async () => {
    const post = (origin: string | undefined) =>
      api.inject({
        method: 'POST',
        url: '/jobs/train',
        headers: { host: 'localhost:8080', ...(origin !== undefined ? { origin } : {}) },
        payload: BAD_BODY,
      });
    for (const origin of ['http://attacker.example', 'null', 'http://localhost:9999.attacker.example', 'file://'])
      expect([origin, (await post(origin)).statusCode]).toEqual([origin, 403]);
    expect((await post('http://attacker.example')).json().message).toMatch(/Origin "http:\/\/attacker.example"/);
    // Its own origin, another loopback origin, an allowed host's, and no Origin (curl): the body's check answers.
    for (const origin of ['http://localhost:8080', 'http://127.0.0.1:3000', 'https://ddpm.internal', undefined])
      expect([origin, (await post(origin)).statusCode]).toEqual([origin, 400]);
    // Reads are not state changes.
    const read = await api.inject({
      url: '/jobs',
      headers: { host: 'localhost:8080', origin: 'http://attacker.example' },
    });
    expect(read.statusCode).toBe(200);
  });
});

describe('links', () => {
  it('start with DDPM_PUBLIC_URL when it is set, whatever Host the request named', async () => {
    const api = await app({ DDPM_PUBLIC_URL: 'https://ddpm.example/api/', DDPM_API_TOKEN: TOKEN });
    try {
      const r = await api.inject({
        method: 'POST',
        url: '/jobs/train',
        headers: { host: 'attacker.example', authorization: `Bearer ${TOKEN}` },
        payload: tinyTrain({ steps: 1 }),
      });
      expect(r.statusCode).toBe(202);
      expect(r.json().links.self).toBe(`https://ddpm.example/api/jobs/${r.json().id}`);
      await api.inject({
        method: 'DELETE',
        url: `/jobs/${r.json().id}`,
        headers: { authorization: `Bearer ${TOKEN}` },
      });
    } finally {
      await api.close();
    }
  });

  it('are paths when a token-guarded API is reached by a name it does not know', async () => {
    const api = await app({ DDPM_API_TOKEN: TOKEN });
    try {
      const auth = { authorization: `Bearer ${TOKEN}` };
      const r = await api.inject({
        method: 'POST',
        url: '/jobs/train',
        headers: { host: 'attacker.example', ...auth },
        payload: tinyTrain({ steps: 1 }),
      });
      expect(r.statusCode).toBe(202);
      const id = r.json().id as string;
      expect(r.json().links.self).toBe(`/jobs/${id}`);
      const known = await api.inject({ url: `/jobs/${id}`, headers: { host: 'localhost:8080', ...auth } });
      expect(known.json().links.self).toBe(`http://localhost:8080/jobs/${id}`);
      await api.inject({ method: 'DELETE', url: `/jobs/${id}`, headers: auth });
    } finally {
      await api.close();
    }
  });
});

describe('with a token', () => {
  let api: FastifyInstance;
  beforeAll(async () => {
    api = await app({ DDPM_API_TOKEN: TOKEN });
  });
  afterAll(async () => {
    await api.close();
  });

  it('takes the scheme in any case (RFC 7235) and refuses a foreign Origin’s state change even with the token', async () => {
    for (const scheme of ['Bearer', 'bearer', 'BEARER'])
      expect((await api.inject({ url: '/jobs', headers: { authorization: `${scheme} ${TOKEN}` } })).statusCode).toBe(
        200,
      );
    expect((await api.inject({ url: '/jobs', headers: { authorization: `Bearer ${TOKEN}x` } })).statusCode).toBe(401);
    const r = await api.inject({
      method: 'POST',
      url: '/jobs/train',
      headers: { authorization: `Bearer ${TOKEN}`, origin: 'https://attacker.example' },
      payload: BAD_BODY,
    });
    expect(r.statusCode).toBe(403);
  });
});

describe('error details', () => {
  let api: FastifyInstance;
  beforeAll(async () => {
    api = await app({});
  });
  afterAll(async () => {
    await api.close();
  });

  it('414 says what it is without echoing the path; 415 is unsupported media type', async () => {
    const long = `train-${'a'.repeat(300)}`;
    const r = await api.inject({ url: `/jobs/${long}` });
    expect(r.statusCode).toBe(414);
    expect(r.json()).toEqual({ error: 'uri too long', message: 'a path segment is longer than 100 characters' });
    expect(r.body).not.toContain('aaaaaaaaaa');
    const text = await api.inject({
      method: 'POST',
      url: '/jobs/train',
      headers: { 'content-type': 'text/plain' },
      payload: 'steps=1',
    });
    expect(text.statusCode).toBe(415);
    expect(text.json().error).toBe('unsupported media type');
  });
});

describe('Redis away', () => {
  let dir: string;
  let port: number;
  let redis: ChildProcess | undefined;
  let api: FastifyInstance;
  beforeAll(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ddpm-outage-'));
    port = await freePort();
    redis = await startRedis(port, dir);
    api = await app({ REDIS_URL: `redis://127.0.0.1:${port}` });
  });
  afterAll(async () => {
    await api.close();
    redis?.kill('SIGKILL');
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('answers 503 with Retry-After on every Redis-backed route, hides the error text, and recovers by itself', async () => {
    const id = 'train-00000000-0000-4000-8000-000000000000';
    const routes = [
      () => api.inject({ url: '/jobs' }),
      () => api.inject({ url: `/jobs/${id}` }),
      () => api.inject({ url: `/jobs/${id}/logs` }),
      () => api.inject({ method: 'POST', url: '/jobs/train', payload: tinyTrain() }),
      () => api.inject({ method: 'DELETE', url: `/jobs/${id}` }),
    ];
    expect((await routes[0]!()).statusCode).toBe(200);
    redis!.kill('SIGKILL');
    await new Promise((resolve) => redis!.once('exit', resolve));
    for (let round = 0; round < 3; round++) {
      for (const route of routes) {
        const r = await route();
        expect([r.statusCode, r.headers['retry-after']]).toEqual([503, '2']);
        expect(r.json()).toMatchObject({ error: 'unavailable' });
      }
    }
    const ready = await api.inject({ url: '/readyz' });
    expect(ready.statusCode).toBe(503);
    expect(ready.json()).toEqual({ status: 'not ready', redis: 'unreachable' });

    redis = await startRedis(port, dir);
    // Back by itself: no restart of the API. Each of its Redis connections reconnects on its own
    // schedule, so wait until every route answers (all but the POST, which would create a job);
    // until then, only 503s.
    const meanwhile = new Set<number>();
    const expected = [200, 404, 404, undefined, 404];
    await until(
      'every route to answer again',
      async () => {
        let back = true;
        for (const [i, route] of routes.entries()) {
          if (expected[i] === undefined) continue;
          const status = (await route()).statusCode;
          if (status !== expected[i]) meanwhile.add(status);
          back &&= status === expected[i];
        }
        return back ? true : undefined;
      },
      20_000,
    );
    expect([...meanwhile].filter((s) => s !== 503)).toEqual([]);
    const statuses = [];
    for (const route of routes) statuses.push((await route()).statusCode);
    expect(statuses).toEqual([200, 404, 404, 202, 404]);
    expect((await api.inject({ url: '/readyz' })).statusCode).toBe(200);
  });
});
