/**
 * The U-Net's gradient and kernel tests on the threaded wasm build (DDPM_WASM_THREADS=2), run by
 * jest in a process of its own as a worker's job child would run them (slow tier).
 */
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';

const ROOT = path.resolve(__dirname, '..', '..', '..');

describe('DDPM_WASM_THREADS=2', () => {
  it('the U-Net gradient tests against the cpu backend and the kernel tests pass on 2 threads', () => {
    // The U-Net's own tests (they assert the pool size they were given), run by jest in a process of its own.
    const r = spawnSync(
      process.execPath,
      [
        path.join(ROOT, 'node_modules', 'jest', 'bin', 'jest.js'),
        '--ci',
        'packages/unet/src/unet.test.ts',
        'packages/unet/src/ops',
      ],
      {
        cwd: ROOT,
        env: { ...process.env, DDPM_WASM_THREADS: '2' },
        encoding: 'utf8',
        timeout: 300_000,
      },
    );
    expect(r.stderr).toMatch(/Tests: +\d+ passed, \d+ total/);
    expect(r.status).toBe(0);
  }, 320_000);
});
