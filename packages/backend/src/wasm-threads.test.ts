/**
 * The threaded wasm build in Node (DDPM_WASM_THREADS, wasm-threads.ts), in processes of their own
 * as a worker's job child runs it: the pool has the threads asked for, results equal the
 * single-threaded build's bit for bit, and the process still exits by itself (the U-Net's own tests
 * on 2 threads are wasm-threads.slow.test.ts).
 */
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { wasmThreadsFrom } from './backend';

const ROOT = path.resolve(__dirname, '..', '..', '..');

/** Runs a script against the built @ddpm/backend in a fresh node process with DDPM_WASM_THREADS. */
function child(threads: string, script: string): { status: number | null; stdout: string; stderr: string; ms: number } {
  const started = Date.now();
  const r = spawnSync(process.execPath, ['-e', script], {
    cwd: ROOT,
    env: { ...process.env, DDPM_WASM_THREADS: threads },
    encoding: 'utf8',
    timeout: 60_000,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, ms: Date.now() - started };
}

// A convolution of fixed values through the backend a worker would get; prints its pool size and a hash.
const CONV = `
  const { initBackend } = require('./packages/backend');
  const tf = require('@tensorflow/tfjs-core');
  initBackend().then(async (info) => {
    const v = (n, k) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * k));
    const y = tf.conv2d(tf.tensor4d(v(4 * 16 * 16 * 32, 0.37), [4, 16, 16, 32]), tf.tensor4d(v(9 * 32 * 32, 0.11), [3, 3, 32, 32]), 1, 'same');
    const bytes = Buffer.from((await y.data()).buffer);
    console.log(JSON.stringify({ threads: info.wasmThreadCount, hash: require('node:crypto').createHash('sha256').update(bytes).digest('hex') }));
  });
`;

describe('DDPM_WASM_THREADS', () => {
  it('is an integer from 1 to 8, 1 when unset', () => {
    expect(wasmThreadsFrom({})).toBe(1);
    expect(wasmThreadsFrom({ DDPM_WASM_THREADS: '4' })).toBe(4);
    for (const bad of ['0', '9', '1.5', 'two']) {
      expect(() => wasmThreadsFrom({ DDPM_WASM_THREADS: bad })).toThrow(
        `DDPM_WASM_THREADS must be an integer from 1 to 8, got ${JSON.stringify(bad)}`,
      );
    }
  });

  it('runs the threaded build with that many threads, to the same bits as one thread, and the process exits by itself', () => {
    const before = new Set(readdirSync(os.tmpdir()));
    const one = child('1', CONV);
    const two = child('2', CONV);
    expect([one.status, one.stderr]).toEqual([0, '']);
    expect([two.status, two.stderr]).toEqual([0, '']);
    const [a, b] = [JSON.parse(one.stdout), JSON.parse(two.stdout)];
    expect([a.threads, b.threads]).toEqual([1, 2]);
    expect(b.hash).toBe(a.hash);
    // The pool's threads wait for work forever; unreferenced, they do not hold the process open.
    expect(two.ms).toBeLessThan(30_000);
    // The scripts the pool's workers were started from are gone with the process.
    expect(readdirSync(os.tmpdir()).filter((f) => f.startsWith('ddpm-wasm-threads-') && !before.has(f))).toEqual([]);
    const bad = child('lots', CONV);
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toContain('DDPM_WASM_THREADS must be an integer from 1 to 8, got "lots"');
  }, 120_000);
});
