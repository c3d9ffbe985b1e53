/**
 * The API executable in a fresh process, as deployed: it starts, answers (the console's pages too),
 * and loads no tensor code (no @tensorflow/* module, no sharp): the API image need not carry them and its start-up
 * and memory stay small. Reports start-up time and resident memory.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { API_SERVER, ROOT } from './service-support';

const PRELOAD = path.join(ROOT, 'test', 'integration', 'fixtures', 'module-report.cjs');

test('the API starts, serves, and loads no @tensorflow/* module and no sharp', async () => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ddpm-api-process-'));
  const report = path.join(dir, 'modules.txt');
  const port = 20_000 + Math.floor(Math.random() * 20_000);
  const started = process.hrtime.bigint();
  const child = spawn(process.execPath, ['--require', PRELOAD, API_SERVER], {
    env: {
      ...process.env,
      PORT: String(port),
      HOST: '127.0.0.1',
      LOG_LEVEL: 'warn',
      DDPM_QUEUE_PREFIX: `test-${randomBytes(6).toString('hex')}`,
      DDPM_STORAGE_URL: `file://${dir}/store`,
      DDPM_MODULE_REPORT: report,
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  try {
    let ready = false;
    for (let i = 0; i < 300 && !ready; i++) {
      ready = await fetch(`http://127.0.0.1:${port}/healthz`).then(
        (r) => r.ok,
        () => false,
      );
      if (!ready) await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(ready).toBe(true);
    const startupMs = Number(process.hrtime.bigint() - started) / 1e6;
    // Exercise the paths that need the contract: a submission resolved at the door, a checkpoint listing, the console.
    const submitted = await fetch(`http://127.0.0.1:${port}/jobs/train`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ dataset: 'procedural:shapes?size=16&channels=1', preset: 'nano8', steps: 1 }),
    });
    expect(submitted.status).toBe(202);
    const { id } = (await submitted.json()) as { id: string };
    expect((await fetch(`http://127.0.0.1:${port}/jobs/${id}/checkpoints`)).status).toBe(200);
    expect((await fetch(`http://127.0.0.1:${port}/docs/json`)).status).toBe(200);
    // The console and the shipped models' page: the shell, its assets, the manifests and a grid.
    const shell = await fetch(`http://127.0.0.1:${port}/ui/`);
    expect(shell.status).toBe(200);
    for (const [asset] of (await shell.text()).matchAll(/\/ui\/assets\/app-[A-Z0-9]{8}\.(js|css)/g))
      expect([asset, (await fetch(`http://127.0.0.1:${port}${asset}`)).status]).toEqual([asset, 200]);
    expect((await fetch(`http://127.0.0.1:${port}/models`)).status).toBe(200);
    expect((await fetch(`http://127.0.0.1:${port}/models/fashion-mnist-cpu/grid.png`)).status).toBe(200);
    expect((await fetch(`http://127.0.0.1:${port}/jobs?run=${id}`)).status).toBe(200);
    const rssMiB = Number(/VmRSS:\s+(\d+)/.exec(await fs.readFile(`/proc/${child.pid}/status`, 'utf8'))![1]) / 1024;
    await fetch(`http://127.0.0.1:${port}/jobs/${id}`, { method: 'DELETE' });
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    const modules = (await fs.readFile(report, 'utf8')).split('\n').filter(Boolean);
    console.info(
      JSON.stringify({ startupMs: Math.round(startupMs), rssMiB: Math.round(rssMiB), modules: modules.length }),
    );
    expect(modules.length).toBeGreaterThan(100);
    expect(modules.some((m) => m.includes(`${path.sep}fastify${path.sep}`))).toBe(true);
    expect(modules.filter((m) => /[\\/]@tensorflow[\\/]|[\\/]sharp[\\/]|[\\/]@img[\\/]/.test(m))).toEqual([]);
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
    await fs.rm(dir, { recursive: true, force: true });
  }
}, 60_000);
