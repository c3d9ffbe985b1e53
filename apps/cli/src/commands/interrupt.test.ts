/**
 * Ctrl-C on a real `ddpm train` process: it finishes the step in progress, writes a checkpoint,
 * exits cleanly, and `--resume` continues from that step. Runs the built CLI (npm test builds).
 */
import { spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { runCli } from '../index';

const MAIN = path.resolve(__dirname, '..', '..', 'dist', 'main.js');

function startTrain(args: string[]): {
  done: Promise<{ code: number | null; stderr: string; stdout: string }>;
  waitFor: (pattern: RegExp) => Promise<void>;
  kill: (s: NodeJS.Signals) => void;
} {
  const child = spawn(process.execPath, [MAIN, 'train', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, DDPM_BACKEND: 'wasm' },
  });
  let stderr = '';
  let stdout = '';
  const waiters: { pattern: RegExp; resolve: () => void }[] = [];
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
    for (const w of waiters.splice(0)) (w.pattern.test(stderr) ? w.resolve : () => waiters.push(w))();
  });
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  const done = new Promise<{ code: number | null; stderr: string; stdout: string }>((resolve) =>
    child.on('close', (code) => resolve({ code, stderr, stdout })),
  );
  return {
    done,
    waitFor: (pattern) =>
      new Promise((resolve) => (pattern.test(stderr) ? resolve() : waiters.push({ pattern, resolve }))),
    kill: (s) => child.kill(s),
  };
}

test('SIGINT saves a checkpoint and --resume continues from it', async () => {
  await fs.access(MAIN);
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ddpm-sigint-'));
  try {
    const common = [
      '--dataset',
      'procedural:shapes?size=32&channels=1',
      '--preset',
      'micro32',
      '--batch',
      '2',
      '--checkpoint-every',
      '1000',
      '--out',
      dir,
    ];
    const first = startTrain([...common, '--steps', '1000']);
    // Without a TTY the progress line is printed every 5 s: wait for one past step 1.
    await first.waitFor(/train ([2-9]|\d{2,})\/1000/);
    first.kill('SIGINT');
    const r1 = await first.done;
    expect(r1.code).toBe(0);
    expect(r1.stderr).toMatch(/SIGINT: finishing the current step and saving a checkpoint/);
    const stoppedAt = Number(/stopped at step (\d+)/.exec(r1.stderr)![1]);
    expect(stoppedAt).toBeGreaterThanOrEqual(2);
    expect(JSON.parse(r1.stdout)).toMatchObject({ status: 'stopped', step: stoppedAt });
    const second = startTrain([...common, '--steps', String(stoppedAt + 2), '--resume']);
    const r2 = await second.done;
    expect(r2.code).toBe(0);
    expect(r2.stderr).toContain(`resuming from step ${stoppedAt}`);
    expect(JSON.parse(r2.stdout)).toMatchObject({ status: 'completed', step: stoppedAt + 2 });
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}, 120_000);

test('Ctrl-C while waiting for a job: a clear message, no usage text, exit status 130', async () => {
  const out: string[] = [];
  const err: string[] = [];
  const controller = new AbortController();
  controller.abort(new Error('SIGINT received'));
  // The wait checks the signal before asking the API, so no server is needed.
  const status = await runCli(
    ['jobs', 'status', 'train-123', '--wait', '--api', 'http://127.0.0.1:9'],
    { stdout: (t: string) => out.push(t), stderr: (t: string) => err.push(t) },
    { tty: false, signal: controller.signal },
  );
  expect(status).toBe(130);
  expect(err.join('')).toBe('ddpm jobs: stopped waiting for train-123: SIGINT received\n');
  expect(out.join('')).toBe('');
});
