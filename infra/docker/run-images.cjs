#!/usr/bin/env node
/*
 * Starts the built API and CPU-worker images (buildah run: chroot isolation, the host's network)
 * against this machine's Redis and a real S3 endpoint (s3rver), runs a short train job through
 * them over HTTP, and checks what the images promise: the processes run as uid 10001, the code is
 * read-only to them, the API image holds no tensor code, the images' health checks pass, the job
 * completes with its checkpoint in the object store. Called by infra/docker/test-images.sh.
 */
'use strict';
const { execFileSync, spawn } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const S3rver = require('s3rver');

const API_IMAGE = 'ghcr.io/ddpm-service/api:0.2.0';
const WORKER_IMAGE = 'ghcr.io/ddpm-service/worker-cpu:0.2.0';
const TOKEN = 'image-test-token-0123456789';
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const prefix = `ddpm-images-${process.pid}`;

const buildah = (...args) => execFileSync('buildah', args, { encoding: 'utf8' }).trim();
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
    server.on('error', reject);
  });
}

async function until(what, fn, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await fn().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}`);
    await sleep(500);
  }
}

const containers = [];
const processes = [];

/** A working container from an image, configured with the environment, started with its CMD. */
function start(name, image, env, logFile) {
  const ctr = buildah('from', '--name', `${prefix}-${name}`, image);
  containers.push(ctr);
  const config = JSON.parse(buildah('inspect', '--type', 'container', ctr));
  const cmd = config.Docker?.config?.Cmd ?? config.OCIv1?.config?.Cmd;
  for (const [k, v] of Object.entries(env)) buildah('config', '--env', `${k}=${v}`, ctr);
  const log = fs.openSync(logFile, 'w');
  const child = spawn('buildah', ['run', '--mount', 'type=tmpfs,destination=/tmp', ctr, '--', ...cmd], {
    stdio: ['ignore', log, log],
  });
  processes.push(child);
  child.on('exit', (code, signal) => {
    if (!child.stopping) process.stderr.write(`${name} exited (${code ?? signal}); its log: ${logFile}\n`);
  });
  return { ctr, config, child };
}

/** Runs a command inside a working container (as its configured user); its exit status. */
function inside(ctr, ...command) {
  try {
    execFileSync('buildah', ['run', ctr, '--', ...command], { stdio: ['ignore', 'pipe', 'pipe'] });
    return 0;
  } catch (err) {
    return err.status ?? 1;
  }
}

/** The uid a host process runs as (the node process a `buildah run` started). */
function uidOf(pattern) {
  const pid = execFileSync('pgrep', ['-n', '-f', pattern], { encoding: 'utf8' }).trim();
  return Number(/^Uid:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);
}

function check(condition, message) {
  if (!condition) throw new Error(message);
  process.stdout.write(`  ok: ${message}\n`);
}

async function main() {
  const logs = fs.mkdtempSync(path.join(os.tmpdir(), 'ddpm-images-'));
  const s3dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ddpm-images-s3-'));
  const s3 = new S3rver({
    port: 0,
    address: '127.0.0.1',
    directory: s3dir,
    silent: true,
    configureBuckets: [{ name: 'ddpm-images' }],
  });
  const { port: s3Port } = await s3.run();
  const [apiPort, metricsPort] = [await freePort(), await freePort()];
  const common = {
    REDIS_URL,
    DDPM_QUEUE_PREFIX: prefix,
    DDPM_STORAGE_URL: 's3://ddpm-images/runs',
    S3_ENDPOINT: `http://127.0.0.1:${s3Port}`,
    AWS_ACCESS_KEY_ID: 'S3RVER',
    AWS_SECRET_ACCESS_KEY: 'S3RVER',
    AWS_REGION: 'us-east-1',
    DDPM_API_TOKEN: TOKEN,
    DDPM_DATA_ROOTS: '',
  };
  try {
    const api = start(
      'api',
      API_IMAGE,
      { ...common, HOST: '127.0.0.1', PORT: String(apiPort) },
      path.join(logs, 'api.log'),
    );
    const worker = start(
      'worker',
      WORKER_IMAGE,
      { ...common, HOST: '127.0.0.1', METRICS_PORT: String(metricsPort), DDPM_BACKEND: 'native' },
      path.join(logs, 'worker.log'),
    );
    const base = `http://127.0.0.1:${apiPort}`;
    const auth = { authorization: `Bearer ${TOKEN}` };
    await until('the API to be ready', async () => ((await fetch(`${base}/readyz`)).ok ? true : undefined), 60_000);
    await until(
      'the worker to be ready',
      async () => ((await fetch(`http://127.0.0.1:${metricsPort}/readyz`)).ok ? true : undefined),
      60_000,
    );

    process.stdout.write('images started\n');
    check(uidOf(`apps/api/dist/server.js`) === 10001, 'the API runs as uid 10001');
    check(uidOf(`apps/worker/dist/main.js`) === 10001, 'the worker runs as uid 10001');
    check(inside(api.ctr, 'sh', '-c', 'touch /app/probe') !== 0, 'the API code is read-only to its user');
    check(inside(api.ctr, 'test', '-e', '/app/node_modules/@tensorflow') !== 0, 'the API image holds no TensorFlow.js');
    check(
      inside(worker.ctr, 'test', '-e', '/app/node_modules/@tensorflow/tfjs-backend-wasm') === 0,
      'the worker image holds the wasm backend',
    );
    check(
      inside(worker.ctr, 'sh', '-c', 'ls /app/packages/kernels/build/native/ddpm_kernels-*-fma.node') === 0,
      'the worker image holds the native kernels (its worker loads DDPM_BACKEND=native, or is never ready)',
    );
    for (const [name, { ctr, config }] of [
      ['API', api],
      ['worker', worker],
    ]) {
      const test = config.Docker?.config?.Healthcheck?.Test;
      check(
        Array.isArray(test) && test[0] === 'CMD' && inside(ctr, ...test.slice(1)) === 0,
        `the ${name} image's health check passes`,
      );
    }
    check((await fetch(`${base}/jobs`)).status === 401, 'the API asks for its token');
    // The web console ships in the API image: its shell (no token needed) and a hashed asset.
    const shell = await fetch(`${base}/ui/`);
    const shellText = await shell.text();
    check(
      shell.status === 200 && /script-src 'self'/.test(shell.headers.get('content-security-policy') ?? ''),
      'the API image serves the web console under its Content-Security-Policy',
    );
    const asset = /\/ui\/assets\/app-[A-Z0-9]{8}\.js/.exec(shellText)?.[0];
    check(asset !== undefined && (await fetch(`${base}${asset}`)).status === 200, "the console's script is served");

    const submitted = await fetch(`${base}/jobs/train`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/json' },
      body: JSON.stringify({
        dataset: 'procedural:shapes?size=32&channels=1',
        preset: 'micro32',
        steps: 4,
        batchSize: 4,
        checkpointEvery: 2,
        sampleCount: 4,
        sampleSteps: 10,
      }),
    });
    const job = await submitted.json();
    check(submitted.status === 202 || submitted.status === 201, `train job ${job.id} accepted (${submitted.status})`);
    const done = await until(
      'the train job to finish',
      async () => {
        const view = await (await fetch(`${base}/jobs/${job.id}`, { headers: auth })).json();
        return view.state === 'completed' || view.state === 'failed' || view.state === 'cancelled' ? view : undefined;
      },
      600_000,
    );
    check(
      done.state === 'completed',
      `the train job completed (state ${done.state}${done.error ? `: ${JSON.stringify(done.error)}` : ''})`,
    );
    const checkpoints = await (await fetch(`${base}/jobs/${job.id}/checkpoints`, { headers: auth })).json();
    const steps = (checkpoints.checkpoints ?? checkpoints).map((c) => c.step);
    check(steps.includes(4), `its checkpoints are in the object store (steps ${steps.join(', ')})`);
    const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    check(/^ddpm_train_steps_total\{[^}]*\} 4$/m.test(metrics), 'the worker counted its 4 steps');
  } finally {
    for (const child of processes) {
      child.stopping = true;
      child.kill('SIGTERM');
    }
    await sleep(1000);
    for (const ctr of containers) {
      try {
        buildah('rm', ctr);
      } catch {
        // already gone
      }
    }
    await s3.close();
    fs.rmSync(s3dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  process.stderr.write(`test:images failed: ${err.message}\n`);
  process.exit(1);
});
