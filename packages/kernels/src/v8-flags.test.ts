import { spawnSync } from 'node:child_process';

import { kernelExecArgv, kernelV8Flags, relaxedSimdCompiles } from './v8-flags';

const probe = "process.stdout.write(String(require('./packages/kernels/dist/v8-flags.js').relaxedSimdCompiles()))";
const ROOT = `${__dirname}/../../..`;
const run = (execArgv: string[]): string =>
  spawnSync(process.execPath, [...execArgv, '-e', probe], { cwd: ROOT, encoding: 'utf8' }).stdout;

describe('the V8 flags of a tensor process', () => {
  it('are the relaxed-SIMD flag on Node 20 (V8 11) and none where V8 ships relaxed SIMD', () => {
    const v8Major = Number(process.versions.v8.split('.')[0]);
    expect(kernelV8Flags()).toEqual(v8Major === 11 ? ['--experimental-wasm-relaxed-simd'] : []);
  });

  it('make relaxed SIMD compile in a process started with them, as in this one', () => {
    if (!relaxedSimdCompiles())
      throw new Error('this jest runs without kernelV8Flags(): run the tests with npm test or node scripts/jest.cjs');
    expect(run(kernelExecArgv([]))).toBe('true');
    if (kernelV8Flags().length > 0) expect(run([])).toBe('false');
  });

  it('are added to an execArgv once, after what it holds', () => {
    const flags = kernelV8Flags();
    expect(kernelExecArgv(['--max-old-space-size=512'])).toEqual(['--max-old-space-size=512', ...flags]);
    expect(kernelExecArgv([...flags, '--trace-warnings'])).toEqual([...flags, '--trace-warnings']);
  });
});
