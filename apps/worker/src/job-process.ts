/**
 * Starting a job process and reading what the operating system knows of it: the environment it
 * gets, its resident memory, the out-of-memory killer's count, and the backend probe a worker runs
 * before it is ready.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { promises as fs, readFileSync } from 'node:fs';
import * as path from 'node:path';

import { codedErrorOf } from '@ddpm/core';
import { kernelExecArgv } from '@ddpm/kernels/v8-flags';
import { type TensorSettings } from '@ddpm/service';

import { type ChildMessage, type ParentMessage } from './child-protocol';

/**
 * The environment a job process gets: what Node, the tensor backends and the object store's
 * client need, and nothing else (not the API token, not the queue's Redis URL).
 */
const CHILD_ENV_NAMES = new Set([
  'PATH',
  'HOME',
  'TMPDIR',
  'TZ',
  'LANG',
  'NODE_ENV',
  'NODE_OPTIONS',
  'NODE_EXTRA_CA_CERTS',
  'LOG_LEVEL',
  'S3_ENDPOINT',
  'XDG_CACHE_HOME',
  'CUDA_VISIBLE_DEVICES',
  'NVIDIA_VISIBLE_DEVICES',
  'TF_CPP_MIN_LOG_LEVEL',
  'TF_FORCE_GPU_ALLOW_GROWTH',
  'HTTPS_PROXY',
  'HTTP_PROXY',
  'NO_PROXY',
]);
const CHILD_ENV_PREFIXES = ['AWS_', 'LC_'];

export function childEnvironment(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  return Object.fromEntries(
    Object.entries(env).filter(
      ([k, v]) => v !== undefined && (CHILD_ENV_NAMES.has(k) || CHILD_ENV_PREFIXES.some((p) => k.startsWith(p))),
    ),
  );
}

/** Resident set size of a process, bytes (Linux /proc), or undefined when it cannot be read. */
export async function residentBytes(pid: number): Promise<number | undefined> {
  try {
    const status = await fs.readFile(`/proc/${pid}/status`, 'utf8');
    const kb = /^VmRSS:\s+(\d+) kB/m.exec(status);
    return kb ? Number(kb[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Files that count the out-of-memory killer's kills: this process's memory cgroup (v2
 * `memory.events`, v1 `memory.oom_control`; a job process is forked into it) and the machine's
 * `/proc/vmstat`. Read once: the cgroup does not change.
 */
const OOM_COUNTERS: readonly string[] = (() => {
  const files = ['/proc/vmstat'];
  try {
    for (const line of readFileSync('/proc/self/cgroup', 'utf8').split('\n')) {
      const [, controllers, where] = line.split(':');
      if (where === undefined) continue;
      if (controllers === '') files.push(path.join('/sys/fs/cgroup', where, 'memory.events'));
      else if (controllers?.split(',').includes('memory'))
        files.push(path.join('/sys/fs/cgroup/memory', where, 'memory.oom_control'));
    }
  } catch {
    // Not Linux, or no /proc: the vmstat read below fails the same way.
  }
  return files;
})();

/**
 * Kills by the out-of-memory killer so far, summed over the counters this machine lets us read
 * (any rise means one happened), or undefined when none can be read.
 */
export function oomKillCount(): number | undefined {
  let total: number | undefined;
  for (const file of OOM_COUNTERS) {
    try {
      const m = /^oom_kill (\d+)$/m.exec(readFileSync(file, 'utf8'));
      if (m) total = (total ?? 0) + Number(m[1]);
    } catch {
      // Not readable here (a container without the cgroup mounted): the others decide.
    }
  }
  return total;
}

/** A job process: the child entry point, with the allow-listed environment. */
export function forkChild(childPath: string | undefined): ChildProcess {
  return fork(childPath ?? path.join(__dirname, 'child.js'), [], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    env: childEnvironment(),
    // The V8 flags our fused kernels need on this Node, given at start-up as Node supports.
    execArgv: kernelExecArgv(),
    serialization: 'advanced',
    // Not detached: a session of its own would put the child in a scheduler autogroup of its own
    // (measured: the 2-worker demo trained 5% slower). Group signals are ignored by the child
    // instead (child.ts); the worker stops it over IPC, then with SIGKILL.
  });
}

/**
 * Loads the tensor backend in a child, as a job would, and returns its name (the worker's
 * readiness: a worker whose backend does not load is never ready, so a rollout stops at it).
 * Rejects with the child's error, or after `timeoutMs`.
 */
export function probeBackend(options: {
  tensors: TensorSettings;
  childPath?: string;
  timeoutMs?: number;
}): Promise<string> {
  const child = forkChild(options.childPath);
  return new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`the backend did not load within ${(options.timeoutMs ?? 120_000) / 1000} s`));
    }, options.timeoutMs ?? 120_000);
    timer.unref();
    child.on('message', (message: ChildMessage) => {
      if (message.type === 'probed') resolve(message.backend);
      else if (message.type === 'error') reject(codedErrorOf(message.error) ?? new Error(message.error.message));
    });
    child.on('error', (err) => reject(err));
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`the backend probe exited (${signal ?? `code ${code}`}) without an answer`));
    });
    child.send({ type: 'probe', tensors: options.tensors } satisfies ParentMessage);
  });
}
