/**
 * How the API serves the web console (the browser tests are in console.slow.test.ts): `/` goes to
 * `/ui/`; every console page is the same shell, never cached, under a strict Content-Security-
 * Policy; the hashed assets are cached for good; the shell and assets need no token while the API
 * behind them does; a foreign Host gets neither; and a server without the console's build says
 * so rather than failing.
 */
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { buildApp } from '@ddpm/api';
import { loadServiceConfig } from '@ddpm/service';
import { PRETRAINED_MODELS, pretrainedManifest } from '@ddpm/pretrained';
import { type FastifyInstance } from 'fastify';

const TOKEN = 'console-test-token-0123456789abcdef';

async function app(env: Record<string, string>, consoleDir?: string): Promise<FastifyInstance> {
  return buildApp({
    config: loadServiceConfig({
      REDIS_URL: 'redis://127.0.0.1:6379',
      DDPM_QUEUE_PREFIX: `test-console-${randomBytes(5).toString('hex')}`,
      DDPM_STORAGE_URL: `file://${os.tmpdir()}/ddpm-console-${process.pid}`,
      HOST: '127.0.0.1',
      LOG_LEVEL: 'silent',
      ...env,
    }),
    logger: false,
    ...(consoleDir !== undefined ? { consoleDir } : {}),
  });
}

let api: FastifyInstance;
beforeAll(async () => {
  api = await app({ DDPM_API_TOKEN: TOKEN });
});
afterAll(async () => {
  await api.close();
});

it('sends / to /ui/ and serves the same shell for every console page, never cached, under a strict CSP', async () => {
  const root = await api.inject({ url: '/' });
  expect([root.statusCode, root.headers['location']]).toEqual([302, '/ui/']);
  for (const url of ['/ui/', '/ui/jobs/train-kabc', '/ui/submit', '/ui/models']) {
    const page = await api.inject({ url });
    expect([url, page.statusCode]).toEqual([url, 200]);
    expect(page.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(page.headers['cache-control']).toBe('no-cache');
    const csp = String(page.headers['content-security-policy']);
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("img-src 'self' data:");
    expect(csp).not.toContain('unsafe-inline');
    expect(page.headers['x-content-type-options']).toBe('nosniff');
    // No inline script: the shell loads its hashed script and stylesheet from /ui/assets/.
    expect(page.body).not.toMatch(/<script>/);
    expect(page.body).toMatch(/<script type="module" src="\/ui\/assets\/app-[A-Z0-9]{8}\.js"><\/script>/);
  }
});

it('shows the shipped models: each one’s manifest and the grid it ships', async () => {
  const auth = { authorization: `Bearer ${TOKEN}` };
  const page = await api.inject({ url: '/ui/models' });
  expect(page.statusCode).toBe(200);
  const { models } = (await api.inject({ url: '/models', headers: auth })).json();
  const manifest = pretrainedManifest('fashion-mnist-cpu');
  expect(models).toHaveLength(PRETRAINED_MODELS.length);
  expect(models[0]).toMatchObject({
    name: 'fashion-mnist-cpu',
    recipe: { name: manifest.recipe.name },
    step: manifest.step,
    weights: { bytes: manifest.bytes, sha256: manifest.sha256 },
    scores: { fd_fmnist_cnn: { value: manifest.scores['fd_fmnist_cnn']!.value } },
    grid: { url: 'http://localhost:80/models/fashion-mnist-cpu/grid.png', count: 64, seed: 0 },
    sample: { method: 'POST', body: { pretrained: 'fashion-mnist-cpu', count: 16, sampler: 'ancestral', steps: 100 } },
  });
  expect((await api.inject({ url: '/models/fashion-mnist-cpu', headers: auth })).json()).toEqual(models[0]);
  const grid = await api.inject({ url: '/models/fashion-mnist-cpu/grid.png', headers: auth });
  expect([grid.statusCode, grid.headers['content-type']]).toEqual([200, 'image/png']);
  expect(grid.rawPayload.length).toBe(manifest.grid!.bytes);
  // Behind the token like the rest of the API; a model that is not shipped is named as such.
  expect((await api.inject({ url: '/models/fashion-mnist-cpu/grid.png' })).statusCode).toBe(401);
  const missing = await api.inject({ url: '/models/imagenet-gpu', headers: auth });
  expect([missing.statusCode, missing.json().message]).toEqual([
    404,
    'no shipped model "imagenet-gpu"; shipped: fashion-mnist-cpu',
  ]);
  expect((await api.inject({ url: '/models/imagenet-gpu/grid.png', headers: auth })).statusCode).toBe(404);
  expect((await api.inject({ url: '/models/..%2Fetc', headers: auth })).statusCode).toBe(400);
});

it('serves the hashed assets immutable, and nothing else from their folder', async () => {
  const shell = (await api.inject({ url: '/ui/' })).body;
  for (const [, asset, type] of shell.matchAll(/\/ui\/assets\/(app-[A-Z0-9]{8}\.(js|css))/g)) {
    const r = await api.inject({ url: `/ui/assets/${asset}` });
    expect([asset, r.statusCode]).toEqual([asset, 200]);
    expect(r.headers['cache-control']).toBe('public, max-age=31536000, immutable');
    expect(r.headers['content-type']).toMatch(type === 'js' ? /^text\/javascript/ : /^text\/css/);
  }
  for (const bad of ['index.html', 'app-AAAAAAAA.js', '..%2Fpackage.json', 'manifest.json'])
    expect([bad, (await api.inject({ url: `/ui/assets/${bad}` })).statusCode]).toEqual([bad, 404]);
});

it('needs no token for the shell and its assets, while the API behind them does', async () => {
  expect((await api.inject({ url: '/ui/jobs/x' })).statusCode).toBe(200);
  expect((await api.inject({ url: '/jobs' })).statusCode).toBe(401);
  expect((await api.inject({ url: '/jobs', headers: { authorization: `Bearer ${TOKEN}` } })).statusCode).toBe(200);
});

it('answers a foreign Host (DNS rebinding) with neither the console nor the API, without a token', async () => {
  const open = await app({});
  try {
    expect((await open.inject({ url: '/ui/', headers: { host: 'attacker.example' } })).statusCode).toBe(403);
    expect((await open.inject({ url: '/ui/', headers: { host: '127.0.0.1:8080' } })).statusCode).toBe(200);
  } finally {
    await open.close();
  }
});

it('says the console is not built where its build is missing, and the API still works', async () => {
  const empty = await fs.mkdtemp(path.join(os.tmpdir(), 'ddpm-no-console-'));
  const bare = await app({}, empty);
  try {
    const page = await bare.inject({ url: '/ui/' });
    expect(page.statusCode).toBe(503);
    expect(page.json().message).toMatch(/the web console is not built on this server/);
    expect((await bare.inject({ url: '/jobs' })).statusCode).toBe(200);
  } finally {
    await bare.close();
    await fs.rm(empty, { recursive: true, force: true });
  }
});
