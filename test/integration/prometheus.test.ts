/**
 * A real Prometheus (the Debian package) scrapes the API and a worker; queries then find
 * ddpm_train_steps_total and a BullMQ queue count. Skipped, saying so, without the binary.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';

import { findOnPath, freePort } from '@ddpm/cli';

import { type Stack, startStack, tinyTrain, until } from './service-support';

jest.setTimeout(180_000);

let stack: Stack;
let prometheus: ChildProcess | undefined;
afterAll(async () => {
  prometheus?.kill('SIGKILL');
  await stack?.close();
});

test('Prometheus scrapes the API and a worker: ddpm_train_steps_total and bullmq_job_count', async () => {
  const binary = findOnPath('prometheus');
  if (!binary) {
    console.warn('SKIPPED: no prometheus binary (apt-get install prometheus)');
    return;
  }
  stack = await startStack({ workers: 1 });
  const api = await stack.app.listen({ port: 0, host: '127.0.0.1' });
  const workerPort = stack.workers[0]!.metricsPort!;
  const id = (await stack.app.inject({ method: 'POST', url: '/jobs/train', payload: tinyTrain({ steps: 3 }) })).json().id as string;
  await stack.waitFinished(id);

  const dir = path.join(stack.storeDir, 'prometheus');
  await fs.mkdir(dir, { recursive: true });
  const config = [
    'global:',
    '  scrape_interval: 1s',
    'scrape_configs:',
    '  - job_name: ddpm-api',
    `    static_configs: [{ targets: ['${new URL(api).host}'] }]`,
    '  - job_name: ddpm-worker',
    `    static_configs: [{ targets: ['127.0.0.1:${workerPort}'] }]`,
  ].join('\n');
  await fs.writeFile(path.join(dir, 'prometheus.yml'), config);
  const port = await freePort();
  prometheus = spawn(binary, [`--config.file=${path.join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${path.join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`], {
    stdio: 'ignore',
  });
  const base = `http://127.0.0.1:${port}`;
  await until('prometheus to be ready', async () => ((await fetch(`${base}/-/ready`)).ok ? true : undefined));
  const query = async (q: string): Promise<{ metric: Record<string, string>; value: [number, string] }[] | undefined> => {
    const body = (await (await fetch(`${base}/api/v1/query?query=${encodeURIComponent(q)}`)).json()) as { data: { result: { metric: Record<string, string>; value: [number, string] }[] } };
    return body.data.result.length > 0 ? body.data.result : undefined;
  };
  const steps = await until('ddpm_train_steps_total', () => query('ddpm_train_steps_total'));
  expect(steps[0]!.metric).toMatchObject({ job: 'ddpm-worker', queue: 'train', rank: '0', backend: 'wasm' });
  expect(Number(steps[0]!.value[1])).toBe(3);
  const completed = await until('bullmq_job_count', () => query('bullmq_job_count{queue="train",state="completed",job="ddpm-api"}'));
  expect(Number(completed[0]!.value[1])).toBeGreaterThanOrEqual(1);
  const up = await until('targets up', async () => {
    const r = await query('up');
    return r && r.length === 2 && r.every((x) => x.value[1] === '1') ? r : undefined;
  });
  expect(up).toHaveLength(2);
});
