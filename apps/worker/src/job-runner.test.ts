import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { createLogger, createWorkerMetrics } from '@ddpm/telemetry';

import { oomKillCount, runInChild } from './job-runner';

let dir: string;
let childPath: string;
beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ddpm-runner-'));
  // A job process that starts and then waits: what is tested is how its end is read.
  childPath = path.join(dir, 'idle-child.js');
  await fs.writeFile(
    childPath,
    "process.on('message', () => process.send({ type: 'progress', progress: { phase: 'training', step: 1 } }));\nsetInterval(() => undefined, 1000);\n",
  );
});
afterAll(() => fs.rm(dir, { recursive: true, force: true }));

function start(): ReturnType<typeof runInChild> {
  return runInChild(
    { jobId: 'train-1', data: { type: 'train' } as never, queue: 'train', onProgress: () => undefined },
    {
      storageUrl: `file://${dir}`,
      storagePatienceSeconds: 0,
      dataAccess: { roots: [], maxFileBytes: 1 },
      tensors: { kernelSwitches: { wasmKernels: true, wasmFma: true, winograd: true, threads: 1 } },
      memoryBytes: 2 ** 40,
      maxSeconds: 600,
      stopGraceSeconds: 5,
      stallSeconds: 600,
      metrics: createWorkerMetrics(),
      logger: createLogger('test', 'silent'),
      childPath,
    },
  );
}

/** The pid of this process's newest child running `childPath`. */
async function childPid(): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const children = (await fs.readFile(`/proc/${process.pid}/task/${process.pid}/children`, 'utf8').catch(() => ''))
      .split(' ')
      .filter(Boolean)
      .map(Number);
    for (const pid of children.reverse()) {
      const cmd = await fs.readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
      if (cmd.includes('idle-child.js')) return pid;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('the job process did not start');
}

const linux = process.platform === 'linux' && oomKillCount() !== undefined;
(linux ? describe : describe.skip)('a job process killed from outside', () => {
  it('SIGKILL while the out-of-memory killer’s count stays: a crash the job is retried after, not a memory failure', async () => {
    const running = start();
    const pid = await childPid();
    process.kill(pid, 'SIGKILL');
    const err = (await running.done.catch((e: unknown) => e)) as Error & { code?: string };
    expect(err.code).toBeUndefined();
    expect(err.message).toBe(
      'job process exited (SIGKILL, not from the out-of-memory killer) before finishing; the job will be retried from its last checkpoint',
    );
  });

  it('reads a counter of the out-of-memory killer on this machine', () => {
    expect(oomKillCount()).toBeGreaterThanOrEqual(0);
  });
});
