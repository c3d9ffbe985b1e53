/**
 * redis-server processes of a test's own (Debian's redis-server on the PATH), for what the
 * machine's Redis on 127.0.0.1:6379 cannot show: a server killed and started again, a password,
 * several servers at once.
 */
import { type ChildProcess, spawn } from 'node:child_process';

import { Redis } from 'ioredis';

export interface TestRedisOptions {
  readonly password?: string;
  readonly bind?: string;
  /** Extra arguments (e.g. ['--appendonly', 'yes', '--dir', dir]). */
  readonly args?: readonly string[];
}

/** A redis-server on `port`; resolves once it answers PING (with the password when given). */
export async function startRedis(port: number, options: TestRedisOptions = {}): Promise<ChildProcess> {
  const { password, bind = '127.0.0.1' } = options;
  const child = spawn(
    'redis-server',
    [
      '--port',
      String(port),
      '--bind',
      bind,
      '--save',
      '',
      '--appendonly',
      'no',
      ...(password ? ['--requirepass', password] : []),
      ...(options.args ?? []),
    ],
    { stdio: 'ignore' },
  );
  const probe = new Redis(port, bind, {
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    ...(password ? { password } : {}),
  });
  try {
    for (let i = 0; i < 100; i++) {
      const pong = await probe.connect().then(
        () => probe.ping(),
        () => undefined,
      );
      if (pong) return child;
      await new Promise((r) => setTimeout(r, 100));
    }
  } finally {
    probe.disconnect();
  }
  child.kill('SIGKILL');
  throw new Error(`redis-server on port ${port} did not answer within 10 s`);
}

/** SIGKILLs a server and waits for it to be gone. */
export async function killRedis(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  await new Promise<void>((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGKILL');
  });
}
