/**
 * The `ddpm` executable as a shell runs it (the compiled main.js: npm test builds first).
 */
import { spawn } from 'node:child_process';
import * as path from 'node:path';

const MAIN = path.resolve(__dirname, '..', 'dist', 'main.js');

it('stops quietly, with status 0, when its reader goes away (ddpm info unet | head -1)', async () => {
  const child = spawn(process.execPath, [MAIN, 'info', 'unet', '--preset', 'cifar10'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  // The reader takes the first chunk and leaves, as head does.
  child.stdout.once('data', () => child.stdout.destroy());
  const status = await new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  expect(stderr).not.toContain('EPIPE');
  expect(status).toBe(0);
});
